//! Handlers of `/api/v1/tenants…`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::body::{self, Patch, SecretInput};
use super::{AdminState, HttpError};
use crate::bots::{BotSpec, BotState, BotStatus};
use crate::crypto::{BotToken, EncryptedToken};
use crate::ids::{CampaignId, DiscordId, TenantId};
use crate::store::{LicenseTier, NewTenant, Session, Tenant, TenantUpdate};
use crate::time::{rfc3339, Period};

/// Longest accepted bot token, in bytes (its format is Discord's business).
const MAX_TOKEN_BYTES: usize = 512;
/// Most guilds per tenant.
const MAX_GUILDS: usize = 1000;

/// A tenant as the API shows it: the bot token never appears, only whether
/// one is stored.
#[derive(Debug, Serialize)]
pub(super) struct TenantView {
    id: String,
    license_tier: LicenseTier,
    has_bot_token: bool,
    guild_ids: Vec<String>,
    dm_role_id: Option<String>,
    campaign_id: Option<String>,
    monthly_session_hours: f64,
    created_at: String,
    updated_at: String,
}

impl From<&Tenant> for TenantView {
    fn from(tenant: &Tenant) -> Self {
        Self {
            id: tenant.id.to_string(),
            license_tier: tenant.license_tier,
            has_bot_token: tenant.has_bot_token,
            guild_ids: tenant.guild_ids.iter().map(ToString::to_string).collect(),
            dm_role_id: tenant.dm_role_id.as_ref().map(ToString::to_string),
            campaign_id: tenant.campaign_id.as_ref().map(ToString::to_string),
            monthly_session_hours: tenant.monthly_session_hours,
            created_at: rfc3339(tenant.created_at),
            updated_at: rfc3339(tenant.updated_at),
        }
    }
}

/// A session as the API shows it.
#[derive(Debug, Serialize)]
pub(super) struct SessionView {
    id: String,
    tenant_id: String,
    campaign_id: Option<String>,
    guild_id: String,
    channel_id: String,
    license_tier: LicenseTier,
    started_by: String,
    state: crate::store::SessionState,
    worker_addr: Option<String>,
    worker_id: Option<String>,
    started_at: String,
    activated_at: Option<String>,
    ended_at: Option<String>,
    last_heartbeat: Option<String>,
    end_reason: Option<String>,
    error: Option<String>,
    duration_seconds: f64,
}

