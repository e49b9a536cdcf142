//! tonic server adapters: serve any `Arc<dyn WorkerApi>` as
//! `SessionWorkerService` and any `Arc<dyn GatewayApi>` as
//! `SessionGatewayService`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # async fn run(api: Arc<dyn glyphoxa_proto::WorkerApi>) -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:50051").await?;
//! glyphoxa_proto::server::serve_worker(api, listener, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use crate::client::KEEP_ALIVE_TIMEOUT;
use crate::v1::play_audio_request::Payload;
use crate::v1::session_gateway_service_server::{SessionGatewayService, SessionGatewayServiceServer};
use crate::v1::session_worker_service_server::{SessionWorkerService, SessionWorkerServiceServer};
use crate::v1::{
    GetStatusRequest, GetStatusResponse, HeartbeatRequest, HeartbeatResponse, ListNpcsRequest, ListNpcsResponse,
    MuteAllNpcsRequest, MuteAllNpcsResponse, MuteNpcRequest, MuteNpcResponse, PlayAudioRequest, PlayAudioResponse,
    ReportEventsResponse, ReportStateRequest, ReportStateResponse, SessionEvent, SpeakNpcRequest, SpeakNpcResponse,
    StartSessionRequest, StartSessionResponse, StopSessionRequest, StopSessionResponse, UnmuteAllNpcsRequest,
    UnmuteAllNpcsResponse, UnmuteNpcRequest, UnmuteNpcResponse, UpdateKnowledgeRequest, UpdateKnowledgeResponse,
    UpdateVoiceServerRequest, UpdateVoiceServerResponse,
};
use crate::{ApiError, GatewayApi, WorkerApi, MAX_MESSAGE_BYTES};

/// Serves an `Arc<dyn WorkerApi>` as the generated tonic
/// `SessionWorkerService`.
#[derive(Clone)]
pub struct WorkerService {
    api: Arc<dyn WorkerApi>,
}

impl WorkerService {
    /// Wraps `api`.
    pub fn new(api: Arc<dyn WorkerApi>) -> Self {
        Self { api }
    }

