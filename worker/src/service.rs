//! The worker's side of the contract: [`WorkerApi`] over the sessions this
//! process runs. Full mode calls it in-process; `glyphoxa --mode worker`
//! serves it over gRPC (`glyphoxa_proto::server::serve_worker`).
//!
//! The worker keeps no database and no state that outlives a session: it
//! reports state changes, heartbeats and session events to its gateway (if
//! it has one) through [`GatewayApi`].
//!
//! Every call is timed (`glyphoxa_worker_rpc_seconds`, see
//! [`crate::metrics::timed_rpc`]); a session's forwarder and heartbeat tasks
//! run in its `session` span.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::StreamExt;
use glyphoxa_audio::{stagger_phase, EngineSettings, SourceSpec};
use glyphoxa_pipeline::campaign::CampaignInfo;
use glyphoxa_pipeline::knowledge::Knowledge;
use glyphoxa_pipeline::metrics::declare_provider;
use glyphoxa_pipeline::orchestrator::{ControlError, SessionEvent, SessionSettings};
use glyphoxa_pipeline::playback::PlaybackError;
use glyphoxa_pipeline::providers::Stage;
use glyphoxa_pipeline::roster::{NpcId, Roster};
use glyphoxa_pipeline::transcript::{TranscriptEntry, TranscriptError, TranscriptSink};
use glyphoxa_proto::v1;
use glyphoxa_proto::{ApiError, GatewayApi, PcmStream, WorkerApi};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::convert;
use crate::metrics::timed_rpc;
use crate::runtime::{Providers, SessionRuntime, SessionSpec};
use crate::transport::VoiceTransport;

/// Makes the voice transport of a new session.
pub trait TransportFactory: Send + Sync {
    /// A transport for the session `request` starts (voice credentials inside).
    fn create(&self, request: &v1::StartSessionRequest) -> Result<Box<dyn VoiceTransport>, ApiError>;
}

/// How the worker runs its sessions.
#[derive(Clone)]
pub struct WorkerSettings {
    /// This worker's name in heartbeats and status.
    pub worker_id: String,
    /// Most sessions at once.
    pub capacity: usize,
    /// Audio engine settings for every session.
    pub engine: EngineSettings,
    /// Template for each session's brain settings (ids and campaign are filled in).
    pub brain: SessionSettings,
    /// How often each active session sends a heartbeat.
    pub heartbeat: Duration,
}

impl WorkerSettings {
    /// Defaults: 32 sessions, default engine and brain settings, 10 s heartbeats.
    pub fn new(worker_id: impl Into<String>) -> Self {
        let campaign = CampaignInfo {
            name: String::new(),
            system: String::new(),
            description: String::new(),
        };
        Self {
            worker_id: worker_id.into(),
            capacity: 32,
            engine: EngineSettings::default(),
            brain: SessionSettings::new("", campaign),
            heartbeat: Duration::from_secs(10),
        }
    }
}

struct Session {
    runtime: Option<SessionRuntime>,
    status: v1::SessionStatus,
    forwarder: JoinHandle<()>,
    heartbeat: Option<JoinHandle<()>>,
}

/// The worker: every session of this process, behind [`WorkerApi`].
pub struct Worker {
    settings: WorkerSettings,
    providers: Providers,
    transports: Arc<dyn TransportFactory>,
    gateway: Option<Arc<dyn GatewayApi>>,
    sessions: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
    started: AtomicU64,
}

/// Transcript lines go to the gateway as session events; the worker keeps none.
struct ForwardedTranscript;

#[async_trait]
impl TranscriptSink for ForwardedTranscript {
    async fn append(&self, _entry: &TranscriptEntry) -> Result<(), TranscriptError> {
        Ok(())
    }
}

fn control_error(error: ControlError) -> ApiError {
    match error {
        ControlError::UnknownNpc(name) => ApiError::not_found(format!("no NPC named {name:?} in this session")),
        ControlError::Invalid(message) => ApiError::failed_precondition(message),
        ControlError::Ended => ApiError::not_found("the session has ended"),
    }
}