impl SessionView {
    fn new(session: &Session, now_ms: i64) -> Self {
        Self {
            id: session.id.to_string(),
            tenant_id: session.tenant_id.to_string(),
            campaign_id: session.campaign_id.as_ref().map(ToString::to_string),
            guild_id: session.guild_id.to_string(),
            channel_id: session.channel_id.to_string(),
            license_tier: session.license_tier,
            started_by: session.started_by.to_string(),
            state: session.state,
            worker_addr: session.worker_addr.clone(),
            worker_id: session.worker_id.clone(),
            started_at: rfc3339(session.started_at),
            activated_at: session.activated_at.map(rfc3339),
            ended_at: session.ended_at.map(rfc3339),
            last_heartbeat: session.last_heartbeat.map(rfc3339),
            end_reason: session.end_reason.clone(),
            error: session.error.clone(),
            duration_seconds: session.duration_ms(now_ms) as f64 / 1000.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTenant {
    id: String,
    license_tier: String,
    #[serde(default)]
    bot_token: Option<SecretInput>,
    #[serde(default)]
    guild_ids: Option<Vec<String>>,
    #[serde(default)]
    dm_role_id: Option<String>,
    #[serde(default)]
    campaign_id: Option<String>,
    #[serde(default)]
    monthly_session_hours: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateTenant {
    #[serde(default)]
    id: Patch<serde_json::Value>,
    #[serde(default)]
    license_tier: Patch<String>,
    #[serde(default)]
    bot_token: Patch<SecretInput>,
    #[serde(default)]
    guild_ids: Patch<Vec<String>>,
    #[serde(default)]
    dm_role_id: Patch<String>,
    #[serde(default)]
    campaign_id: Patch<String>,
    #[serde(default)]
    monthly_session_hours: Patch<f64>,
}

fn tenant_id(text: &str) -> Result<TenantId, HttpError> {
    TenantId::parse(text).map_err(|e| HttpError::bad_request(e.to_string()))
}

fn tier(text: &str) -> Result<LicenseTier, HttpError> {
    text.parse()
        .map_err(|e: crate::store::UnknownTier| HttpError::bad_request(e.to_string()))
}

fn guilds(ids: &[String]) -> Result<Vec<DiscordId>, HttpError> {
    if ids.len() > MAX_GUILDS {
        return Err(HttpError::bad_request(format!(
            "guild_ids: at most {MAX_GUILDS} guilds"
        )));
    }
    let mut out: Vec<DiscordId> = Vec::with_capacity(ids.len());
    for id in ids {
        let id = DiscordId::parse(id).map_err(|e| HttpError::bad_request(format!("guild_ids: {e}")))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn role(text: &str) -> Result<Option<DiscordId>, HttpError> {
    if text.is_empty() {
        return Ok(None);
    }
    DiscordId::parse(text)
        .map(Some)
        .map_err(|e| HttpError::bad_request(format!("dm_role_id: {e}")))
}

fn campaign(text: &str) -> Result<Option<CampaignId>, HttpError> {
    if text.is_empty() {
        return Ok(None);
    }
    CampaignId::parse(text)
        .map(Some)
        .map_err(|e| HttpError::bad_request(format!("campaign_id: {e}")))
}

fn hours(value: f64) -> Result<f64, HttpError> {
    if value.is_finite() && (0.0..=1_000_000.0).contains(&value) {
        Ok(value)
    } else {
        Err(HttpError::bad_request(
            "monthly_session_hours must be a number from 0 (unlimited) to 1000000",
        ))
    }
}

impl AdminState {
    /// Encrypts a token from a body; `None` for an empty one.
    fn seal(&self, tenant: &TenantId, token: &SecretInput) -> Result<Option<EncryptedToken>, HttpError> {
        let token = token.0.trim();
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(HttpError::bad_request(format!(
                "bot_token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let Some(cipher) = &self.inner.cipher else {
            return Err(HttpError::bad_request(
                "bot_token cannot be stored: the gateway has no GLYPHOXA_SECRET_KEY to encrypt it with \
                 (32 random bytes, base64, e.g. `openssl rand -base64 32`); set it and restart",
            ));
        };
        cipher.encrypt(tenant, &BotToken::new(token)).map(Some).map_err(|e| {
            tracing::error!(error = %e, "encrypting a bot token failed");
            HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "encrypting the bot token failed")
        })
    }

    /// The tenant's bot spec with its decrypted token, if it has one.
    pub(super) async fn bot_spec(&self, tenant: &Tenant) -> Option<BotSpec> {
        let cipher = self.inner.cipher.as_ref()?;
        let sealed = match self.store().tenant(&tenant.id).bot_token().await {
            Ok(sealed) => sealed?,
            Err(error) => {
                tracing::error!(tenant = %tenant.id, %error, "reading a bot token failed");
                return None;
            }
        };
        match cipher.decrypt(&tenant.id, &sealed) {
            Ok(token) => Some(BotSpec {
                tenant_id: tenant.id.clone(),
                token,
                guild_ids: tenant.guild_ids.clone(),
                dm_role_id: tenant.dm_role_id.clone(),
            }),
            Err(error) => {
                tracing::error!(tenant = %tenant.id, %error, "cannot decrypt a stored bot token");
                None
            }
        }
    }
}

fn audit(action: &str, tenant: &TenantId, fields: &[&str], token: &str) {
    tracing::info!(
        target: "glyphoxa::audit",
        action,
        tenant = %tenant,
        fields = %fields.join(","),
        bot_token = token,
        "admin API mutation"
    );
}

pub(super) async fn create(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let body: CreateTenant = body::json(&headers, body, state.inner.body_limit).await?;
    let id = tenant_id(&body.id)?;
    let mut new = NewTenant::new(id.clone(), tier(&body.license_tier)?);
    new.guild_ids = guilds(body.guild_ids.as_deref().unwrap_or_default())?;
    new.dm_role_id = role(body.dm_role_id.as_deref().unwrap_or_default())?;
    new.campaign_id = campaign(body.campaign_id.as_deref().unwrap_or_default())?;
    new.monthly_session_hours = hours(body.monthly_session_hours.unwrap_or(0.0))?;
    if let Some(token) = &body.bot_token {
        new.bot_token = state.seal(&id, token)?;
    }
    let tenant = state.store().create_tenant(&new).await?;
    let mut fields = vec!["license_tier"];
    for (name, present) in [
        ("bot_token", new.bot_token.is_some()),
        ("guild_ids", body.guild_ids.is_some()),
        ("dm_role_id", body.dm_role_id.is_some()),
        ("campaign_id", body.campaign_id.is_some()),
        ("monthly_session_hours", body.monthly_session_hours.is_some()),
    ] {
        if present {
            fields.push(name);
        }
    }
    audit(
        "tenant.create",
        &id,
        &fields,
        if new.bot_token.is_some() { "set" } else { "none" },
    );
    if tenant.has_bot_token {
        if let Some(spec) = state.bot_spec(&tenant).await {
            state.inner.bots.connect(spec);
        }
    }
    let location = format!("{}/tenants/{}", super::BASE_PATH, tenant.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(TenantView::from(&tenant)),
    )
        .into_response())
}

pub(super) async fn list(State(state): State<AdminState>, query: RawQuery) -> Result<Json<Vec<TenantView>>, HttpError> {
    body::query(query, &[])?;
    let tenants = state.store().list_tenants().await?;
    Ok(Json(tenants.iter().map(TenantView::from).collect()))
}

async fn existing(state: &AdminState, id: &TenantId) -> Result<Tenant, HttpError> {
    state
        .store()
        .tenant(id)
        .get()
        .await?
        .ok_or_else(|| HttpError::not_found(format!("tenant {id} not found")))
}

pub(super) async fn get(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    query: RawQuery,
) -> Result<Json<TenantView>, HttpError> {
    let id = tenant_id(&id)?;
    body::query(query, &[])?;
    Ok(Json(TenantView::from(&existing(&state, &id).await?)))
}

pub(super) async fn update(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<TenantView>, HttpError> {
    let id = tenant_id(&id)?;
    let body: UpdateTenant = body::json(&headers, body, state.inner.body_limit).await?;
    if body.id != Patch::Absent {
        return Err(HttpError::bad_request(
            "id cannot be changed; create a new tenant instead",
        ));
    }
    let mut update = TenantUpdate::default();
    let mut fields = Vec::new();
    match &body.license_tier {
        Patch::Absent => {}
        Patch::Null => {
            return Err(HttpError::bad_request(
                "license_tier cannot be null: use \"shared\" or \"dedicated\"",
            ))
        }
        Patch::Value(text) => {
            update.license_tier = Some(tier(text)?);
            fields.push("license_tier");
        }
    }
    let mut token_action = "unchanged";
    match &body.bot_token {
        Patch::Absent => {}
        Patch::Null => {
            update.bot_token = Some(None);
            token_action = "removed";
        }
        Patch::Value(token) => {
            let sealed = state.seal(&id, token)?;
            token_action = if sealed.is_some() { "set" } else { "removed" };
            update.bot_token = Some(sealed);
        }
    }
    if update.bot_token.is_some() {
        fields.push("bot_token");
    }
    match &body.guild_ids {
        Patch::Absent => {}
        Patch::Null => update.guild_ids = Some(Vec::new()),
        Patch::Value(ids) => update.guild_ids = Some(guilds(ids)?),
    }
    if update.guild_ids.is_some() {
        fields.push("guild_ids");
    }
    match &body.dm_role_id {
        Patch::Absent => {}
        Patch::Null => update.dm_role_id = Some(None),
        Patch::Value(text) => update.dm_role_id = Some(role(text)?),
    }
    if update.dm_role_id.is_some() {
        fields.push("dm_role_id");
    }
    match &body.campaign_id {
        Patch::Absent => {}
        Patch::Null => update.campaign_id = Some(None),
        Patch::Value(text) => update.campaign_id = Some(campaign(text)?),
    }
    if update.campaign_id.is_some() {
        fields.push("campaign_id");
    }
    match body.monthly_session_hours {
        Patch::Absent => {}
        Patch::Null => {
            return Err(HttpError::bad_request(
                "monthly_session_hours cannot be null: use 0 for unlimited",
            ))
        }
        Patch::Value(value) => {
            update.monthly_session_hours = Some(hours(value)?);
            fields.push("monthly_session_hours");
        }
    }
    let before = existing(&state, &id).await?;
    let Some(tenant) = state.store().tenant(&id).update(&update).await? else {
        return Err(HttpError::not_found(format!("tenant {id} not found")));
    };
    audit("tenant.update", &id, &fields, token_action);
    // Bots: a new token reconnects, a removed one disconnects, new guilds or
    // DM role re-register the commands.
    match &update.bot_token {
        Some(Some(_)) => {
            if let Some(spec) = state.bot_spec(&tenant).await {
                state.inner.bots.connect(spec);
            }
        }
        Some(None) if before.has_bot_token => state.inner.bots.disconnect(&id),
        _ => {
            let changed = before.guild_ids != tenant.guild_ids || before.dm_role_id != tenant.dm_role_id;
            if changed && tenant.has_bot_token {
                if let Some(spec) = state.bot_spec(&tenant).await {
                    state.inner.bots.update(spec);
                }
            }
        }
    }
    Ok(Json(TenantView::from(&tenant)))
}

pub(super) async fn delete(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    query: RawQuery,
) -> Result<StatusCode, HttpError> {
    let id = tenant_id(&id)?;
    body::query(query, &[])?;
    let tenant = existing(&state, &id).await?;
    let live = state.store().tenant(&id).live_sessions().await?;
    if !state.store().tenant(&id).delete().await? {
        return Err(HttpError::not_found(format!("tenant {id} not found")));
    }
    audit(
        "tenant.delete",
        &id,
        &[],
        if tenant.has_bot_token { "removed" } else { "none" },
    );
    state.inner.bots.disconnect(&id);
    // Its sessions are gone from the store; stop them on their workers in the background.
    if !live.is_empty() {
        let workers = state.inner.orchestrator.workers().clone();
        tokio::spawn(async move {
            for session in live {
                if let Some(worker) = &session.worker_addr {
                    if let Err(error) = workers
                        .stop_session(worker, session.id.as_str(), "tenant deleted")
                        .await
                    {
                        tracing::warn!(session_id = %session.id, %error, "stopping a deleted tenant's session failed");
                    }
                }
            }
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn sessions(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    query: RawQuery,
) -> Result<Json<Vec<SessionView>>, HttpError> {
    let id = tenant_id(&id)?;
    let query = body::query(query, &["limit"])?;
    let limit = match query.get("limit") {
        None => 100,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| HttpError::bad_request("limit must be a whole number from 1 to 1000"))?,
    };
    existing(&state, &id).await?;
    let now = state.store().clock().now_ms();
    let sessions = state.store().tenant(&id).sessions(limit).await?;
    Ok(Json(sessions.iter().map(|s| SessionView::new(s, now)).collect()))
}

#[derive(Debug, Serialize)]
pub(super) struct UsageView {
    tenant_id: String,
    period: String,
    session_hours: f64,
    session_seconds: f64,
    sessions: i64,
    monthly_session_hours: f64,
    remaining_hours: Option<f64>,
    quota_reached: bool,
}

pub(super) async fn usage(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    query: RawQuery,
) -> Result<Json<UsageView>, HttpError> {
    let id = tenant_id(&id)?;
    let query: BTreeMap<String, String> = body::query(query, &["period"])?;
    let period = match query.get("period") {
        Some(text) => text
            .parse::<Period>()
            .map_err(|e| HttpError::bad_request(e.to_string()))?,
        None => Period::containing(state.store().clock().now_ms()),
    };
    let tenant = existing(&state, &id).await?;
    let usage = state.store().tenant(&id).usage(period).await?;
    let quota = tenant.monthly_session_hours;
    let used = usage.session_hours();
    Ok(Json(UsageView {
        tenant_id: id.to_string(),
        period: period.to_string(),
        session_hours: used,
        session_seconds: usage.session_ms as f64 / 1000.0,
        sessions: usage.sessions,
        monthly_session_hours: quota,
        remaining_hours: (quota > 0.0).then(|| (quota - used).max(0.0)),
        quota_reached: quota > 0.0 && used >= quota,
    }))
}

#[derive(Debug, Serialize)]
pub(super) struct BotView {
    tenant_id: String,
    has_bot_token: bool,
    state: BotState,
    message: Option<String>,
    guild_count: u32,
}

pub(super) async fn bot(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    query: RawQuery,
) -> Result<Json<BotView>, HttpError> {
    let id = tenant_id(&id)?;
    body::query(query, &[])?;
    let tenant = existing(&state, &id).await?;
    let status = if tenant.has_bot_token {
        state.inner.bots.status(&id)
    } else {
        BotStatus::disconnected("no bot token configured")
    };
    Ok(Json(BotView {
        tenant_id: id.to_string(),
        has_bot_token: tenant.has_bot_token,
        state: status.state,
        message: status.message,
        guild_count: status.guild_count,
    }))
}
