//! The session orchestrator (SPEC §3) on both databases: lifecycle, quota,
//! zombie and stale-pending cleanup, failed starts, worker reports through
//! `GatewayApi`, and 50 concurrent starts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{did, tid, TestDb, T0};
use futures_util::stream;
use glyphoxa_gateway::gateway_api::GatewayHandler;
use glyphoxa_gateway::ids::{CampaignId, SessionId};
use glyphoxa_gateway::orchestrator::{Orchestrator, OrchestratorError, OrchestratorSettings, StartRequest};
use glyphoxa_gateway::store::{
    CreateSessionError, LicenseTier, LiveRule, NewSession, NewTenant, SessionState, Store, TenantUpdate, TurnOutcome,
};
use glyphoxa_gateway::time::{Clock, Period, SystemClock};
use glyphoxa_gateway::workers::fake::FakeWorker;
use glyphoxa_gateway::workers::{InProcessWorkerClient, WorkerClient, IN_PROCESS};
use glyphoxa_pipeline::campaign::Campaign;
use glyphoxa_proto::v1::{self, session_event, HeartbeatRequest, ReportStateRequest, SessionEvent};
use glyphoxa_proto::{ApiError, GatewayApi};

on_both_backends!(
    start_and_stop,
    quota_reached_refuses_start,
    zombie_is_ended_and_billed_to_last_heartbeat,
    stale_pending_is_ended,
    failed_worker_start_leaves_nothing,
    worker_reports_through_gateway_api,
    fifty_concurrent_starts_same_guild,
    fifty_concurrent_starts_shared_tenant,
    cleanup_loop_ends_zombie_within_timeout,
);

fn settings() -> OrchestratorSettings {
    OrchestratorSettings {
        heartbeat_interval: Duration::from_secs(10),
        zombie_timeout: Duration::from_secs(30),
        dispatch_timeout: Duration::from_secs(60),
        cleanup_interval: Duration::from_millis(50),
    }
}

fn orchestrator(store: Store, worker: &Arc<FakeWorker>) -> Arc<Orchestrator> {
    let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(worker.clone()));
    Arc::new(Orchestrator::new(store, workers, settings()))
}

fn start(tenant: &str, guild: &str) -> StartRequest {
    StartRequest {
        tenant_id: tid(tenant),
        guild_id: did(guild),
        channel_id: did("500"),
        started_by: did("600"),
        voice: None,
    }
}

