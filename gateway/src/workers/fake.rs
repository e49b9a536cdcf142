//! [`FakeWorker`]: an in-memory [`WorkerApi`] that runs no audio, for tests,
//! benches and demos of the control plane.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use glyphoxa_proto::v1::{
    GetStatusRequest, GetStatusResponse, ListNpcsRequest, ListNpcsResponse, MuteAllNpcsRequest, MuteAllNpcsResponse,
    MuteNpcRequest, MuteNpcResponse, NpcStatus, PlayAudioHeader, PlayAudioResponse, SessionState, SessionStatus,
    SpeakNpcRequest, SpeakNpcResponse, StartSessionRequest, StartSessionResponse, StopSessionRequest,
    StopSessionResponse, UnmuteAllNpcsRequest, UnmuteAllNpcsResponse, UnmuteNpcRequest, UnmuteNpcResponse,
    UpdateKnowledgeRequest, UpdateKnowledgeResponse, UpdateVoiceServerRequest, UpdateVoiceServerResponse, WorkerLoad,
};
use glyphoxa_proto::{ApiError, PcmStream, WorkerApi};

struct FakeSession {
    status: SessionStatus,
    npcs: Vec<NpcStatus>,
    entities: u32,
}

#[derive(Default)]
struct Inner {
    sessions: BTreeMap<String, FakeSession>,
    fail_starts_with: Option<ApiError>,
    fail_all_with: Option<ApiError>,
    start_delay: Duration,
    draining: bool,
    calls: Vec<String>,
    plays: Vec<RecordedPlay>,
}

/// One PlayAudio stream as the fake worker received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPlay {
    /// The stream's header.
    pub header: PlayAudioHeader,
    /// The size of each PCM chunk, in bytes, in order.
    pub chunk_sizes: Vec<usize>,
    /// All PCM bytes received.
    pub pcm: Vec<u8>,
}

/// An in-memory voice worker: records calls, keeps sessions and NPC mute
/// state, and can be told to fail or be slow.
pub struct FakeWorker {
    worker_id: String,
    capacity: u32,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for FakeWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeWorker")
            .field("worker_id", &self.worker_id)
            .finish()
    }
}

