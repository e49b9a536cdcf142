//! The session orchestrator (SPEC §3): starts sessions under the license
//! rules and quota (enforced by the store's transaction), places them on a
//! worker, applies worker reports (state, heartbeats), stops them, and runs
//! the cleanup loop that ends zombie and stale-pending sessions.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use glyphoxa_pipeline::campaign::{EntityKind, NpcDefinition};
use glyphoxa_proto::v1;
use tracing::Instrument as _;

use crate::ids::{DiscordId, SessionId, TenantId};
use crate::store::{
    CreateSessionError, EndCondition, EndSession, NewSession, Session, SessionState, StaleKind, Store, StoreError,
    StoredEntity, StoredNpc, Tenant, Transition,
};
use crate::workers::{WorkerClient, WorkerError};

/// Timeouts of session liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrchestratorSettings {
    /// How often workers send heartbeats (informational; default 10 s).
    pub heartbeat_interval: Duration,
    /// An active session without a heartbeat for this long is a zombie and
    /// is ended (default 30 s: three missed heartbeats).
    pub zombie_timeout: Duration,
    /// A session still pending after this long is ended (default 60 s).
    pub dispatch_timeout: Duration,
    /// How often the cleanup loop looks (default 5 s).
    pub cleanup_interval: Duration,
}

impl Default for OrchestratorSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            zombie_timeout: Duration::from_secs(30),
            dispatch_timeout: Duration::from_secs(60),
            cleanup_interval: Duration::from_secs(5),
        }
    }
}

/// A request to start a session.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The guild.
    pub guild_id: DiscordId,
    /// The voice channel.
    pub channel_id: DiscordId,
    /// The DM who starts it.
    pub started_by: DiscordId,
    /// Discord voice credentials for the worker; `None` = no Discord voice
    /// (loopback transport, tests).
    pub voice: Option<v1::VoiceCredentials>,
}

/// Why an orchestrator call failed. Messages are meant for users.
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    /// The tenant does not exist.
    #[error("tenant {0} not found")]
    TenantNotFound(TenantId),
    /// A license rule or the quota refused the session.
    #[error("{0}")]
    Refused(CreateSessionError),
    /// No worker could run it ("voice service unavailable: …").
    #[error("{0}")]
    Worker(#[from] WorkerError),
    /// The session ended (e.g. by cleanup or a worker report) while it was
    /// being started.
    #[error("the session ended while starting: {0}")]
    EndedWhileStarting(String),
    /// No such session for this tenant.
    #[error("session {0} not found")]
    SessionNotFound(SessionId),
    /// The guild has no live session.
    #[error("no active session in this guild")]
    NoActiveSession,
    /// The store failed.
    #[error("session store failed: {0}")]
    Store(#[from] StoreError),
}

/// What one cleanup pass ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Active sessions ended for lack of heartbeats.
    pub zombies: Vec<SessionId>,
    /// Pending sessions ended because no worker confirmed them in time.
    pub stale_pending: Vec<SessionId>,
}

/// A session that has just ended, however it ended (announced by
/// [`Orchestrator::ended_sessions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnded {
    /// The session's tenant.
    pub tenant_id: TenantId,
    /// The session.
    pub session_id: SessionId,
    /// Its guild.
    pub guild_id: DiscordId,
    /// Why it ended.
    pub reason: String,
}

/// How many end announcements a slow listener may fall behind by.
const ENDED_BACKLOG: usize = 256;

