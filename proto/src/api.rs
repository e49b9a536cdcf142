//! The two services of the contract as plain Rust traits.
//!
//! [`WorkerApi`] mirrors `SessionWorkerService` (implemented by the worker,
//! called by the gateway or, in full mode, in-process by the command
//! handlers); [`GatewayApi`] mirrors `SessionGatewayService` (implemented by
//! the gateway, called by workers). tonic is only an adapter around them: see
//! [`crate::server`] and [`crate::client`].

use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

use crate::v1::{
    GetStatusRequest, GetStatusResponse, HeartbeatRequest, HeartbeatResponse, ListNpcsRequest, ListNpcsResponse,
    MuteAllNpcsRequest, MuteAllNpcsResponse, MuteNpcRequest, MuteNpcResponse, PlayAudioHeader, PlayAudioResponse,
    ReportEventsResponse, ReportStateRequest, ReportStateResponse, SessionEvent, SpeakNpcRequest, SpeakNpcResponse,
    StartSessionRequest, StartSessionResponse, StopSessionRequest, StopSessionResponse, UnmuteAllNpcsRequest,
    UnmuteAllNpcsResponse, UnmuteNpcRequest, UnmuteNpcResponse, UpdateKnowledgeRequest, UpdateKnowledgeResponse,
    UpdateVoiceServerRequest, UpdateVoiceServerResponse,
};
use crate::ApiError;

/// A stream of PCM chunks for [`WorkerApi::play_audio`]: signed 16-bit
/// little-endian samples, channels interleaved as announced by the
/// [`PlayAudioHeader`], each chunk a whole number of sample frames.
///
/// An `Err` item means the producer failed (or, over gRPC, the stream broke
/// or the client aborted it); the stream ends after it. Consumers should pull
/// chunks only as fast as they play them: over gRPC that is what gives the
/// sender back-pressure.
pub type PcmStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, ApiError>> + Send + 'static>>;

/// A stream of [`SessionEvent`]s for [`GatewayApi::report_events`].
///
/// An `Err` item means the producer failed (or, over gRPC, the stream broke);
/// the stream ends after it. Events received before it are valid.
pub type SessionEventStream = Pin<Box<dyn Stream<Item = Result<SessionEvent, ApiError>> + Send + 'static>>;

/// The voice worker's API (`SessionWorkerService`): session lifecycle, NPC
/// control and audio playback. One method per RPC; see
/// `proto/glyphoxa/v1/worker.proto` for the meaning of every field.
///
/// Object safe: use it as `Arc<dyn WorkerApi>`. Errors follow SPEC §5:
/// unknown session or NPC → [`ApiError::NotFound`], bad arguments →
/// [`ApiError::InvalidArgument`], worker full →
/// [`ApiError::ResourceExhausted`].
#[async_trait]
pub trait WorkerApi: Send + Sync {
    /// Starts a voice session (pipeline + voice connection); idempotent for
    /// a session id that already runs on this worker.
    async fn start_session(&self, request: StartSessionRequest) -> Result<StartSessionResponse, ApiError>;

    /// Stops a session; [`ApiError::NotFound`] if it is unknown (already
    /// stopped).
    async fn stop_session(&self, request: StopSessionRequest) -> Result<StopSessionResponse, ApiError>;

    /// The worker's load and the status of one or all of its sessions.
    async fn get_status(&self, request: GetStatusRequest) -> Result<GetStatusResponse, ApiError>;

    /// Moves a session's voice connection to a new voice server.
    async fn update_voice_server(
        &self,
        request: UpdateVoiceServerRequest,
    ) -> Result<UpdateVoiceServerResponse, ApiError>;

    /// Upserts and removes campaign entities of a running session.
    async fn update_knowledge(&self, request: UpdateKnowledgeRequest) -> Result<UpdateKnowledgeResponse, ApiError>;

    /// Lists the session's NPCs with their mute state (RPC `ListNPCs`).
    async fn list_npcs(&self, request: ListNpcsRequest) -> Result<ListNpcsResponse, ApiError>;

    /// Mutes one NPC by name (case-insensitive) or id (RPC `MuteNPC`).
    async fn mute_npc(&self, request: MuteNpcRequest) -> Result<MuteNpcResponse, ApiError>;

    /// Unmutes one NPC by name (case-insensitive) or id (RPC `UnmuteNPC`).
    async fn unmute_npc(&self, request: UnmuteNpcRequest) -> Result<UnmuteNpcResponse, ApiError>;

    /// Makes an NPC say exactly the given text (RPC `SpeakNPC`); returns once
    /// the line is queued.
    async fn speak_npc(&self, request: SpeakNpcRequest) -> Result<SpeakNpcResponse, ApiError>;

    /// Mutes every NPC of a session; reports how many changed (RPC
    /// `MuteAllNPCs`).
    async fn mute_all_npcs(&self, request: MuteAllNpcsRequest) -> Result<MuteAllNpcsResponse, ApiError>;

    /// Unmutes every NPC of a session; reports how many changed (RPC
    /// `UnmuteAllNPCs`).
    async fn unmute_all_npcs(&self, request: UnmuteAllNpcsRequest) -> Result<UnmuteAllNpcsResponse, ApiError>;

    /// Plays `pcm` (formatted as `header` says) through the session's mixer
    /// and returns when playback ends, with the duration played and whether
    /// it was interrupted. Implementations pull chunks as they play them
    /// (never buffering the whole stream), which gives back-pressure.
    async fn play_audio(&self, header: PlayAudioHeader, pcm: PcmStream) -> Result<PlayAudioResponse, ApiError>;
}

/// The gateway's API for workers (`SessionGatewayService`): session state,
/// liveness and session events. See `proto/glyphoxa/v1/gateway.proto`.
///
/// Object safe: use it as `Arc<dyn GatewayApi>`.
#[async_trait]
pub trait GatewayApi: Send + Sync {
    /// Records a session's new state (and error, if any).
    async fn report_state(&self, request: ReportStateRequest) -> Result<ReportStateResponse, ApiError>;

    /// Records that a session is alive on its worker; answers with the
    /// gateway's view of the session (ENDED = the worker should stop it).
    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, ApiError>;

    /// Persists session events as they arrive and, when the stream ends,
    /// reports how many were accepted and the last sequence per session.
    async fn report_events(&self, events: SessionEventStream) -> Result<ReportEventsResponse, ApiError>;
}
