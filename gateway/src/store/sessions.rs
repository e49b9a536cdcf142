//! Sessions (SPEC §3) and monthly usage: creation under the license rules
//! (partial unique indexes) and the quota (same transaction), state
//! transitions, heartbeats, and usage recorded when a session ends.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::tenants::{for_update, LicenseTier, UnknownTier};
use super::{with_pool, with_tx, Ctx, Store, StoreError, TenantStore};
use crate::ids::{CampaignId, DiscordId, SessionId, TenantId};
use crate::time::Period;

/// Milliseconds per hour.
pub(crate) const MS_PER_HOUR: f64 = 3_600_000.0;

/// Lifecycle state of a session: `pending` → `active` → `ended` (terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Created and dispatched; the worker is still starting it.
    Pending,
    /// Running on a worker.
    Active,
    /// Finished; never changes again.
    Ended,
}

impl SessionState {
    /// `pending`, `active` or `ended`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Ended => "ended",
        }
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SessionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "ended" => Ok(Self::Ended),
            other => Err(format!("unknown session state {other:?}")),
        }
    }
}

/// A voice session as recorded by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Session id.
    pub id: SessionId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Campaign whose NPCs and knowledge it uses.
    pub campaign_id: Option<CampaignId>,
    /// Discord guild.
    pub guild_id: DiscordId,
    /// Voice channel.
    pub channel_id: DiscordId,
    /// The tenant's license tier when the session was created.
    pub license_tier: LicenseTier,
    /// Discord user who started it.
    pub started_by: DiscordId,
    /// Lifecycle state.
    pub state: SessionState,
    /// Address of the worker running it (`in-process` in full mode).
    pub worker_addr: Option<String>,
    /// Id the worker reports in heartbeats.
    pub worker_id: Option<String>,
    /// When it was requested, unix ms.
    pub started_at: i64,
    /// When the worker reported it running, unix ms.
    pub activated_at: Option<i64>,
    /// When it ended, unix ms.
    pub ended_at: Option<i64>,
    /// Last heartbeat from the worker, unix ms.
    pub last_heartbeat: Option<i64>,
    /// Why it ended (e.g. `stopped by 1234`, `zombie: no heartbeat for 30s`).
    pub end_reason: Option<String>,
    /// The error that ended or troubled it, if any.
    pub error: Option<String>,
    /// Voice time recorded in usage when it ended, ms.
    pub billed_ms: i64,
}

impl Session {
    /// Whether the session is not ended.
    pub fn is_live(&self) -> bool {
        self.state != SessionState::Ended
    }

    /// How long the session has been (or was) running at `now_ms`: from
    /// activation (or request, if never active) to the end (or `now_ms`).
    pub fn duration_ms(&self, now_ms: i64) -> i64 {
        let from = self.activated_at.unwrap_or(self.started_at);
        (self.ended_at.unwrap_or(now_ms) - from).max(0)
    }
}

/// A session to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Its id (normally [`SessionId::random`]).
    pub id: SessionId,
    /// The campaign it uses.
    pub campaign_id: Option<CampaignId>,
    /// Discord guild.
    pub guild_id: DiscordId,
    /// Voice channel.
    pub channel_id: DiscordId,
    /// Who started it.
    pub started_by: DiscordId,
}

/// Which license rule (SPEC §3) refused a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveRule {
    /// At most one non-ended session per guild.
    OnePerGuild,
    /// Shared tier: at most one non-ended session per tenant.
    OnePerSharedTenant,
    /// Dedicated tier: at most one non-ended session per (tenant, guild).
    OnePerDedicatedGuild,
}