/// Starts, tracks and ends sessions; shared by the admin API, the worker
/// reports (`GatewayApi`) and the command handlers.
pub struct Orchestrator {
    store: Store,
    workers: Arc<dyn WorkerClient>,
    settings: OrchestratorSettings,
    ended: tokio::sync::broadcast::Sender<SessionEnded>,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Limits on what a StartSession carries.
const MAX_KNOWLEDGE: u32 = 10_000;

/// The gRPC form of a stored NPC.
pub fn npc_to_proto(stored: &StoredNpc) -> v1::NpcDefinition {
    let npc: &NpcDefinition = &stored.npc;
    v1::NpcDefinition {
        id: stored.id.clone(),
        name: npc.name.clone(),
        personality: npc.personality.clone(),
        voice: Some(v1::VoiceProfile {
            provider: npc.voice.provider.clone().unwrap_or_default(),
            voice_id: npc.voice.voice_id.clone().unwrap_or_default(),
            speed: npc.voice.speed,
            pitch: npc.voice.pitch as f32,
        }),
        address_only: npc.address_only,
        gm_helper: npc.gm_helper,
    }
}

/// The gRPC form of an entity kind.
pub fn entity_kind_to_proto(kind: EntityKind) -> v1::EntityType {
    match kind {
        EntityKind::Npc => v1::EntityType::Npc,
        EntityKind::Location => v1::EntityType::Location,
        EntityKind::Item => v1::EntityType::Item,
        EntityKind::Faction => v1::EntityType::Faction,
        EntityKind::Quest => v1::EntityType::Quest,
        EntityKind::Lore => v1::EntityType::Lore,
    }
}

/// The gRPC form of a stored entity.
pub fn entity_to_proto(stored: &StoredEntity) -> v1::Entity {
    let entity = &stored.entity;
    v1::Entity {
        id: stored.id.clone(),
        name: entity.name.clone(),
        r#type: entity_kind_to_proto(entity.kind) as i32,
        description: entity.description.clone(),
        tags: entity.tags.clone(),
        properties: entity.properties.clone().into_iter().collect(),
        relationships: entity
            .relationships
            .iter()
            .map(|r| v1::Relationship {
                target: r.target.clone(),
                r#type: r.kind.clone(),
            })
            .collect(),
    }
}

/// The gRPC form of a license tier.
pub fn tier_to_proto(tier: crate::store::LicenseTier) -> v1::LicenseTier {
    match tier {
        crate::store::LicenseTier::Shared => v1::LicenseTier::Shared,
        crate::store::LicenseTier::Dedicated => v1::LicenseTier::Dedicated,
    }
}

/// The gRPC form of a session state.
pub fn state_to_proto(state: SessionState) -> v1::SessionState {
    match state {
        SessionState::Pending => v1::SessionState::Pending,
        SessionState::Active => v1::SessionState::Active,
        SessionState::Ended => v1::SessionState::Ended,
    }
}

impl Orchestrator {
    /// An orchestrator over `store` placing sessions with `workers`.
    pub fn new(store: Store, workers: Arc<dyn WorkerClient>, settings: OrchestratorSettings) -> Self {
        Self {
            store,
            workers,
            settings,
            ended: tokio::sync::broadcast::channel(ENDED_BACKLOG).0,
        }
    }

    /// Announcements of every session that ends from now on — stopped,
    /// ended by its worker or by the cleanup — so that, e.g., the tenant's
    /// bot leaves the voice channel. A listener that falls behind by more
    /// than a few hundred misses the oldest ones.
    pub fn ended_sessions(&self) -> tokio::sync::broadcast::Receiver<SessionEnded> {
        self.ended.subscribe()
    }

