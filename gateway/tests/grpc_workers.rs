//! The gRPC worker pool against real tonic servers on loopback: placement
//! (least loaded, retry on another worker), circuit breakers, deadlines and
//! the "voice service unavailable" error; and the orchestrator placing a
//! session on the second worker when the first is down.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{did, tid};
use glyphoxa_gateway::orchestrator::{Orchestrator, OrchestratorSettings, StartRequest};
use glyphoxa_gateway::store::{LicenseTier, SessionState};
use glyphoxa_gateway::workers::fake::FakeWorker;
use glyphoxa_gateway::workers::{
    BreakerSettings, CircuitState, GrpcWorkerPool, StopOutcome, WorkerClient, WorkerError, WorkerPoolSettings,
};
use glyphoxa_proto::v1::StartSessionRequest;
use glyphoxa_proto::{ApiError, WorkerApi};
use tokio::net::TcpListener;

/// A fake worker served over gRPC on a loopback port.
struct Served {
    worker: Arc<FakeWorker>,
    address: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(name: &str, capacity: u32) -> Served {
    let worker = Arc::new(FakeWorker::new(name, capacity));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let api: Arc<dyn WorkerApi> = worker.clone();
    tokio::spawn(glyphoxa_proto::server::serve_worker(api, listener, async move {
        let _ = stopped.await;
    }));
    Served {
        worker,
        address,
        stop: Some(stop),
    }
}

/// An address where nothing listens (connection refused).
async fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    address
}

/// A server that accepts TCP connections and never answers (calls hang
/// until their deadline).
async fn blackhole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    address
}

fn pool(addresses: Vec<String>) -> GrpcWorkerPool {
    GrpcWorkerPool::new(WorkerPoolSettings {
        addresses,
        call_timeout: Duration::from_millis(300),
        start_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(300),
        breaker: BreakerSettings {
            failure_threshold: 2,
            open_for: Duration::from_secs(30),
        },
        ..WorkerPoolSettings::default()
    })
    .unwrap()
}

