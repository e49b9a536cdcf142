//! The knowledge, campaign, feedback and recap commands end to end (issue 8)
//! in gateway mode: real serenity bots managed by `SerenityBots`, tenants
//! created through the admin API, the loopback fake Discord playing the
//! users (modals, buttons, attachments it serves itself), sessions on the
//! in-memory fake worker. The flows themselves are the scenarios shared with
//! the full-mode tests (`glyphoxa_gateway::discord::fake::scenarios`); here
//! they run on both databases, and tenants are checked never to cross.

mod common;

use std::time::Duration;

use async_trait::async_trait;
use common::discord::*;
use common::{tid, TestDb, T0};
use glyphoxa_gateway::discord::fake::scenarios::recap::player_line;
use glyphoxa_gateway::discord::fake::scenarios::{self, knowledge::campaign_yaml, RecapDoubles, Table};
use glyphoxa_gateway::discord::fake::{FakeDiscord, InteractionFixture, OptionFixture};
use glyphoxa_gateway::ids::SessionId;
use glyphoxa_gateway::store::TenantStore;
use glyphoxa_pipeline::campaign::EntityKind;
use glyphoxa_proto::v1::AudioPriority;
use serde_json::json;

on_both_backends!(
    entity_add_list_and_remove,
    entity_import_yaml_and_foundry,
    campaign_info_load_and_switch,
    feedback_modal_and_average,
    session_recap_and_voice_recap,
    tenant_data_never_crosses,
);

// ---- the gateway-mode table ----

/// Tenant `acme` (bot A in G1) of a gateway-mode world.
struct Acme<'a> {
    world: World,
    db: &'a TestDb,
    dm_role: Option<&'static str>,
}

/// A world with tenant `acme` (bot A, guild G1, maybe a DM role) ready.
async fn acme<'a>(db: &'a TestDb, options: WorldOptions, dm_role: Option<&'static str>) -> Acme<'a> {
    let world = world_from(db, options).await;
    world.create_tenant("acme", TOKEN_A, &[G1], dm_role).await;
    world.wait_registered(APP_A, G1).await;
    Acme { world, db, dm_role }
}

#[async_trait]
impl Table for Acme<'_> {
    fn discord(&self) -> &FakeDiscord {
        &self.world.fake
    }

    fn token(&self) -> &str {
        TOKEN_A
    }

    fn guild(&self) -> &str {
        G1
    }

    fn channel(&self) -> &str {
        TEXT
    }

    fn dm_role(&self) -> Option<&str> {
        self.dm_role
    }

    fn store(&self) -> TenantStore {
        self.db.store.tenant(&tid("acme"))
    }

    fn advance_clock(&self, by: Duration) -> bool {
        self.db.clock.advance(by);
        true
    }

    /// The PlayAudio streams the fake worker received for `session`, each
    /// at narrator priority; how long each one's PCM lasts.
    async fn narrations(&self, session: &SessionId, count: usize) -> Vec<Duration> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let plays: Vec<_> = self
                .world
                .worker
                .plays()
                .into_iter()
                .filter(|play| play.header.session_id == session.as_str())
                .collect();
            if plays.len() >= count {
                return plays
                    .iter()
                    .map(|play| {
                        assert_eq!(play.header.priority, AudioPriority::Narrator as i32);
                        let loud = play
                            .pcm
                            .chunks_exact(2)
                            .any(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > 1000);
                        assert!(loud, "the narration is audible");
                        let frames = play.pcm.len() / 2 / play.header.channels.max(1) as usize;
                        Duration::from_secs_f64(frames as f64 / f64::from(play.header.sample_rate.max(1)))
                    })
                    .collect();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} narrations in {session}: {} so far",
                plays.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn entity_add_list_and_remove(db: &TestDb) {
    let table = acme(db, WorldOptions::default(), None).await;
    scenarios::entity_add_list_and_remove(&table).await;
    // In gateway mode the first entity made the tenant's default campaign.
    let active = table.store().active_campaign().await.unwrap().expect("active");
    assert_eq!(active.info.name, "Default campaign");
}

async fn entity_import_yaml_and_foundry(db: &TestDb) {
    let table = acme(db, WorldOptions::default(), None).await;
    scenarios::entity_import_yaml_and_foundry(&table).await;
}

async fn campaign_info_load_and_switch(db: &TestDb) {
    let table = acme(db, WorldOptions::default(), None).await;
    scenarios::campaign_info_load_and_switch(&table).await;
}

async fn feedback_modal_and_average(db: &TestDb) {
    let table = acme(db, WorldOptions::default(), Some(DM_ROLE)).await;
    scenarios::feedback_modal_and_average(&table).await;
}

async fn session_recap_and_voice_recap(db: &TestDb) {
    let doubles = RecapDoubles::default();
    let options = WorldOptions {
        recaps: doubles.engines(),
        ..WorldOptions::default()
    };
    let table = acme(db, options, None).await;
    scenarios::session_recap_and_voice_recap(&table, &doubles).await;
    let calls = table.world.worker.calls();
    assert!(calls.iter().any(|call| call.starts_with("PlayAudio(")), "{calls:?}");
}

// ---- helpers of the tenant test ----

/// The first reply's body after sending `interaction` through bot A.
async fn first(world: &World, interaction: InteractionFixture) -> serde_json::Value {
    world.interact(TOKEN_A, interaction, 1).await.remove(0)
}

/// A modal submission in G1 with `fields`.
fn submit(custom_id: &str, fields: &[(&str, &str)]) -> InteractionFixture {
    let fields = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    InteractionFixture::modal_submit(custom_id, fields).in_guild(G1, TEXT)
}

