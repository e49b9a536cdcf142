//! gRPC clients that implement [`WorkerApi`] and [`GatewayApi`] over a tonic
//! [`Channel`], so callers hold an `Arc<dyn WorkerApi>` whether the worker is
//! in-process or remote.
//!
//! Every call carries a deadline: [`ClientConfig::deadline`] for unary calls,
//! [`ClientConfig::stream_deadline`] for the client streams (PlayAudio,
//! ReportEvents), which last as long as their audio or session. The deadline
//! is sent as `grpc-timeout` (the server drops the call when it passes) and
//! enforced locally; either way the caller gets
//! [`ApiError::DeadlineExceeded`].
//!
//! ```no_run
//! # async fn run() -> Result<(), glyphoxa_proto::ApiError> {
//! use glyphoxa_proto::{client::GrpcWorkerClient, ClientConfig, WorkerApi};
//! let worker = GrpcWorkerClient::connect("127.0.0.1:50051", ClientConfig::default()).await?;
//! let status = worker.get_status(Default::default()).await?;
//! # let _ = status;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_core::Stream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::v1::play_audio_request::Payload;
use crate::v1::session_gateway_service_client::SessionGatewayServiceClient;
use crate::v1::session_worker_service_client::SessionWorkerServiceClient;
use crate::v1::{
    GetStatusRequest, GetStatusResponse, HeartbeatRequest, HeartbeatResponse, ListNpcsRequest, ListNpcsResponse,
    MuteAllNpcsRequest, MuteAllNpcsResponse, MuteNpcRequest, MuteNpcResponse, PlayAudioHeader, PlayAudioRequest,
    PlayAudioResponse, ReportEventsResponse, ReportStateRequest, ReportStateResponse, SessionEvent, SpeakNpcRequest,
    SpeakNpcResponse, StartSessionRequest, StartSessionResponse, StopSessionRequest, StopSessionResponse,
    UnmuteAllNpcsRequest, UnmuteAllNpcsResponse, UnmuteNpcRequest, UnmuteNpcResponse, UpdateKnowledgeRequest,
    UpdateKnowledgeResponse, UpdateVoiceServerRequest, UpdateVoiceServerResponse,
};
use crate::{ApiError, GatewayApi, PcmStream, SessionEventStream, WorkerApi, MAX_MESSAGE_BYTES};

/// Deadlines and connection settings of a gRPC client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Deadline of every unary call (default 5 s).
    pub deadline: Duration,
    /// Deadline of a whole client-streaming call, PlayAudio or ReportEvents
    /// (default 24 h: a stream lasts as long as its audio or session).
    pub stream_deadline: Duration,
    /// Timeout for establishing the TCP/HTTP2 connection (default 2 s).
    pub connect_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings while calls are open (default
    /// 30 s). A peer that leaves a ping unanswered for
    /// [`KEEP_ALIVE_TIMEOUT`] fails the open calls with
    /// [`ApiError::Unavailable`] instead of leaving a long stream hanging on
    /// a dead connection.
    pub keep_alive_interval: Duration,
}

/// How long an HTTP/2 keep-alive ping may stay unanswered before the
/// connection counts as dead (clients and servers of this crate).
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(5),
            stream_deadline: Duration::from_secs(24 * 60 * 60),
            connect_timeout: Duration::from_secs(2),
            keep_alive_interval: Duration::from_secs(30),
        }
    }
}

impl ClientConfig {
    /// The default configuration with `deadline` for unary calls.
    pub fn with_deadline(deadline: Duration) -> Self {
        Self {
            deadline,
            ..Self::default()
        }
    }

    /// An [`Endpoint`] for `address` ("host:port", or a full
    /// `http://host:port` URI) with this connect timeout, keep-alive and
    /// TCP_NODELAY.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, ApiError> {
        let uri = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| ApiError::invalid_argument(format!("bad gRPC address {address:?}: {e}")))?;
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .http2_keep_alive_interval(self.keep_alive_interval)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .tcp_nodelay(true))
    }

    /// A lazily connecting [`Channel`] to `address` (connects on first call,
    /// reconnects after failures).
    pub fn channel_lazy(&self, address: &str) -> Result<Channel, ApiError> {
        Ok(self.endpoint(address)?.connect_lazy())
    }

    /// A [`Channel`] to `address`, connected now; [`ApiError::Unavailable`]
    /// when the server cannot be reached.
    pub async fn channel(&self, address: &str) -> Result<Channel, ApiError> {
        self.endpoint(address)?
            .connect()
            .await
            .map_err(|e| ApiError::unavailable(format!("cannot connect to {address}: {e}")))
    }
}

