//! The admin REST API (SPEC §4): tenants, their sessions, usage and bot
//! status, under `/api/v1`, JSON in and out.
//!
//! Every route needs the admin key (`Authorization: Bearer <key>` or
//! `X-API-Key`); missing → 401, wrong → 403, compared in constant time. Every
//! error is `{"error": "..."}`; every validation failure (bad id, bad tier,
//! unknown field, malformed JSON, bad query) is 400. Bodies are limited in
//! size (413). Each mutation writes one audit log line (target
//! `glyphoxa::audit`) that never contains a token. The OpenAPI document is
//! served at `/api/v1/openapi.json`.

mod auth;
mod body;
pub mod openapi;
mod tenants;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::bots::BotManager;
use crate::crypto::{AdminKey, SecretError, TokenCipher};
use crate::orchestrator::Orchestrator;
use crate::store::StoreError;

/// The base path of every route.
pub const BASE_PATH: &str = "/api/v1";

/// Default largest request body, in bytes.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Secrets and limits of the admin API.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// The admin key (`GLYPHOXA_ADMIN_KEY`); the API refuses to start
    /// without one.
    pub admin_key: String,
    /// 32 random bytes, base64 (`GLYPHOXA_SECRET_KEY`), that encrypt bot
    /// tokens at rest; without it, requests carrying a token are refused.
    pub secret_key: Option<String>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("admin_key", &"<redacted>")
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<redacted>"))
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl AdminSettings {
    /// Settings with `admin_key`, no secret key and the default body limit.
    pub fn new(admin_key: impl Into<String>) -> Self {
        Self {
            admin_key: admin_key.into(),
            secret_key: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

/// Why the admin API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No admin key, or a malformed secret key.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<AdminInner>,
}

struct AdminInner {
    orchestrator: Arc<Orchestrator>,
    bots: Arc<dyn BotManager>,
    cipher: Option<TokenCipher>,
    key: AdminKey,
    body_limit: usize,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminState")
    }
}

impl AdminState {
    /// State for the API; fails without an admin key or with a malformed
    /// secret key.
    pub fn new(
        settings: &AdminSettings,
        orchestrator: Arc<Orchestrator>,
        bots: Arc<dyn BotManager>,
    ) -> Result<Self, AdminError> {
        let key = AdminKey::new(&settings.admin_key)?;
        let cipher = match settings.secret_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            Some(secret) => Some(TokenCipher::from_base64(secret)?),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(AdminInner {
                orchestrator,
                bots,
                cipher,
                key,
                body_limit: settings.body_limit.max(1024),
            }),
        })
    }

    fn store(&self) -> &crate::store::Store {
        self.inner.orchestrator.store()
    }
}

/// Connects the bot of every tenant that has a token (at start-up). A
/// tenant whose token cannot be decrypted is logged and skipped.
pub async fn reconnect_bots(state: &AdminState) {
    let ids = match state.store().tenants_with_bot_token().await {
        Ok(ids) => ids,
        Err(error) => {
            tracing::error!(%error, "cannot list tenants to reconnect their bots");
            return;
        }
    };
    if !ids.is_empty() && state.inner.cipher.is_none() {
        tracing::error!(
            tenants = ids.len(),
            "tenants have bot tokens but GLYPHOXA_SECRET_KEY is not set: their bots stay disconnected"
        );
        return;
    }
    for id in ids {
        match state.store().tenant(&id).get().await {
            Ok(Some(tenant)) => {
                if let Some(spec) = state.bot_spec(&tenant).await {
                    state.inner.bots.connect(spec);
                }
            }
            Ok(None) => {}
            Err(error) => tracing::error!(tenant = %id, %error, "cannot read a tenant to reconnect its bot"),
        }
    }
}

/// The API's routes (mount at the root: paths include [`BASE_PATH`]).
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/tenants/{id}",
            get(tenants::get).put(tenants::update).delete(tenants::delete),
        )
        .route("/tenants/{id}/sessions", get(tenants::sessions))
        .route("/tenants/{id}/usage", get(tenants::usage))
        .route("/tenants/{id}/bot", get(tenants::bot))
        .route("/openapi.json", get(openapi::serve));
    Router::new()
        .nest(BASE_PATH, api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_key,
        ))
        .with_state(state)
}

/// An error answer: status and `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status code.
    pub status: StatusCode,
    /// The message (never a secret).
    pub message: String,
}

impl HttpError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid { .. } => Self::bad_request(error.to_string()),
            StoreError::Conflict(_) => Self::new(StatusCode::CONFLICT, error.to_string()),
            StoreError::NotFound(_) => Self::not_found(error.to_string()),
            other => {
                tracing::error!(error = %other, "admin API: store failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; try again later",
                )
            }
        }
    }
}

async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError::not_found(format!("no such route: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