fn request(id: &str) -> StartSessionRequest {
    StartSessionRequest {
        session_id: id.to_string(),
        tenant_id: "acme".into(),
        guild_id: "1".into(),
        channel_id: "2".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_picks_the_least_loaded_worker() {
    let busy = serve("busy", 10).await;
    let idle = serve("idle", 10).await;
    busy.worker.start_session(request("existing-1")).await.unwrap();
    busy.worker.start_session(request("existing-2")).await.unwrap();
    let pool = pool(vec![busy.address.clone(), idle.address.clone()]);
    let placed = pool.start_session(request("s1")).await.unwrap();
    assert_eq!(placed.worker_addr, idle.address);
    assert_eq!(placed.worker_id, "idle");
    let placed = pool.start_session(request("s2")).await.unwrap();
    assert_eq!(placed.worker_addr, idle.address, "1 of 10 is still less than 2 of 10");
    // Draining and full workers are skipped.
    idle.worker.set_draining(true);
    assert_eq!(
        pool.start_session(request("s3")).await.unwrap().worker_addr,
        busy.address
    );
    let health = pool.health().await;
    assert_eq!(health.len(), 2);
    assert!(health
        .iter()
        .all(|h| h.error.is_none() && h.circuit == CircuitState::Closed));
    // Calls reach the session's worker.
    let npcs = pool.list_npcs(&busy.address, "s3").await.unwrap();
    assert!(npcs.is_empty());
    assert_eq!(
        pool.stop_session(&busy.address, "s3", "test").await.unwrap(),
        StopOutcome::Stopped(pool_status(&busy).await)
    );
    assert_eq!(
        pool.stop_session(&busy.address, "s3", "again").await.unwrap(),
        StopOutcome::AlreadyStopped
    );
    let error = pool.mute_npc(&idle.address, "s1", "nobody").await.unwrap_err();
    assert!(error.is_not_found(), "{error}");
}

async fn pool_status(_served: &Served) -> Option<glyphoxa_proto::v1::SessionStatus> {
    // The fake reports the stopped session's final status.
    Some(glyphoxa_proto::v1::SessionStatus {
        session_id: "s3".into(),
        state: glyphoxa_proto::v1::SessionState::Ended as i32,
        started_at_unix_ms: 1,
        tenant_id: "acme".into(),
        guild_id: "1".into(),
        channel_id: "2".into(),
        ended_at_unix_ms: 2,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_worker_takes_the_session_when_the_first_is_down() {
    let healthy = serve("second", 4).await;
    let dead = dead_address().await;
    let pool = pool(vec![dead.clone(), healthy.address.clone()]);
    let placed = pool.start_session(request("s1")).await.unwrap();
    assert_eq!(placed.worker_addr, healthy.address);
    assert_eq!(healthy.worker.sessions(), vec!["s1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_is_retried_on_another_worker() {
    let failing = serve("a-failing", 4).await;
    let healthy = serve("b-healthy", 4).await;
    // Make the failing one look less loaded so it is tried first.
    healthy.worker.start_session(request("other")).await.unwrap();
    failing.worker.fail_starts(Some(ApiError::internal("pipeline crashed")));
    let pool = pool(vec![failing.address.clone(), healthy.address.clone()]);
    let placed = pool.start_session(request("s1")).await.unwrap();
    assert_eq!(placed.worker_addr, healthy.address);
    assert!(failing.worker.calls().iter().any(|c| c == "StartSession(s1)"));
    // The failed worker is told to stop whatever it may have started.
    for _ in 0..100 {
        if failing.worker.calls().iter().any(|c| c == "StopSession(s1)") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(failing.worker.calls().iter().any(|c| c == "StopSession(s1)"));
    // A request every worker would refuse is not retried.
    failing.worker.fail_starts(None);
    let error = pool.start_session(request("")).await.unwrap_err();
    assert!(
        matches!(
            error,
            WorkerError::Api {
                source: ApiError::InvalidArgument(_),
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_opens_and_start_fails_fast_with_a_clear_error() {
    let hanging = blackhole().await;
    let pool = pool(vec![hanging.clone()]);
    for attempt in 0..2 {
        let began = Instant::now();
        let error = pool.start_session(request(&format!("s{attempt}"))).await.unwrap_err();
        assert!(matches!(error, WorkerError::Unavailable(_)), "{error}");
        assert!(error.to_string().starts_with("voice service unavailable"), "{error}");
        assert!(began.elapsed() >= Duration::from_millis(250), "the deadline applied");
        assert!(began.elapsed() < Duration::from_secs(3), "the deadline applied");
    }
    assert_eq!(pool.health().await[0].circuit, CircuitState::Open);
    let began = Instant::now();
    let error = pool.start_session(request("s3")).await.unwrap_err();
    let elapsed = began.elapsed();
    assert!(
        elapsed < Duration::from_millis(100),
        "open circuit fails fast, took {elapsed:?}"
    );
    assert!(error.to_string().contains("circuit open"), "{error}");
    assert!(error.to_string().starts_with("voice service unavailable"), "{error}");
    // Session calls to that worker fail fast too.
    let began = Instant::now();
    let error = pool.list_npcs(&hanging, "s1").await.unwrap_err();
    assert!(matches!(error, WorkerError::Unavailable(_)));
    assert!(began.elapsed() < Duration::from_millis(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_workers_down_or_full_is_voice_service_unavailable() {
    let full = serve("full", 1).await;
    full.worker.start_session(request("existing")).await.unwrap();
    let pool = pool(vec![dead_address().await, full.address.clone()]);
    let error = pool.start_session(request("s1")).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("voice service unavailable: no voice worker could start the session"),
        "{text}"
    );
    assert!(text.contains("full (1/1)"), "{text}");
    assert_eq!(
        full.worker.sessions(),
        vec!["existing".to_string()],
        "nothing half-started"
    );
    let empty = GrpcWorkerPool::new(WorkerPoolSettings::default()).unwrap();
    let error = empty.start_session(request("s1")).await.unwrap_err();
    assert!(error.to_string().contains("no voice workers are configured"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_places_on_the_second_worker_over_grpc() {
    let db = common::sqlite().await;
    db.tenant("acme", LicenseTier::Shared).await;
    let healthy = serve("w2", 4).await;
    let workers: Arc<dyn WorkerClient> = Arc::new(pool(vec![blackhole().await, healthy.address.clone()]));
    let orch = Orchestrator::new(db.store.clone(), workers, OrchestratorSettings::default());
    let start = || StartRequest {
        tenant_id: tid("acme"),
        guild_id: did("10"),
        channel_id: did("11"),
        started_by: did("12"),
        voice: None,
    };
    let session = orch.start(start()).await.unwrap();
    assert_eq!(session.state, SessionState::Active);
    assert_eq!(session.worker_addr.as_deref(), Some(healthy.address.as_str()));
    assert_eq!(session.worker_id.as_deref(), Some("w2"));
    let stopped = orch.stop(&tid("acme"), &session.id, "done").await.unwrap();
    assert_eq!(stopped.state, SessionState::Ended);
    assert!(healthy.worker.sessions().is_empty());

    // Every worker down: a clear error and nothing left live.
    healthy.worker.fail_all(Some(ApiError::unavailable("shutting down")));
    let error = orch.start(start()).await.unwrap_err();
    assert!(error.to_string().starts_with("voice service unavailable"), "{error}");
    assert!(db.store.tenant(&tid("acme")).live_sessions().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_name_adds_workers() {
    let served = serve("dns-worker", 4).await;
    let port = served.address.rsplit(':').next().unwrap().to_string();
    let pool = GrpcWorkerPool::new(WorkerPoolSettings {
        dns: Some(format!("localhost:{port}")),
        call_timeout: Duration::from_millis(500),
        ..WorkerPoolSettings::default()
    })
    .unwrap();
    let placed = pool.start_session(request("s1")).await.unwrap();
    assert_eq!(placed.worker_id, "dns-worker");
    assert!(pool
        .health()
        .await
        .iter()
        .any(|h| h.worker_id.as_deref() == Some("dns-worker")));
}