impl LiveRule {
    /// Recognises the rule from a unique-violation hint (PostgreSQL index
    /// name or SQLite column list).
    fn from_violation(hint: &str) -> Option<Self> {
        if hint.contains("one_live_per_dedicated_tenant_guild")
            || hint.contains("sessions.tenant_id, sessions.guild_id")
        {
            Some(Self::OnePerDedicatedGuild)
        } else if hint.contains("one_live_per_shared_tenant") || hint.ends_with("sessions.tenant_id") {
            Some(Self::OnePerSharedTenant)
        } else if hint.contains("one_live_per_guild") || hint.ends_with("sessions.guild_id") {
            Some(Self::OnePerGuild)
        } else {
            None
        }
    }
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateSessionError {
    /// The tenant does not exist.
    #[error("tenant not found")]
    TenantNotFound,
    /// A license rule forbids another live session.
    #[error("{}", already_live_message(*.rule, .existing.as_deref()))]
    AlreadyLive {
        /// The rule that refused it.
        rule: LiveRule,
        /// The tenant's session that holds the slot, when it is the
        /// tenant's own (another tenant's session is never revealed).
        existing: Option<Box<Session>>,
    },
    /// The monthly quota is used up.
    #[error("monthly quota reached: {used_hours:.2} of {quota_hours} session hours used in {period}")]
    QuotaExceeded {
        /// The month.
        period: Period,
        /// Hours recorded this month.
        used_hours: f64,
        /// The tenant's quota.
        quota_hours: f64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn already_live_message(rule: LiveRule, existing: Option<&Session>) -> String {
    let id = existing.map_or_else(String::new, |s| format!(" ({})", s.id));
    match rule {
        LiveRule::OnePerGuild => format!("this guild already has a running session{id}"),
        LiveRule::OnePerSharedTenant => format!(
            "the shared license allows one session at a time and one is already running{}",
            existing.map_or_else(String::new, |s| format!(" ({} in guild {})", s.id, s.guild_id))
        ),
        LiveRule::OnePerDedicatedGuild => format!("this guild already has a running session of this tenant{id}"),
    }
}

/// Under which condition [`TenantStore::end_session`] ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCondition {
    /// Whatever its state (unless already ended).
    Always,
    /// Only an active session whose last sign of life (heartbeat, or
    /// activation) is older than this instant; usage is billed up to that
    /// last sign of life.
    ZombieBefore(i64),
    /// Only a pending session requested before this instant.
    PendingBefore(i64),
}

/// How to end a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndSession {
    /// Why it ends, recorded as `end_reason`.
    pub reason: String,
    /// An error to record (kept if already set and this is `None`).
    pub error: Option<String>,
    /// When to end it.
    pub condition: EndCondition,
}

impl EndSession {
    /// End unconditionally for `reason`.
    pub fn because(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            error: None,
            condition: EndCondition::Always,
        }
    }

    /// Records `error` too.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }
}

/// The outcome of a state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The session changed; this is its new state.
    Changed(Session),
    /// Nothing to do (already in that state, already ended, or the
    /// condition did not hold); this is the session as it is.
    Unchanged(Session),
}

impl Transition {
    /// The session, changed or not.
    pub fn session(&self) -> &Session {
        match self {
            Self::Changed(s) | Self::Unchanged(s) => s,
        }
    }

    /// The session, changed or not.
    pub fn into_session(self) -> Session {
        match self {
            Self::Changed(s) | Self::Unchanged(s) => s,
        }
    }

    /// Whether the session changed.
    pub fn changed(&self) -> bool {
        matches!(self, Self::Changed(_))
    }
}

/// A tenant's usage in one calendar month.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// The month.
    pub period: Period,
    /// Voice time recorded, ms.
    pub session_ms: i64,
    /// Sessions that ended after running, counted in the month they started.
    pub sessions: i64,
}

impl Usage {
    /// Voice time recorded, hours.
    pub fn session_hours(&self) -> f64 {
        self.session_ms as f64 / MS_PER_HOUR
    }
}

/// Why the cleanup loop picked a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleKind {
    /// Active without a heartbeat for longer than the zombie timeout.
    Zombie,
    /// Pending for longer than the dispatch timeout.
    StalePending,
}

