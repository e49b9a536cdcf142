//! [`GatewayHandler`]: the gateway's side of `SessionGatewayService`. Workers
//! report session state and heartbeats (applied to the orchestrator) and
//! stream session events (transcript lines and turn results, persisted as
//! they arrive, duplicates ignored by sequence number). [`LateGatewayApi`]
//! hands a `GatewayApi` to full mode's in-process worker before the handler
//! behind it exists.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures_util::StreamExt as _;
use glyphoxa_proto::v1::{
    self, session_event, HeartbeatRequest, HeartbeatResponse, ReportEventsResponse, ReportStateRequest,
    ReportStateResponse, SessionEvent,
};
use glyphoxa_proto::{ApiError, GatewayApi, SessionEventStream};

use crate::ids::SessionId;
use crate::orchestrator::{state_to_proto, Orchestrator};
use crate::store::{
    NewTranscriptLine, SessionEventRecord, SessionState, StoreError, TenantStore, TurnOutcome, TurnRecord,
};

/// Implements [`GatewayApi`] over an [`Orchestrator`] and its store; serve it
/// with `glyphoxa_proto::server::gateway_server` (gateway mode) or hand it to
/// an in-process worker (full mode).
#[derive(Debug, Clone)]
pub struct GatewayHandler {
    orchestrator: Arc<Orchestrator>,
}

impl GatewayHandler {
    /// A handler applying reports to `orchestrator`.
    pub fn new(orchestrator: Arc<Orchestrator>) -> Self {
        Self { orchestrator }
    }
}

fn session_id(text: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(text).map_err(|e| ApiError::invalid_argument(e.to_string()))
}

fn internal(error: StoreError) -> ApiError {
    tracing::error!(%error, "store failure while handling a worker report");
    ApiError::unavailable(format!("the gateway's store failed: {error}"))
}

fn outcome_of(value: i32) -> Option<TurnOutcome> {
    match v1::TurnOutcome::try_from(value).ok()? {
        v1::TurnOutcome::Unspecified => None,
        v1::TurnOutcome::Spoke => Some(TurnOutcome::Spoke),
        v1::TurnOutcome::Cut => Some(TurnOutcome::Cut),
        v1::TurnOutcome::Failed => Some(TurnOutcome::Failed),
        v1::TurnOutcome::Yielded => Some(TurnOutcome::Yielded),
        v1::TurnOutcome::NoTarget => Some(TurnOutcome::NoTarget),
    }
}

fn non_empty(text: String) -> Option<String> {
    if text.is_empty() {
        None
    } else {
        Some(text)
    }
}

/// The store form of a session event; `Err` says what is malformed.
pub fn event_record(event: &SessionEvent) -> Result<SessionEventRecord, String> {
    match &event.event {
        Some(session_event::Event::Transcript(line)) => Ok(SessionEventRecord::Transcript(NewTranscriptLine {
            speaker_id: line.speaker_id.clone(),
            speaker_name: line.speaker_name.clone(),
            npc_id: non_empty(line.npc_id.clone()),
            text: line.text.clone(),
            start_ms: line.start_unix_ms,
            end_ms: line.end_unix_ms,
            outcome: outcome_of(line.outcome),
            turn_id: non_empty(line.turn_id.clone()),
            puppet: line.puppet,
        })),
        Some(session_event::Event::Turn(turn)) => {
            let outcome = outcome_of(turn.outcome).ok_or("turn result without an outcome")?;
            let mut latencies = BTreeMap::new();
            if let Some(stages) = &turn.latencies {
                let named = [
                    ("vad_end_of_speech_ms", stages.vad_end_of_speech_ms),
                    ("stt_final_ms", stages.stt_final_ms),
                    ("llm_first_token_ms", stages.llm_first_token_ms),
                    ("first_sentence_ms", stages.first_sentence_ms),
                    ("tts_first_audio_ms", stages.tts_first_audio_ms),
                    ("first_frame_out_ms", stages.first_frame_out_ms),
                ];
                for (name, value) in named {
                    if let Some(value) = value.filter(|v| v.is_finite()) {
                        latencies.insert(name.to_string(), value);
                    }
                }
            }
            Ok(SessionEventRecord::Turn(TurnRecord {
                turn_id: turn.turn_id.clone(),
                npc_id: non_empty(turn.npc_id.clone()),
                npc_name: non_empty(turn.npc_name.clone()),
                outcome,
                latencies,
                speech_end_ms: Some(turn.speech_end_unix_ms).filter(|ms| *ms != 0),
                speaker_id: non_empty(turn.speaker_id.clone()),
                error: non_empty(turn.error.clone()),
                played_ms: i64::try_from(turn.played_ms).unwrap_or(i64::MAX),
                at_ms: event.at_unix_ms,
            }))
        }
        Some(session_event::Event::NpcState(change)) => Ok(SessionEventRecord::NpcState {
            npc_id: change.npc_id.clone(),
            muted: change.muted,
        }),
        None => Err("event without a payload".into()),
    }
}

