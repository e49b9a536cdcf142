//! The gateway-mode entry point: starts the admin API and the gRPC server
//! for workers on real sockets, serves both, and shuts down gracefully.

mod common;

use std::sync::Arc;
use std::time::Duration;

use glyphoxa_gateway::bots::{BotCommand, BotManager, RecordingBotManager};
use glyphoxa_gateway::workers::fake::FakeWorker;
use glyphoxa_gateway::workers::{InProcessWorkerClient, WorkerClient};
use glyphoxa_gateway::{Gateway, GatewayError, GatewaySettings};
use glyphoxa_proto::v1::HeartbeatRequest;
use glyphoxa_proto::{ApiError, ClientConfig, GatewayApi, GrpcGatewayClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "run-test-admin-key";

async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn settings(dir: &tempfile::TempDir) -> GatewaySettings {
    let url = format!("sqlite://{}", dir.path().join("gw.db").display());
    let mut settings = GatewaySettings::new(url, KEY);
    settings.admin_addr = "127.0.0.1:0".parse().unwrap();
    settings.grpc_addr = "127.0.0.1:0".parse().unwrap();
    settings.admin.secret_key = Some("KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=".into());
    settings.shutdown_grace = Duration::from_secs(2);
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_admin_and_grpc_then_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let bots = Arc::new(RecordingBotManager::new());
    let worker: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(Arc::new(FakeWorker::new("w", 2))));
    let gateway = Gateway::start_with_workers(settings(&dir), bots.clone() as Arc<dyn BotManager>, worker.clone())
        .await
        .unwrap();
    let admin = gateway.admin_addr();
    let grpc = gateway.grpc_addr();
    let (status, body) = http(
        admin,
        "POST",
        "/api/v1/tenants",
        r#"{"id":"acme","license_tier":"shared","bot_token":"tok"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(admin, "GET", "/api/v1/tenants/acme", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"has_bot_token\":true"), "{body}");

    let client = GrpcGatewayClient::connect(&grpc.to_string(), ClientConfig::default())
        .await
        .unwrap();
    let beat = HeartbeatRequest {
        session_id: "unknown-session".into(),
        worker_id: "w".into(),
        sent_at_unix_ms: 0,
    };
    assert!(matches!(client.heartbeat(beat).await, Err(ApiError::NotFound(_))));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(gateway.serve_until(async move {
        let _ = stopped.await;
    }));
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the admin API stopped listening"
    );

    // On the next start, bots of tenants with tokens are reconnected.
    let bots = Arc::new(RecordingBotManager::new());
    let gateway = Gateway::start_with_workers(settings(&dir), bots.clone() as Arc<dyn BotManager>, worker)
        .await
        .unwrap();
    assert!(
        matches!(bots.commands().as_slice(), [BotCommand::Connect { tenant_id, .. }] if tenant_id.as_str() == "acme")
    );
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn refuses_to_start_without_an_admin_key_or_with_a_bad_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut no_key = settings(&dir);
    no_key.admin.admin_key = String::new();
    let error = glyphoxa_gateway::run(no_key, std::future::ready(())).await.unwrap_err();
    assert!(matches!(error, GatewayError::Admin(_)), "{error}");
    assert!(error.to_string().contains("GLYPHOXA_ADMIN_KEY"), "{error}");
    assert!(!dir.path().join("gw.db").exists(), "nothing was opened");

    let mut bad_db = settings(&dir);
    bad_db.store.url = "mysql://nope".into();
    let error = glyphoxa_gateway::run(bad_db, std::future::ready(())).await.unwrap_err();
    assert!(error.to_string().contains("unsupported database URL"), "{error}");

    let mut bad_secret = settings(&dir);
    bad_secret.admin.secret_key = Some("not base64!".into());
    let error = glyphoxa_gateway::run(bad_secret, std::future::ready(()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("GLYPHOXA_SECRET_KEY"), "{error}");

    // Port already taken: a clear bind error.
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut busy = settings(&dir);
    busy.admin_addr = taken.local_addr().unwrap();
    let error = glyphoxa_gateway::run(busy, std::future::ready(())).await.unwrap_err();
    assert!(error.to_string().contains("cannot listen for the admin API"), "{error}");
}
