//! Shared test support: sample messages with non-default values in every
//! field, and in-memory implementations of `WorkerApi` and `GatewayApi`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use glyphoxa_proto::v1::*;
use glyphoxa_proto::{ApiError, GatewayApi, PcmStream, SessionEventStream, WorkerApi};

// ---------------------------------------------------------------- fixtures

pub fn voice_profile() -> VoiceProfile {
    VoiceProfile {
        provider: "espeak".into(),
        voice_id: "en-us+m3".into(),
        speed: 1.25,
        pitch: -2.5,
    }
}

pub fn npc(id: &str, name: &str) -> NpcDefinition {
    NpcDefinition {
        id: id.into(),
        name: name.into(),
        personality: format!("{name}: a grumpy dwarven innkeeper who secretly loves gossip."),
        voice: Some(voice_profile()),
        address_only: true,
        gm_helper: true,
    }
}

pub fn entity(id: &str, name: &str) -> Entity {
    Entity {
        id: id.into(),
        name: name.into(),
        r#type: EntityType::Location as i32,
        description: "A frontier town at the foot of the Sword Mountains.".into(),
        tags: vec!["town".into(), "sword coast".into()],
        properties: HashMap::from([
            ("population".to_string(), "800".to_string()),
            ("ruler".to_string(), "Harbin Wester".to_string()),
        ]),
        relationships: vec![Relationship {
            target: "e-redbrands".into(),
            r#type: "threatened_by".into(),
        }],
    }
}

pub fn voice_credentials() -> VoiceCredentials {
    VoiceCredentials {
        bot_user_id: "111111111111111111".into(),
        session_id: "voice-session-abc".into(),
        token: "voice-token-secret".into(),
        endpoint: "us-east1234.discord.media:443".into(),
    }
}

pub fn start_session_request(session_id: &str) -> StartSessionRequest {
    StartSessionRequest {
        session_id: session_id.into(),
        tenant_id: "tavern_group".into(),
        campaign_id: "c-lost-mine".into(),
        guild_id: "222222222222222222".into(),
        channel_id: "333333333333333333".into(),
        license_tier: LicenseTier::Dedicated as i32,
        dm_user_id: "444444444444444444".into(),
        npcs: vec![
            npc("grimble", "Grimble"),
            NpcDefinition {
                gm_helper: false,
                address_only: false,
                ..npc("sildar", "Sildar Hallwinter")
            },
        ],
        knowledge: vec![entity("e-phandalin", "Phandalin")],
        voice: Some(voice_credentials()),
        campaign_name: "Lost Mine".into(),
        campaign_system: "dnd5e".into(),
    }
}

pub fn session_status(session_id: &str) -> SessionStatus {
    SessionStatus {
        session_id: session_id.into(),
        state: SessionState::Active as i32,
        started_at_unix_ms: 1_760_000_000_123,
        error: "voice reconnected once".into(),
        tenant_id: "tavern_group".into(),
        guild_id: "222222222222222222".into(),
        channel_id: "333333333333333333".into(),
        ended_at_unix_ms: 1_760_000_360_456,
        voice_connected: true,
    }
}

pub fn npc_status() -> NpcStatus {
    NpcStatus {
        id: "grimble".into(),
        name: "Grimble".into(),
        muted: true,
    }
}

pub fn play_audio_header(session_id: &str) -> PlayAudioHeader {
    PlayAudioHeader {
        session_id: session_id.into(),
        sample_rate: 24_000,
        channels: 2,
        priority: AudioPriority::Narrator as i32,
        label: "voice-recap".into(),
    }
}

pub fn stage_latencies() -> StageLatencies {
    StageLatencies {
        vad_end_of_speech_ms: Some(310.5),
        stt_final_ms: Some(420.25),
        llm_first_token_ms: Some(650.0),
        first_sentence_ms: Some(880.75),
        tts_first_audio_ms: Some(990.5),
        first_frame_out_ms: Some(1004.0),
    }
}

pub fn transcript_line() -> TranscriptLine {
    TranscriptLine {
        speaker_id: "grimble".into(),
        speaker_name: "Grimble".into(),
        npc_id: "grimble".into(),
        text: "What'll it be, stranger?".into(),
        start_unix_ms: 1_760_000_001_000,
        end_unix_ms: 1_760_000_002_500,
        outcome: TurnOutcome::Cut as i32,
        turn_id: "t-7".into(),
        puppet: true,
    }
}

