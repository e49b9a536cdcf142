//! The admin REST API (SPEC §4): every route and error path, the token never
//! in a response or log line, and the OpenAPI document against the routes.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use common::logs::capture_logs;
use common::{did, tid, TestDb, T0};
use glyphoxa_gateway::admin::{self, AdminSettings, AdminState};
use glyphoxa_gateway::bots::{BotCommand, BotManager, BotState, BotStatus, RecordingBotManager};
use glyphoxa_gateway::ids::SessionId;
use glyphoxa_gateway::orchestrator::{Orchestrator, OrchestratorSettings, StartRequest};
use glyphoxa_gateway::store::{EndSession, NewSession};
use glyphoxa_gateway::workers::fake::FakeWorker;
use glyphoxa_gateway::workers::{InProcessWorkerClient, WorkerClient};
use serde_json::{json, Value};
use tower::ServiceExt as _;

const KEY: &str = "test-admin-key-0123456789";
const TOKEN: &str = "MTE5OTk5.SECRET-bot-token.xyzzy";
const TOKEN_2: &str = "MTIzNDU2.ANOTHER-secret-token.plugh";

on_both_backends!(
    every_route_and_error_path,
    token_never_leaks,
    openapi_matches_routes,
    sessions_usage_and_bot_status
);

struct App {
    router: Router,
    bots: Arc<RecordingBotManager>,
    worker: Arc<FakeWorker>,
    orchestrator: Arc<Orchestrator>,
    responses: Mutex<Vec<String>>,
}

fn secret_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([42u8; 32])
}

fn app(db: &TestDb, secret: Option<String>) -> App {
    let worker = Arc::new(FakeWorker::new("w1", 8));
    let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(worker.clone()));
    let orchestrator = Arc::new(Orchestrator::new(
        db.store.clone(),
        workers,
        OrchestratorSettings::default(),
    ));
    let bots = Arc::new(RecordingBotManager::new());
    let mut settings = AdminSettings::new(KEY);
    settings.secret_key = secret;
    settings.body_limit = 4096;
    let state = AdminState::new(&settings, orchestrator.clone(), bots.clone() as Arc<dyn BotManager>).unwrap();
    App {
        router: admin::router(state),
        bots,
        worker,
        orchestrator,
        responses: Mutex::new(Vec::new()),
    }
}

enum Auth {
    None,
    Bearer(&'static str),
    ApiKey(&'static str),
}

struct Reply {
    status: StatusCode,
    json: Value,
    headers: axum::http::HeaderMap,
}

impl App {
    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
        body: Option<&str>,
        content_type: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        match auth {
            Auth::None => {}
            Auth::Bearer(key) => request = request.header(header::AUTHORIZATION, format!("Bearer {key}")),
            Auth::ApiKey(key) => request = request.header("x-api-key", key),
        }
        if let Some(kind) = content_type {
            request = request.header(header::CONTENT_TYPE, kind);
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.responses.lock().unwrap().push(format!("{headers:?} {text}"));
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        Reply { status, json, headers }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        self.send(
            method,
            path,
            Auth::Bearer(KEY),
            body.as_deref(),
            body.as_ref().map(|_| "application/json"),
        )
        .await
    }

    async fn raw(&self, method: Method, path: &str, body: &str) -> Reply {
        self.send(method, path, Auth::ApiKey(KEY), Some(body), Some("application/json"))
            .await
    }
}

#[track_caller]
fn expect_error(reply: &Reply, status: StatusCode, contains: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.json);
    let message = reply.json["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {:?}", reply.json));
    assert!(message.contains(contains), "{message:?} should mention {contains:?}");
}