impl Worker {
    /// A worker with these providers (shared by its sessions) and transports;
    /// `gateway` receives state, heartbeats and events (`None` = standalone).
    pub fn new(
        settings: WorkerSettings,
        providers: Providers,
        transports: Arc<dyn TransportFactory>,
        gateway: Option<Arc<dyn GatewayApi>>,
    ) -> Arc<Self> {
        declare_provider(Stage::Stt, providers.stt.name());
        declare_provider(Stage::Llm, providers.llm.name());
        declare_provider(Stage::Tts, providers.tts.name());
        Arc::new(Self {
            settings,
            providers,
            transports,
            gateway,
            sessions: Mutex::new(HashMap::new()),
            started: AtomicU64::new(0),
        })
    }

    async fn session(&self, session_id: &str) -> Result<Arc<Mutex<Session>>, ApiError> {
        self.sessions
            .lock()
            .await
            .get(session_id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no session {session_id:?} on this worker")))
    }

    /// Runs `f` with the session's running runtime.
    async fn with_runtime<T>(
        &self,
        session_id: &str,
        f: impl AsyncFnOnce(&SessionRuntime) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let session = self.session(session_id).await?;
        let guard = session.lock().await;
        let runtime = guard
            .runtime
            .as_ref()
            .ok_or_else(|| ApiError::not_found(format!("session {session_id:?} has ended")))?;
        f(runtime).await
    }

    async fn report_state(&self, session_id: &str, state: v1::SessionState, error: String) {
        if let Some(gateway) = &self.gateway {
            let request = v1::ReportStateRequest {
                session_id: session_id.to_string(),
                state: state as i32,
                error,
                worker_id: self.settings.worker_id.clone(),
                changed_at_unix_ms: convert::unix_ms(SystemTime::now()),
            };
            if let Err(error) = gateway.report_state(request).await {
                tracing::warn!(session = session_id, %error, "cannot report session state to the gateway");
            }
        }
    }

    /// Stops every session (graceful shutdown); returns how many were stopped.
    pub async fn stop_all(&self, reason: &str) -> usize {
        let ids: Vec<String> = self.sessions.lock().await.keys().cloned().collect();
        let mut stopped = 0;
        for id in ids {
            let request = v1::StopSessionRequest {
                session_id: id,
                reason: reason.to_string(),
            };
            if self.handle_stop_session(request).await.is_ok() {
                stopped += 1;
            }
        }
        stopped
    }

    /// How many sessions this worker takes (`worker.capacity`).
    pub fn capacity(&self) -> usize {
        self.settings.capacity
    }

    /// Sessions currently running.
    pub async fn active_sessions(&self) -> usize {
        let sessions: Vec<Arc<Mutex<Session>>> = self.sessions.lock().await.values().cloned().collect();
        let mut active = 0;
        for session in sessions {
            active += usize::from(session.lock().await.runtime.is_some());
        }
        active
    }

    fn spawn_forwarder(
        &self,
        session_id: String,
        roster: Roster,
        mut events: mpsc::UnboundedReceiver<SessionEvent>,
        span: tracing::Span,
    ) -> JoinHandle<()> {
        let gateway = self.gateway.clone();
        let forward = async move {
            let names = move |id: &NpcId| roster.get(id).map(|n| n.definition.name.clone()).unwrap_or_default();
            let sequence = AtomicU64::new(0);
            let Some(gateway) = gateway else {
                // Standalone: nobody persists events; drain them.
                while let Some(event) = events.recv().await {
                    crate::metrics::record_event(&event);
                }
                return;
            };
            let (tx, rx) = mpsc::channel::<Result<v1::SessionEvent, ApiError>>(256);
            let id = session_id.clone();
            let send = async move {
                while let Some(event) = events.recv().await {
                    crate::metrics::record_event(&event);
                    let seq = sequence.fetch_add(1, Ordering::Relaxed) + 1;
                    if tx
                        .send(Ok(convert::session_event(&id, seq, &event, &names)))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            };
            let sender = tokio::spawn(send.in_current_span());
            let stream = tokio_stream_from(rx);
            if let Err(error) = gateway.report_events(stream).await {
                tracing::warn!(session = %session_id, %error, "the gateway's event stream failed");
            }
            let _ = sender.await;
        };
        tokio::spawn(forward.instrument(span))
    }

    fn spawn_heartbeat(&self, session_id: String, span: tracing::Span) -> Option<JoinHandle<()>> {
        let gateway = self.gateway.clone()?;
        let worker_id = self.settings.worker_id.clone();
        let every = self.settings.heartbeat;
        let beat = async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                let request = v1::HeartbeatRequest {
                    session_id: session_id.clone(),
                    worker_id: worker_id.clone(),
                    sent_at_unix_ms: convert::unix_ms(SystemTime::now()),
                };
                match gateway.heartbeat(request).await {
                    Ok(response) if response.state == v1::SessionState::Ended as i32 => {
                        tracing::info!(session = %session_id, "the gateway ended this session");
                        break;
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(session = %session_id, %error, "heartbeat failed"),
                }
            }
        };
        Some(tokio::spawn(beat.instrument(span)))
    }
}

/// A boxed stream over a channel's receiver.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = T> + Send>> {
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

fn status_of(request: &v1::StartSessionRequest, state: v1::SessionState, started_at: i64) -> v1::SessionStatus {
    v1::SessionStatus {
        session_id: request.session_id.clone(),
        state: state as i32,
        started_at_unix_ms: started_at,
        error: String::new(),
        tenant_id: request.tenant_id.clone(),
        guild_id: request.guild_id.clone(),
        channel_id: request.channel_id.clone(),
        ended_at_unix_ms: 0,
        voice_connected: true,
    }
}

/// The handlers of [`WorkerApi`], untimed.
impl Worker {
    async fn handle_start_session(
        &self,
        request: v1::StartSessionRequest,
    ) -> Result<v1::StartSessionResponse, ApiError> {
        if request.session_id.trim().is_empty() {
            return Err(ApiError::invalid_argument("session_id is required"));
        }
        if request.npcs.is_empty() {
            return Err(ApiError::invalid_argument("a session needs at least one NPC"));
        }
        let npcs = request.npcs.iter().map(convert::npc).collect::<Result<Vec<_>, _>>()?;
        let entities = request
            .knowledge
            .iter()
            .map(convert::entity)
            .collect::<Result<Vec<_>, _>>()?;
        {
            let sessions = self.sessions.lock().await;
            if let Some(existing) = sessions.get(&request.session_id) {
                let status = existing.lock().await.status.clone();
                if status.state != v1::SessionState::Ended as i32 {
                    return Ok(v1::StartSessionResponse {
                        session: Some(status),
                        worker_id: self.settings.worker_id.clone(),
                    });
                }
            }
        }
        if self.active_sessions().await >= self.settings.capacity {
            return Err(ApiError::resource_exhausted(format!(
                "worker {} is full ({} sessions)",
                self.settings.worker_id, self.settings.capacity
            )));
        }
        let transport = self.transports.create(&request)?;
        let roster = Roster::new(npcs);
        let mut knowledge = Knowledge::default();
        knowledge.upsert(entities);
        let mut brain = self.settings.brain.clone();
        brain.session_id = request.session_id.clone();
        brain.dm_user_id = Some(request.dm_user_id.clone()).filter(|id| !id.is_empty());
        brain.campaign = CampaignInfo {
            name: request.campaign_name.clone(),
            system: request.campaign_system.clone(),
            description: String::new(),
        };
        let mut engine = self.settings.engine.clone();
        if let Some(bot) = request.voice.as_ref().and_then(|v| v.bot_user_id.parse::<u64>().ok()) {
            engine.bot_speaker = Some(glyphoxa_audio::SpeakerId(bot));
        }
        let index = self.started.fetch_add(1, Ordering::Relaxed);
        let spec = SessionSpec {
            brain,
            engine,
            roster: roster.clone(),
            knowledge,
            transcript: Arc::new(ForwardedTranscript),
            phase: stagger_phase(index),
        };
        let (runtime, events) = SessionRuntime::start(spec, self.providers.clone(), transport)
            .await
            .map_err(|error| {
                tracing::warn!(session = %request.session_id, %error, "session failed to start");
                ApiError::unavailable(format!("cannot start the voice session: {error}"))
            })?;
        let status = status_of(&request, v1::SessionState::Active, runtime.started_at_unix_ms());
        let forwarder = self.spawn_forwarder(request.session_id.clone(), roster, events, runtime.span().clone());
        let heartbeat = self.spawn_heartbeat(request.session_id.clone(), runtime.span().clone());
        {
            let mut sessions = self.sessions.lock().await;
            sessions.insert(
                request.session_id.clone(),
                Arc::new(Mutex::new(Session {
                    runtime: Some(runtime),
                    status: status.clone(),
                    forwarder,
                    heartbeat,
                })),
            );
            crate::metrics::set_active_sessions(sessions.len());
        }
        tracing::info!(session = %request.session_id, "session started");
        self.report_state(&request.session_id, v1::SessionState::Active, String::new())
            .await;
        Ok(v1::StartSessionResponse {
            session: Some(status),
            worker_id: self.settings.worker_id.clone(),
        })
    }