/// Builds a request carrying `deadline` as `grpc-timeout`.
fn request<T>(message: T, deadline: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(deadline);
    request
}

/// Awaits `call`, enforcing `deadline` locally as well, and converts the
/// outcome.
async fn finish<T>(deadline: Duration, call: impl Future<Output = Result<Response<T>, Status>>) -> Result<T, ApiError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(ApiError::from(status)),
        Err(_) => Err(ApiError::deadline_exceeded(format!("no answer within {deadline:?}"))),
    }
}

/// A [`WorkerApi`] that calls a remote worker's `SessionWorkerService`.
/// Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct GrpcWorkerClient {
    inner: SessionWorkerServiceClient<Channel>,
    config: ClientConfig,
}

impl GrpcWorkerClient {
    /// A client over an existing `channel`.
    pub fn new(channel: Channel, config: ClientConfig) -> Self {
        let inner = SessionWorkerServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Self { inner, config }
    }

    /// Connects to the worker at `address` ("host:port" or
    /// "http://host:port") now.
    pub async fn connect(address: &str, config: ClientConfig) -> Result<Self, ApiError> {
        Ok(Self::new(config.channel(address).await?, config))
    }

    /// A client for `address` that connects on its first call.
    pub fn connect_lazy(address: &str, config: ClientConfig) -> Result<Self, ApiError> {
        Ok(Self::new(config.channel_lazy(address)?, config))
    }

    /// The deadlines this client applies.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }
}

#[async_trait]
impl WorkerApi for GrpcWorkerClient {
    async fn start_session(&self, message: StartSessionRequest) -> Result<StartSessionResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.start_session(request(message, deadline))).await
    }

    async fn stop_session(&self, message: StopSessionRequest) -> Result<StopSessionResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.stop_session(request(message, deadline))).await
    }

    async fn get_status(&self, message: GetStatusRequest) -> Result<GetStatusResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.get_status(request(message, deadline))).await
    }

    async fn update_voice_server(
        &self,
        message: UpdateVoiceServerRequest,
    ) -> Result<UpdateVoiceServerResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.update_voice_server(request(message, deadline))).await
    }

    async fn update_knowledge(&self, message: UpdateKnowledgeRequest) -> Result<UpdateKnowledgeResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.update_knowledge(request(message, deadline))).await
    }

    async fn list_npcs(&self, message: ListNpcsRequest) -> Result<ListNpcsResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.list_np_cs(request(message, deadline))).await
    }

    async fn mute_npc(&self, message: MuteNpcRequest) -> Result<MuteNpcResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.mute_npc(request(message, deadline))).await
    }

    async fn unmute_npc(&self, message: UnmuteNpcRequest) -> Result<UnmuteNpcResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.unmute_npc(request(message, deadline))).await
    }

    async fn speak_npc(&self, message: SpeakNpcRequest) -> Result<SpeakNpcResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.speak_npc(request(message, deadline))).await
    }

    async fn mute_all_npcs(&self, message: MuteAllNpcsRequest) -> Result<MuteAllNpcsResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.mute_all_np_cs(request(message, deadline))).await
    }

    async fn unmute_all_npcs(&self, message: UnmuteAllNpcsRequest) -> Result<UnmuteAllNpcsResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.unmute_all_np_cs(request(message, deadline))).await
    }

    async fn play_audio(&self, header: PlayAudioHeader, pcm: PcmStream) -> Result<PlayAudioResponse, ApiError> {
        let deadline = self.config.stream_deadline;
        let source_error = Arc::new(Mutex::new(None));
        let outbound = OutboundAudio {
            header: Some(header),
            pcm,
            source_error: Arc::clone(&source_error),
            done: false,
        };
        let mut client = self.inner.clone();
        let result = finish(deadline, client.play_audio(request(outbound, deadline))).await;
        // A failed audio source wins over whatever the worker answered.
        match take_error(&source_error) {
            Some(error) => Err(error),
            None => result,
        }
    }
}

/// Takes the error recorded by an outbound stream, if any.
fn take_error(slot: &Mutex<Option<ApiError>>) -> Option<ApiError> {
    match slot.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }
}