    /// The tonic service to add to a [`Server`], accepting messages up to
    /// [`MAX_MESSAGE_BYTES`].
    pub fn into_server(self) -> SessionWorkerServiceServer<Self> {
        SessionWorkerServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Serves an `Arc<dyn GatewayApi>` as the generated tonic
/// `SessionGatewayService`.
#[derive(Clone)]
pub struct GatewayService {
    api: Arc<dyn GatewayApi>,
}

impl GatewayService {
    /// Wraps `api`.
    pub fn new(api: Arc<dyn GatewayApi>) -> Self {
        Self { api }
    }

    /// The tonic service to add to a [`Server`], accepting messages up to
    /// [`MAX_MESSAGE_BYTES`].
    pub fn into_server(self) -> SessionGatewayServiceServer<Self> {
        SessionGatewayServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Shorthand for `WorkerService::new(api).into_server()`.
pub fn worker_server(api: Arc<dyn WorkerApi>) -> SessionWorkerServiceServer<WorkerService> {
    WorkerService::new(api).into_server()
}

/// Shorthand for `GatewayService::new(api).into_server()`.
pub fn gateway_server(api: Arc<dyn GatewayApi>) -> SessionGatewayServiceServer<GatewayService> {
    GatewayService::new(api).into_server()
}

/// Serves `api` as `SessionWorkerService` on `listener` (TCP_NODELAY on)
/// until `shutdown` completes, then finishes in-flight calls and returns.
pub async fn serve_worker(
    api: Arc<dyn WorkerApi>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    builder()
        .serve_with_incoming_shutdown(worker_server(api), incoming(listener), shutdown)
        .await
}

/// Serves `api` as `SessionGatewayService` on `listener` (TCP_NODELAY on)
/// until `shutdown` completes, then finishes in-flight calls and returns.
pub async fn serve_gateway(
    api: Arc<dyn GatewayApi>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    builder()
        .serve_with_incoming_shutdown(gateway_server(api), incoming(listener), shutdown)
        .await
}

/// The server settings of [`serve_worker`] and [`serve_gateway`], for
/// callers that build their own server: HTTP/2 keep-alive pings every 30 s,
/// so a client that vanished mid-stream (PlayAudio, ReportEvents) is noticed
/// [`KEEP_ALIVE_TIMEOUT`] later instead of holding its call open forever.
pub fn builder() -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(KEEP_ALIVE_TIMEOUT))
}

fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Runs one unary trait call and converts its result for tonic.
async fn unary<T>(call: impl Future<Output = Result<T, ApiError>>) -> Result<Response<T>, Status> {
    call.await.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl SessionWorkerService for WorkerService {
    async fn start_session(
        &self,
        request: Request<StartSessionRequest>,
    ) -> Result<Response<StartSessionResponse>, Status> {
        unary(self.api.start_session(request.into_inner())).await
    }

    async fn stop_session(
        &self,
        request: Request<StopSessionRequest>,
    ) -> Result<Response<StopSessionResponse>, Status> {
        unary(self.api.stop_session(request.into_inner())).await
    }

    async fn get_status(&self, request: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        unary(self.api.get_status(request.into_inner())).await
    }

    async fn update_voice_server(
        &self,
        request: Request<UpdateVoiceServerRequest>,
    ) -> Result<Response<UpdateVoiceServerResponse>, Status> {
        unary(self.api.update_voice_server(request.into_inner())).await
    }

    async fn update_knowledge(
        &self,
        request: Request<UpdateKnowledgeRequest>,
    ) -> Result<Response<UpdateKnowledgeResponse>, Status> {
        unary(self.api.update_knowledge(request.into_inner())).await
    }

    async fn list_np_cs(&self, request: Request<ListNpcsRequest>) -> Result<Response<ListNpcsResponse>, Status> {
        unary(self.api.list_npcs(request.into_inner())).await
    }

    async fn mute_npc(&self, request: Request<MuteNpcRequest>) -> Result<Response<MuteNpcResponse>, Status> {
        unary(self.api.mute_npc(request.into_inner())).await
    }

    async fn unmute_npc(&self, request: Request<UnmuteNpcRequest>) -> Result<Response<UnmuteNpcResponse>, Status> {
        unary(self.api.unmute_npc(request.into_inner())).await
    }

    async fn speak_npc(&self, request: Request<SpeakNpcRequest>) -> Result<Response<SpeakNpcResponse>, Status> {
        unary(self.api.speak_npc(request.into_inner())).await
    }

    async fn mute_all_np_cs(
        &self,
        request: Request<MuteAllNpcsRequest>,
    ) -> Result<Response<MuteAllNpcsResponse>, Status> {
        unary(self.api.mute_all_npcs(request.into_inner())).await
    }

    async fn unmute_all_np_cs(
        &self,
        request: Request<UnmuteAllNpcsRequest>,
    ) -> Result<Response<UnmuteAllNpcsResponse>, Status> {
        unary(self.api.unmute_all_npcs(request.into_inner())).await
    }

    async fn play_audio(
        &self,
        request: Request<Streaming<PlayAudioRequest>>,
    ) -> Result<Response<PlayAudioResponse>, Status> {
        let mut messages = request.into_inner();
        let header = match messages.message().await? {
            Some(PlayAudioRequest {
                payload: Some(Payload::Header(header)),
            }) => header,
            Some(_) => {
                return Err(ApiError::invalid_argument("PlayAudio: the first message must be a PlayAudioHeader").into())
            }
            None => {
                return Err(
                    ApiError::invalid_argument("PlayAudio: empty stream, expected a PlayAudioHeader first").into(),
                )
            }
        };
        let pcm = PcmChunks { messages, done: false };
        unary(self.api.play_audio(header, Box::pin(pcm))).await
    }
}

/// The PCM chunks of an incoming PlayAudio stream, pulled from the wire one
/// message at a time (HTTP/2 flow control pushes back on the sender while the
/// consumer does not poll). Ends after the first error or abort.
struct PcmChunks {
    messages: Streaming<PlayAudioRequest>,
    done: bool,
}

impl Stream for PcmChunks {
    type Item = Result<Vec<u8>, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match Pin::new(&mut self.messages).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => None,
            Poll::Ready(Some(Ok(PlayAudioRequest {
                payload: Some(Payload::Pcm(pcm)),
            }))) => Some(Ok(pcm)),
            Poll::Ready(Some(Ok(PlayAudioRequest {
                payload: Some(Payload::Abort(reason)),
            }))) => Some(Err(ApiError::cancelled(format!(
                "PlayAudio aborted by the client: {reason}"
            )))),
            Poll::Ready(Some(Ok(PlayAudioRequest {
                payload: Some(Payload::Header(_)),
            }))) => Some(Err(ApiError::invalid_argument(
                "PlayAudio: only the first message may be a header",
            ))),
            Poll::Ready(Some(Ok(PlayAudioRequest { payload: None }))) => {
                Some(Err(ApiError::invalid_argument("PlayAudio: message without payload")))
            }
            Poll::Ready(Some(Err(status))) => Some(Err(ApiError::from(status))),
        };
        self.done = !matches!(item, Some(Ok(_)));
        Poll::Ready(item)
    }
}

#[tonic::async_trait]
impl SessionGatewayService for GatewayService {
    async fn report_state(
        &self,
        request: Request<ReportStateRequest>,
    ) -> Result<Response<ReportStateResponse>, Status> {
        unary(self.api.report_state(request.into_inner())).await
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        unary(self.api.heartbeat(request.into_inner())).await
    }

    async fn report_events(
        &self,
        request: Request<Streaming<SessionEvent>>,
    ) -> Result<Response<ReportEventsResponse>, Status> {
        let events = IncomingEvents {
            messages: request.into_inner(),
            done: false,
        };
        unary(self.api.report_events(Box::pin(events))).await
    }
}

/// The events of an incoming ReportEvents stream, pulled from the wire one
/// at a time. Ends after the first error.
struct IncomingEvents {
    messages: Streaming<SessionEvent>,
    done: bool,
}

impl Stream for IncomingEvents {
    type Item = Result<SessionEvent, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match Pin::new(&mut self.messages).poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item.map(|result| result.map_err(ApiError::from)),
        };
        self.done = !matches!(item, Some(Ok(_)));
        Poll::Ready(item)
    }
}