pub fn turn_result() -> TurnResult {
    TurnResult {
        turn_id: "t-7".into(),
        npc_id: "grimble".into(),
        npc_name: "Grimble".into(),
        outcome: TurnOutcome::Spoke as i32,
        latencies: Some(stage_latencies()),
        speech_end_unix_ms: 1_760_000_000_900,
        speaker_id: "555555555555555555".into(),
        error: "tts retried once".into(),
        played_ms: 2_480,
    }
}

pub fn npc_state_change() -> NpcStateChange {
    NpcStateChange {
        npc_id: "grimble".into(),
        npc_name: "Grimble".into(),
        muted: true,
    }
}

/// Three events of one session, one per oneof variant, sequences 1..=3.
pub fn session_events(session_id: &str) -> Vec<SessionEvent> {
    vec![
        SessionEvent {
            session_id: session_id.into(),
            sequence: 1,
            at_unix_ms: 1_760_000_002_500,
            event: Some(session_event::Event::Transcript(transcript_line())),
        },
        SessionEvent {
            session_id: session_id.into(),
            sequence: 2,
            at_unix_ms: 1_760_000_002_600,
            event: Some(session_event::Event::Turn(turn_result())),
        },
        SessionEvent {
            session_id: session_id.into(),
            sequence: 3,
            at_unix_ms: 1_760_000_003_000,
            event: Some(session_event::Event::NpcState(npc_state_change())),
        },
    ]
}

/// `frames` stereo s16le frames whose samples encode `seed`, so chunks are
/// distinguishable.
pub fn pcm_chunk(seed: u8, frames: usize) -> Vec<u8> {
    (0..frames * 2)
        .flat_map(|i| {
            let sample = (i as i16)
                .wrapping_mul(31)
                .wrapping_add((seed as i16).wrapping_mul(1000));
            sample.to_le_bytes()
        })
        .collect()
}

// ---------------------------------------------------------- memory worker

/// One session of [`MemoryWorker`].
#[derive(Debug, Clone)]
pub struct MemorySession {
    pub request: StartSessionRequest,
    pub npcs: Vec<NpcStatus>,
    pub knowledge: BTreeMap<String, Entity>,
    pub voice: (String, String),
    pub spoken: Vec<(String, String)>,
}

/// An in-memory `WorkerApi`: real session and NPC bookkeeping, no audio.
#[derive(Debug)]
pub struct MemoryWorker {
    pub capacity: u32,
    /// Every call sleeps this long first (deadline tests).
    pub delay: Duration,
    pub sessions: Mutex<BTreeMap<String, MemorySession>>,
    /// (header, chunks) of every PlayAudio call, in arrival order.
    pub played: Mutex<Vec<(PlayAudioHeader, Vec<Vec<u8>>)>>,
    /// The error that ended the last PlayAudio stream, if any.
    pub play_errors: Mutex<Vec<ApiError>>,
    /// Pause after receiving the first PCM chunk (back-pressure tests).
    pub stall_after_first_chunk: Duration,
}

impl MemoryWorker {
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity,
            delay: Duration::ZERO,
            sessions: Mutex::new(BTreeMap::new()),
            played: Mutex::new(Vec::new()),
            play_errors: Mutex::new(Vec::new()),
            stall_after_first_chunk: Duration::ZERO,
        }
    }

    async fn pause(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }

    fn with_session<T>(
        &self,
        session_id: &str,
        f: impl FnOnce(&mut MemorySession) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut sessions = self.sessions.lock().unwrap();
        let session = sessions
            .get_mut(session_id)
            .ok_or_else(|| ApiError::not_found(format!("no session {session_id:?}")))?;
        f(session)
    }

    fn status(&self, session: &MemorySession, state: SessionState) -> SessionStatus {
        SessionStatus {
            session_id: session.request.session_id.clone(),
            state: state as i32,
            started_at_unix_ms: 1_760_000_000_000,
            error: String::new(),
            tenant_id: session.request.tenant_id.clone(),
            guild_id: session.request.guild_id.clone(),
            channel_id: session.request.channel_id.clone(),
            ended_at_unix_ms: if state == SessionState::Ended {
                1_760_000_600_000
            } else {
                0
            },
            voice_connected: state == SessionState::Active,
        }
    }

    fn set_mute(&self, session_id: &str, name: &str, muted: bool) -> Result<(NpcStatus, bool), ApiError> {
        self.with_session(session_id, |session| {
            let npc = find_npc(&mut session.npcs, name)?;
            let changed = npc.muted != muted;
            npc.muted = muted;
            Ok((npc.clone(), changed))
        })
    }

    fn set_all(&self, session_id: &str, muted: bool) -> Result<u32, ApiError> {
        self.with_session(session_id, |session| {
            let mut changed = 0;
            for npc in &mut session.npcs {
                if npc.muted != muted {
                    npc.muted = muted;
                    changed += 1;
                }
            }
            Ok(changed)
        })
    }
}

