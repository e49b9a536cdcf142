//! Sessions as the command handlers see them (SPEC §3 `SessionController`)
//! and the bot's voice connection they need ([`VoiceConnector`]).
//!
//! [`OrchestratedSessions`] implements the controller over an
//! [`Orchestrator`]: in gateway mode with the persistent store and the gRPC
//! worker client (placement, breakers); in full mode with the embedded store
//! and the in-process worker. Handlers cannot tell which.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use glyphoxa_proto::v1::VoiceCredentials;

use crate::ids::{CampaignId, DiscordId, SessionId, TenantId};
use crate::orchestrator::{Orchestrator, OrchestratorError, StartRequest};
use crate::store::{Session, SessionState};

/// A session as commands report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Its id.
    pub id: SessionId,
    /// Its campaign (whose NPCs it voices).
    pub campaign_id: Option<CampaignId>,
    /// Campaign name (`None` if the campaign is gone).
    pub campaign: Option<String>,
    /// Guild.
    pub guild_id: DiscordId,
    /// Voice channel.
    pub channel_id: DiscordId,
    /// Who started it.
    pub started_by: DiscordId,
    /// Lifecycle state.
    pub state: SessionState,
    /// When it was requested, unix ms.
    pub started_at: i64,
    /// How long it ran (or has run so far), ms.
    pub duration_ms: i64,
    /// The worker running it, for NPC controls.
    pub worker: Option<String>,
}

/// Why a session could not be started or stopped; the message is for users.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The guild already has a live session.
    #[error("A session is already running in this server (id `{0}`).")]
    AlreadyActive(SessionId),
    /// The guild has no live session.
    #[error("No active session in this server. Start one with `/session start`.")]
    NoActiveSession,
    /// Joining the voice channel failed.
    #[error("Could not join the voice channel: {0}")]
    Voice(String),
    /// The orchestrator refused or failed (quota, license, worker
    /// unavailable, store).
    #[error("{0}")]
    Orchestrator(#[from] OrchestratorError),
}

/// The bot's voice side: who sits in which channel (the voice-state cache),
/// joining and leaving (gateway opcode 4) with credential capture.
#[async_trait]
pub trait VoiceConnector: Send + Sync {
    /// The voice channel `user` is in within `guild`, per the cache.
    fn channel_of(&self, guild: &DiscordId, user: &DiscordId) -> Option<DiscordId>;

    /// Joins `channel` and returns the credentials the worker needs (bot
    /// user id, voice session id, token, endpoint); fails after a timeout.
    async fn join(&self, guild: &DiscordId, channel: &DiscordId) -> Result<VoiceCredentials, String>;

    /// Leaves the guild's voice channel (harmless when not in one).
    async fn leave(&self, guild: &DiscordId);

    /// Whether the bot is in (or joining) a voice channel of `guild`.
    fn in_voice(&self, guild: &DiscordId) -> bool;
}

/// Why a session is stopped (recorded as the session's end reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause<'a> {
    /// `/session stop` by this user.
    Command(&'a DiscordId),
    /// The bot was removed from the voice channel (kicked, or the channel
    /// was deleted).
    RemovedFromVoice,
}

impl StopCause<'_> {
    /// The end reason stored with the session.
    pub fn reason(&self) -> String {
        match self {
            StopCause::Command(user) => format!("stopped by {user}"),
            StopCause::RemovedFromVoice => "the bot was removed from the voice channel".to_string(),
        }
    }
}

/// Starts and stops the sessions of one tenant's guilds.
#[async_trait]
pub trait SessionController: Send + Sync {
    /// Joins `channel`, starts a session there for `user`; nothing is left
    /// half-started on failure.
    async fn start(
        &self,
        guild: &DiscordId,
        channel: &DiscordId,
        user: &DiscordId,
    ) -> Result<SessionInfo, SessionError>;

    /// Stops the guild's live session for `cause` and leaves voice.
    async fn stop(&self, guild: &DiscordId, cause: StopCause<'_>) -> Result<SessionInfo, SessionError>;

    /// The guild's live session, if any.
    async fn info(&self, guild: &DiscordId) -> Result<Option<SessionInfo>, SessionError>;

    /// Whether the guild has a live session.
    async fn is_active(&self, guild: &DiscordId) -> Result<bool, SessionError> {
        Ok(self.info(guild).await?.is_some())
    }

    /// A session of this tenant by id (any state).
    async fn session(&self, id: &SessionId) -> Result<Option<SessionInfo>, SessionError>;

    /// The guild's most recent session (any state), optionally one ended
    /// before the live one.
    async fn latest(&self, guild: &DiscordId, ended_only: bool) -> Result<Option<SessionInfo>, SessionError>;
}

/// [`SessionController`] over an [`Orchestrator`] and the tenant's bot voice.
pub struct OrchestratedSessions {
    tenant: TenantId,
    orchestrator: Arc<Orchestrator>,
    voice: Arc<dyn VoiceConnector>,
    /// One start or stop at a time per guild, so a refused second start
    /// never makes the bot leave the channel the first one joined.
    guild_locks: Mutex<HashMap<DiscordId, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for OrchestratedSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratedSessions")
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl OrchestratedSessions {
    /// The sessions of `tenant`.
    pub fn new(tenant: TenantId, orchestrator: Arc<Orchestrator>, voice: Arc<dyn VoiceConnector>) -> Self {
        Self {
            tenant,
            orchestrator,
            voice,
            guild_locks: Mutex::new(HashMap::new()),
        }
    }

    fn guild_lock(&self, guild: &DiscordId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.guild_locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(guild.clone()).or_default())
    }