    /// Announces that `session` ended (nobody listening is fine).
    fn announce_end(&self, session: &Session) {
        let _ = self.ended.send(SessionEnded {
            tenant_id: session.tenant_id.clone(),
            session_id: session.id.clone(),
            guild_id: session.guild_id.clone(),
            reason: session.end_reason.clone().unwrap_or_default(),
        });
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The worker client.
    pub fn workers(&self) -> &Arc<dyn WorkerClient> {
        &self.workers
    }

    /// The liveness settings.
    pub fn settings(&self) -> &OrchestratorSettings {
        &self.settings
    }

    /// Starts a session: records it (license rules and quota checked
    /// atomically), starts it on a worker with the active campaign's NPCs and
    /// knowledge, and marks it active. On any failure the session is ended
    /// with the reason and nothing keeps running.
    pub async fn start(&self, request: StartRequest) -> Result<Session, OrchestratorError> {
        let tenant_store = self.store.tenant(&request.tenant_id);
        let Some(tenant) = tenant_store.get().await? else {
            return Err(OrchestratorError::TenantNotFound(request.tenant_id));
        };
        let campaign = tenant_store.ensure_active_campaign().await?;
        let new = NewSession {
            id: SessionId::random(),
            campaign_id: Some(campaign.id.clone()),
            guild_id: request.guild_id.clone(),
            channel_id: request.channel_id.clone(),
            started_by: request.started_by.clone(),
        };
        let session = match tenant_store.create_session(&new).await {
            Ok(session) => session,
            Err(CreateSessionError::TenantNotFound) => {
                return Err(OrchestratorError::TenantNotFound(request.tenant_id))
            }
            Err(CreateSessionError::Store(e)) => return Err(e.into()),
            Err(refused) => {
                metrics::counter!("glyphoxa_gateway_session_starts_total", "outcome" => "refused").increment(1);
                return Err(OrchestratorError::Refused(refused));
            }
        };
        let span =
            tracing::info_span!("session", session_id = %session.id, tenant = %tenant.id, guild = %session.guild_id);
        let dispatched = self
            .dispatch(&tenant, &session, &campaign, request.voice)
            .instrument(span)
            .await;
        match dispatched {
            Ok(session) => {
                metrics::counter!("glyphoxa_gateway_session_starts_total", "outcome" => "started").increment(1);
                tracing::info!(session_id = %session.id, worker = ?session.worker_addr, "session started");
                Ok(session)
            }
            Err(error) => {
                metrics::counter!("glyphoxa_gateway_session_starts_total", "outcome" => "failed").increment(1);
                tracing::warn!(session_id = %session.id, %error, "session start failed");
                let end = EndSession::because("start failed").with_error(error.to_string());
                if let Err(end_error) = tenant_store.end_session(&session.id, &end).await {
                    tracing::error!(session_id = %session.id, %end_error,
                        "cannot record the failed start; the cleanup loop will end the session");
                }
                Err(error)
            }
        }
    }

    async fn dispatch(
        &self,
        tenant: &Tenant,
        session: &Session,
        campaign: &crate::store::StoredCampaign,
        voice: Option<v1::VoiceCredentials>,
    ) -> Result<Session, OrchestratorError> {
        let tenant_store = self.store.tenant(&tenant.id);
        let npcs = tenant_store.npcs(&campaign.id).await?;
        let knowledge = tenant_store.entities(&campaign.id, None, MAX_KNOWLEDGE).await?;
        let request = v1::StartSessionRequest {
            session_id: session.id.to_string(),
            tenant_id: tenant.id.to_string(),
            campaign_id: campaign.id.to_string(),
            guild_id: session.guild_id.to_string(),
            channel_id: session.channel_id.to_string(),
            license_tier: tier_to_proto(tenant.license_tier) as i32,
            dm_user_id: session.started_by.to_string(),
            npcs: npcs.iter().map(npc_to_proto).collect(),
            knowledge: knowledge.iter().map(entity_to_proto).collect(),
            voice,
            campaign_name: campaign.info.name.clone(),
            campaign_system: campaign.info.system.clone(),
        };
        let placement = self.workers.start_session(request).await?;
        let recorded = async {
            tenant_store
                .set_session_worker(&session.id, &placement.worker_addr, Some(&placement.worker_id))
                .await?;
            tenant_store
                .activate_session(&session.id, Some(&placement.worker_id))
                .await
        }
        .await;
        let outcome = match recorded {
            Ok(Some(Transition::Changed(active))) => return Ok(active),
            Ok(Some(Transition::Unchanged(current))) if current.state == SessionState::Active => return Ok(current),
            Ok(Some(Transition::Unchanged(ended))) => Err(OrchestratorError::EndedWhileStarting(
                ended.end_reason.unwrap_or_else(|| "ended".into()),
            )),
            Ok(None) => Err(OrchestratorError::SessionNotFound(session.id.clone())),
            Err(error) => Err(OrchestratorError::Store(error)),
        };
        // The worker runs it but the gateway cannot keep it: stop it there.
        if let Err(stop_error) = self
            .workers
            .stop_session(&placement.worker_addr, session.id.as_str(), "start abandoned")
            .await
        {
            tracing::warn!(%stop_error, "cannot stop an abandoned session on its worker");
        }
        outcome
    }

    /// Stops a session: on its worker (an unknown session there counts as
    /// stopped), then ends it and records its usage. Stopping an ended
    /// session returns it unchanged.
    pub async fn stop(
        &self,
        tenant: &TenantId,
        session_id: &SessionId,
        reason: &str,
    ) -> Result<Session, OrchestratorError> {
        let tenant_store = self.store.tenant(tenant);
        let Some(session) = tenant_store.session(session_id).await? else {
            return Err(OrchestratorError::SessionNotFound(session_id.clone()));
        };
        if session.state == SessionState::Ended {
            return Ok(session);
        }
        let mut end = EndSession::because(reason);
        if let Some(worker) = &session.worker_addr {
            if let Err(error) = self.workers.stop_session(worker, session_id.as_str(), reason).await {
                tracing::warn!(session_id = %session_id, %error, "stopping the session on its worker failed; ending it anyway");
                end = end.with_error(format!("worker stop failed: {error}"));
            }
        }
        match tenant_store.end_session(session_id, &end).await? {
            Some(transition) => {
                let changed = transition.changed();
                let session = transition.into_session();
                if changed {
                    metrics::counter!("glyphoxa_gateway_sessions_ended_total", "reason" => "stopped").increment(1);
                    self.announce_end(&session);
                }
                Ok(session)
            }
            None => Err(OrchestratorError::SessionNotFound(session_id.clone())),
        }
    }

    /// Stops the live session of `guild`.
    pub async fn stop_guild(
        &self,
        tenant: &TenantId,
        guild: &DiscordId,
        reason: &str,
    ) -> Result<Session, OrchestratorError> {
        match self.store.tenant(tenant).live_session_in_guild(guild).await? {
            Some(session) => self.stop(tenant, &session.id, reason).await,
            None => Err(OrchestratorError::NoActiveSession),
        }
    }

    /// Stops every live session of a tenant (before deleting it).
    pub async fn stop_all(&self, tenant: &TenantId, reason: &str) -> Result<Vec<Session>, OrchestratorError> {
        let mut stopped = Vec::new();
        for session in self.store.tenant(tenant).live_sessions().await? {
            stopped.push(self.stop(tenant, &session.id, reason).await?);
        }
        Ok(stopped)
    }

    /// Records a worker heartbeat: the session's state afterwards (`Ended`
    /// tells the worker to stop it), `None` for an unknown session.
    pub async fn heartbeat(
        &self,
        session_id: &SessionId,
        worker_id: Option<&str>,
    ) -> Result<Option<SessionState>, StoreError> {
        match self.store.session_owner(session_id).await? {
            Some(tenant) => self.store.tenant(&tenant).record_heartbeat(session_id, worker_id).await,
            None => Ok(None),
        }
    }

    /// Applies a state reported by a worker; `None` for an unknown session.
    pub async fn report_state(
        &self,
        session_id: &SessionId,
        state: SessionState,
        error: Option<&str>,
        worker_id: Option<&str>,
    ) -> Result<Option<Session>, StoreError> {
        let Some(tenant) = self.store.session_owner(session_id).await? else {
            return Ok(None);
        };
        let tenant_store = self.store.tenant(&tenant);
        let transition = match state {
            SessionState::Active => tenant_store.activate_session(session_id, worker_id).await?,
            SessionState::Ended => {
                let mut end = EndSession::because("ended by its worker");
                if let Some(error) = error.filter(|e| !e.is_empty()) {
                    end = end.with_error(error);
                }
                let transition = tenant_store.end_session(session_id, &end).await?;
                if let Some(Transition::Changed(session)) = &transition {
                    metrics::counter!("glyphoxa_gateway_sessions_ended_total", "reason" => "worker").increment(1);
                    tracing::info!(session_id = %session_id, error = ?error, "session ended by its worker");
                    self.announce_end(session);
                }
                transition
            }
            SessionState::Pending => tenant_store.session(session_id).await?.map(Transition::Unchanged),
        };
        Ok(transition.map(Transition::into_session))
    }

    /// One cleanup pass: ends zombie sessions (no heartbeat within the
    /// zombie timeout; usage billed to the last heartbeat) and sessions still
    /// pending after the dispatch timeout, each with its reason, and stops
    /// them on their workers.
    pub async fn cleanup_once(&self) -> Result<CleanupReport, StoreError> {
        let now = self.store.now_ms();
        let zombie_ms = i64::try_from(self.settings.zombie_timeout.as_millis()).unwrap_or(i64::MAX);
        let pending_ms = i64::try_from(self.settings.dispatch_timeout.as_millis()).unwrap_or(i64::MAX);
        let zombie_before = now.saturating_sub(zombie_ms);
        let pending_before = now.saturating_sub(pending_ms);
        let mut report = CleanupReport::default();
        for stale in self.store.stale_sessions(zombie_before, pending_before).await? {
            let (condition, reason) = match stale.kind {
                StaleKind::Zombie => (
                    EndCondition::ZombieBefore(zombie_before),
                    format!(
                        "zombie: no heartbeat from its worker for more than {}s",
                        self.settings.zombie_timeout.as_secs_f64()
                    ),
                ),
                StaleKind::StalePending => (
                    EndCondition::PendingBefore(pending_before),
                    format!(
                        "stale: still pending after {}s (no worker confirmed the start)",
                        self.settings.dispatch_timeout.as_secs_f64()
                    ),
                ),
            };
            let end = EndSession {
                reason: reason.clone(),
                error: Some(reason.clone()),
                condition,
            };
            let ended = self
                .store
                .tenant(&stale.tenant_id)
                .end_session(&stale.session_id, &end)
                .await?;
            let Some(Transition::Changed(session)) = &ended else {
                continue; // a heartbeat or a stop got there first
            };
            self.announce_end(session);
            tracing::warn!(session_id = %stale.session_id, tenant = %stale.tenant_id, %reason, "session ended by cleanup");
            match stale.kind {
                StaleKind::Zombie => {
                    metrics::counter!("glyphoxa_gateway_sessions_ended_total", "reason" => "zombie").increment(1);
                    report.zombies.push(stale.session_id.clone());
                }
                StaleKind::StalePending => {
                    metrics::counter!("glyphoxa_gateway_sessions_ended_total", "reason" => "stale_pending")
                        .increment(1);
                    report.stale_pending.push(stale.session_id.clone());
                }
            }
            if let Some(worker) = &stale.worker_addr {
                if let Err(error) = self
                    .workers
                    .stop_session(worker, stale.session_id.as_str(), &reason)
                    .await
                {
                    tracing::debug!(session_id = %stale.session_id, %error, "worker of a cleaned-up session did not answer");
                }
            }
        }
        if let Ok(live) = self.store.live_session_count().await {
            metrics::gauge!("glyphoxa_gateway_live_sessions").set(live as f64);
        }
        Ok(report)
    }

    /// Runs [`Orchestrator::cleanup_once`] every `cleanup_interval` until
    /// `shutdown` completes. Errors are logged, never fatal.
    pub async fn run_cleanup(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut interval = tokio::time::interval(self.settings.cleanup_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = interval.tick() => {
                    if let Err(error) = self.cleanup_once().await {
                        tracing::error!(%error, "session cleanup failed; retrying next interval");
                    }
                }
            }
        }
    }
}
