//! `glyphoxa --mode worker`: serve `SessionWorkerService` until SIGTERM or
//! Ctrl-C, then stop every session (reporting them ended) and exit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;
use glyphoxa_pipeline::providers::{build_llm, build_stt, build_tts, CallPolicy, NoObserver, ProviderEnv};
use glyphoxa_proto::v1::StartSessionRequest;
use glyphoxa_proto::{ApiError, ClientConfig, GatewayApi, GrpcGatewayClient};
use glyphoxa_worker::runtime::Providers;
use glyphoxa_worker::service::{TransportFactory, Worker, WorkerSettings};
use glyphoxa_worker::transport::discord::{DiscordTransport, DiscordVoiceSettings};
use glyphoxa_worker::transport::loopback::LoopbackTransport;
use glyphoxa_worker::transport::VoiceTransport;

use crate::config::{Config, Mode, TransportKind};
use crate::observability::{Check, Readiness};

/// The providers every session of this process shares, from `providers:`.
pub fn providers(config: &Config) -> anyhow::Result<Providers> {
    let env = ProviderEnv {
        policy: CallPolicy::default(),
        observer: Arc::new(NoObserver),
    };
    for (kind, entry) in config.provider_entries() {
        if entry.is_none() {
            let engine = match kind {
                crate::config::ProviderKind::Stt => "Whisper speech recognition",
                crate::config::ProviderKind::Llm => "llama.cpp language model",
                crate::config::ProviderKind::Tts => "espeak-ng voice",
            };
            tracing::info!(
                "providers.{} not configured: using the offline {engine} (no network, no API key)",
                kind.key()
            );
        }
    }
    let spec =
        |entry: &Option<crate::config::ProviderConfig>| entry.as_ref().map(crate::config::ProviderConfig::to_spec);
    Ok(Providers {
        stt: build_stt(spec(&config.providers.stt).as_ref(), &env).context("speech to text (providers.stt)")?,
        llm: build_llm(spec(&config.providers.llm).as_ref(), &env).context("language model (providers.llm)")?,
        tts: build_tts(spec(&config.providers.tts).as_ref(), &env).context("text to speech (providers.tts)")?,
    })
}

/// Makes the configured transport for each new session.
struct ConfiguredTransports {
    kind: TransportKind,
}

impl TransportFactory for ConfiguredTransports {
    fn create(&self, request: &StartSessionRequest) -> Result<Box<dyn VoiceTransport>, ApiError> {
        match self.kind {
            // No scripted speakers: the session hears silence; output is discarded.
            TransportKind::Loopback => Ok(Box::new(LoopbackTransport::new(Vec::new(), None))),
            // Validates the voice credentials now; connects when the session starts.
            TransportKind::Discord => DiscordTransport::from_request(request, DiscordVoiceSettings::default())
                .map(|transport| Box::new(transport) as Box<dyn VoiceTransport>)
                .map_err(|error| ApiError::invalid_argument(error.to_string())),
        }
    }
}

/// The voice transports of `worker.transport`, one per new session.
pub fn transports(config: &Config) -> Arc<dyn TransportFactory> {
    Arc::new(ConfiguredTransports {
        kind: config.worker.transport,
    })
}

/// The worker's settings from the configuration: id (`worker.id`, else the
/// host name), capacity, VAD and barge-in tuning.
pub fn worker_settings(config: &Config) -> WorkerSettings {
    let mut settings = WorkerSettings::new(
        config
            .worker
            .id
            .clone()
            .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into())),
    );
    settings.capacity = config.worker.capacity.get() as usize;
    settings.engine.vad = config.audio.vad.to_settings();
    settings.brain.barge_in_confirm = config
        .audio
        .barge_in
        .enabled
        .then(|| Duration::from_millis(u64::from(config.audio.barge_in.confirm_ms.get())));
    settings.brain.coalesce = Duration::from_millis(u64::from(config.audio.barge_in.coalesce_ms.get()));
    settings
}

/// The worker of this process, from the configuration.
pub fn build_worker(config: &Config) -> anyhow::Result<Arc<Worker>> {
    let gateway: Option<Arc<dyn GatewayApi>> = match &config.worker.gateway_addr {
        Some(address) => Some(Arc::new(
            GrpcGatewayClient::connect_lazy(address.as_str(), ClientConfig::with_deadline(Duration::from_secs(5)))
                .with_context(|| format!("gateway address {address}"))?,
        )),
        None => None,
    };
    Ok(Worker::new(
        worker_settings(config),
        providers(config)?,
        transports(config),
        gateway,
    ))
}

/// Runs the worker until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let worker = build_worker(&config)?;
    let address = config.grpc_addr(Mode::Worker).0;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (server.grpc_addr / GLYPHOXA_GRPC_ADDR)"))?;
    tracing::info!(%address, gateway = ?config.worker.gateway_addr.as_ref().map(ToString::to_string), "worker serving SessionWorkerService");
    crate::observability::recorder()?;
    let shutdown = shutdown_signal().shared();
    let (_, observability) = crate::observability::serve(
        config.metrics_addr(Mode::Worker).0,
        readiness(&worker),
        shutdown.clone(),
    )
    .await?;
    let api: Arc<dyn glyphoxa_proto::WorkerApi> = worker.clone();
    let served = glyphoxa_proto::server::serve_worker(api, listener, shutdown).await;
    let stopped = worker.stop_all("worker shutting down").await;
    let _ = observability.await;
    served.context("the gRPC server failed")?;
    tracing::info!(stopped, "worker stopped");
    Ok(())
}

/// A worker is ready while it serves and has room for another session.
fn readiness(worker: &Arc<Worker>) -> Readiness {
    let worker = Arc::clone(worker);
    Arc::new(move || {
        let worker = Arc::clone(&worker);
        Box::pin(async move {
            let (active, capacity) = (worker.active_sessions().await, worker.capacity());
            let detail = format!("{active} of {capacity} sessions");
            vec![if active < capacity {
                Check::ready("capacity", detail)
            } else {
                Check::failing("capacity", detail)
            }]
        })
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested");
}