fn find_npc<'a>(npcs: &'a mut [NpcStatus], name: &str) -> Result<&'a mut NpcStatus, ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid_argument("NPC name is empty"));
    }
    npcs.iter_mut()
        .find(|npc| npc.id == name || npc.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| ApiError::not_found(format!("no NPC named {name:?}")))
}

#[async_trait]
impl WorkerApi for MemoryWorker {
    async fn start_session(&self, request: StartSessionRequest) -> Result<StartSessionResponse, ApiError> {
        self.pause().await;
        if request.session_id.is_empty() {
            return Err(ApiError::invalid_argument("session_id is empty"));
        }
        if request.license_tier == LicenseTier::Unspecified as i32 {
            return Err(ApiError::invalid_argument("license_tier is unspecified"));
        }
        let mut sessions = self.sessions.lock().unwrap();
        if let Some(existing) = sessions.get(&request.session_id) {
            return Ok(StartSessionResponse {
                session: Some(self.status(existing, SessionState::Active)),
                worker_id: "memory-worker".into(),
            });
        }
        if sessions.len() as u32 >= self.capacity {
            return Err(ApiError::resource_exhausted(format!(
                "worker full ({}/{})",
                sessions.len(),
                self.capacity
            )));
        }
        let voice = request
            .voice
            .as_ref()
            .map(|v| (v.token.clone(), v.endpoint.clone()))
            .unwrap_or_default();
        let session = MemorySession {
            npcs: request
                .npcs
                .iter()
                .map(|npc| NpcStatus {
                    id: npc.id.clone(),
                    name: npc.name.clone(),
                    muted: false,
                })
                .collect(),
            knowledge: request.knowledge.iter().map(|e| (e.id.clone(), e.clone())).collect(),
            voice,
            spoken: Vec::new(),
            request,
        };
        let status = self.status(&session, SessionState::Active);
        sessions.insert(session.request.session_id.clone(), session);
        Ok(StartSessionResponse {
            session: Some(status),
            worker_id: "memory-worker".into(),
        })
    }

    async fn stop_session(&self, request: StopSessionRequest) -> Result<StopSessionResponse, ApiError> {
        self.pause().await;
        let removed = self.sessions.lock().unwrap().remove(&request.session_id);
        let session = removed.ok_or_else(|| ApiError::not_found(format!("no session {:?}", request.session_id)))?;
        Ok(StopSessionResponse {
            session: Some(self.status(&session, SessionState::Ended)),
        })
    }

    async fn get_status(&self, request: GetStatusRequest) -> Result<GetStatusResponse, ApiError> {
        self.pause().await;
        let sessions = self.sessions.lock().unwrap();
        let statuses = match &request.session_id {
            Some(id) => vec![self.status(
                sessions
                    .get(id)
                    .ok_or_else(|| ApiError::not_found(format!("no session {id:?}")))?,
                SessionState::Active,
            )],
            None => sessions
                .values()
                .map(|s| self.status(s, SessionState::Active))
                .collect(),
        };
        Ok(GetStatusResponse {
            worker_id: "memory-worker".into(),
            sessions: statuses,
            load: Some(WorkerLoad {
                active_sessions: sessions.len() as u32,
                capacity: self.capacity,
                draining: false,
            }),
            version: "test".into(),
        })
    }