/// Records `error` for the caller of a streaming call.
fn record_error(slot: &Mutex<Option<ApiError>>, error: ApiError) {
    match slot.lock() {
        Ok(mut guard) => *guard = Some(error),
        Err(poisoned) => *poisoned.into_inner() = Some(error),
    }
}

/// Polls a caller-supplied stream. The stream runs inside the HTTP/2 body
/// task, where a panic would leave the call hanging until its deadline; a
/// panic is therefore turned into an [`ApiError::Internal`] item.
fn poll_source<T>(
    source: &mut Pin<Box<dyn Stream<Item = Result<T, ApiError>> + Send + 'static>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<T, ApiError>>> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| source.as_mut().poll_next(cx))) {
        Ok(poll) => poll,
        Err(_) => Poll::Ready(Some(Err(ApiError::internal("the stream's source panicked")))),
    }
}

/// The outbound PlayAudio messages: the header, then one message per PCM
/// chunk. An error of the source is sent as an `abort` message, recorded for
/// the caller, and ends the stream.
struct OutboundAudio {
    header: Option<PlayAudioHeader>,
    pcm: PcmStream,
    source_error: Arc<Mutex<Option<ApiError>>>,
    done: bool,
}

impl Stream for OutboundAudio {
    type Item = PlayAudioRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(header) = self.header.take() {
            return Poll::Ready(Some(PlayAudioRequest {
                payload: Some(Payload::Header(header)),
            }));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match poll_source(&mut self.pcm, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(pcm))) => Poll::Ready(Some(PlayAudioRequest {
                payload: Some(Payload::Pcm(pcm)),
            })),
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                let reason = error.to_string();
                record_error(&self.source_error, error);
                Poll::Ready(Some(PlayAudioRequest {
                    payload: Some(Payload::Abort(reason)),
                }))
            }
        }
    }
}

/// A [`GatewayApi`] that calls a remote gateway's `SessionGatewayService`.
/// Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct GrpcGatewayClient {
    inner: SessionGatewayServiceClient<Channel>,
    config: ClientConfig,
}

impl GrpcGatewayClient {
    /// A client over an existing `channel`.
    pub fn new(channel: Channel, config: ClientConfig) -> Self {
        let inner = SessionGatewayServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Self { inner, config }
    }

    /// Connects to the gateway at `address` ("host:port" or
    /// "http://host:port") now.
    pub async fn connect(address: &str, config: ClientConfig) -> Result<Self, ApiError> {
        Ok(Self::new(config.channel(address).await?, config))
    }

    /// A client for `address` that connects on its first call.
    pub fn connect_lazy(address: &str, config: ClientConfig) -> Result<Self, ApiError> {
        Ok(Self::new(config.channel_lazy(address)?, config))
    }

    /// The deadlines this client applies.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }
}

#[async_trait]
impl GatewayApi for GrpcGatewayClient {
    async fn report_state(&self, message: ReportStateRequest) -> Result<ReportStateResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.report_state(request(message, deadline))).await
    }

    async fn heartbeat(&self, message: HeartbeatRequest) -> Result<HeartbeatResponse, ApiError> {
        let deadline = self.config.deadline;
        let mut client = self.inner.clone();
        finish(deadline, client.heartbeat(request(message, deadline))).await
    }

    async fn report_events(&self, events: SessionEventStream) -> Result<ReportEventsResponse, ApiError> {
        let deadline = self.config.stream_deadline;
        let source_error = Arc::new(Mutex::new(None));
        let outbound = OutboundEvents {
            events,
            source_error: Arc::clone(&source_error),
            done: false,
        };
        let mut client = self.inner.clone();
        let result = finish(deadline, client.report_events(request(outbound, deadline))).await;
        match take_error(&source_error) {
            Some(error) => Err(error),
            None => result,
        }
    }
}

/// The outbound ReportEvents messages. An error of the source ends the
/// stream (the events sent before it stay valid) and is recorded for the
/// caller.
struct OutboundEvents {
    events: SessionEventStream,
    source_error: Arc<Mutex<Option<ApiError>>>,
    done: bool,
}

impl Stream for OutboundEvents {
    type Item = SessionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match poll_source(&mut self.events, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(event)),
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                record_error(&self.source_error, error);
                Poll::Ready(None)
            }
        }
    }
}