/// A session the cleanup loop should end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleSession {
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// The session.
    pub session_id: SessionId,
    /// Why it is stale.
    pub kind: StaleKind,
    /// The worker it was placed on, to stop it there too.
    pub worker_addr: Option<String>,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    tenant_id: String,
    campaign_id: Option<String>,
    guild_id: String,
    channel_id: String,
    license_tier: String,
    started_by: String,
    state: String,
    worker_addr: Option<String>,
    worker_id: Option<String>,
    started_at: i64,
    activated_at: Option<i64>,
    ended_at: Option<i64>,
    last_heartbeat: Option<i64>,
    end_reason: Option<String>,
    error: Option<String>,
    billed_ms: i64,
}

pub(crate) const SESSION_COLUMNS: &str = "id, tenant_id, campaign_id, guild_id, channel_id, license_tier, \
     started_by, state, worker_addr, worker_id, started_at, activated_at, ended_at, last_heartbeat, \
     end_reason, error, billed_ms";

fn corrupt(what: &'static str, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        message: message.to_string(),
    }
}

impl SessionRow {
    fn into_session(self) -> Result<Session, StoreError> {
        Ok(Session {
            id: SessionId::parse(&self.id).map_err(|e| corrupt("session id", e))?,
            tenant_id: TenantId::parse(&self.tenant_id).map_err(|e| corrupt("session tenant_id", e))?,
            campaign_id: self
                .campaign_id
                .map(|c| CampaignId::parse(&c))
                .transpose()
                .map_err(|e| corrupt("session campaign_id", e))?,
            guild_id: DiscordId::parse(&self.guild_id).map_err(|e| corrupt("session guild_id", e))?,
            channel_id: DiscordId::parse(&self.channel_id).map_err(|e| corrupt("session channel_id", e))?,
            license_tier: self
                .license_tier
                .parse()
                .map_err(|e: UnknownTier| corrupt("session license_tier", e))?,
            started_by: DiscordId::parse(&self.started_by).map_err(|e| corrupt("session started_by", e))?,
            state: self.state.parse().map_err(|e: String| corrupt("session state", e))?,
            worker_addr: self.worker_addr,
            worker_id: self.worker_id,
            started_at: self.started_at,
            activated_at: self.activated_at,
            ended_at: self.ended_at,
            last_heartbeat: self.last_heartbeat,
            end_reason: self.end_reason,
            error: self.error,
            billed_ms: self.billed_ms,
        })
    }
}

fn sessions_from(rows: Vec<SessionRow>) -> Result<Vec<Session>, StoreError> {
    rows.into_iter().map(SessionRow::into_session).collect()
}

impl Store {
    /// The tenant owning `session`, if the session exists. Workers report by
    /// session id only; continue through [`Store::tenant`].
    pub async fn session_owner(&self, session: &SessionId) -> Result<Option<TenantId>, StoreError> {
        let owner: Option<String> = with_pool!(self.db(), |pool| {
            sqlx::query_scalar("SELECT tenant_id FROM sessions WHERE id = $1")
                .bind(session.as_str())
                .fetch_optional(pool)
                .await
        })
        .ctx("finding a session's tenant")?;
        owner
            .map(|id| TenantId::parse(&id).map_err(|e| corrupt("session tenant_id", e)))
            .transpose()
    }

