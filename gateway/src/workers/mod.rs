//! Worker clients: how the control plane reaches voice workers.
//!
//! [`WorkerClient`] places and starts sessions and makes every later call to
//! the worker that runs a session (named by the address recorded with the
//! session). Two implementations:
//! - [`InProcessWorkerClient`]: full mode, any `Arc<dyn WorkerApi>` called
//!   directly (address [`IN_PROCESS`]);
//! - [`GrpcWorkerPool`]: gateway mode, a configured list of gRPC workers
//!   (plus an optional DNS name) with deadlines, a circuit breaker per worker
//!   and least-loaded placement with retry on another worker.
//!
//! When no worker can serve, calls fail fast with
//! [`WorkerError::Unavailable`] ("voice service unavailable: …").

mod breaker;
pub mod fake;
mod grpc;

use std::sync::Arc;

use async_trait::async_trait;
use glyphoxa_proto::v1::{
    ListNpcsRequest, MuteAllNpcsRequest, MuteNpcRequest, MuteNpcResponse, NpcStatus, PlayAudioHeader,
    PlayAudioResponse, SessionStatus, SpeakNpcRequest, SpeakNpcResponse, StartSessionRequest, StopSessionRequest,
    UnmuteAllNpcsRequest, UnmuteNpcRequest, UnmuteNpcResponse, UpdateKnowledgeRequest, UpdateVoiceServerRequest,
    WorkerLoad,
};
use glyphoxa_proto::{ApiError, PcmStream, WorkerApi};

pub use breaker::{is_transport_failure, BreakerSettings, CircuitBreaker, CircuitState};
pub use grpc::{GrpcWorkerPool, WorkerPoolSettings};

/// The worker address recorded for sessions run by an in-process worker.
pub const IN_PROCESS: &str = "in-process";

/// Where a session was started.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The worker's address (what later calls and the session record use).
    pub worker_addr: String,
    /// The id the worker reports in heartbeats.
    pub worker_id: String,
    /// The session as the worker reported it.
    pub session: Option<SessionStatus>,
}

/// Why a worker call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkerError {
    /// No worker could serve the call (none configured, all unreachable,
    /// circuits open, all full). Users see this as "voice service
    /// unavailable".
    #[error("voice service unavailable: {0}")]
    Unavailable(String),
    /// The worker answered with an error (unknown session or NPC, bad
    /// argument, …).
    #[error("worker {worker}: {source}")]
    Api {
        /// The worker's address.
        worker: String,
        /// What it said.
        source: ApiError,
    },
}

impl WorkerError {
    /// Classifies an error from `worker`: transport failures and a full
    /// worker become [`WorkerError::Unavailable`].
    pub fn from_api(worker: &str, source: ApiError) -> Self {
        if is_transport_failure(&source) || matches!(source, ApiError::ResourceExhausted(_)) {
            Self::Unavailable(format!("worker {worker}: {source}"))
        } else {
            Self::Api {
                worker: worker.to_string(),
                source,
            }
        }
    }

    /// The worker's answer, when it gave one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Self::Api { source, .. } => Some(source),
            Self::Unavailable(_) => None,
        }
    }

    /// Whether the worker said the session or NPC does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self.api_error(), Some(ApiError::NotFound(_)))
    }
}

/// What stopping a session on its worker did.
#[derive(Debug, Clone, PartialEq)]
pub enum StopOutcome {
    /// The worker stopped it; its final status.
    Stopped(Option<SessionStatus>),
    /// The worker did not know it (already stopped).
    AlreadyStopped,
}

/// Health of one worker, for readiness and operators.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerHealth {
    /// Its address.
    pub address: String,
    /// Its id, when it answered.
    pub worker_id: Option<String>,
    /// The state of its circuit.
    pub circuit: CircuitState,
    /// Its load, when it answered.
    pub load: Option<WorkerLoad>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// How the control plane reaches voice workers. The provided methods call