#[async_trait]
impl GatewayApi for GatewayHandler {
    async fn report_state(&self, request: ReportStateRequest) -> Result<ReportStateResponse, ApiError> {
        let id = session_id(&request.session_id)?;
        let state = match v1::SessionState::try_from(request.state) {
            Ok(v1::SessionState::Pending) => SessionState::Pending,
            Ok(v1::SessionState::Active) => SessionState::Active,
            Ok(v1::SessionState::Ended) => SessionState::Ended,
            _ => return Err(ApiError::invalid_argument("state must be PENDING, ACTIVE or ENDED")),
        };
        let worker = Some(request.worker_id.as_str()).filter(|w| !w.is_empty());
        let error = Some(request.error.as_str()).filter(|e| !e.is_empty());
        match self
            .orchestrator
            .report_state(&id, state, error, worker)
            .await
            .map_err(internal)?
        {
            Some(_) => Ok(ReportStateResponse {}),
            None => Err(ApiError::not_found(format!("session {id}"))),
        }
    }

    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, ApiError> {
        let id = session_id(&request.session_id)?;
        let worker = Some(request.worker_id.as_str()).filter(|w| !w.is_empty());
        match self.orchestrator.heartbeat(&id, worker).await.map_err(internal)? {
            Some(state) => Ok(HeartbeatResponse {
                state: state_to_proto(state) as i32,
            }),
            None => Err(ApiError::not_found(format!("session {id}"))),
        }
    }

    async fn report_events(&self, mut events: SessionEventStream) -> Result<ReportEventsResponse, ApiError> {
        let store = self.orchestrator.store();
        let mut owners: HashMap<String, Option<TenantStore>> = HashMap::new();
        let mut accepted = 0u64;
        while let Some(event) = events.next().await {
            let event = event?;
            let Ok(id) = SessionId::parse(&event.session_id) else {
                tracing::warn!(session_id = %event.session_id, "ignoring an event with a malformed session id");
                continue;
            };
            if !owners.contains_key(id.as_str()) {
                let owner = store.session_owner(&id).await.map_err(internal)?;
                owners.insert(id.to_string(), owner.map(|tenant| store.tenant(&tenant)));
            }
            let Some(Some(tenant_store)) = owners.get(id.as_str()) else {
                tracing::warn!(session_id = %id, "ignoring an event of an unknown session");
                continue;
            };
            let record = match event_record(&event) {
                Ok(record) => record,
                Err(why) => {
                    tracing::warn!(session_id = %id, sequence = event.sequence, %why, "ignoring a malformed event");
                    continue;
                }
            };
            match tenant_store.record_event(&id, event.sequence, &record).await {
                Ok(Some(true)) => {
                    accepted += 1;
                    metrics::counter!("glyphoxa_gateway_session_events_total").increment(1);
                }
                Ok(_) => {}
                Err(StoreError::Invalid { field, message }) => {
                    tracing::warn!(session_id = %id, sequence = event.sequence, field, %message, "ignoring an invalid event");
                }
                Err(error) => return Err(internal(error)),
            }
        }
        let mut last_sequence = HashMap::new();
        for (id, tenant_store) in owners {
            let Some(tenant_store) = tenant_store else { continue };
            let Ok(session) = SessionId::parse(&id) else { continue };
            if let Some(last) = tenant_store.last_event_sequence(&session).await.map_err(internal)? {
                last_sequence.insert(id, u64::try_from(last).unwrap_or(0));
            }
        }
        Ok(ReportEventsResponse {
            accepted,
            last_sequence,
        })
    }
}

/// A [`GatewayApi`] whose implementation is bound after it was handed out.
///
/// Full mode builds its in-process worker first (the worker needs a
/// `GatewayApi` to report to), then the orchestrator over that worker, then
/// the [`GatewayHandler`] over the orchestrator: the worker gets a
/// `LateGatewayApi` that is bound to the handler once it exists. Calls before
/// [`LateGatewayApi::bind`] fail with `UNAVAILABLE`.
#[derive(Default)]
pub struct LateGatewayApi {
    inner: OnceLock<Arc<dyn GatewayApi>>,
}

impl std::fmt::Debug for LateGatewayApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateGatewayApi")
            .field("bound", &self.inner.get().is_some())
            .finish()
    }
}

impl LateGatewayApi {
    /// An unbound API.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds the implementation every call goes to; `false` (and `api`
    /// ignored) when one is bound already.
    pub fn bind(&self, api: Arc<dyn GatewayApi>) -> bool {
        self.inner.set(api).is_ok()
    }

    fn api(&self) -> Result<&Arc<dyn GatewayApi>, ApiError> {
        self.inner
            .get()
            .ok_or_else(|| ApiError::unavailable("the gateway is still starting"))
    }
}

#[async_trait]
impl GatewayApi for LateGatewayApi {
    async fn report_state(&self, request: ReportStateRequest) -> Result<ReportStateResponse, ApiError> {
        self.api()?.report_state(request).await
    }

    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, ApiError> {
        self.api()?.heartbeat(request).await
    }

    async fn report_events(&self, events: SessionEventStream) -> Result<ReportEventsResponse, ApiError> {
        self.api()?.report_events(events).await
    }
}
