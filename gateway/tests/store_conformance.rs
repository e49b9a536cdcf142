//! The store conformance suite: every test runs against SQLite and
//! PostgreSQL (when `GLYPHOXA_TEST_DATABASE_URL` is set), each on a private
//! database or schema.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{did, tid, TestDb, T0};
use glyphoxa_gateway::crypto::EncryptedToken;
use glyphoxa_gateway::ids::{CampaignId, SessionId};
use glyphoxa_gateway::store::{
    CreateSessionError, EndCondition, EndSession, FeedbackRatings, LicenseTier, LiveRule, NewSession, NewTenant,
    NewTranscriptLine, RecapAudio, SessionEventRecord, SessionState, StaleKind, Store, StoreError, TenantUpdate,
    TurnOutcome, TurnRecord,
};
use glyphoxa_gateway::time::Period;
use glyphoxa_pipeline::campaign::{Campaign, CampaignInfo, Entity, EntityKind, Relationship};

on_both_backends!(
    migrations_are_idempotent,
    tenants_crud_and_put_semantics,
    session_lifecycle_and_usage,
    license_rules_by_tier,
    quota_is_enforced,
    zombie_and_pending_detection,
    usage_splits_across_months,
    campaigns_entities_and_npcs,
    campaign_import_upserts,
    events_transcripts_recaps_feedback,
    tenant_isolation_for_every_method,
);

fn new_session(guild: &str) -> NewSession {
    NewSession {
        id: SessionId::random(),
        campaign_id: None,
        guild_id: did(guild),
        channel_id: did("200"),
        started_by: did("300"),
    }
}

fn entity(name: &str, kind: EntityKind) -> Entity {
    Entity {
        name: name.to_string(),
        kind,
        description: format!("about {name}"),
        tags: vec!["t1".into()],
        properties: BTreeMap::from([("k".to_string(), "v".to_string())]),
        relationships: vec![Relationship {
            target: "Other".into(),
            kind: "ally".into(),
        }],
    }
}

fn line(text: &str) -> NewTranscriptLine {
    NewTranscriptLine {
        speaker_id: "300".into(),
        speaker_name: "Alice".into(),
        npc_id: None,
        text: text.into(),
        start_ms: T0,
        end_ms: T0 + 1000,
        outcome: None,
        turn_id: Some("t1".into()),
        puppet: false,
    }
}

async fn migrations_are_idempotent(db: &TestDb) {
    let report = glyphoxa_gateway::migrate(&db.scoped_url())
        .await
        .expect("migrate again");
    assert_eq!(report.applied, 0, "{report:?}");
    assert!(report.version >= 1);
    let again = db.store.migrate().await.expect("store migrate");
    assert_eq!(again.applied, 0);
    // A second store on the same database sees the same data.
    db.tenant("acme", LicenseTier::Shared).await;
    let other = Store::connect(&db.settings()).await.expect("reopen");
    assert_eq!(other.list_tenants().await.unwrap().len(), 1);
    other.close().await;
}