    async fn update_voice_server(
        &self,
        request: UpdateVoiceServerRequest,
    ) -> Result<UpdateVoiceServerResponse, ApiError> {
        self.pause().await;
        if request.token.is_empty() || request.endpoint.is_empty() {
            return Err(ApiError::invalid_argument("token and endpoint are required"));
        }
        self.with_session(&request.session_id, |session| {
            session.voice = (request.token.clone(), request.endpoint.clone());
            Ok(UpdateVoiceServerResponse {})
        })
    }

    async fn update_knowledge(&self, request: UpdateKnowledgeRequest) -> Result<UpdateKnowledgeResponse, ApiError> {
        self.pause().await;
        self.with_session(&request.session_id, |session| {
            for entity in &request.upserted {
                session.knowledge.insert(entity.id.clone(), entity.clone());
            }
            for id in &request.removed_entity_ids {
                session.knowledge.remove(id);
            }
            Ok(UpdateKnowledgeResponse {
                entity_count: session.knowledge.len() as u32,
            })
        })
    }

    async fn list_npcs(&self, request: ListNpcsRequest) -> Result<ListNpcsResponse, ApiError> {
        self.pause().await;
        self.with_session(&request.session_id, |session| {
            Ok(ListNpcsResponse {
                npcs: session.npcs.clone(),
            })
        })
    }

    async fn mute_npc(&self, request: MuteNpcRequest) -> Result<MuteNpcResponse, ApiError> {
        self.pause().await;
        let (npc, changed) = self.set_mute(&request.session_id, &request.name, true)?;
        Ok(MuteNpcResponse {
            npc: Some(npc),
            changed,
        })
    }

    async fn unmute_npc(&self, request: UnmuteNpcRequest) -> Result<UnmuteNpcResponse, ApiError> {
        self.pause().await;
        let (npc, changed) = self.set_mute(&request.session_id, &request.name, false)?;
        Ok(UnmuteNpcResponse {
            npc: Some(npc),
            changed,
        })
    }

    async fn speak_npc(&self, request: SpeakNpcRequest) -> Result<SpeakNpcResponse, ApiError> {
        self.pause().await;
        if request.text.trim().is_empty() {
            return Err(ApiError::invalid_argument("text is empty"));
        }
        self.with_session(&request.session_id, |session| {
            let npc = find_npc(&mut session.npcs, &request.name)?.clone();
            if npc.muted {
                return Err(ApiError::failed_precondition(format!("{} is muted", npc.name)));
            }
            session.spoken.push((npc.id.clone(), request.text.clone()));
            Ok(SpeakNpcResponse {
                turn_id: format!("puppet-{}", session.spoken.len()),
                npc: Some(npc),
            })
        })
    }

    async fn mute_all_npcs(&self, request: MuteAllNpcsRequest) -> Result<MuteAllNpcsResponse, ApiError> {
        self.pause().await;
        let changed = self.set_all(&request.session_id, true)?;
        Ok(MuteAllNpcsResponse { changed })
    }

    async fn unmute_all_npcs(&self, request: UnmuteAllNpcsRequest) -> Result<UnmuteAllNpcsResponse, ApiError> {
        self.pause().await;
        let changed = self.set_all(&request.session_id, false)?;
        Ok(UnmuteAllNpcsResponse { changed })
    }

    async fn play_audio(&self, header: PlayAudioHeader, mut pcm: PcmStream) -> Result<PlayAudioResponse, ApiError> {
        self.pause().await;
        if !(1..=2).contains(&header.channels) {
            return Err(ApiError::invalid_argument(format!(
                "channels must be 1 or 2, got {}",
                header.channels
            )));
        }
        if header.sample_rate == 0 || header.priority == AudioPriority::Unspecified as i32 {
            return Err(ApiError::invalid_argument("bad sample rate or priority"));
        }
        self.with_session(&header.session_id, |_| Ok(()))?;
        let mut chunks = Vec::new();
        let mut bytes = 0usize;
        while let Some(chunk) = pcm.next().await {
            match chunk {
                Ok(chunk) => {
                    bytes += chunk.len();
                    chunks.push(chunk);
                    if chunks.len() == 1 && !self.stall_after_first_chunk.is_zero() {
                        tokio::time::sleep(self.stall_after_first_chunk).await;
                    }
                }
                Err(error) => {
                    self.play_errors.lock().unwrap().push(error.clone());
                    self.played.lock().unwrap().push((header, chunks));
                    return Err(error);
                }
            }
        }
        let frames = bytes / (2 * header.channels as usize);
        let played_ms = frames as u64 * 1000 / u64::from(header.sample_rate);
        self.played.lock().unwrap().push((header, chunks));
        Ok(PlayAudioResponse {
            played_ms,
            interrupted: false,
        })
    }
}