/// the worker at `worker` (the address recorded with the session) through
/// [`WorkerClient::worker`].
#[async_trait]
pub trait WorkerClient: Send + Sync {
    /// Places the session on a worker and starts it there; a failed start is
    /// retried on another worker. Nothing is left running when this fails.
    async fn start_session(&self, request: StartSessionRequest) -> Result<Placement, WorkerError>;

    /// The worker at `address`, for calls about a session it runs; calls go
    /// through its deadline and circuit breaker.
    fn worker(&self, address: &str) -> Result<Arc<dyn WorkerApi>, WorkerError>;

    /// Every known worker's health (asks each for its status).
    async fn health(&self) -> Vec<WorkerHealth>;

    /// Stops a session; a worker that does not know it reports
    /// [`StopOutcome::AlreadyStopped`].
    async fn stop_session(&self, worker: &str, session_id: &str, reason: &str) -> Result<StopOutcome, WorkerError> {
        let request = StopSessionRequest {
            session_id: session_id.to_string(),
            reason: reason.to_string(),
        };
        match self.worker(worker)?.stop_session(request).await {
            Ok(response) => Ok(StopOutcome::Stopped(response.session)),
            Err(ApiError::NotFound(_)) => Ok(StopOutcome::AlreadyStopped),
            Err(error) => Err(WorkerError::from_api(worker, error)),
        }
    }

    /// The session's status on its worker.
    async fn session_status(&self, worker: &str, session_id: &str) -> Result<Option<SessionStatus>, WorkerError> {
        let request = glyphoxa_proto::v1::GetStatusRequest {
            session_id: Some(session_id.to_string()),
        };
        let response = self
            .worker(worker)?
            .get_status(request)
            .await
            .map_err(|e| WorkerError::from_api(worker, e))?;
        Ok(response.sessions.into_iter().find(|s| s.session_id == session_id))
    }

    /// Forwards a new voice server (token, endpoint) to the session.
    async fn update_voice_server(&self, worker: &str, request: UpdateVoiceServerRequest) -> Result<(), WorkerError> {
        self.worker(worker)?
            .update_voice_server(request)
            .await
            .map(|_| ())
            .map_err(|e| WorkerError::from_api(worker, e))
    }

    /// Upserts and removes knowledge of a running session; returns how many
    /// entities it knows now.
    async fn update_knowledge(&self, worker: &str, request: UpdateKnowledgeRequest) -> Result<u32, WorkerError> {
        self.worker(worker)?
            .update_knowledge(request)
            .await
            .map(|r| r.entity_count)
            .map_err(|e| WorkerError::from_api(worker, e))
    }

    /// The session's NPCs with their mute state.
    async fn list_npcs(&self, worker: &str, session_id: &str) -> Result<Vec<NpcStatus>, WorkerError> {
        let request = ListNpcsRequest {
            session_id: session_id.to_string(),
        };
        self.worker(worker)?
            .list_npcs(request)
            .await
            .map(|r| r.npcs)
            .map_err(|e| WorkerError::from_api(worker, e))
    }

    /// Mutes one NPC by name (case-insensitive) or id.
    async fn mute_npc(&self, worker: &str, session_id: &str, name: &str) -> Result<MuteNpcResponse, WorkerError> {
        let request = MuteNpcRequest {
            session_id: session_id.to_string(),
            name: name.to_string(),
        };
        self.worker(worker)?
            .mute_npc(request)
            .await
            .map_err(|e| WorkerError::from_api(worker, e))
    }

    /// Unmutes one NPC by name (case-insensitive) or id.
    async fn unmute_npc(&self, worker: &str, session_id: &str, name: &str) -> Result<UnmuteNpcResponse, WorkerError> {
        let request = UnmuteNpcRequest {
            session_id: session_id.to_string(),
            name: name.to_string(),
        };
        self.worker(worker)?
            .unmute_npc(request)
            .await
            .map_err(|e| WorkerError::from_api(worker, e))
    }