/// The names of the entities of `tenant`'s active campaign.
async fn entity_names(db: &TestDb, tenant: &str) -> Vec<String> {
    let store = db.store.tenant(&tid(tenant));
    let Some(campaign) = store.active_campaign().await.expect("store") else {
        return Vec::new();
    };
    store
        .entities(&campaign.id, None, 1000)
        .await
        .expect("store")
        .into_iter()
        .map(|e| e.entity.name)
        .collect()
}

// ---- tenants ----

async fn tenant_data_never_crosses(db: &TestDb) {
    let world = acme(db, WorldOptions::default(), None).await.world;
    world.create_tenant("bravo", TOKEN_B, &[G2], None).await;
    world.wait_registered(APP_B, G2).await;
    let in_g2 = |interaction: InteractionFixture| interaction.in_guild(G2, TEXT);

    // acme: a campaign, an entity, a session with feedback.
    let load = command(
        "campaign",
        Some("load"),
        vec![OptionFixture::attachment("file", "tavern.yaml", campaign_yaml(1))],
    );
    world.text(TOKEN_A, load, 2).await;
    let added = submit("entity:add", &[("name", "Secret Vault"), ("type", "location")]);
    world.text(TOKEN_A, added, 1).await;
    world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    let session = db
        .store
        .tenant(&tid("acme"))
        .live_session_in_guild(&common::did(G1))
        .await
        .unwrap()
        .expect("a live session")
        .id;
    db.store
        .tenant(&tid("acme"))
        .append_transcript(&session, &player_line("Only acme hears this.", T0 + 1_000))
        .await
        .unwrap();
    let modal = first(&world, command("feedback", None, vec![])).await;
    let custom_id = modal["data"]["custom_id"].as_str().unwrap_or_default().to_string();
    let ratings = [
        ("voice_latency", "4"),
        ("npc_personality", "4"),
        ("memory_accuracy", "4"),
        ("dm_workflow", "4"),
    ];
    world.text(TOKEN_A, submit(&custom_id, &ratings), 1).await;
    world.text(TOKEN_A, command("session", Some("stop"), vec![]), 2).await;

    // bravo sees none of it, through its commands ...
    let text = world
        .text(TOKEN_B, in_g2(command("entity", Some("list"), vec![])), 1)
        .await;
    assert!(
        text.contains("No entities yet") && !text.contains("Secret Vault"),
        "{text}"
    );
    let text = world
        .text(TOKEN_B, in_g2(command("campaign", Some("info"), vec![])), 1)
        .await;
    assert!(text.contains("No campaigns yet") && !text.contains("Yawning"), "{text}");
    let typed = InteractionFixture::autocomplete(
        "entity",
        vec![OptionFixture::subcommand(
            "remove",
            vec![OptionFixture::focused("name", "")],
        )],
    );
    let choices = world.interact(TOKEN_B, in_g2(typed), 1).await.remove(0);
    assert_eq!(choices["data"]["choices"], json!([]));
    let typed = InteractionFixture::autocomplete(
        "campaign",
        vec![OptionFixture::subcommand(
            "switch",
            vec![OptionFixture::focused("name", "")],
        )],
    );
    let choices = world.interact(TOKEN_B, in_g2(typed), 1).await.remove(0);
    assert_eq!(choices["data"]["choices"], json!([]));
    let switch = command(
        "campaign",
        Some("switch"),
        vec![OptionFixture::string("name", "The Yawning Portal")],
    );
    let text = world.text(TOKEN_B, in_g2(switch), 1).await;
    assert!(text.contains("no campaign named"), "{text}");
    let remove = command(
        "entity",
        Some("remove"),
        vec![OptionFixture::string("name", "Secret Vault")],
    );
    let text = world.text(TOKEN_B, in_g2(remove), 1).await;
    assert!(text.contains("no entity named"), "{text}");
    let recap = command(
        "session",
        Some("recap"),
        vec![OptionFixture::string("session_id", session.as_str())],
    );
    let text = world.text(TOKEN_B, in_g2(recap), 1).await;
    assert!(!text.contains("Only acme hears this."), "{text}");
    let text = world.text(TOKEN_B, in_g2(command("feedback", None, vec![])), 1).await;
    assert!(text.contains("no session in this server"), "{text}");
    // ... not even with acme's ids in buttons and forms.
    let acme_store = db.store.tenant(&tid("acme"));
    let campaign = acme_store.active_campaign().await.unwrap().expect("active");
    let vault = acme_store
        .entities(&campaign.id, Some(EntityKind::Location), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.entity.name == "Secret Vault")
        .expect("the vault");
    let confirm = InteractionFixture::button(format!("entity:remove:confirm:{}", vault.id));
    let text = world.text(TOKEN_B, in_g2(confirm), 1).await;
    assert!(text.contains("already gone"), "{text}");
    assert!(entity_names(db, "acme").await.contains(&"Secret Vault".to_string()));
    let text = world.text(TOKEN_B, in_g2(submit(&custom_id, &ratings)), 1).await;
    assert!(text.contains("cannot find"), "{text}");

    // ... and in the store.
    let bravo = db.store.tenant(&tid("bravo"));
    assert!(bravo.campaigns().await.unwrap().is_empty());
    assert!(bravo.active_campaign().await.unwrap().is_none());
    assert!(bravo.session(&session).await.unwrap().is_none());
    assert!(bravo.feedback(None).await.unwrap().is_empty());
    assert_eq!(bravo.transcript_count(&session).await.unwrap(), 0);
    assert_eq!(acme_store.feedback(Some(&session)).await.unwrap().len(), 1);
}