    /// A session of `guild` ended without `/session stop` (its worker, the
    /// cleanup, the admin API): leaves the voice channel if the bot is still
    /// in one there and no session is live. Runs under the guild's lock, so
    /// it never races a start or a stop; says whether it left.
    pub async fn leave_if_ended(&self, guild: &DiscordId) -> Result<bool, SessionError> {
        let lock = self.guild_lock(guild);
        let _one_at_a_time = lock.lock().await;
        if !self.voice.in_voice(guild) {
            return Ok(false);
        }
        let live = self
            .orchestrator
            .store()
            .tenant(&self.tenant)
            .live_session_in_guild(guild)
            .await
            .map_err(OrchestratorError::from)?;
        if live.is_some() {
            return Ok(false);
        }
        self.voice.leave(guild).await;
        Ok(true)
    }

    async fn describe(&self, session: Session) -> Result<SessionInfo, SessionError> {
        let store = self.orchestrator.store().tenant(&self.tenant);
        let campaign = match &session.campaign_id {
            Some(id) => store
                .campaign(id)
                .await
                .map_err(OrchestratorError::from)?
                .map(|c| c.info.name),
            None => None,
        };
        let now = self.orchestrator.store().clock().now_ms();
        Ok(SessionInfo {
            duration_ms: session.duration_ms(now),
            id: session.id,
            campaign_id: session.campaign_id,
            campaign,
            guild_id: session.guild_id,
            channel_id: session.channel_id,
            started_by: session.started_by,
            state: session.state,
            started_at: session.started_at,
            worker: session.worker_addr,
        })
    }
}

#[async_trait]
impl SessionController for OrchestratedSessions {
    async fn start(
        &self,
        guild: &DiscordId,
        channel: &DiscordId,
        user: &DiscordId,
    ) -> Result<SessionInfo, SessionError> {
        let lock = self.guild_lock(guild);
        let _one_at_a_time = lock.lock().await;
        let store = self.orchestrator.store().tenant(&self.tenant);
        if let Some(live) = store
            .live_session_in_guild(guild)
            .await
            .map_err(OrchestratorError::from)?
        {
            return Err(SessionError::AlreadyActive(live.id));
        }
        let credentials = self.voice.join(guild, channel).await.map_err(SessionError::Voice)?;
        let request = StartRequest {
            tenant_id: self.tenant.clone(),
            guild_id: guild.clone(),
            channel_id: channel.clone(),
            started_by: user.clone(),
            voice: Some(credentials),
        };
        match self.orchestrator.start(request).await {
            Ok(session) => self.describe(session).await,
            Err(error) => {
                self.voice.leave(guild).await;
                Err(error.into())
            }
        }
    }

    async fn stop(&self, guild: &DiscordId, cause: StopCause<'_>) -> Result<SessionInfo, SessionError> {
        let lock = self.guild_lock(guild);
        let _one_at_a_time = lock.lock().await;
        let reason = cause.reason();
        let stopped = match self.orchestrator.stop_guild(&self.tenant, guild, &reason).await {
            Ok(session) => session,
            Err(OrchestratorError::NoActiveSession) => return Err(SessionError::NoActiveSession),
            Err(error) => return Err(error.into()),
        };
        self.voice.leave(guild).await;
        self.describe(stopped).await
    }

    async fn info(&self, guild: &DiscordId) -> Result<Option<SessionInfo>, SessionError> {
        let store = self.orchestrator.store().tenant(&self.tenant);
        match store
            .live_session_in_guild(guild)
            .await
            .map_err(OrchestratorError::from)?
        {
            Some(session) => Ok(Some(self.describe(session).await?)),
            None => Ok(None),
        }
    }

    async fn session(&self, id: &SessionId) -> Result<Option<SessionInfo>, SessionError> {
        let store = self.orchestrator.store().tenant(&self.tenant);
        match store.session(id).await.map_err(OrchestratorError::from)? {
            Some(session) => Ok(Some(self.describe(session).await?)),
            None => Ok(None),
        }
    }

    async fn latest(&self, guild: &DiscordId, ended_only: bool) -> Result<Option<SessionInfo>, SessionError> {
        let store = self.orchestrator.store().tenant(&self.tenant);
        let found = store
            .latest_session(Some(guild), ended_only)
            .await
            .map_err(OrchestratorError::from)?;
        match found {
            Some(session) => Ok(Some(self.describe(session).await?)),
            None => Ok(None),
        }
    }
}