    /// Makes an NPC say exactly `text`.
    async fn speak_npc(
        &self,
        worker: &str,
        session_id: &str,
        name: &str,
        text: &str,
    ) -> Result<SpeakNpcResponse, WorkerError> {
        let request = SpeakNpcRequest {
            session_id: session_id.to_string(),
            name: name.to_string(),
            text: text.to_string(),
        };
        self.worker(worker)?
            .speak_npc(request)
            .await
            .map_err(|e| WorkerError::from_api(worker, e))
    }

    /// Mutes every NPC; returns how many changed.
    async fn mute_all_npcs(&self, worker: &str, session_id: &str) -> Result<u32, WorkerError> {
        let request = MuteAllNpcsRequest {
            session_id: session_id.to_string(),
        };
        self.worker(worker)?
            .mute_all_npcs(request)
            .await
            .map(|r| r.changed)
            .map_err(|e| WorkerError::from_api(worker, e))
    }

    /// Unmutes every NPC; returns how many changed.
    async fn unmute_all_npcs(&self, worker: &str, session_id: &str) -> Result<u32, WorkerError> {
        let request = UnmuteAllNpcsRequest {
            session_id: session_id.to_string(),
        };
        self.worker(worker)?
            .unmute_all_npcs(request)
            .await
            .map(|r| r.changed)
            .map_err(|e| WorkerError::from_api(worker, e))
    }

    /// Plays PCM through the session's mixer (voice recap, sound effects).
    async fn play_audio(
        &self,
        worker: &str,
        header: PlayAudioHeader,
        pcm: PcmStream,
    ) -> Result<PlayAudioResponse, WorkerError> {
        self.worker(worker)?
            .play_audio(header, pcm)
            .await
            .map_err(|e| WorkerError::from_api(worker, e))
    }
}

/// Full mode: one worker in this process, called directly.
pub struct InProcessWorkerClient {
    api: Arc<dyn WorkerApi>,
}

impl std::fmt::Debug for InProcessWorkerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcessWorkerClient")
    }
}

impl InProcessWorkerClient {
    /// Wraps the in-process worker.
    pub fn new(api: Arc<dyn WorkerApi>) -> Self {
        Self { api }
    }
}

#[async_trait]
impl WorkerClient for InProcessWorkerClient {
    async fn start_session(&self, request: StartSessionRequest) -> Result<Placement, WorkerError> {
        let session_id = request.session_id.clone();
        match self.api.start_session(request).await {
            Ok(response) => Ok(Placement {
                worker_addr: IN_PROCESS.to_string(),
                worker_id: if response.worker_id.is_empty() {
                    IN_PROCESS.to_string()
                } else {
                    response.worker_id
                },
                session: response.session,
            }),
            Err(error) => {
                if !matches!(error, ApiError::InvalidArgument(_) | ApiError::ResourceExhausted(_)) {
                    // It may have got far enough to hold resources.
                    let _ = self
                        .api
                        .stop_session(StopSessionRequest {
                            session_id,
                            reason: "start failed".into(),
                        })
                        .await;
                }
                Err(WorkerError::from_api(IN_PROCESS, error))
            }
        }
    }

    fn worker(&self, _address: &str) -> Result<Arc<dyn WorkerApi>, WorkerError> {
        Ok(Arc::clone(&self.api))
    }

    async fn health(&self) -> Vec<WorkerHealth> {
        let status = self.api.get_status(Default::default()).await;
        vec![match status {
            Ok(status) => WorkerHealth {
                address: IN_PROCESS.to_string(),
                worker_id: Some(status.worker_id),
                circuit: CircuitState::Closed,
                load: status.load,
                error: None,
            },
            Err(error) => WorkerHealth {
                address: IN_PROCESS.to_string(),
                worker_id: None,
                circuit: CircuitState::Closed,
                load: None,
                error: Some(error.to_string()),
            },
        }]
    }
}