    /// Sessions of every tenant that the cleanup loop should end: active
    /// ones whose last sign of life is before `zombie_before`, pending ones
    /// requested before `pending_before`.
    pub async fn stale_sessions(
        &self,
        zombie_before: i64,
        pending_before: i64,
    ) -> Result<Vec<StaleSession>, StoreError> {
        let rows: Vec<(String, String, String, Option<String>)> = with_pool!(self.db(), |pool| {
            sqlx::query_as(
                "SELECT tenant_id, id, state, worker_addr FROM sessions \
                 WHERE (state = 'active' AND COALESCE(last_heartbeat, activated_at, started_at) < $1) \
                    OR (state = 'pending' AND started_at < $2) \
                 ORDER BY started_at",
            )
            .bind(zombie_before)
            .bind(pending_before)
            .fetch_all(pool)
            .await
        })
        .ctx("finding stale sessions")?;
        rows.into_iter()
            .map(|(tenant, id, state, worker_addr)| {
                Ok(StaleSession {
                    tenant_id: TenantId::parse(&tenant).map_err(|e| corrupt("session tenant_id", e))?,
                    session_id: SessionId::parse(&id).map_err(|e| corrupt("session id", e))?,
                    kind: if state == "pending" {
                        StaleKind::StalePending
                    } else {
                        StaleKind::Zombie
                    },
                    worker_addr,
                })
            })
            .collect()
    }

    /// Number of live (pending or active) sessions across all tenants.
    pub async fn live_session_count(&self) -> Result<i64, StoreError> {
        with_pool!(self.db(), |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE state <> 'ended'")
                .fetch_one(pool)
                .await
        })
        .ctx("counting live sessions")
    }
}

impl TenantStore {
    /// Creates a `pending` session. The license rules are enforced by the
    /// database's unique indexes and the monthly quota is checked in the same
    /// transaction, so concurrent starts cannot both pass.
    pub async fn create_session(&self, new: &NewSession) -> Result<Session, CreateSessionError> {
        match self.try_create_session(new).await {
            Err(CreateSessionError::AlreadyLive { rule, .. }) => {
                // Outside the failed transaction: name the tenant's own session that holds the slot.
                let existing = match rule {
                    LiveRule::OnePerSharedTenant => self.live_sessions().await?.into_iter().next(),
                    LiveRule::OnePerGuild | LiveRule::OnePerDedicatedGuild => {
                        self.live_session_in_guild(&new.guild_id).await?
                    }
                };
                Err(CreateSessionError::AlreadyLive {
                    rule,
                    existing: existing.map(Box::new),
                })
            }
            other => other,
        }
    }

