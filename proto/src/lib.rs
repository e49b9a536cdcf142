//! Glyphoxa's gRPC contract between gateways and voice workers.
//!
//! - [`v1`]: the prost messages and tonic client/server code generated from
//!   `proto/glyphoxa/v1/*.proto` (package `glyphoxa.v1`).
//! - [`WorkerApi`] and [`GatewayApi`]: the two services as plain async
//!   traits over those messages. The worker implements `WorkerApi`, the
//!   gateway implements `GatewayApi`; full mode calls them in-process.
//! - [`server`]: serve an `Arc<dyn WorkerApi>` / `Arc<dyn GatewayApi>` over
//!   gRPC ([`server::serve_worker`], [`server::worker_server`], ...).
//! - [`client`]: [`GrpcWorkerClient`] / [`GrpcGatewayClient`] implement the
//!   traits over a tonic channel, with a deadline on every call.
//! - [`ApiError`]: the error of every call, mapped to and from gRPC status
//!   codes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use glyphoxa_proto::{ClientConfig, GrpcWorkerClient, WorkerApi};
//!
//! # async fn run() -> Result<(), glyphoxa_proto::ApiError> {
//! let worker: Arc<dyn WorkerApi> = Arc::new(GrpcWorkerClient::connect_lazy(
//!     "127.0.0.1:50051",
//!     ClientConfig::default(),
//! )?);
//! let load = worker.get_status(Default::default()).await?.load;
//! # let _ = load;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod api;
pub mod client;
mod error;
pub mod server;

pub use api::{GatewayApi, PcmStream, SessionEventStream, WorkerApi};
pub use client::{ClientConfig, GrpcGatewayClient, GrpcWorkerClient};
pub use error::ApiError;
pub use server::{GatewayService, WorkerService};

/// The largest gRPC message the adapters send or accept, in bytes (32 MiB):
/// a StartSession carrying a whole campaign's knowledge can exceed tonic's
/// 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Generated code of package `glyphoxa.v1`: messages (prost), enums, and the
/// tonic clients (`session_worker_service_client`,
/// `session_gateway_service_client`) and servers
/// (`session_worker_service_server`, `session_gateway_service_server`).
pub mod v1 {
    tonic::include_proto!("glyphoxa.v1");
}