// --------------------------------------------------------- memory gateway

/// An in-memory `GatewayApi`: records states, heartbeats and events, with
/// per-session sequence de-duplication.
#[derive(Debug, Default)]
pub struct MemoryGateway {
    /// Every call sleeps this long first (deadline tests).
    pub delay: Duration,
    /// Known sessions and their state.
    pub sessions: Mutex<BTreeMap<String, SessionState>>,
    pub states: Mutex<Vec<ReportStateRequest>>,
    pub heartbeats: Mutex<Vec<HeartbeatRequest>>,
    pub events: Mutex<Vec<SessionEvent>>,
    pub stream_errors: Mutex<Vec<ApiError>>,
}

impl MemoryGateway {
    pub fn with_sessions(ids: &[&str]) -> Self {
        let gateway = Self::default();
        {
            let mut sessions = gateway.sessions.lock().unwrap();
            for id in ids {
                sessions.insert((*id).to_string(), SessionState::Pending);
            }
        }
        gateway
    }

    async fn pause(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

#[async_trait]
impl GatewayApi for MemoryGateway {
    async fn report_state(&self, request: ReportStateRequest) -> Result<ReportStateResponse, ApiError> {
        self.pause().await;
        let state = SessionState::try_from(request.state)
            .ok()
            .filter(|s| *s != SessionState::Unspecified)
            .ok_or_else(|| ApiError::invalid_argument("state is unspecified"))?;
        {
            let mut sessions = self.sessions.lock().unwrap();
            let current = sessions
                .get_mut(&request.session_id)
                .ok_or_else(|| ApiError::not_found(format!("no session {:?}", request.session_id)))?;
            *current = state;
        }
        self.states.lock().unwrap().push(request);
        Ok(ReportStateResponse {})
    }

    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, ApiError> {
        self.pause().await;
        if request.worker_id.is_empty() {
            return Err(ApiError::invalid_argument("worker_id is empty"));
        }
        let state = *self
            .sessions
            .lock()
            .unwrap()
            .get(&request.session_id)
            .ok_or_else(|| ApiError::not_found(format!("no session {:?}", request.session_id)))?;
        self.heartbeats.lock().unwrap().push(request);
        Ok(HeartbeatResponse { state: state as i32 })
    }

    async fn report_events(&self, mut events: SessionEventStream) -> Result<ReportEventsResponse, ApiError> {
        self.pause().await;
        let mut accepted = 0;
        let mut last_sequence: HashMap<String, u64> = HashMap::new();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    self.stream_errors.lock().unwrap().push(error.clone());
                    return Err(error);
                }
            };
            let last = last_sequence.entry(event.session_id.clone()).or_insert(0);
            if event.sequence <= *last {
                continue;
            }
            *last = event.sequence;
            accepted += 1;
            self.events.lock().unwrap().push(event);
        }
        Ok(ReportEventsResponse {
            accepted,
            last_sequence,
        })
    }
}

// ------------------------------------------------------------ test servers

/// A gRPC server on 127.0.0.1 (ephemeral port), shut down on drop.
pub struct TestServer {
    pub address: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    (listener, address)
}

/// Serves `api` as SessionWorkerService through the crate's server adapter.
pub async fn spawn_worker(api: std::sync::Arc<dyn WorkerApi>) -> TestServer {
    let (listener, address) = bind().await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(glyphoxa_proto::server::serve_worker(api, listener, async {
        let _ = rx.await;
    }));
    TestServer {
        address,
        shutdown: Some(tx),
    }
}

/// Serves `api` as SessionGatewayService through the crate's server adapter.
pub async fn spawn_gateway(api: std::sync::Arc<dyn GatewayApi>) -> TestServer {
    let (listener, address) = bind().await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(glyphoxa_proto::server::serve_gateway(api, listener, async {
        let _ = rx.await;
    }));
    TestServer {
        address,
        shutdown: Some(tx),
    }
}