async fn start_and_stop(db: &TestDb) {
    db.tenant("acme", LicenseTier::Dedicated).await;
    let acme = db.store.tenant(&tid("acme"));
    let campaign = Campaign::example();
    let id = CampaignId::from_name(&campaign.campaign.name);
    acme.import_campaign(&id, &campaign).await.unwrap();
    acme.set_active_campaign(Some(&id)).await.unwrap();
    let worker = Arc::new(FakeWorker::new("w1", 4));
    let orch = orchestrator(db.store.clone(), &worker);

    let session = orch.start(start("acme", "10")).await.unwrap();
    assert_eq!(session.state, SessionState::Active);
    assert_eq!(session.worker_addr.as_deref(), Some(IN_PROCESS));
    assert_eq!(session.worker_id.as_deref(), Some("w1"));
    assert_eq!(session.campaign_id, Some(id.clone()));
    assert_eq!(worker.sessions(), vec![session.id.to_string()]);
    let npcs = orch.workers().list_npcs(IN_PROCESS, session.id.as_str()).await.unwrap();
    assert_eq!(npcs.len(), campaign.npcs.len(), "the worker got the campaign's roster");
    let changed = orch
        .workers()
        .mute_all_npcs(IN_PROCESS, session.id.as_str())
        .await
        .unwrap();
    assert_eq!(changed as usize, campaign.npcs.len());

    // Another start in the same guild is refused with the running session's id.
    match orch.start(start("acme", "10")).await {
        Err(error @ OrchestratorError::Refused(CreateSessionError::AlreadyLive { .. })) => {
            assert!(error.to_string().contains(session.id.as_str()), "{error}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    db.clock.advance(Duration::from_secs(90));
    let stopped = orch
        .stop_guild(&tid("acme"), &did("10"), "stopped by 600")
        .await
        .unwrap();
    assert_eq!(stopped.state, SessionState::Ended);
    assert_eq!(stopped.billed_ms, 90_000);
    assert!(worker.sessions().is_empty());
    // Stopping twice is harmless.
    let again = orch.stop(&tid("acme"), &session.id, "again").await.unwrap();
    assert_eq!(again.end_reason.as_deref(), Some("stopped by 600"));
    assert_eq!(
        worker.calls().iter().filter(|c| c.starts_with("StopSession")).count(),
        1
    );
    assert!(matches!(
        orch.stop_guild(&tid("acme"), &did("10"), "x").await,
        Err(OrchestratorError::NoActiveSession)
    ));
    assert!(matches!(
        orch.stop(&tid("acme"), &SessionId::random(), "x").await,
        Err(OrchestratorError::SessionNotFound(_))
    ));
    assert_eq!(acme.usage(Period::containing(T0)).await.unwrap().session_ms, 90_000);
    assert!(matches!(
        orch.start(start("nobody", "1")).await,
        Err(OrchestratorError::TenantNotFound(_))
    ));

    // A worker that already forgot the session still lets it stop.
    let second = orch.start(start("acme", "10")).await.unwrap();
    worker.fail_all(Some(ApiError::not_found("gone")));
    let stopped = orch.stop(&tid("acme"), &second.id, "stop").await.unwrap();
    assert_eq!(stopped.state, SessionState::Ended);
    assert_eq!(stopped.error, None);
}

async fn quota_reached_refuses_start(db: &TestDb) {
    let mut new = NewTenant::new(tid("acme"), LicenseTier::Shared);
    new.monthly_session_hours = 1.0;
    db.store.create_tenant(&new).await.unwrap();
    let worker = Arc::new(FakeWorker::new("w1", 4));
    let orch = orchestrator(db.store.clone(), &worker);
    let session = orch.start(start("acme", "10")).await.unwrap();
    db.clock.advance(Duration::from_secs(3600));
    orch.stop(&tid("acme"), &session.id, "done").await.unwrap();
    let starts_before = worker.calls().iter().filter(|c| c.starts_with("StartSession")).count();
    match orch.start(start("acme", "10")).await {
        Err(error @ OrchestratorError::Refused(CreateSessionError::QuotaExceeded { .. })) => {
            assert!(error.to_string().contains("monthly quota reached"), "{error}");
        }
        other => panic!("expected the quota to refuse, got {other:?}"),
    }
    assert_eq!(
        worker.calls().iter().filter(|c| c.starts_with("StartSession")).count(),
        starts_before,
        "a refused start never reaches a worker"
    );
    // Raising the quota lets it start again.
    db.store
        .tenant(&tid("acme"))
        .update(&TenantUpdate {
            monthly_session_hours: Some(2.0),
            ..TenantUpdate::default()
        })
        .await
        .unwrap();
    orch.start(start("acme", "10")).await.unwrap();
}

async fn zombie_is_ended_and_billed_to_last_heartbeat(db: &TestDb) {
    db.tenant("acme", LicenseTier::Shared).await;
    let worker = Arc::new(FakeWorker::new("w1", 4));
    let orch = orchestrator(db.store.clone(), &worker);
    let mut announced = orch.ended_sessions();
    let session = orch.start(start("acme", "10")).await.unwrap();
    db.clock.advance(Duration::from_secs(10));
    assert_eq!(
        orch.heartbeat(&session.id, Some("w1")).await.unwrap(),
        Some(SessionState::Active)
    );
    // Still within the timeout: nothing happens.
    db.clock.advance(Duration::from_secs(29));
    assert!(orch.cleanup_once().await.unwrap().zombies.is_empty());
    // The worker stops heartbeating: ended as a zombie once the timeout passes.
    db.clock.advance(Duration::from_secs(2));
    let report = orch.cleanup_once().await.unwrap();
    assert_eq!(report.zombies, vec![session.id.clone()]);
    // Announced once (the bot leaves voice on it).
    let end = announced.try_recv().expect("the end is announced");
    assert_eq!((end.session_id, end.guild_id.as_str()), (session.id.clone(), "10"));
    assert!(end.reason.starts_with("zombie"), "{}", end.reason);
    assert!(announced.try_recv().is_err(), "announced once");
    let ended = db
        .store
        .tenant(&tid("acme"))
        .session(&session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.state, SessionState::Ended);
    assert!(
        ended.end_reason.as_deref().unwrap_or("").starts_with("zombie"),
        "{ended:?}"
    );
    assert_eq!(ended.billed_ms, 10_000, "billed to the last heartbeat");
    assert_eq!(
        db.store
            .tenant(&tid("acme"))
            .usage(Period::containing(T0))
            .await
            .unwrap()
            .session_ms,
        10_000
    );
    assert!(worker
        .calls()
        .iter()
        .any(|c| c == &format!("StopSession({})", session.id)));
    // The worker's next heartbeat learns that the session ended; a second pass finds nothing.
    assert_eq!(
        orch.heartbeat(&session.id, Some("w1")).await.unwrap(),
        Some(SessionState::Ended)
    );
    assert_eq!(orch.cleanup_once().await.unwrap(), Default::default());
    // The guild is free again.
    orch.start(start("acme", "10")).await.unwrap();
}

async fn stale_pending_is_ended(db: &TestDb) {
    db.tenant("acme", LicenseTier::Shared).await;
    let worker = Arc::new(FakeWorker::new("w1", 4));
    let orch = orchestrator(db.store.clone(), &worker);
    // A session whose dispatch never completed (e.g. the gateway died mid-start).
    let pending = db
        .store
        .tenant(&tid("acme"))
        .create_session(&NewSession {
            id: SessionId::random(),
            campaign_id: None,
            guild_id: did("10"),
            channel_id: did("11"),
            started_by: did("12"),
        })
        .await
        .unwrap();
    db.clock.advance(Duration::from_secs(59));
    assert!(orch.cleanup_once().await.unwrap().stale_pending.is_empty());
    db.clock.advance(Duration::from_secs(2));
    let report = orch.cleanup_once().await.unwrap();
    assert_eq!(report.stale_pending, vec![pending.id.clone()]);
    let ended = db
        .store
        .tenant(&tid("acme"))
        .session(&pending.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.state, SessionState::Ended);
    assert!(
        ended.end_reason.as_deref().unwrap_or("").contains("still pending"),
        "{ended:?}"
    );
    assert_eq!(ended.billed_ms, 0);
}

async fn failed_worker_start_leaves_nothing(db: &TestDb) {
    db.tenant("acme", LicenseTier::Shared).await;
    let worker = Arc::new(FakeWorker::new("w1", 4));
    let orch = orchestrator(db.store.clone(), &worker);
    worker.fail_starts(Some(ApiError::unavailable("voice connection failed")));
    let error = orch.start(start("acme", "10")).await.unwrap_err();
    assert!(matches!(error, OrchestratorError::Worker(_)));
    assert!(error.to_string().starts_with("voice service unavailable"), "{error}");
    let acme = db.store.tenant(&tid("acme"));
    assert!(
        acme.live_sessions().await.unwrap().is_empty(),
        "nothing left half-started"
    );
    let failed = acme.sessions(1).await.unwrap().remove(0);
    assert_eq!(failed.state, SessionState::Ended);
    assert_eq!(failed.end_reason.as_deref(), Some("start failed"));
    assert!(failed
        .error
        .as_deref()
        .unwrap_or("")
        .contains("voice connection failed"));
    assert!(worker.sessions().is_empty());
    worker.fail_starts(None);
    orch.start(start("acme", "10")).await.unwrap();
    // A request the worker refuses as invalid is not "unavailable" and also leaves nothing.
    let running = acme.live_sessions().await.unwrap().remove(0);
    orch.stop(&tid("acme"), &running.id, "done").await.unwrap();
    worker.fail_starts(Some(ApiError::invalid_argument("no NPCs")));
    let error = orch.start(start("acme", "11")).await.unwrap_err();
    assert!(
        matches!(error, OrchestratorError::Worker(ref e) if e.api_error().is_some()),
        "{error}"
    );
    assert!(error.to_string().contains("no NPCs"), "{error}");
    assert!(acme.live_sessions().await.unwrap().is_empty());
}

async fn worker_reports_through_gateway_api(db: &TestDb) {
    db.tenant("acme", LicenseTier::Shared).await;
    let worker = Arc::new(FakeWorker::new("w1", 4));
    let orch = orchestrator(db.store.clone(), &worker);
    let api = GatewayHandler::new(orch.clone());
    let session = orch.start(start("acme", "10")).await.unwrap();
    let sid = session.id.to_string();

    let beat = |id: &str| HeartbeatRequest {
        session_id: id.to_string(),
        worker_id: "w1".into(),
        sent_at_unix_ms: T0,
    };
    db.clock.advance(Duration::from_secs(10));
    let reply = api.heartbeat(beat(&sid)).await.unwrap();
    assert_eq!(reply.state, v1::SessionState::Active as i32);
    let stored = db
        .store
        .tenant(&tid("acme"))
        .session(&session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.last_heartbeat, Some(T0 + 10_000));
    assert!(matches!(
        api.heartbeat(beat(SessionId::random().as_str())).await,
        Err(ApiError::NotFound(_))
    ));
    assert!(matches!(
        api.heartbeat(beat("bad/id")).await,
        Err(ApiError::InvalidArgument(_))
    ));

    // Events: transcript lines and turn results persisted, resends ignored, unknown sessions skipped.
    let line = |seq: u64, text: &str| SessionEvent {
        session_id: sid.clone(),
        sequence: seq,
        at_unix_ms: T0,
        event: Some(session_event::Event::Transcript(v1::TranscriptLine {
            speaker_id: "600".into(),
            speaker_name: "Dana".into(),
            npc_id: String::new(),
            text: text.into(),
            start_unix_ms: T0,
            end_unix_ms: T0 + 900,
            outcome: 0,
            turn_id: "t1".into(),
            puppet: false,
        })),
    };
    let turn = SessionEvent {
        session_id: sid.clone(),
        sequence: 2,
        at_unix_ms: T0 + 5,
        event: Some(session_event::Event::Turn(v1::TurnResult {
            turn_id: "t1".into(),
            npc_id: "n1".into(),
            npc_name: "Grimble".into(),
            outcome: v1::TurnOutcome::Spoke as i32,
            latencies: Some(v1::StageLatencies {
                stt_final_ms: Some(150.0),
                first_frame_out_ms: Some(900.0),
                ..Default::default()
            }),
            speech_end_unix_ms: T0,
            speaker_id: "600".into(),
            error: String::new(),
            played_ms: 1200,
        })),
    };
    let mut unknown = line(1, "lost");
    unknown.session_id = SessionId::random().to_string();
    let events = vec![
        Ok(line(1, "Hello, innkeeper!")),
        Ok(turn),
        Ok(line(1, "resent")),
        Ok(unknown),
        Ok(line(3, "Another")),
    ];
    let reply = api.report_events(Box::pin(stream::iter(events))).await.unwrap();
    assert_eq!(reply.accepted, 3);
    assert_eq!(reply.last_sequence.get(&sid), Some(&3));
    let acme = db.store.tenant(&tid("acme"));
    let transcript = acme.transcript(&session.id, 100).await.unwrap();
    let texts: Vec<&str> = transcript.iter().map(|e| e.line.text.as_str()).collect();
    assert_eq!(texts, ["Hello, innkeeper!", "Another"]);
    let turns = acme.turn_results(&session.id, 100).await.unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].outcome, TurnOutcome::Spoke);
    assert_eq!(turns[0].latencies.get("first_frame_out_ms"), Some(&900.0));
    // A broken stream keeps what arrived before it.
    let broken = vec![Ok(line(4, "kept")), Err(ApiError::cancelled("stream broke"))];
    assert!(api.report_events(Box::pin(stream::iter(broken))).await.is_err());
    assert_eq!(acme.transcript_count(&session.id).await.unwrap(), 3);

    // ReportState ENDED (e.g. the voice connection died) ends it with the error.
    let ended = ReportStateRequest {
        session_id: sid.clone(),
        state: v1::SessionState::Ended as i32,
        error: "voice connection lost".into(),
        worker_id: "w1".into(),
        changed_at_unix_ms: T0,
    };
    api.report_state(ended.clone()).await.unwrap();
    let stored = acme.session(&session.id).await.unwrap().unwrap();
    assert_eq!(stored.state, SessionState::Ended);
    assert_eq!(stored.error.as_deref(), Some("voice connection lost"));
    api.report_state(ended).await.unwrap(); // idempotent
    assert_eq!(
        api.heartbeat(beat(&sid)).await.unwrap().state,
        v1::SessionState::Ended as i32
    );
    let bad = ReportStateRequest {
        session_id: sid.clone(),
        state: 0,
        ..Default::default()
    };
    assert!(matches!(api.report_state(bad).await, Err(ApiError::InvalidArgument(_))));
    let unknown = ReportStateRequest {
        session_id: SessionId::random().to_string(),
        state: v1::SessionState::Active as i32,
        ..Default::default()
    };
    assert!(matches!(api.report_state(unknown).await, Err(ApiError::NotFound(_))));
}

async fn concurrent_starts(db: &TestDb, tier: LicenseTier, guild_of: impl Fn(usize) -> String) {
    db.tenant("acme", tier).await;
    let worker = Arc::new(FakeWorker::new("w1", 100));
    let orch = orchestrator(db.store.clone(), &worker);
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let orch = orch.clone();
            let guild = guild_of(i);
            tokio::spawn(async move { orch.start(start("acme", &guild)).await })
        })
        .collect();
    let mut started = 0;
    let mut refused = Vec::new();
    for handle in handles {
        match handle.await.unwrap() {
            Ok(_) => started += 1,
            Err(OrchestratorError::Refused(CreateSessionError::AlreadyLive { rule, .. })) => refused.push(rule),
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(started, 1, "exactly one of 50 concurrent starts succeeds");
    assert_eq!(refused.len(), 49);
    let expected = match tier {
        LicenseTier::Shared => [LiveRule::OnePerSharedTenant, LiveRule::OnePerGuild],
        LicenseTier::Dedicated => [LiveRule::OnePerGuild, LiveRule::OnePerDedicatedGuild],
    };
    assert!(refused.iter().all(|rule| expected.contains(rule)), "{refused:?}");
    assert_eq!(db.store.tenant(&tid("acme")).live_sessions().await.unwrap().len(), 1);
    assert_eq!(worker.sessions().len(), 1, "only the winner reached a worker");
}

async fn fifty_concurrent_starts_same_guild(db: &TestDb) {
    concurrent_starts(db, LicenseTier::Dedicated, |_| "777".to_string()).await;
}

async fn fifty_concurrent_starts_shared_tenant(db: &TestDb) {
    concurrent_starts(db, LicenseTier::Shared, |i| format!("{}", 1000 + i)).await;
}

/// With the real clock and the cleanup loop running: a session whose worker
/// never heartbeats is ended within the zombie timeout (plus one interval).
async fn cleanup_loop_ends_zombie_within_timeout(db: &TestDb) {
    db.tenant("acme", LicenseTier::Shared).await;
    let store = db.store.clone().with_clock(Arc::new(SystemClock) as Arc<dyn Clock>);
    let worker = Arc::new(FakeWorker::new("w1", 4));
    let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(worker.clone()));
    let orch = Arc::new(Orchestrator::new(
        store.clone(),
        workers,
        OrchestratorSettings {
            zombie_timeout: Duration::from_millis(400),
            cleanup_interval: Duration::from_millis(50),
            ..settings()
        },
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cleanup = tokio::spawn(orch.clone().run_cleanup(async move {
        let _ = stopped.await;
    }));
    let session = orch.start(start("acme", "10")).await.unwrap();
    let started = std::time::Instant::now();
    let acme = store.tenant(&tid("acme"));
    loop {
        let current = acme.session(&session.id).await.unwrap().unwrap();
        if current.state == SessionState::Ended {
            assert!(current.end_reason.unwrap_or_default().starts_with("zombie"));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "zombie not ended in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(350), "ended too early: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(2000), "ended too late: {elapsed:?}");
    assert!(
        acme.usage(Period::containing(store.clock().now_ms()))
            .await
            .unwrap()
            .sessions
            >= 1
    );
    let _ = stop.send(());
    cleanup.await.unwrap();
}