    async fn handle_stop_session(&self, request: v1::StopSessionRequest) -> Result<v1::StopSessionResponse, ApiError> {
        let session = {
            let mut sessions = self.sessions.lock().await;
            let removed = sessions.remove(&request.session_id);
            crate::metrics::set_active_sessions(sessions.len());
            removed.ok_or_else(|| ApiError::not_found(format!("no session {:?} on this worker", request.session_id)))?
        };
        let mut session = session.lock().await;
        if let Some(heartbeat) = session.heartbeat.take() {
            heartbeat.abort();
        }
        let mut error = String::new();
        if let Some(runtime) = session.runtime.take() {
            if let Err(e) = runtime.stop().await {
                error = e.to_string();
            }
        }
        // The forwarder ends once the brain's event stream is closed.
        let forwarder = std::mem::replace(&mut session.forwarder, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(5), forwarder).await;
        session.status.state = v1::SessionState::Ended as i32;
        session.status.ended_at_unix_ms = convert::unix_ms(SystemTime::now());
        session.status.error = error.clone();
        session.status.voice_connected = false;
        tracing::info!(session = %request.session_id, reason = %request.reason, "session stopped");
        self.report_state(&request.session_id, v1::SessionState::Ended, error)
            .await;
        Ok(v1::StopSessionResponse {
            session: Some(session.status.clone()),
        })
    }