impl FakeWorker {
    /// A worker named `worker_id` with room for `capacity` sessions.
    pub fn new(worker_id: impl Into<String>, capacity: u32) -> Self {
        Self {
            worker_id: worker_id.into(),
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Makes every StartSession fail with `error` (`None`: succeed again).
    pub fn fail_starts(&self, error: Option<ApiError>) {
        self.lock().fail_starts_with = error;
    }

    /// Makes every call fail with `error` (`None`: succeed again).
    pub fn fail_all(&self, error: Option<ApiError>) {
        self.lock().fail_all_with = error;
    }

    /// Makes StartSession take `delay`.
    pub fn set_start_delay(&self, delay: Duration) {
        self.lock().start_delay = delay;
    }

    /// Marks the worker as draining (placement must skip it).
    pub fn set_draining(&self, draining: bool) {
        self.lock().draining = draining;
    }

    /// Ids of the sessions it runs.
    pub fn sessions(&self) -> Vec<String> {
        self.lock().sessions.keys().cloned().collect()
    }

    /// Every PlayAudio stream received so far, in order.
    pub fn plays(&self) -> Vec<RecordedPlay> {
        self.lock().plays.clone()
    }

    /// Every call so far, as `Method(session_id)`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn enter(&self, call: String) -> Result<(), ApiError> {
        let mut inner = self.lock();
        inner.calls.push(call);
        match &inner.fail_all_with {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn with_session<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut FakeSession) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut inner = self.lock();
        match inner.sessions.get_mut(id) {
            Some(session) => f(session),
            None => Err(ApiError::not_found(format!("session {id}"))),
        }
    }

    fn set_muted(&self, session_id: &str, name: &str, muted: bool) -> Result<(NpcStatus, bool), ApiError> {
        self.with_session(session_id, |session| {
            let npc = session
                .npcs
                .iter_mut()
                .find(|npc| npc.name.eq_ignore_ascii_case(name) || npc.id == name)
                .ok_or_else(|| ApiError::not_found(format!("NPC {name:?}")))?;
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

#[async_trait]
impl WorkerApi for FakeWorker {
    async fn start_session(&self, request: StartSessionRequest) -> Result<StartSessionResponse, ApiError> {
        self.enter(format!("StartSession({})", request.session_id))?;
        let delay = self.lock().start_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut inner = self.lock();
        if let Some(error) = &inner.fail_starts_with {
            return Err(error.clone());
        }
        if request.session_id.is_empty() {
            return Err(ApiError::invalid_argument("session_id is empty"));
        }
        if let Some(existing) = inner.sessions.get(&request.session_id) {
            return Ok(StartSessionResponse {
                session: Some(existing.status.clone()),
                worker_id: self.worker_id.clone(),
            });
        }
        if inner.sessions.len() >= self.capacity as usize {
            return Err(ApiError::resource_exhausted(format!(
                "worker {} is full ({}/{})",
                self.worker_id,
                inner.sessions.len(),
                self.capacity
            )));
        }
        let status = SessionStatus {
            session_id: request.session_id.clone(),
            state: SessionState::Active as i32,
            started_at_unix_ms: 1,
            error: String::new(),
            tenant_id: request.tenant_id.clone(),
            guild_id: request.guild_id.clone(),
            channel_id: request.channel_id.clone(),
            ended_at_unix_ms: 0,
            voice_connected: request.voice.is_some(),
        };
        let npcs = request
            .npcs
            .iter()
            .map(|npc| NpcStatus {
                id: npc.id.clone(),
                name: npc.name.clone(),
                muted: false,
            })
            .collect();
        inner.sessions.insert(
            request.session_id.clone(),
            FakeSession {
                status: status.clone(),
                npcs,
                entities: u32::try_from(request.knowledge.len()).unwrap_or(u32::MAX),
            },
        );
        Ok(StartSessionResponse {
            session: Some(status),
            worker_id: self.worker_id.clone(),
        })
    }

    async fn stop_session(&self, request: StopSessionRequest) -> Result<StopSessionResponse, ApiError> {
        self.enter(format!("StopSession({})", request.session_id))?;
        match self.lock().sessions.remove(&request.session_id) {
            Some(mut session) => {
                session.status.state = SessionState::Ended as i32;
                session.status.ended_at_unix_ms = 2;
                Ok(StopSessionResponse {
                    session: Some(session.status),
                })
            }
            None => Err(ApiError::not_found(format!("session {}", request.session_id))),
        }
    }

    async fn get_status(&self, request: GetStatusRequest) -> Result<GetStatusResponse, ApiError> {
        self.enter(format!("GetStatus({})", request.session_id.clone().unwrap_or_default()))?;
        let inner = self.lock();
        let sessions = match &request.session_id {
            Some(id) => match inner.sessions.get(id) {
                Some(session) => vec![session.status.clone()],
                None => return Err(ApiError::not_found(format!("session {id}"))),
            },
            None => inner.sessions.values().map(|s| s.status.clone()).collect(),
        };
        Ok(GetStatusResponse {
            worker_id: self.worker_id.clone(),
            sessions,
            load: Some(WorkerLoad {
                active_sessions: u32::try_from(inner.sessions.len()).unwrap_or(u32::MAX),
                capacity: self.capacity,
                draining: inner.draining,
            }),
            version: "fake".into(),
        })
    }

    async fn update_voice_server(
        &self,
        request: UpdateVoiceServerRequest,
    ) -> Result<UpdateVoiceServerResponse, ApiError> {
        self.enter(format!("UpdateVoiceServer({})", request.session_id))?;
        self.with_session(&request.session_id, |_| Ok(UpdateVoiceServerResponse {}))
    }

    async fn update_knowledge(&self, request: UpdateKnowledgeRequest) -> Result<UpdateKnowledgeResponse, ApiError> {
        self.enter(format!("UpdateKnowledge({})", request.session_id))?;
        self.with_session(&request.session_id, |session| {
            let added = u32::try_from(request.upserted.len()).unwrap_or(u32::MAX);
            let removed = u32::try_from(request.removed_entity_ids.len()).unwrap_or(u32::MAX);
            session.entities = session.entities.saturating_add(added).saturating_sub(removed);
            Ok(UpdateKnowledgeResponse {
                entity_count: session.entities,
            })
        })
    }

    async fn list_npcs(&self, request: ListNpcsRequest) -> Result<ListNpcsResponse, ApiError> {
        self.enter(format!("ListNPCs({})", request.session_id))?;
        self.with_session(&request.session_id, |session| {
            Ok(ListNpcsResponse {
                npcs: session.npcs.clone(),
            })
        })
    }

    async fn mute_npc(&self, request: MuteNpcRequest) -> Result<MuteNpcResponse, ApiError> {
        self.enter(format!("MuteNPC({})", request.session_id))?;
        let (npc, changed) = self.set_muted(&request.session_id, &request.name, true)?;
        Ok(MuteNpcResponse {
            npc: Some(npc),
            changed,
        })
    }

    async fn unmute_npc(&self, request: UnmuteNpcRequest) -> Result<UnmuteNpcResponse, ApiError> {
        self.enter(format!("UnmuteNPC({})", request.session_id))?;
        let (npc, changed) = self.set_muted(&request.session_id, &request.name, false)?;
        Ok(UnmuteNpcResponse {
            npc: Some(npc),
            changed,
        })
    }

    async fn speak_npc(&self, request: SpeakNpcRequest) -> Result<SpeakNpcResponse, ApiError> {
        self.enter(format!("SpeakNPC({})", request.session_id))?;
        if request.text.trim().is_empty() {
            return Err(ApiError::invalid_argument("text is empty"));
        }
        self.with_session(&request.session_id, |session| {
            let npc = session
                .npcs
                .iter()
                .find(|npc| npc.name.eq_ignore_ascii_case(&request.name) || npc.id == request.name)
                .ok_or_else(|| ApiError::not_found(format!("NPC {:?}", request.name)))?;
            if npc.muted {
                return Err(ApiError::failed_precondition(format!("{} is muted", npc.name)));
            }
            Ok(SpeakNpcResponse {
                npc: Some(npc.clone()),
                turn_id: "puppet-1".into(),
            })
        })
    }

    async fn mute_all_npcs(&self, request: MuteAllNpcsRequest) -> Result<MuteAllNpcsResponse, ApiError> {
        self.enter(format!("MuteAllNPCs({})", request.session_id))?;
        Ok(MuteAllNpcsResponse {
            changed: self.set_all(&request.session_id, true)?,
        })
    }

    async fn unmute_all_npcs(&self, request: UnmuteAllNpcsRequest) -> Result<UnmuteAllNpcsResponse, ApiError> {
        self.enter(format!("UnmuteAllNPCs({})", request.session_id))?;
        Ok(UnmuteAllNpcsResponse {
            changed: self.set_all(&request.session_id, false)?,
        })
    }

    async fn play_audio(&self, header: PlayAudioHeader, mut pcm: PcmStream) -> Result<PlayAudioResponse, ApiError> {
        self.enter(format!("PlayAudio({})", header.session_id))?;
        self.with_session(&header.session_id, |_| Ok(()))?;
        let mut play = RecordedPlay {
            header: header.clone(),
            chunk_sizes: Vec::new(),
            pcm: Vec::new(),
        };
        let mut failed = None;
        while let Some(chunk) = pcm.next().await {
            match chunk {
                Ok(chunk) => {
                    play.chunk_sizes.push(chunk.len());
                    play.pcm.extend_from_slice(&chunk);
                }
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        let bytes = play.pcm.len() as u64;
        self.lock().plays.push(play);
        if let Some(error) = failed {
            return Err(error);
        }
        let frame = 2 * u64::from(header.channels.max(1));
        let rate = u64::from(header.sample_rate.max(1));
        Ok(PlayAudioResponse {
            played_ms: bytes / frame * 1000 / rate,
            interrupted: false,
        })
    }
}