async fn tenants_crud_and_put_semantics(db: &TestDb) {
    let store = &db.store;
    let mut new = NewTenant::new(tid("acme"), LicenseTier::Dedicated);
    new.guild_ids = vec![did("1"), did("2")];
    new.dm_role_id = Some(did("77"));
    new.campaign_id = Some(CampaignId::parse("lost-mine").unwrap());
    new.monthly_session_hours = 12.5;
    new.bot_token = Some(EncryptedToken::from_stored(vec![1, 2, 3]));
    let created = store.create_tenant(&new).await.unwrap();
    assert!(created.has_bot_token);
    assert_eq!(created.created_at, T0);
    assert_eq!(created.guild_ids, vec![did("1"), did("2")]);

    let dup = store
        .create_tenant(&NewTenant::new(tid("acme"), LicenseTier::Shared))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(ref what)) if what.contains("acme")),
        "{dup:?}"
    );
    let bad = store
        .create_tenant(&NewTenant {
            monthly_session_hours: -1.0,
            ..NewTenant::new(tid("neg"), LicenseTier::Shared)
        })
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid { .. })));

    let acme = store.tenant(&tid("acme"));
    assert_eq!(acme.get().await.unwrap().unwrap(), created);
    assert_eq!(acme.bot_token().await.unwrap().unwrap().as_bytes(), &[1, 2, 3]);

    // Absent keeps; Some(None) clears.
    db.clock.advance(Duration::from_secs(5));
    let kept = acme
        .update(&TenantUpdate {
            monthly_session_hours: Some(3.0),
            ..TenantUpdate::default()
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.dm_role_id, Some(did("77")));
    assert_eq!(kept.campaign_id, created.campaign_id);
    assert!(kept.has_bot_token);
    assert_eq!(kept.monthly_session_hours, 3.0);
    assert_eq!(kept.updated_at, T0 + 5000);
    let cleared = acme
        .update(&TenantUpdate {
            dm_role_id: Some(None),
            campaign_id: Some(None),
            bot_token: Some(None),
            guild_ids: Some(vec![]),
            license_tier: Some(LicenseTier::Shared),
            ..TenantUpdate::default()
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.dm_role_id, None);
    assert_eq!(cleared.campaign_id, None);
    assert!(!cleared.has_bot_token);
    assert!(cleared.guild_ids.is_empty());
    assert_eq!(cleared.license_tier, LicenseTier::Shared);
    assert!(acme.bot_token().await.unwrap().is_none());

    db.tenant("beta", LicenseTier::Shared).await;
    let ids: Vec<String> = store
        .list_tenants()
        .await
        .unwrap()
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, ["acme", "beta"]);
    store
        .tenant(&tid("beta"))
        .update(&TenantUpdate {
            bot_token: Some(Some(EncryptedToken::from_stored(vec![9; 40]))),
            ..TenantUpdate::default()
        })
        .await
        .unwrap();
    assert_eq!(store.tenants_with_bot_token().await.unwrap(), vec![tid("beta")]);

    // Delete cascades to the tenant's data.
    let session = acme.create_session(&new_session("10")).await.unwrap();
    assert!(acme.delete().await.unwrap());
    assert!(!acme.delete().await.unwrap());
    assert!(acme.get().await.unwrap().is_none());
    assert!(acme.update(&TenantUpdate::default()).await.unwrap().is_none());
    assert!(store.session_owner(&session.id).await.unwrap().is_none());
    assert!(matches!(
        acme.create_session(&new_session("11")).await,
        Err(CreateSessionError::TenantNotFound)
    ));
}

