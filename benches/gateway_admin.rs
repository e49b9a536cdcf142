//! Gateway control-plane figures (harness = false; `cargo bench --bench
//! gateway_admin`):
//! - admin API create + get throughput over real HTTP/1.1 keep-alive
//!   connections, on SQLite and (when `GLYPHOXA_TEST_DATABASE_URL` is set)
//!   PostgreSQL;
//! - orchestrator start/stop latency (store transaction + in-process fake
//!   worker), on both databases.
//!
//! `GLYPHOXA_BENCH_ITERATIONS` sets the number of iterations (default 400).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glyphoxa_gateway::bots::{BotManager, RecordingBotManager};
use glyphoxa_gateway::ids::{DiscordId, TenantId};
use glyphoxa_gateway::orchestrator::{Orchestrator, OrchestratorSettings, StartRequest};
use glyphoxa_gateway::store::{self, LicenseTier, NewTenant, Store, StoreSettings};
use glyphoxa_gateway::workers::fake::FakeWorker;
use glyphoxa_gateway::workers::{InProcessWorkerClient, WorkerClient};
use glyphoxa_gateway::{Gateway, GatewaySettings};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const KEY: &str = "bench-admin-key";
const CONNECTIONS: usize = 4;

/// A database for one run: a temporary SQLite file or a fresh PostgreSQL schema.
struct Database {
    label: &'static str,
    settings: StoreSettings,
    _dir: Option<tempfile::TempDir>,
}

impl Database {
    fn sqlite() -> Database {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut settings = StoreSettings::new(format!("sqlite://{}", dir.path().join("bench.db").display()));
        settings.max_connections = 4;
        Database {
            label: "sqlite",
            settings,
            _dir: Some(dir),
        }
    }

    fn postgres() -> Option<Database> {
        let url = std::env::var("GLYPHOXA_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())?;
        let mut settings = StoreSettings::new(url);
        settings.schema = Some(format!("gw_bench_{}", std::process::id()));
        settings.max_connections = 8;
        Some(Database {
            label: "postgres",
            settings,
            _dir: None,
        })
    }

    async fn cleanup(&self) {
        if let Some(schema) = &self.settings.schema {
            if let Err(error) = store::drop_schema(&self.settings.url, schema).await {
                eprintln!("cannot drop bench schema {schema}: {error}");
            }
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to the admin API");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            reader: BufReader::new(stream),
        }
    }

    async fn request(&mut self, method: &str, path: &str, body: &str) -> u16 {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("write");
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).await.expect("status line");
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).await.expect("body");
        status
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        percentile(&samples, 0.50),
        percentile(&samples, 0.95),
        percentile(&samples, 0.99)
    )
}

async fn admin_throughput(db: &Database, iterations: usize) {
    let mut settings = GatewaySettings::new(db.settings.url.clone(), KEY);
    settings.store = db.settings.clone();
    settings.admin_addr = "127.0.0.1:0".parse().expect("address");
    settings.grpc_addr = "127.0.0.1:0".parse().expect("address");
    let bots: Arc<dyn BotManager> = Arc::new(RecordingBotManager::new());
    let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(Arc::new(FakeWorker::new("w", 1))));
    let gateway = Gateway::start_with_workers(settings, bots, workers)
        .await
        .expect("start the gateway");
    let addr = gateway.admin_addr();

    for connections in [1, CONNECTIONS] {
        let per_connection = iterations / connections;
        let began = Instant::now();
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                tokio::spawn(async move {
                    let mut client = Client::connect(addr).await;
                    let mut creates = Vec::with_capacity(per_connection);
                    let mut gets = Vec::with_capacity(per_connection);
                    for i in 0..per_connection {
                        let id = format!("t{connections}_{c}_{i}");
                        let body = format!(r#"{{"id":"{id}","license_tier":"shared","guild_ids":["{i}"]}}"#);
                        let t = Instant::now();
                        assert_eq!(client.request("POST", "/api/v1/tenants", &body).await, 201);
                        creates.push(t.elapsed());
                        let t = Instant::now();
                        assert_eq!(client.request("GET", &format!("/api/v1/tenants/{id}"), "").await, 200);
                        gets.push(t.elapsed());
                    }
                    (creates, gets)
                })
            })
            .collect();
        let mut creates = Vec::new();
        let mut gets = Vec::new();
        for task in tasks {
            let (c, g) = task.await.expect("client task");
            creates.extend(c);
            gets.extend(g);
        }
        let elapsed = began.elapsed();
        let pairs = creates.len();
        println!(
            "gateway_admin/{}/create+get/{connections}conn: {pairs} pairs in {:.2} s = {:.0} pairs/s ({:.0} requests/s); create {}; get {}",
            db.label,
            elapsed.as_secs_f64(),
            pairs as f64 / elapsed.as_secs_f64(),
            2.0 * pairs as f64 / elapsed.as_secs_f64(),
            summary(creates),
            summary(gets),
        );
    }
    gateway.shutdown().await.expect("shutdown");
}

async fn orchestrator_latency(db: &Database, iterations: usize) {
    let mut settings = db.settings.clone();
    settings.schema = settings.schema.map(|s| format!("{s}_orch"));
    let store = Store::connect(&settings).await.expect("open the store");
    let tenant = TenantId::parse("bench").expect("tenant id");
    store
        .create_tenant(&NewTenant::new(tenant.clone(), LicenseTier::Dedicated))
        .await
        .expect("tenant");
    let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(Arc::new(FakeWorker::new("w", 4))));
    let orchestrator = Orchestrator::new(store.clone(), workers, OrchestratorSettings::default());
    let guild = DiscordId::parse("1000").expect("guild");
    let request = StartRequest {
        tenant_id: tenant.clone(),
        guild_id: guild.clone(),
        channel_id: DiscordId::parse("2000").expect("channel"),
        started_by: DiscordId::parse("3000").expect("user"),
        voice: None,
    };
    let mut starts = Vec::with_capacity(iterations);
    let mut stops = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let session = orchestrator.start(request.clone()).await.expect("start");
        starts.push(t.elapsed());
        let t = Instant::now();
        orchestrator.stop(&tenant, &session.id, "bench").await.expect("stop");
        stops.push(t.elapsed());
    }
    println!(
        "gateway_admin/{}/orchestrator: {iterations} start+stop cycles; start {}; stop {}",
        db.label,
        summary(starts),
        summary(stops)
    );
    store.close().await;
    if let Some(schema) = &settings.schema {
        if let Err(error) = store::drop_schema(&settings.url, schema).await {
            eprintln!("cannot drop bench schema {schema}: {error}");
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --benches`) is a quick smoke run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let iterations = std::env::var("GLYPHOXA_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 8 } else { 400 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut databases = vec![Database::sqlite()];
        match Database::postgres() {
            Some(db) => databases.push(db),
            None => println!("gateway_admin/postgres: skipped (GLYPHOXA_TEST_DATABASE_URL is not set)"),
        }
        for db in &databases {
            admin_throughput(db, iterations).await;
            orchestrator_latency(db, iterations / 2).await;
            db.cleanup().await;
        }
    });
}