    async fn try_create_session(&self, new: &NewSession) -> Result<Session, CreateSessionError> {
        let now = self.now_ms();
        let period = Period::containing(now);
        let lock_tenant = format!(
            "SELECT monthly_session_hours FROM tenants WHERE id = $1{}",
            for_update(self.backend())
        );
        let insert = format!(
            "INSERT INTO sessions (id, tenant_id, campaign_id, guild_id, channel_id, license_tier, started_by, state, started_at) \
             SELECT $1, id, $3, $4, $5, license_tier, $6, 'pending', $7 FROM tenants WHERE id = $2 \
             RETURNING {SESSION_COLUMNS}"
        );
        let row: SessionRow = with_tx!(&self.db, "creating a session", |tx, backend| {
            let quota: Option<f64> = sqlx::query_scalar(&lock_tenant)
                .bind(self.tid())
                .fetch_optional(&mut *tx)
                .await
                .ctx("creating a session")?;
            let Some(quota_hours) = quota else {
                return Err(CreateSessionError::TenantNotFound);
            };
            if quota_hours > 0.0 {
                let used: Option<i64> =
                    sqlx::query_scalar("SELECT session_ms FROM usage WHERE tenant_id = $1 AND period = $2")
                        .bind(self.tid())
                        .bind(period.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .ctx("checking the monthly quota")?;
                let used_ms = used.unwrap_or(0);
                if used_ms as f64 >= quota_hours * MS_PER_HOUR {
                    return Err(CreateSessionError::QuotaExceeded {
                        period,
                        used_hours: used_ms as f64 / MS_PER_HOUR,
                        quota_hours,
                    });
                }
            }
            let inserted = sqlx::query_as::<_, SessionRow>(&insert)
                .bind(new.id.as_str())
                .bind(self.tid())
                .bind(new.campaign_id.as_ref().map(|c| c.as_str()))
                .bind(new.guild_id.as_str())
                .bind(new.channel_id.as_str())
                .bind(new.started_by.as_str())
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .ctx("creating a session");
            match inserted {
                Ok(row) => row,
                // Returning drops (rolls back) the transaction.
                Err(error) => {
                    return Err(
                        match error.unique_violation().as_deref().and_then(LiveRule::from_violation) {
                            Some(rule) => CreateSessionError::AlreadyLive { rule, existing: None },
                            None => error.into(),
                        },
                    )
                }
            }
        });
        Ok(row.into_session()?)
    }

    /// The session, if it is this tenant's.
    pub async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND id = $2");
        let row: Option<SessionRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, SessionRow>(&sql)
                .bind(self.tid())
                .bind(id.as_str())
                .fetch_optional(pool)
                .await
        })
        .ctx("reading a session")?;
        row.map(SessionRow::into_session).transpose()
    }

    /// Up to `limit` sessions: live ones first (active, then pending), then
    /// the most recent.
    pub async fn sessions(&self, limit: u32) -> Result<Vec<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 \
             ORDER BY CASE state WHEN 'active' THEN 0 WHEN 'pending' THEN 1 ELSE 2 END, started_at DESC, id \
             LIMIT $2"
        );
        let rows: Vec<SessionRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, SessionRow>(&sql)
                .bind(self.tid())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .ctx("listing sessions")?;
        sessions_from(rows)
    }

    /// The tenant's live (pending or active) sessions, oldest first.
    pub async fn live_sessions(&self) -> Result<Vec<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND state <> 'ended' ORDER BY started_at, id"
        );
        let rows: Vec<SessionRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, SessionRow>(&sql)
                .bind(self.tid())
                .fetch_all(pool)
                .await
        })
        .ctx("listing live sessions")?;
        sessions_from(rows)
    }

    /// The tenant's live session in `guild`, if any.
    pub async fn live_session_in_guild(&self, guild: &DiscordId) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND guild_id = $2 AND state <> 'ended'"
        );
        let row: Option<SessionRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, SessionRow>(&sql)
                .bind(self.tid())
                .bind(guild.as_str())
                .fetch_optional(pool)
                .await
        })
        .ctx("finding a guild's session")?;
        row.map(SessionRow::into_session).transpose()
    }

    /// The most recently requested session (in `guild`, if given), live or
    /// ended; `ended_only` skips live ones (e.g. "the previous session").
    pub async fn latest_session(
        &self,
        guild: Option<&DiscordId>,
        ended_only: bool,
    ) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND ($2 = '' OR guild_id = $2) \
             AND ($3 = 0 OR state = 'ended') ORDER BY started_at DESC, id LIMIT 1"
        );
        let row: Option<SessionRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, SessionRow>(&sql)
                .bind(self.tid())
                .bind(guild.map_or("", |g| g.as_str()))
                .bind(i64::from(ended_only))
                .fetch_optional(pool)
                .await
        })
        .ctx("finding the latest session")?;
        row.map(SessionRow::into_session).transpose()
    }

    /// Records where the session runs.
    pub async fn set_session_worker(
        &self,
        id: &SessionId,
        worker_addr: &str,
        worker_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(&self.db, |pool| {
            sqlx::query(
                "UPDATE sessions SET worker_addr = $3, worker_id = COALESCE($4, worker_id) \
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(self.tid())
            .bind(id.as_str())
            .bind(worker_addr)
            .bind(worker_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .ctx("recording a session's worker")?;
        Ok(done > 0)
    }

    /// `pending` → `active` (starts the heartbeat clock). `None` if the
    /// session is unknown; [`Transition::Unchanged`] if it was already
    /// active or has ended.
    pub async fn activate_session(
        &self,
        id: &SessionId,
        worker_id: Option<&str>,
    ) -> Result<Option<Transition>, StoreError> {
        let now = self.now_ms();
        let select = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND id = $2{}",
            for_update(self.backend())
        );
        let update = format!(
            "UPDATE sessions SET state = 'active', activated_at = $3, last_heartbeat = $3, worker_id = COALESCE($4, worker_id) \
             WHERE tenant_id = $1 AND id = $2 AND state = 'pending' RETURNING {SESSION_COLUMNS}"
        );
        let outcome: Option<(bool, SessionRow)> = with_tx!(&self.db, "activating a session", |tx, backend| {
            let current: Option<SessionRow> = sqlx::query_as::<_, SessionRow>(&select)
                .bind(self.tid())
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .ctx("activating a session")?;
            match current {
                Some(row) if row.state == "pending" => {
                    let row = sqlx::query_as::<_, SessionRow>(&update)
                        .bind(self.tid())
                        .bind(id.as_str())
                        .bind(now)
                        .bind(worker_id)
                        .fetch_one(&mut *tx)
                        .await
                        .ctx("activating a session")?;
                    Some((true, row))
                }
                Some(row) => Some((false, row)),
                None => None,
            }
        });
        outcome
            .map(|(changed, row)| {
                let session = row.into_session()?;
                Ok(if changed {
                    Transition::Changed(session)
                } else {
                    Transition::Unchanged(session)
                })
            })
            .transpose()
    }

    /// Records a heartbeat: the session's state afterwards, or `None` if it
    /// is unknown. A heartbeat for a pending session activates it (the
    /// worker runs it); one for an ended session changes nothing.
    pub async fn record_heartbeat(
        &self,
        id: &SessionId,
        worker_id: Option<&str>,
    ) -> Result<Option<SessionState>, StoreError> {
        let now = self.now_ms();
        let state: Option<String> = with_pool!(&self.db, |pool| {
            sqlx::query_scalar(
                "UPDATE sessions SET last_heartbeat = $3, worker_id = COALESCE($4, worker_id) \
                 WHERE tenant_id = $1 AND id = $2 AND state = 'active' RETURNING state",
            )
            .bind(self.tid())
            .bind(id.as_str())
            .bind(now)
            .bind(worker_id)
            .fetch_optional(pool)
            .await
        })
        .ctx("recording a heartbeat")?;
        if state.is_some() {
            return Ok(Some(SessionState::Active));
        }
        match self.session(id).await? {
            None => Ok(None),
            Some(session) if session.state == SessionState::Pending => {
                Ok(self.activate_session(id, worker_id).await?.map(|t| t.session().state))
            }
            Some(session) => Ok(Some(session.state)),
        }
    }

    /// Ends the session if `end.condition` holds and records its voice time
    /// in the monthly usage, in one transaction. Ending an ended session is
    /// a no-op ([`Transition::Unchanged`]); `None` if the session is unknown.
    pub async fn end_session(&self, id: &SessionId, end: &EndSession) -> Result<Option<Transition>, StoreError> {
        let now = self.now_ms();
        let lock = for_update(self.backend());
        let lock_tenant = format!("SELECT id FROM tenants WHERE id = $1{lock}");
        let select = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant_id = $1 AND id = $2{lock}");
        let update = format!(
            "UPDATE sessions SET state = 'ended', ended_at = $3, end_reason = $4, error = COALESCE($5, error), billed_ms = $6 \
             WHERE tenant_id = $1 AND id = $2 AND state <> 'ended' RETURNING {SESSION_COLUMNS}"
        );
        let outcome: Option<(bool, SessionRow)> = with_tx!(&self.db, "ending a session", |tx, backend| {
            // Same lock order as create_session: tenant row first.
            let _tenant: Option<String> = sqlx::query_scalar(&lock_tenant)
                .bind(self.tid())
                .fetch_optional(&mut *tx)
                .await
                .ctx("ending a session")?;
            let current: Option<SessionRow> = sqlx::query_as::<_, SessionRow>(&select)
                .bind(self.tid())
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .ctx("ending a session")?;
            match current {
                None => None,
                Some(row) => {
                    let last_sign = row.last_heartbeat.or(row.activated_at).unwrap_or(row.started_at);
                    let applies = match end.condition {
                        _ if row.state == "ended" => false,
                        EndCondition::Always => true,
                        EndCondition::ZombieBefore(cutoff) => row.state == "active" && last_sign < cutoff,
                        EndCondition::PendingBefore(cutoff) => row.state == "pending" && row.started_at < cutoff,
                    };
                    if applies {
                        // Voice time runs from activation to the end; a zombie is
                        // billed up to its last sign of life, not to its discovery.
                        let billed_until = match end.condition {
                            EndCondition::ZombieBefore(_) => last_sign.min(now),
                            _ => now,
                        };
                        // A session that ran counts once, even with no billable time.
                        let parts = match row.activated_at {
                            Some(from) => {
                                let parts = Period::split(from, billed_until);
                                if parts.is_empty() {
                                    vec![(Period::containing(from), 0)]
                                } else {
                                    parts
                                }
                            }
                            None => Vec::new(),
                        };
                        let billed: i64 = parts.iter().map(|(_, ms)| ms).sum();
                        let ended = sqlx::query_as::<_, SessionRow>(&update)
                            .bind(self.tid())
                            .bind(id.as_str())
                            .bind(now)
                            .bind(&end.reason)
                            .bind(end.error.as_deref())
                            .bind(billed)
                            .fetch_one(&mut *tx)
                            .await
                            .ctx("ending a session")?;
                        for (index, (period, ms)) in parts.iter().enumerate() {
                            sqlx::query(
                                "INSERT INTO usage (tenant_id, period, session_ms, sessions) VALUES ($1, $2, $3, $4) \
                                 ON CONFLICT (tenant_id, period) DO UPDATE \
                                 SET session_ms = usage.session_ms + excluded.session_ms, sessions = usage.sessions + excluded.sessions",
                            )
                            .bind(self.tid())
                            .bind(period.to_string())
                            .bind(*ms)
                            .bind(i64::from(index == 0))
                            .execute(&mut *tx)
                            .await
                            .ctx("recording usage")?;
                        }
                        Some((true, ended))
                    } else {
                        Some((false, row))
                    }
                }
            }
        });
        outcome
            .map(|(changed, row)| {
                let session = row.into_session()?;
                Ok(if changed {
                    Transition::Changed(session)
                } else {
                    Transition::Unchanged(session)
                })
            })
            .transpose()
    }

    /// The tenant's usage in `period` (zero when nothing was recorded).
    pub async fn usage(&self, period: Period) -> Result<Usage, StoreError> {
        let row: Option<(i64, i64)> = with_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT session_ms, sessions FROM usage WHERE tenant_id = $1 AND period = $2")
                .bind(self.tid())
                .bind(period.to_string())
                .fetch_optional(pool)
                .await
        })
        .ctx("reading usage")?;
        let (session_ms, sessions) = row.unwrap_or((0, 0));
        Ok(Usage {
            period,
            session_ms,
            sessions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_from_both_backends() {
        assert_eq!(
            LiveRule::from_violation("sessions_one_live_per_guild"),
            Some(LiveRule::OnePerGuild)
        );
        assert_eq!(
            LiveRule::from_violation("UNIQUE constraint failed: sessions.guild_id"),
            Some(LiveRule::OnePerGuild)
        );
        assert_eq!(
            LiveRule::from_violation("UNIQUE constraint failed: sessions.tenant_id"),
            Some(LiveRule::OnePerSharedTenant)
        );
        assert_eq!(
            LiveRule::from_violation("sessions_one_live_per_shared_tenant"),
            Some(LiveRule::OnePerSharedTenant)
        );
        assert_eq!(
            LiveRule::from_violation("UNIQUE constraint failed: sessions.tenant_id, sessions.guild_id"),
            Some(LiveRule::OnePerDedicatedGuild)
        );
        assert_eq!(LiveRule::from_violation("sessions_pkey"), None);
    }
}