async fn session_lifecycle_and_usage(db: &TestDb) {
    db.tenant("acme", LicenseTier::Dedicated).await;
    let acme = db.store.tenant(&tid("acme"));
    let session = acme.create_session(&new_session("10")).await.unwrap();
    assert_eq!(session.state, SessionState::Pending);
    assert_eq!(session.started_at, T0);
    assert_eq!(session.license_tier, LicenseTier::Dedicated);
    assert_eq!(db.store.session_owner(&session.id).await.unwrap(), Some(tid("acme")));
    assert_eq!(db.store.live_session_count().await.unwrap(), 1);
    assert!(acme
        .set_session_worker(&session.id, "http://w1:50051", Some("w1"))
        .await
        .unwrap());

    db.clock.advance(Duration::from_secs(2));
    let active = acme.activate_session(&session.id, Some("w1")).await.unwrap().unwrap();
    assert!(active.changed());
    let active = active.into_session();
    assert_eq!(active.state, SessionState::Active);
    assert_eq!(active.activated_at, Some(T0 + 2000));
    assert_eq!(active.last_heartbeat, Some(T0 + 2000));
    assert_eq!(active.worker_addr.as_deref(), Some("http://w1:50051"));
    assert!(!acme
        .activate_session(&session.id, None)
        .await
        .unwrap()
        .unwrap()
        .changed());

    db.clock.advance(Duration::from_secs(10));
    assert_eq!(
        acme.record_heartbeat(&session.id, Some("w1")).await.unwrap(),
        Some(SessionState::Active)
    );
    assert_eq!(
        acme.session(&session.id).await.unwrap().unwrap().last_heartbeat,
        Some(T0 + 12_000)
    );
    assert_eq!(acme.record_heartbeat(&SessionId::random(), None).await.unwrap(), None);

    // One hour of voice time.
    db.clock.set(T0 + 2000 + 3_600_000);
    let ended = acme
        .end_session(&session.id, &EndSession::because("stopped by 300").with_error("boom"))
        .await
        .unwrap()
        .unwrap();
    assert!(ended.changed());
    let ended = ended.into_session();
    assert_eq!(ended.state, SessionState::Ended);
    assert_eq!(ended.billed_ms, 3_600_000);
    assert_eq!(ended.end_reason.as_deref(), Some("stopped by 300"));
    assert_eq!(ended.error.as_deref(), Some("boom"));
    assert_eq!(ended.duration_ms(i64::MAX), 3_600_000);

    // Ended is terminal; stopping again is a no-op and bills nothing more.
    db.clock.advance(Duration::from_secs(600));
    let again = acme
        .end_session(&session.id, &EndSession::because("again"))
        .await
        .unwrap()
        .unwrap();
    assert!(!again.changed());
    assert_eq!(again.session().end_reason.as_deref(), Some("stopped by 300"));
    assert!(!acme
        .activate_session(&session.id, None)
        .await
        .unwrap()
        .unwrap()
        .changed());
    assert_eq!(
        acme.record_heartbeat(&session.id, None).await.unwrap(),
        Some(SessionState::Ended)
    );
    assert_eq!(
        acme.session(&session.id).await.unwrap().unwrap().state,
        SessionState::Ended
    );
    let usage = acme.usage(Period::containing(T0)).await.unwrap();
    assert_eq!(usage.session_ms, 3_600_000);
    assert_eq!(usage.sessions, 1);
    assert!((usage.session_hours() - 1.0).abs() < 1e-9);
    assert_eq!(acme.usage("2020-01".parse().unwrap()).await.unwrap().session_ms, 0);
    assert!(acme
        .end_session(&SessionId::random(), &EndSession::because("x"))
        .await
        .unwrap()
        .is_none());

    // A heartbeat on a pending session activates it; a never-active session bills nothing.
    let second = acme.create_session(&new_session("10")).await.unwrap();
    assert_eq!(
        acme.record_heartbeat(&second.id, Some("w2")).await.unwrap(),
        Some(SessionState::Active)
    );
    let third = acme.create_session(&new_session("11")).await.unwrap();
    let ended = acme
        .end_session(&third.id, &EndSession::because("failed"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.session().billed_ms, 0);

    // Listing: live first, then most recent.
    db.clock.advance(Duration::from_secs(1));
    let fourth = acme.create_session(&new_session("12")).await.unwrap();
    let listed: Vec<SessionId> = acme.sessions(10).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(
        listed,
        vec![
            second.id.clone(),
            fourth.id.clone(),
            third.id.clone(),
            session.id.clone()
        ]
    );
    assert_eq!(acme.sessions(1).await.unwrap().len(), 1);
    let live: Vec<SessionId> = acme.live_sessions().await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(live, vec![second.id.clone(), fourth.id.clone()]);
    assert_eq!(
        acme.live_session_in_guild(&did("10")).await.unwrap().unwrap().id,
        second.id
    );
    assert!(acme.live_session_in_guild(&did("11")).await.unwrap().is_none());
    assert_eq!(acme.latest_session(None, false).await.unwrap().unwrap().id, fourth.id);
    assert_eq!(
        acme.latest_session(Some(&did("11")), false).await.unwrap().unwrap().id,
        third.id
    );
    assert_eq!(
        acme.latest_session(Some(&did("10")), true).await.unwrap().unwrap().id,
        session.id
    );
}

async fn license_rules_by_tier(db: &TestDb) {
    db.tenant("shared", LicenseTier::Shared).await;
    db.tenant("dedicated", LicenseTier::Dedicated).await;
    let shared = db.store.tenant(&tid("shared"));
    let dedicated = db.store.tenant(&tid("dedicated"));

    let first = shared.create_session(&new_session("1")).await.unwrap();
    // Shared: one per tenant, even in another guild.
    match shared.create_session(&new_session("2")).await {
        Err(CreateSessionError::AlreadyLive { rule, existing }) => {
            assert_eq!(rule, LiveRule::OnePerSharedTenant);
            assert_eq!(existing.unwrap().id, first.id);
        }
        other => panic!("expected the shared rule, got {other:?}"),
    }
    // Any tenant: one per guild.
    match dedicated.create_session(&new_session("1")).await {
        Err(CreateSessionError::AlreadyLive { rule, existing }) => {
            assert_eq!(rule, LiveRule::OnePerGuild);
            assert!(existing.is_none(), "another tenant's session must not be revealed");
        }
        other => panic!("expected the guild rule, got {other:?}"),
    }
    // Dedicated: one per guild of the tenant, several guilds at once.
    let d2 = dedicated.create_session(&new_session("2")).await.unwrap();
    dedicated.create_session(&new_session("3")).await.unwrap();
    match dedicated.create_session(&new_session("2")).await {
        Err(error @ CreateSessionError::AlreadyLive { .. }) => {
            assert!(error.to_string().contains(d2.id.as_str()), "{error}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Ending frees the slot.
    shared
        .end_session(&first.id, &EndSession::because("done"))
        .await
        .unwrap();
    shared.create_session(&new_session("4")).await.unwrap();
}

async fn quota_is_enforced(db: &TestDb) {
    let mut new = NewTenant::new(tid("acme"), LicenseTier::Shared);
    new.monthly_session_hours = 1.0;
    db.store.create_tenant(&new).await.unwrap();
    let acme = db.store.tenant(&tid("acme"));
    let s = acme.create_session(&new_session("1")).await.unwrap();
    acme.activate_session(&s.id, None).await.unwrap();
    db.clock.advance(Duration::from_secs(1800));
    acme.end_session(&s.id, &EndSession::because("half")).await.unwrap();
    // 0.5 h used of 1 h: allowed.
    let s = acme.create_session(&new_session("1")).await.unwrap();
    acme.activate_session(&s.id, None).await.unwrap();
    db.clock.advance(Duration::from_secs(1800));
    acme.end_session(&s.id, &EndSession::because("rest")).await.unwrap();
    match acme.create_session(&new_session("1")).await {
        Err(error @ CreateSessionError::QuotaExceeded { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("1.00 of 1 session hours") && text.contains("2025-03"),
                "{text}"
            );
        }
        other => panic!("expected the quota to refuse, got {other:?}"),
    }
    assert!(
        acme.live_sessions().await.unwrap().is_empty(),
        "a refused start leaves nothing behind"
    );
    // Next month starts fresh; 0 = unlimited.
    db.clock.set(Period::containing(T0).next().start_ms());
    let s = acme.create_session(&new_session("1")).await.unwrap();
    acme.end_session(&s.id, &EndSession::because("x")).await.unwrap();
    db.clock.set(T0 + 7_200_000);
    acme.update(&TenantUpdate {
        monthly_session_hours: Some(0.0),
        ..TenantUpdate::default()
    })
    .await
    .unwrap();
    acme.create_session(&new_session("1")).await.unwrap();
}

async fn zombie_and_pending_detection(db: &TestDb) {
    db.tenant("acme", LicenseTier::Dedicated).await;
    db.tenant("beta", LicenseTier::Dedicated).await;
    let acme = db.store.tenant(&tid("acme"));
    let beta = db.store.tenant(&tid("beta"));
    let zombie = acme.create_session(&new_session("1")).await.unwrap();
    acme.activate_session(&zombie.id, None).await.unwrap();
    acme.set_session_worker(&zombie.id, "w1", None).await.unwrap();
    let alive = beta.create_session(&new_session("2")).await.unwrap();
    beta.activate_session(&alive.id, None).await.unwrap();
    db.clock.advance(Duration::from_secs(20));
    let pending = beta.create_session(&new_session("3")).await.unwrap();
    db.clock.advance(Duration::from_secs(20));
    beta.record_heartbeat(&alive.id, None).await.unwrap();
    let now = T0 + 40_000;
    let stale = db.store.stale_sessions(now - 30_000, now - 60_000).await.unwrap();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].session_id, zombie.id);
    assert_eq!(stale[0].tenant_id, tid("acme"));
    assert_eq!(stale[0].kind, StaleKind::Zombie);
    assert_eq!(stale[0].worker_addr.as_deref(), Some("w1"));
    let stale = db.store.stale_sessions(now - 30_000, now - 10_000).await.unwrap();
    assert!(stale
        .iter()
        .any(|s| s.session_id == pending.id && s.kind == StaleKind::StalePending));

    // Conditional ends: a fresh heartbeat wins over a late cleanup.
    let not_zombie = beta
        .end_session(
            &alive.id,
            &EndSession {
                reason: "zombie".into(),
                error: None,
                condition: EndCondition::ZombieBefore(now - 30_000),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!not_zombie.changed());
    let ended = acme
        .end_session(
            &zombie.id,
            &EndSession {
                reason: "zombie: no heartbeat".into(),
                error: None,
                condition: EndCondition::ZombieBefore(now - 30_000),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(ended.changed());
    // Billed to its last sign of life (activation at T0), not to discovery.
    assert_eq!(ended.session().billed_ms, 0);
    let not_pending = beta
        .end_session(
            &alive.id,
            &EndSession {
                reason: "stale".into(),
                error: None,
                condition: EndCondition::PendingBefore(now),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert!(!not_pending.changed());
}

async fn usage_splits_across_months(db: &TestDb) {
    db.tenant("acme", LicenseTier::Shared).await;
    let acme = db.store.tenant(&tid("acme"));
    let april = Period::containing(T0).next();
    db.clock.set(april.start_ms() - 1_800_000);
    let s = acme.create_session(&new_session("1")).await.unwrap();
    acme.activate_session(&s.id, None).await.unwrap();
    db.clock.set(april.start_ms() + 3_600_000);
    acme.end_session(&s.id, &EndSession::because("late night"))
        .await
        .unwrap();
    let march = acme.usage(Period::containing(T0)).await.unwrap();
    let april_usage = acme.usage(april).await.unwrap();
    assert_eq!(march.session_ms, 1_800_000);
    assert_eq!(march.sessions, 1);
    assert_eq!(april_usage.session_ms, 3_600_000);
    assert_eq!(april_usage.sessions, 0);
}

async fn campaigns_entities_and_npcs(db: &TestDb) {
    db.tenant("acme", LicenseTier::Shared).await;
    let acme = db.store.tenant(&tid("acme"));
    // No campaign yet: the default one is created and made active.
    assert!(acme.active_campaign().await.unwrap().is_none());
    let default = acme.ensure_active_campaign().await.unwrap();
    assert_eq!(default.id, CampaignId::default_campaign());
    assert_eq!(default.info.name, "Default campaign");
    assert_eq!(acme.ensure_active_campaign().await.unwrap(), default);
    assert_eq!(acme.active_campaign().await.unwrap().unwrap().id, default.id);

    let mine = CampaignId::parse("lost-mine").unwrap();
    let info = CampaignInfo {
        name: "Lost Mine".into(),
        system: "dnd5e".into(),
        description: "A mine.".into(),
    };
    let saved = acme.upsert_campaign(&mine, &info).await.unwrap();
    assert_eq!(saved.info, info);
    let renamed = acme
        .upsert_campaign(
            &mine,
            &CampaignInfo {
                name: "Lost Mine of P".into(),
                ..info.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.created_at, saved.created_at);
    let clash = acme
        .upsert_campaign(
            &CampaignId::parse("other").unwrap(),
            &CampaignInfo {
                name: "lost mine of p".into(),
                ..info.clone()
            },
        )
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    let empty = acme
        .upsert_campaign(
            &mine,
            &CampaignInfo {
                name: " ".into(),
                ..info.clone()
            },
        )
        .await;
    assert!(matches!(empty, Err(StoreError::Invalid { .. })));
    assert_eq!(acme.campaign_by_name("LOST MINE OF P").await.unwrap().unwrap().id, mine);
    assert_eq!(acme.campaigns().await.unwrap().len(), 2);
    assert!(acme.set_active_campaign(Some(&mine)).await.unwrap());
    assert_eq!(acme.active_campaign().await.unwrap().unwrap().id, mine);

    // Active campaign id naming a campaign that does not exist yet.
    let future = CampaignId::parse("future").unwrap();
    acme.set_active_campaign(Some(&future)).await.unwrap();
    assert!(acme.active_campaign().await.unwrap().is_none());
    let created = acme.ensure_active_campaign().await.unwrap();
    assert_eq!(created.id, future);
    assert_eq!(created.info.name, "future");

    // Entities.
    let grimble = acme
        .add_entity(&mine, &entity("Grimble", EntityKind::Npc))
        .await
        .unwrap();
    assert_eq!(grimble.entity.relationships.len(), 1);
    assert_eq!(grimble.entity.properties.get("k").map(String::as_str), Some("v"));
    let dup = acme.add_entity(&mine, &entity("grimble", EntityKind::Npc)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    acme.add_entity(&mine, &entity("Grimble", EntityKind::Location))
        .await
        .unwrap();
    let missing = acme
        .add_entity(&CampaignId::parse("nope").unwrap(), &entity("X", EntityKind::Lore))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    let long = acme
        .add_entity(
            &mine,
            &Entity {
                description: "x".repeat(2001),
                ..entity("Long", EntityKind::Lore)
            },
        )
        .await;
    assert!(matches!(long, Err(StoreError::Invalid { .. })));
    let mut changed = entity("GRIMBLE", EntityKind::Npc);
    changed.description = "new".into();
    changed.relationships = vec![];
    let (updated, created) = acme.upsert_entity(&mine, &changed).await.unwrap();
    assert!(!created);
    assert_eq!(updated.id, grimble.id);
    assert_eq!(updated.entity.description, "new");
    assert!(updated.entity.relationships.is_empty());
    let (_, created) = acme
        .upsert_entity(&mine, &entity("Phandalin", EntityKind::Location))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(acme.entity(&grimble.id).await.unwrap().unwrap().entity.name, "GRIMBLE");
    assert_eq!(acme.entities(&mine, None, 25).await.unwrap().len(), 3);
    assert_eq!(
        acme.entities(&mine, Some(EntityKind::Location), 25)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(acme.entities(&mine, None, 1).await.unwrap().len(), 1);
    assert_eq!(acme.search_entities(&mine, "gr", 25).await.unwrap().len(), 2);
    assert_eq!(acme.search_entities(&mine, "%", 25).await.unwrap().len(), 0);
    assert_eq!(
        acme.entity_by_name(&mine, EntityKind::Location, "phandalin")
            .await
            .unwrap()
            .unwrap()
            .entity
            .name,
        "Phandalin"
    );
    let counts = acme.entity_counts(&mine).await.unwrap();
    assert_eq!(counts.get(&EntityKind::Location), Some(&2));
    assert_eq!(counts.get(&EntityKind::Npc), Some(&1));
    assert!(acme.delete_entity(&grimble.id).await.unwrap());
    assert!(!acme.delete_entity(&grimble.id).await.unwrap());
    assert!(acme.entity(&grimble.id).await.unwrap().is_none());

    // NPC roster.
    let campaign = Campaign::example();
    let npcs = acme.replace_npcs(&mine, &campaign.npcs).await.unwrap();
    assert_eq!(npcs.len(), campaign.npcs.len());
    assert_eq!(npcs[0].npc, campaign.npcs[0]);
    assert_eq!(
        acme.npc(&npcs[0].id).await.unwrap().unwrap().npc.name,
        campaign.npcs[0].name
    );
    let mut twice = campaign.npcs.clone();
    twice.push(campaign.npcs[0].clone());
    assert!(matches!(
        acme.replace_npcs(&mine, &twice).await,
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(
        acme.npcs(&mine).await.unwrap().len(),
        campaign.npcs.len(),
        "a failed replace changes nothing"
    );
    let replaced = acme.replace_npcs(&mine, &campaign.npcs[..1]).await.unwrap();
    assert_eq!(replaced.len(), 1);
    assert!(acme.npc(&npcs[0].id).await.unwrap().is_none());

    // Deleting a campaign takes its entities and NPCs along.
    assert!(acme.delete_campaign(&mine).await.unwrap());
    assert!(!acme.delete_campaign(&mine).await.unwrap());
    assert!(acme.npcs(&mine).await.unwrap().is_empty());
    assert!(acme.entities(&mine, None, 25).await.unwrap().is_empty());
}

async fn campaign_import_upserts(db: &TestDb) {
    db.tenant("acme", LicenseTier::Shared).await;
    let acme = db.store.tenant(&tid("acme"));
    let campaign = Campaign::example();
    let id = CampaignId::from_name(&campaign.campaign.name);
    let first = acme.import_campaign(&id, &campaign).await.unwrap();
    assert_eq!(first.entities_created, campaign.entities.len());
    assert_eq!(first.entities_updated, 0);
    assert_eq!(first.npcs, campaign.npcs.len());
    let again = acme.import_campaign(&id, &campaign).await.unwrap();
    assert_eq!(again.entities_created, 0);
    assert_eq!(again.entities_updated, campaign.entities.len());
    assert_eq!(
        acme.entities(&id, None, 1000).await.unwrap().len(),
        campaign.entities.len()
    );
    assert_eq!(acme.npcs(&id).await.unwrap().len(), campaign.npcs.len());
    let stored = acme.entities(&id, None, 1000).await.unwrap();
    for original in &campaign.entities {
        assert!(stored.iter().any(|s| s.entity == *original), "{original:?} round-trips");
    }
}

async fn events_transcripts_recaps_feedback(db: &TestDb) {
    db.tenant("acme", LicenseTier::Shared).await;
    let acme = db.store.tenant(&tid("acme"));
    let session = acme.create_session(&new_session("1")).await.unwrap();
    let transcript = SessionEventRecord::Transcript(line("hello"));
    assert_eq!(
        acme.record_event(&session.id, 1, &transcript).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        acme.record_event(&session.id, 1, &transcript).await.unwrap(),
        Some(false)
    );
    let turn = TurnRecord {
        turn_id: "t1".into(),
        npc_id: Some("n1".into()),
        npc_name: Some("Grimble".into()),
        outcome: TurnOutcome::Cut,
        latencies: BTreeMap::from([("stt_final_ms".to_string(), 120.5)]),
        speech_end_ms: Some(T0),
        speaker_id: Some("300".into()),
        error: None,
        played_ms: 900,
        at_ms: T0 + 5,
    };
    assert_eq!(
        acme.record_event(&session.id, 2, &SessionEventRecord::Turn(turn.clone()))
            .await
            .unwrap(),
        Some(true)
    );
    let npc_state = SessionEventRecord::NpcState {
        npc_id: "n1".into(),
        muted: true,
    };
    assert_eq!(acme.record_event(&session.id, 3, &npc_state).await.unwrap(), Some(true));
    assert_eq!(
        acme.record_event(&session.id, 2, &npc_state).await.unwrap(),
        Some(false)
    );
    assert_eq!(
        acme.record_event(&SessionId::random(), 1, &npc_state).await.unwrap(),
        None
    );
    assert_eq!(acme.last_event_sequence(&session.id).await.unwrap(), Some(3));
    acme.append_transcript(&session.id, &line("typed")).await.unwrap();
    let entries = acme.transcript(&session.id, 100).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].line.text, "hello");
    assert_eq!(entries[0].sequence, Some(1));
    assert_eq!(entries[1].sequence, None);
    assert_eq!(acme.transcript_count(&session.id).await.unwrap(), 2);
    assert_eq!(acme.turn_results(&session.id, 100).await.unwrap(), vec![turn]);
    // Events of an ended session are still stored.
    acme.end_session(&session.id, &EndSession::because("done"))
        .await
        .unwrap();
    assert_eq!(
        acme.record_event(&session.id, 4, &transcript).await.unwrap(),
        Some(true)
    );

    // Recap: text, audio cached, audio dropped when the text changes.
    assert!(acme.recap(&session.id).await.unwrap().is_none());
    assert!(!acme
        .save_recap_audio(
            &session.id,
            &RecapAudio {
                pcm: vec![1, 2],
                sample_rate: 22_050,
                channels: 1
            }
        )
        .await
        .unwrap());
    acme.save_recap(&session.id, "Previously...").await.unwrap();
    let audio = RecapAudio {
        pcm: vec![0, 1, 2, 3],
        sample_rate: 22_050,
        channels: 1,
    };
    assert!(acme.save_recap_audio(&session.id, &audio).await.unwrap());
    assert_eq!(
        acme.recap(&session.id).await.unwrap().unwrap().audio,
        Some(audio.clone())
    );
    acme.save_recap(&session.id, "Previously...").await.unwrap();
    assert_eq!(acme.recap(&session.id).await.unwrap().unwrap().audio, Some(audio));
    let changed = acme.save_recap(&session.id, "Something else").await.unwrap();
    assert_eq!(changed.audio, None);
    let missing = acme.save_recap(&SessionId::random(), "x").await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");

    // Feedback: clamped, one per player per session, comment limit.
    let ratings = FeedbackRatings::clamped(0, 9, 3, 4);
    assert_eq!((ratings.voice_latency, ratings.npc_personality), (1, 5));
    assert!((ratings.average() - 3.25).abs() < 1e-9);
    let first = acme
        .save_feedback(&session.id, &did("300"), ratings, "great")
        .await
        .unwrap();
    let second = acme
        .save_feedback(
            &session.id,
            &did("300"),
            FeedbackRatings::clamped(5, 5, 5, 5),
            "even better",
        )
        .await
        .unwrap();
    assert_eq!(first.id, second.id);
    acme.save_feedback(&session.id, &did("301"), ratings, "").await.unwrap();
    assert_eq!(acme.feedback(Some(&session.id)).await.unwrap().len(), 2);
    assert_eq!(acme.feedback(None).await.unwrap().len(), 2);
    let long = acme
        .save_feedback(&session.id, &did("302"), ratings, &"x".repeat(1001))
        .await;
    assert!(matches!(long, Err(StoreError::Invalid { .. })));
    let missing = acme.save_feedback(&SessionId::random(), &did("300"), ratings, "").await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
}

/// Tenant B, holding every id of tenant A's data, can neither list, read,
/// update nor delete any of it through any store method.
async fn tenant_isolation_for_every_method(db: &TestDb) {
    db.tenant("alpha", LicenseTier::Dedicated).await;
    db.tenant("bravo", LicenseTier::Dedicated).await;
    let a = db.store.tenant(&tid("alpha"));
    let b = db.store.tenant(&tid("bravo"));

    // Tenant A's data: campaign, entity, NPCs, session with events, recap, feedback.
    let camp = CampaignId::parse("shared-name").unwrap();
    let info = CampaignInfo {
        name: "Shared Name".into(),
        system: String::new(),
        description: String::new(),
    };
    a.upsert_campaign(&camp, &info).await.unwrap();
    a.set_active_campaign(Some(&camp)).await.unwrap();
    let ent = a.add_entity(&camp, &entity("Secret", EntityKind::Lore)).await.unwrap();
    let npcs = a.replace_npcs(&camp, &Campaign::example().npcs).await.unwrap();
    let session = a.create_session(&new_session("1")).await.unwrap();
    a.activate_session(&session.id, None).await.unwrap();
    a.record_event(&session.id, 1, &SessionEventRecord::Transcript(line("secret words")))
        .await
        .unwrap();
    a.save_recap(&session.id, "secret recap").await.unwrap();
    a.save_feedback(&session.id, &did("300"), FeedbackRatings::clamped(3, 3, 3, 3), "secret")
        .await
        .unwrap();

    // Lists and reads.
    assert!(b.campaigns().await.unwrap().is_empty());
    assert!(b.campaign(&camp).await.unwrap().is_none());
    assert!(b.campaign_by_name("Shared Name").await.unwrap().is_none());
    assert!(b.active_campaign().await.unwrap().is_none());
    assert!(b.entity(&ent.id).await.unwrap().is_none());
    assert!(b.entities(&camp, None, 100).await.unwrap().is_empty());
    assert!(b.search_entities(&camp, "sec", 100).await.unwrap().is_empty());
    assert!(b
        .entity_by_name(&camp, EntityKind::Lore, "Secret")
        .await
        .unwrap()
        .is_none());
    assert!(b.entity_counts(&camp).await.unwrap().is_empty());
    assert!(b.npcs(&camp).await.unwrap().is_empty());
    assert!(b.npc(&npcs[0].id).await.unwrap().is_none());
    assert!(b.session(&session.id).await.unwrap().is_none());
    assert!(b.sessions(100).await.unwrap().is_empty());
    assert!(b.live_sessions().await.unwrap().is_empty());
    assert!(b.live_session_in_guild(&did("1")).await.unwrap().is_none());
    assert!(b.latest_session(None, false).await.unwrap().is_none());
    assert!(b.transcript(&session.id, 100).await.unwrap().is_empty());
    assert_eq!(b.transcript_count(&session.id).await.unwrap(), 0);
    assert!(b.turn_results(&session.id, 100).await.unwrap().is_empty());
    assert!(b.last_event_sequence(&session.id).await.unwrap().is_none());
    assert!(b.recap(&session.id).await.unwrap().is_none());
    assert!(b.feedback(Some(&session.id)).await.unwrap().is_empty());
    assert!(b.feedback(None).await.unwrap().is_empty());
    assert_eq!(b.usage(Period::containing(T0)).await.unwrap().session_ms, 0);
    assert!(b.bot_token().await.unwrap().is_none());

    // Writes through A's ids.
    assert!(!b.delete_entity(&ent.id).await.unwrap());
    assert!(!b.delete_campaign(&camp).await.unwrap());
    assert!(matches!(
        b.add_entity(&camp, &entity("Injected", EntityKind::Lore)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        b.upsert_entity(&camp, &entity("Secret", EntityKind::Lore)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(b.replace_npcs(&camp, &Campaign::example().npcs).await.is_err());
    assert!(b
        .set_session_worker(&session.id, "evil", None)
        .await
        .map(|done| !done)
        .unwrap());
    assert!(b.activate_session(&session.id, None).await.unwrap().is_none());
    assert!(b.record_heartbeat(&session.id, None).await.unwrap().is_none());
    assert!(b
        .end_session(&session.id, &EndSession::because("evil"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        b.record_event(&session.id, 99, &SessionEventRecord::Transcript(line("injected")))
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        b.append_transcript(&session.id, &line("injected")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        b.save_recap(&session.id, "evil").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(!b
        .save_recap_audio(
            &session.id,
            &RecapAudio {
                pcm: vec![0],
                sample_rate: 8000,
                channels: 1
            }
        )
        .await
        .unwrap());
    assert!(matches!(
        b.save_feedback(&session.id, &did("9"), FeedbackRatings::clamped(1, 1, 1, 1), "evil")
            .await,
        Err(StoreError::NotFound(_))
    ));
    // B pointing its active campaign at A's campaign id sees nothing of A's.
    assert!(b.set_active_campaign(Some(&camp)).await.unwrap());
    assert!(b.active_campaign().await.unwrap().is_none());
    let own = b.ensure_active_campaign().await.unwrap();
    assert_eq!(own.id, camp);
    assert_eq!(own.info.name, "shared-name", "B got its own campaign, not A's");
    assert!(b.entities(&camp, None, 100).await.unwrap().is_empty());
    assert!(b.delete_campaign(&camp).await.unwrap());
    // B's own campaign with A's campaign id and name is B's alone.
    b.upsert_campaign(&camp, &info).await.unwrap();
    b.import_campaign(&camp, &Campaign::example()).await.unwrap();
    assert!(b.delete_campaign(&camp).await.unwrap());

    // A's data is intact.
    assert_eq!(a.entity(&ent.id).await.unwrap().unwrap().entity.name, "Secret");
    assert_eq!(a.campaign(&camp).await.unwrap().unwrap().info, info);
    assert_eq!(a.npcs(&camp).await.unwrap().len(), npcs.len());
    let s = a.session(&session.id).await.unwrap().unwrap();
    assert_eq!(s.state, SessionState::Active);
    assert_eq!(s.worker_addr, None);
    assert_eq!(a.transcript(&session.id, 100).await.unwrap().len(), 1);
    assert_eq!(a.last_event_sequence(&session.id).await.unwrap(), Some(1));
    assert_eq!(a.recap(&session.id).await.unwrap().unwrap().text, "secret recap");
    assert_eq!(a.feedback(None).await.unwrap().len(), 1);
    assert!(a.get().await.unwrap().is_some());
}