async fn every_route_and_error_path(db: &TestDb) {
    let app = app(db, Some(secret_key()));
    let t = "/api/v1/tenants";

    // Auth: 401 without a key (any route), 403 with a wrong one, both headers work.
    let reply = app.send(Method::GET, t, Auth::None, None, None).await;
    expect_error(&reply, StatusCode::UNAUTHORIZED, "missing admin key");
    assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
    expect_error(
        &app.send(Method::GET, "/nowhere", Auth::None, None, None).await,
        StatusCode::UNAUTHORIZED,
        "missing",
    );
    expect_error(
        &app.send(Method::GET, t, Auth::Bearer("wrong"), None, None).await,
        StatusCode::FORBIDDEN,
        "wrong admin key",
    );
    expect_error(
        &app.send(Method::GET, t, Auth::ApiKey("test-admin-key-012345678"), None, None)
            .await,
        StatusCode::FORBIDDEN,
        "wrong",
    );
    expect_error(
        &app.send(Method::GET, t, Auth::Bearer(""), None, None).await,
        StatusCode::UNAUTHORIZED,
        "missing",
    );
    assert_eq!(
        app.send(Method::GET, t, Auth::ApiKey(KEY), None, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(Method::GET, t, Auth::Bearer(KEY), None, None).await.status,
        StatusCode::OK
    );
    expect_error(
        &app.call(Method::GET, "/api/v1/nowhere", None).await,
        StatusCode::NOT_FOUND,
        "no such route",
    );
    expect_error(
        &app.call(Method::PATCH, t, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "not allowed",
    );

    // Create: 201, Location, no token in the answer, bot connect in the background.
    let reply = app
        .call(
            Method::POST,
            t,
            Some(json!({"id": "acme", "license_tier": "dedicated", "bot_token": TOKEN, "guild_ids": ["111", "222", "111"],
                        "dm_role_id": "333", "campaign_id": "lost-mine", "monthly_session_hours": 20})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.json);
    assert_eq!(reply.headers[header::LOCATION], "/api/v1/tenants/acme");
    assert_eq!(reply.json["id"], "acme");
    assert_eq!(reply.json["has_bot_token"], true);
    assert_eq!(reply.json["guild_ids"], json!(["111", "222"]));
    assert!(reply.json.get("bot_token").is_none());
    assert_eq!(
        app.bots.commands(),
        vec![BotCommand::Connect {
            tenant_id: tid("acme"),
            guild_ids: vec![did("111"), did("222")],
            dm_role_id: Some(did("333")),
        }]
    );
    // Minimal tenant; 409 on a duplicate.
    assert_eq!(
        app.call(Method::POST, t, Some(json!({"id": "beta", "license_tier": "shared"})))
            .await
            .status,
        StatusCode::CREATED
    );
    expect_error(
        &app.call(Method::POST, t, Some(json!({"id": "beta", "license_tier": "shared"})))
            .await,
        StatusCode::CONFLICT,
        "already exists",
    );

    // Every validation failure is 400 with {"error"}.
    let cases: Vec<(&str, &str)> = vec![
        (r#"{"id": "Acme", "license_tier": "shared"}"#, "invalid tenant id"),
        (r#"{"id": "1acme", "license_tier": "shared"}"#, "invalid tenant id"),
        (r#"{"id": "", "license_tier": "shared"}"#, "invalid tenant id"),
        (r#"{"id": "ok", "license_tier": "gold"}"#, "license_tier"),
        (
            r#"{"id": "ok", "license_tier": "shared", "color": "red"}"#,
            "unknown field `color`",
        ),
        (r#"{"id": "ok", "license_tier": "shared""#, "malformed JSON"),
        ("", "malformed JSON"),
        ("[]", "invalid request body"),
        (r#"{"license_tier": "shared"}"#, "missing field `id`"),
        (r#"{"id": "ok"}"#, "missing field `license_tier`"),
        (r#"{"id": 5, "license_tier": "shared"}"#, "invalid type"),
        (
            r#"{"id": "ok", "license_tier": "shared", "guild_ids": ["abc"]}"#,
            "guild_ids",
        ),
        (
            r#"{"id": "ok", "license_tier": "shared", "dm_role_id": "x1"}"#,
            "dm_role_id",
        ),
        (
            r#"{"id": "ok", "license_tier": "shared", "campaign_id": "Bad Id"}"#,
            "campaign_id",
        ),
        (
            r#"{"id": "ok", "license_tier": "shared", "monthly_session_hours": -1}"#,
            "monthly_session_hours",
        ),
        (
            r#"{"id": "ok", "license_tier": "shared", "bot_token": 12345}"#,
            "bot_token must be a string",
        ),
    ];
    for (body, message) in cases {
        expect_error(&app.raw(Method::POST, t, body).await, StatusCode::BAD_REQUEST, message);
    }
    expect_error(
        &app.send(
            Method::POST,
            t,
            Auth::Bearer(KEY),
            Some(r#"{"id":"ok","license_tier":"shared"}"#),
            Some("text/plain"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "content type",
    );
    let huge = json!({"id": "big", "license_tier": "shared", "campaign_id": "x".repeat(10_000)}).to_string();
    expect_error(
        &app.raw(Method::POST, t, &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "larger than 4096 bytes",
    );
    assert_eq!(
        app.call(Method::GET, "/api/v1/tenants/ok", None).await.status,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );

    // Get and list.
    let reply = app.call(Method::GET, "/api/v1/tenants/acme", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json["license_tier"], "dedicated");
    assert_eq!(reply.json["created_at"], "2025-03-10T12:00:00.000Z");
    expect_error(
        &app.call(Method::GET, "/api/v1/tenants/nobody", None).await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    expect_error(
        &app.call(Method::GET, "/api/v1/tenants/No-Body", None).await,
        StatusCode::BAD_REQUEST,
        "invalid tenant id",
    );
    expect_error(
        &app.call(Method::GET, "/api/v1/tenants?x=1", None).await,
        StatusCode::BAD_REQUEST,
        "unknown query parameter",
    );
    let list = app.call(Method::GET, t, None).await;
    let ids: Vec<&str> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme", "beta"]);

    // PUT: absent keeps, "" and null clear, token changes reconnect or disconnect.
    let acme = "/api/v1/tenants/acme";
    let reply = app
        .call(Method::PUT, acme, Some(json!({"monthly_session_hours": 5})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    assert_eq!(reply.json["dm_role_id"], "333");
    assert_eq!(reply.json["campaign_id"], "lost-mine");
    assert_eq!(reply.json["has_bot_token"], true);
    assert_eq!(reply.json["monthly_session_hours"], 5.0);
    let reply = app
        .call(Method::PUT, acme, Some(json!({"dm_role_id": "", "campaign_id": null})))
        .await;
    assert_eq!(reply.json["dm_role_id"], Value::Null);
    assert_eq!(reply.json["campaign_id"], Value::Null);
    assert_eq!(reply.json["guild_ids"], json!(["111", "222"]));
    let commands = app.bots.commands().len();
    app.call(Method::PUT, acme, Some(json!({"guild_ids": ["444"]}))).await;
    assert!(
        matches!(app.bots.commands().last(), Some(BotCommand::Update { guild_ids, .. }) if guild_ids == &vec![did("444")])
    );
    app.call(Method::PUT, acme, Some(json!({"bot_token": TOKEN_2}))).await;
    assert!(matches!(app.bots.commands().last(), Some(BotCommand::Connect { .. })));
    let reply = app.call(Method::PUT, acme, Some(json!({"bot_token": null}))).await;
    assert_eq!(reply.json["has_bot_token"], false);
    assert!(matches!(
        app.bots.commands().last(),
        Some(BotCommand::Disconnect { .. })
    ));
    assert_eq!(app.bots.commands().len(), commands + 3);
    let reply = app.call(Method::PUT, acme, Some(json!({}))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(app.bots.commands().len(), commands + 3, "no change, no bot command");
    for (body, message) in [
        (r#"{"id": "other"}"#, "id cannot be changed"),
        (r#"{"license_tier": null}"#, "license_tier cannot be null"),
        (r#"{"license_tier": "gold"}"#, "license_tier"),
        (r#"{"monthly_session_hours": null}"#, "cannot be null"),
        (r#"{"nickname": "x"}"#, "unknown field"),
        (r#"{"dm_role_id": 5}"#, "invalid type"),
        ("{", "malformed JSON"),
    ] {
        expect_error(
            &app.raw(Method::PUT, acme, body).await,
            StatusCode::BAD_REQUEST,
            message,
        );
    }
    expect_error(
        &app.call(Method::PUT, "/api/v1/tenants/nobody", Some(json!({}))).await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    expect_error(
        &app.call(Method::PUT, "/api/v1/tenants/BAD", Some(json!({}))).await,
        StatusCode::BAD_REQUEST,
        "invalid tenant id",
    );

    // DELETE: 204, live sessions stopped on their worker, bot disconnected, then 404.
    let session = app
        .orchestrator
        .start(StartRequest {
            tenant_id: tid("beta"),
            guild_id: did("900"),
            channel_id: did("901"),
            started_by: did("902"),
            voice: None,
        })
        .await
        .unwrap();
    assert_eq!(app.worker.sessions(), vec![session.id.to_string()]);
    let reply = app.call(Method::DELETE, "/api/v1/tenants/beta", None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(
        matches!(app.bots.commands().last(), Some(BotCommand::Disconnect { tenant_id }) if tenant_id == &tid("beta"))
    );
    for _ in 0..100 {
        if app.worker.sessions().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        app.worker.sessions().is_empty(),
        "the deleted tenant's session was stopped on its worker"
    );
    expect_error(
        &app.call(Method::DELETE, "/api/v1/tenants/beta", None).await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    expect_error(
        &app.call(Method::GET, "/api/v1/tenants/beta", None).await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    expect_error(
        &app.call(Method::DELETE, "/api/v1/tenants/B", None).await,
        StatusCode::BAD_REQUEST,
        "invalid tenant id",
    );

    // A token cannot be stored without a secret key; the rest of the API works.
    let keyless = self::app(db, None);
    expect_error(
        &keyless
            .call(
                Method::POST,
                t,
                Some(json!({"id": "gamma", "license_tier": "shared", "bot_token": TOKEN})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "GLYPHOXA_SECRET_KEY",
    );
    expect_error(
        &keyless.call(Method::PUT, acme, Some(json!({"bot_token": TOKEN}))).await,
        StatusCode::BAD_REQUEST,
        "GLYPHOXA_SECRET_KEY",
    );
    assert_eq!(
        keyless
            .call(Method::POST, t, Some(json!({"id": "gamma", "license_tier": "shared"})))
            .await
            .status,
        StatusCode::CREATED
    );

    // The API refuses to start without a key, or with a malformed secret key.
    let bots: Arc<dyn BotManager> = Arc::new(RecordingBotManager::new());
    assert!(AdminState::new(&AdminSettings::new(""), app.orchestrator.clone(), bots.clone()).is_err());
    assert!(AdminState::new(&AdminSettings::new("   "), app.orchestrator.clone(), bots.clone()).is_err());
    let mut bad_secret = AdminSettings::new(KEY);
    bad_secret.secret_key = Some("c2hvcnQ=".into());
    assert!(AdminState::new(&bad_secret, app.orchestrator.clone(), bots).is_err());
}

async fn sessions_usage_and_bot_status(db: &TestDb) {
    let app = app(db, Some(secret_key()));
    app.call(
        Method::POST,
        "/api/v1/tenants",
        Some(json!({"id": "acme", "license_tier": "dedicated", "monthly_session_hours": 2})),
    )
    .await;
    let acme = db.store.tenant(&tid("acme"));
    // An ended session of one hour, then a live one.
    let new = |guild: &str| NewSession {
        id: SessionId::random(),
        campaign_id: None,
        guild_id: did(guild),
        channel_id: did("2"),
        started_by: did("3"),
    };
    let old = acme.create_session(&new("10")).await.unwrap();
    acme.activate_session(&old.id, None).await.unwrap();
    db.clock.advance(std::time::Duration::from_secs(3600));
    acme.end_session(&old.id, &EndSession::because("done")).await.unwrap();
    let live = acme.create_session(&new("11")).await.unwrap();
    acme.activate_session(&live.id, None).await.unwrap();

    let reply = app.call(Method::GET, "/api/v1/tenants/acme/sessions", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let sessions = reply.json.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["id"], live.id.as_str(), "active first");
    assert_eq!(sessions[0]["state"], "active");
    assert_eq!(sessions[1]["state"], "ended");
    assert_eq!(sessions[1]["duration_seconds"], 3600.0);
    assert_eq!(sessions[1]["end_reason"], "done");
    let reply = app
        .call(Method::GET, "/api/v1/tenants/acme/sessions?limit=1", None)
        .await;
    assert_eq!(reply.json.as_array().unwrap().len(), 1);
    for bad in ["limit=0", "limit=abc", "limit=1001", "page=2", "limit=1&limit=2"] {
        let reply = app
            .call(Method::GET, &format!("/api/v1/tenants/acme/sessions?{bad}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    expect_error(
        &app.call(Method::GET, "/api/v1/tenants/nobody/sessions", None).await,
        StatusCode::NOT_FOUND,
        "not found",
    );

    let reply = app
        .call(Method::GET, "/api/v1/tenants/acme/usage?period=2025-03", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json);
    assert_eq!(reply.json["period"], "2025-03");
    assert_eq!(reply.json["session_hours"], 1.0);
    assert_eq!(reply.json["sessions"], 1);
    assert_eq!(reply.json["remaining_hours"], 1.0);
    assert_eq!(reply.json["quota_reached"], false);
    let default = app.call(Method::GET, "/api/v1/tenants/acme/usage", None).await;
    assert_eq!(default.json["period"], "2025-03", "default: the current month");
    let other = app
        .call(Method::GET, "/api/v1/tenants/acme/usage?period=2024-12", None)
        .await;
    assert_eq!(other.json["session_hours"], 0.0);
    for bad in [
        "period=2025-3",
        "period=March",
        "period=2025-13",
        "period=",
        "month=2025-03",
    ] {
        let reply = app
            .call(Method::GET, &format!("/api/v1/tenants/acme/usage?{bad}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", reply.json);
    }
    expect_error(
        &app.call(Method::GET, "/api/v1/tenants/nobody/usage", None).await,
        StatusCode::NOT_FOUND,
        "not found",
    );

    // Bot status: no token → disconnected; with a token → what the manager says.
    let reply = app.call(Method::GET, "/api/v1/tenants/acme/bot", None).await;
    assert_eq!(reply.json["state"], "disconnected");
    assert_eq!(reply.json["message"], "no bot token configured");
    app.call(
        Method::PUT,
        "/api/v1/tenants/acme",
        Some(json!({"bot_token": TOKEN, "guild_ids": ["1", "2"]})),
    )
    .await;
    let reply = app.call(Method::GET, "/api/v1/tenants/acme/bot", None).await;
    assert_eq!(
        reply.json["state"], "connecting",
        "201/200 at once; the connection happens in the background"
    );
    assert_eq!(reply.json["has_bot_token"], true);
    app.bots.set_status(
        &tid("acme"),
        BotStatus {
            state: BotState::Error,
            message: Some("Discord rejected the token (401)".into()),
            guild_count: 0,
        },
    );
    let reply = app.call(Method::GET, "/api/v1/tenants/acme/bot", None).await;
    assert_eq!(reply.json["state"], "error");
    assert_eq!(reply.json["message"], "Discord rejected the token (401)");
    expect_error(
        &app.call(Method::GET, "/api/v1/tenants/nobody/bot", None).await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    let _ = T0;
}

async fn token_never_leaks(db: &TestDb) {
    let (logs, _guard) = capture_logs();
    let app = app(db, Some(secret_key()));
    app.call(
        Method::POST,
        "/api/v1/tenants",
        Some(json!({"id": "acme", "license_tier": "shared", "bot_token": TOKEN})),
    )
    .await;
    app.call(
        Method::POST,
        "/api/v1/tenants",
        Some(json!({"id": "acme", "license_tier": "shared", "bot_token": TOKEN})),
    )
    .await;
    app.raw(
        Method::POST,
        "/api/v1/tenants",
        &format!(r#"{{"id": "Bad", "license_tier": "shared", "bot_token": "{TOKEN}"}}"#),
    )
    .await;
    app.raw(
        Method::POST,
        "/api/v1/tenants",
        &format!(r#"{{"id": "ok", "license_tier": "shared", "bot_token": "{TOKEN}", "x": 1}}"#),
    )
    .await;
    app.raw(
        Method::POST,
        "/api/v1/tenants",
        &format!(r#"{{"id": "ok", "bot_token": "{TOKEN}""#),
    )
    .await;
    app.call(Method::PUT, "/api/v1/tenants/acme", Some(json!({"bot_token": TOKEN_2})))
        .await;
    app.raw(
        Method::PUT,
        "/api/v1/tenants/acme",
        &format!(r#"{{"bot_token": "{TOKEN}", "license_tier": "gold"}}"#),
    )
    .await;
    app.call(Method::GET, "/api/v1/tenants/acme", None).await;
    app.call(Method::GET, "/api/v1/tenants", None).await;
    app.call(Method::GET, "/api/v1/tenants/acme/bot", None).await;
    app.call(Method::DELETE, "/api/v1/tenants/acme", None).await;

    let responses = app.responses.lock().unwrap().join("\n");
    let logged = logs.text();
    for secret in [TOKEN, TOKEN_2, "SECRET-bot-token", "ANOTHER-secret-token", KEY] {
        assert!(!responses.contains(secret), "a response contains a secret");
        assert!(!logged.contains(secret), "a log line contains a secret");
    }
    // Every mutation wrote an audit line.
    assert!(
        logged.contains("action=\"tenant.create\"") || logged.contains("action=tenant.create"),
        "{logged}"
    );
    assert!(logged.contains("tenant.update"), "{logged}");
    assert!(logged.contains("tenant.delete"), "{logged}");
    assert!(
        logged.contains("bot_token=\"set\"") || logged.contains("bot_token=set"),
        "{logged}"
    );
    // At rest the token is encrypted.
    app.call(
        Method::POST,
        "/api/v1/tenants",
        Some(json!({"id": "beta", "license_tier": "shared", "bot_token": TOKEN})),
    )
    .await;
    let stored = db.store.tenant(&tid("beta")).bot_token().await.unwrap().unwrap();
    assert!(!stored
        .as_bytes()
        .windows(16)
        .any(|w| TOKEN.as_bytes().windows(16).any(|t| t == w)));
    assert!(!format!("{stored:?}").contains("SECRET"));
}

/// Every documented operation exists (never the router's 404/405), and no
/// documented path answers an undocumented method.
async fn openapi_matches_routes(db: &TestDb) {
    let app = app(db, Some(secret_key()));
    app.call(
        Method::POST,
        "/api/v1/tenants",
        Some(json!({"id": "acme", "license_tier": "shared"})),
    )
    .await;
    let reply = app.call(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json;
    assert_eq!(doc["openapi"], "3.1.0");
    let base = doc["servers"][0]["url"].as_str().unwrap();
    assert_eq!(base, admin::BASE_PATH);
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 6);
    let all = [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH];
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = format!("{base}{}", path.replace("{id}", "acme"));
        for method in &all {
            let documented = item.get(method.as_str().to_lowercase()).is_some();
            let body = matches!(*method, Method::POST | Method::PUT).then(|| json!({}));
            let reply = app.call(method.clone(), &concrete, body).await;
            if documented {
                operations += 1;
                let routed = reply.status != StatusCode::METHOD_NOT_ALLOWED
                    && !reply.json["error"].as_str().unwrap_or("").contains("no such route");
                assert!(routed, "{method} {path} is documented but not routed: {:?}", reply.json);
                let responses = item[method.as_str().to_lowercase()]["responses"].as_object().unwrap();
                assert!(
                    responses.contains_key(reply.status.as_str()),
                    "{method} {path} answered {} which is not documented",
                    reply.status
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not documented"
                );
            }
        }
    }
    assert_eq!(operations, 9);
    // The schema of the create body lists exactly the accepted fields.
    let create = doc["components"]["schemas"]["CreateTenant"]["properties"]
        .as_object()
        .unwrap();
    let mut fields: Vec<&String> = create.keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "bot_token",
            "campaign_id",
            "dm_role_id",
            "guild_ids",
            "id",
            "license_tier",
            "monthly_session_hours"
        ]
    );
}