    async fn handle_get_status(&self, request: v1::GetStatusRequest) -> Result<v1::GetStatusResponse, ApiError> {
        let sessions: Vec<(String, Arc<Mutex<Session>>)> = self
            .sessions
            .lock()
            .await
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut statuses = Vec::new();
        let mut active = 0;
        for (id, session) in sessions {
            let session = session.lock().await;
            let mut status = session.status.clone();
            match &session.runtime {
                Some(runtime) if !runtime.is_healthy() => status.error = "the session's audio engine stopped".into(),
                Some(_) => active += 1,
                None => {}
            }
            if request.session_id.as_deref().is_none_or(|wanted| wanted == id) {
                statuses.push(status);
            }
        }
        if let Some(wanted) = &request.session_id {
            if statuses.is_empty() {
                return Err(ApiError::not_found(format!("no session {wanted:?} on this worker")));
            }
        }
        Ok(v1::GetStatusResponse {
            worker_id: self.settings.worker_id.clone(),
            sessions: statuses,
            load: Some(v1::WorkerLoad {
                active_sessions: active,
                capacity: self.settings.capacity as u32,
                draining: false,
            }),
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }

    async fn handle_update_voice_server(
        &self,
        request: v1::UpdateVoiceServerRequest,
    ) -> Result<v1::UpdateVoiceServerResponse, ApiError> {
        if request.token.is_empty() || request.endpoint.is_empty() {
            // Unknown sessions are still NOT_FOUND, checked first.
            self.with_runtime(&request.session_id, async |_runtime| Ok(())).await?;
            return Err(ApiError::invalid_argument("token and endpoint are required"));
        }
        self.with_runtime(&request.session_id, async |runtime| {
            runtime
                .update_voice_server(&request.token, &request.endpoint, &request.voice_session_id)
                .await
                .map_err(|error| ApiError::unavailable(format!("moving the voice connection failed: {error}")))
        })
        .await?;
        Ok(v1::UpdateVoiceServerResponse {})
    }

    async fn handle_update_knowledge(
        &self,
        request: v1::UpdateKnowledgeRequest,
    ) -> Result<v1::UpdateKnowledgeResponse, ApiError> {
        let upserted = request
            .upserted
            .iter()
            .map(convert::entity)
            .collect::<Result<Vec<_>, _>>()?;
        let removed = request.removed_entity_ids.clone();
        self.with_runtime(&request.session_id, async move |runtime| {
            let count = runtime
                .brain()
                .update_knowledge(upserted, removed)
                .await
                .map_err(control_error)?;
            Ok(v1::UpdateKnowledgeResponse {
                entity_count: count as u32,
            })
        })
        .await
    }

    async fn handle_list_npcs(&self, request: v1::ListNpcsRequest) -> Result<v1::ListNpcsResponse, ApiError> {
        self.with_runtime(&request.session_id, async |runtime| {
            let npcs = runtime.brain().list().await.map_err(control_error)?;
            Ok(v1::ListNpcsResponse {
                npcs: npcs.iter().map(convert::npc_status).collect(),
            })
        })
        .await
    }

    async fn handle_mute_npc(&self, request: v1::MuteNpcRequest) -> Result<v1::MuteNpcResponse, ApiError> {
        let (npc, changed) = self.set_muted(&request.session_id, &request.name, true).await?;
        Ok(v1::MuteNpcResponse {
            npc: Some(npc),
            changed,
        })
    }

    async fn handle_unmute_npc(&self, request: v1::UnmuteNpcRequest) -> Result<v1::UnmuteNpcResponse, ApiError> {
        let (npc, changed) = self.set_muted(&request.session_id, &request.name, false).await?;
        Ok(v1::UnmuteNpcResponse {
            npc: Some(npc),
            changed,
        })
    }

    async fn handle_speak_npc(&self, request: v1::SpeakNpcRequest) -> Result<v1::SpeakNpcResponse, ApiError> {
        if request.text.trim().is_empty() {
            return Err(ApiError::invalid_argument("there is nothing to say"));
        }
        self.with_runtime(&request.session_id, async |runtime| {
            runtime
                .brain()
                .speak(&request.name, &request.text)
                .await
                .map_err(control_error)?;
            let npcs = runtime.brain().list().await.map_err(control_error)?;
            let npc = npcs
                .iter()
                .find(|n| n.name.eq_ignore_ascii_case(request.name.trim()))
                .map(convert::npc_status);
            Ok(v1::SpeakNpcResponse {
                npc,
                turn_id: String::new(),
            })
        })
        .await
    }

    async fn handle_mute_all_npcs(&self, request: v1::MuteAllNpcsRequest) -> Result<v1::MuteAllNpcsResponse, ApiError> {
        self.with_runtime(&request.session_id, async |runtime| {
            let changed = runtime.brain().set_all_muted(true).await.map_err(control_error)?;
            Ok(v1::MuteAllNpcsResponse {
                changed: changed as u32,
            })
        })
        .await
    }

    async fn handle_unmute_all_npcs(
        &self,
        request: v1::UnmuteAllNpcsRequest,
    ) -> Result<v1::UnmuteAllNpcsResponse, ApiError> {
        self.with_runtime(&request.session_id, async |runtime| {
            let changed = runtime.brain().set_all_muted(false).await.map_err(control_error)?;
            Ok(v1::UnmuteAllNpcsResponse {
                changed: changed as u32,
            })
        })
        .await
    }

    async fn handle_play_audio(
        &self,
        header: v1::PlayAudioHeader,
        mut pcm: PcmStream,
    ) -> Result<v1::PlayAudioResponse, ApiError> {
        let channels = u16::try_from(header.channels).ok().filter(|c| (1..=2).contains(c));
        let Some(channels) = channels else {
            return Err(ApiError::invalid_argument(format!(
                "channels must be 1 or 2, got {}",
                header.channels
            )));
        };
        if !(8_000..=48_000).contains(&header.sample_rate) {
            return Err(ApiError::invalid_argument(format!(
                "unsupported sample rate {} Hz",
                header.sample_rate
            )));
        }
        let spec = match v1::AudioPriority::try_from(header.priority) {
            Ok(v1::AudioPriority::Ambience) => SourceSpec::ambience(header.sample_rate, channels),
            Ok(v1::AudioPriority::Npc) => SourceSpec::narrator(header.sample_rate, channels),
            _ => SourceSpec::narrator(header.sample_rate, channels),
        };
        let (mut line, monitor) = self
            .with_runtime(&header.session_id, async |runtime| {
                runtime
                    .playback()
                    .open_spec(spec)
                    .map_err(|e| ApiError::invalid_argument(e.to_string()))
            })
            .await?;
        let mut carry: Option<u8> = None;
        let mut interrupted = false;
        while let Some(chunk) = pcm.next().await {
            let bytes = match chunk {
                Ok(bytes) => bytes,
                Err(error) => {
                    interrupted = true;
                    tracing::info!(session = %header.session_id, %error, "PlayAudio stream ended early");
                    break;
                }
            };
            let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
            let mut iter = bytes.iter().copied();
            if let Some(low) = carry.take() {
                if let Some(high) = iter.next() {
                    samples.push(i16::from_le_bytes([low, high]));
                }
            }
            let rest: Vec<u8> = iter.collect();
            let pairs = rest.chunks_exact(2);
            carry = pairs.remainder().first().copied();
            samples.extend(pairs.map(|p| i16::from_le_bytes([p[0], p[1]])));
            match line.write(&samples).await {
                Ok(()) => {}
                Err(PlaybackError::Cut) | Err(PlaybackError::Stopped) => {
                    interrupted = true;
                    break;
                }
                Err(error) => return Err(ApiError::internal(error.to_string())),
            }
        }
        line.finish();
        let report = monitor
            .done
            .await
            .map_err(|_| ApiError::unavailable("the session ended during playback"))?;
        Ok(v1::PlayAudioResponse {
            played_ms: report.played_ms as u64,
            interrupted: interrupted || report.cut,
        })
    }
}

/// Every call goes to its handler, timed (`glyphoxa_worker_rpc_seconds`).
#[async_trait]
impl WorkerApi for Worker {
    async fn start_session(&self, request: v1::StartSessionRequest) -> Result<v1::StartSessionResponse, ApiError> {
        timed_rpc("StartSession", self.handle_start_session(request)).await
    }

    async fn stop_session(&self, request: v1::StopSessionRequest) -> Result<v1::StopSessionResponse, ApiError> {
        timed_rpc("StopSession", self.handle_stop_session(request)).await
    }

    async fn get_status(&self, request: v1::GetStatusRequest) -> Result<v1::GetStatusResponse, ApiError> {
        timed_rpc("GetStatus", self.handle_get_status(request)).await
    }

    async fn update_voice_server(
        &self,
        request: v1::UpdateVoiceServerRequest,
    ) -> Result<v1::UpdateVoiceServerResponse, ApiError> {
        timed_rpc("UpdateVoiceServer", self.handle_update_voice_server(request)).await
    }

    async fn update_knowledge(
        &self,
        request: v1::UpdateKnowledgeRequest,
    ) -> Result<v1::UpdateKnowledgeResponse, ApiError> {
        timed_rpc("UpdateKnowledge", self.handle_update_knowledge(request)).await
    }

    async fn list_npcs(&self, request: v1::ListNpcsRequest) -> Result<v1::ListNpcsResponse, ApiError> {
        timed_rpc("ListNPCs", self.handle_list_npcs(request)).await
    }

    async fn mute_npc(&self, request: v1::MuteNpcRequest) -> Result<v1::MuteNpcResponse, ApiError> {
        timed_rpc("MuteNPC", self.handle_mute_npc(request)).await
    }

    async fn unmute_npc(&self, request: v1::UnmuteNpcRequest) -> Result<v1::UnmuteNpcResponse, ApiError> {
        timed_rpc("UnmuteNPC", self.handle_unmute_npc(request)).await
    }

    async fn speak_npc(&self, request: v1::SpeakNpcRequest) -> Result<v1::SpeakNpcResponse, ApiError> {
        timed_rpc("SpeakNPC", self.handle_speak_npc(request)).await
    }

    async fn mute_all_npcs(&self, request: v1::MuteAllNpcsRequest) -> Result<v1::MuteAllNpcsResponse, ApiError> {
        timed_rpc("MuteAllNPCs", self.handle_mute_all_npcs(request)).await
    }

    async fn unmute_all_npcs(&self, request: v1::UnmuteAllNpcsRequest) -> Result<v1::UnmuteAllNpcsResponse, ApiError> {
        timed_rpc("UnmuteAllNPCs", self.handle_unmute_all_npcs(request)).await
    }

    /// Timed until the response: the whole stream of audio is played first.
    async fn play_audio(&self, header: v1::PlayAudioHeader, pcm: PcmStream) -> Result<v1::PlayAudioResponse, ApiError> {
        timed_rpc("PlayAudio", self.handle_play_audio(header, pcm)).await
    }
}

impl Worker {
    async fn set_muted(&self, session_id: &str, name: &str, muted: bool) -> Result<(v1::NpcStatus, bool), ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::invalid_argument("name is required"));
        }
        self.with_runtime(session_id, async |runtime| {
            let changed = runtime.brain().set_muted(name, muted).await.map_err(control_error)?;
            let npcs = runtime.brain().list().await.map_err(control_error)?;
            let npc = npcs
                .iter()
                .find(|n| n.name.eq_ignore_ascii_case(name.trim()))
                .map(convert::npc_status)
                .ok_or_else(|| ApiError::not_found(format!("no NPC named {name:?}")))?;
            Ok((npc, changed))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use glyphoxa_pipeline::testing::{ScriptedLlm, ScriptedStt, ToneTts};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    struct NoTransports;

    impl TransportFactory for NoTransports {
        fn create(&self, _request: &v1::StartSessionRequest) -> Result<Box<dyn VoiceTransport>, ApiError> {
            Err(ApiError::unavailable("no transports in this test"))
        }
    }

    #[test]
    fn every_call_of_the_worker_api_is_timed_with_its_method_and_code() {
        let providers = Providers {
            stt: Arc::new(ScriptedStt::new(vec![], Duration::ZERO)),
            llm: Arc::new(ScriptedLlm::new(vec![], Duration::ZERO, Duration::ZERO)),
            tts: Arc::new(ToneTts::new(Duration::ZERO, 10)),
        };
        let worker = Worker::new(WorkerSettings::new("w"), providers, Arc::new(NoTransports), None);
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let all = worker.get_status(v1::GetStatusRequest { session_id: None }).await;
                assert!(all.is_ok());
                let unknown = v1::ListNpcsRequest {
                    session_id: "nope".into(),
                };
                assert!(matches!(worker.list_npcs(unknown).await, Err(ApiError::NotFound(_))));
                // Stopping everything is not a call: it is not timed.
                assert_eq!(worker.stop_all("test").await, 0);
            })
        });
        let snapshot = snapshotter.snapshot().into_vec();
        let mut timed: Vec<(String, String, usize)> = snapshot
            .iter()
            .filter(|(key, ..)| key.key().name() == "glyphoxa_worker_rpc_seconds")
            .map(|(key, _, _, value)| {
                let label = |name: &str| {
                    key.key()
                        .labels()
                        .find(|l| l.key() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let DebugValue::Histogram(seconds) = value else {
                    panic!("not a histogram: {value:?}")
                };
                (label("method"), label("code"), seconds.len())
            })
            .collect();
        timed.sort();
        assert_eq!(
            timed,
            [
                ("GetStatus".to_string(), "OK".to_string(), 1),
                ("ListNPCs".to_string(), "NOT_FOUND".to_string(), 1)
            ]
        );
    }
}
