//! `glyphoxa --mode gateway` and `glyphoxa migrate`.

use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use futures_util::FutureExt;
use glyphoxa_gateway::commands::RecapEngines;
use glyphoxa_gateway::orchestrator::Orchestrator;
use glyphoxa_gateway::workers::CircuitState;
use glyphoxa_gateway::{Gateway, GatewaySettings};
use glyphoxa_pipeline::providers::{build_llm, build_tts, CallPolicy, NoObserver, ProviderEnv};

use crate::config::{Config, Mode};
use crate::observability::{Check, Readiness};

/// The gateway's settings from the configuration.
pub fn settings(config: &Config) -> GatewaySettings {
    let mut settings = GatewaySettings::new(config.storage.url.expose(), config.server.admin_key.expose());
    settings.store.max_connections = config.storage.max_connections.get();
    settings.admin_addr = config.admin_addr().0;
    settings.grpc_addr = config.grpc_addr(Mode::Gateway).0;
    settings.admin.secret_key = Some(config.server.secret_key.expose().to_string()).filter(|key| !key.is_empty());
    settings.workers.addresses = config.workers.addresses.iter().map(ToString::to_string).collect();
    settings.workers.dns = config.workers.dns.as_ref().map(ToString::to_string);
    settings.workers.call_timeout = Duration::from_millis(u64::from(config.workers.call_timeout_ms.get()));
    settings.discord.api_url = config.discord.api_url.as_ref().map(ToString::to_string);
    settings
}

/// The engines of `/session recap` and `/session voice-recap`: the
/// configured language model summarises (none configured: recaps show the
/// transcript, so the gateway never loads a local model), the configured
/// text to speech narrates (espeak-ng by default).
pub fn recap_engines(config: &Config) -> anyhow::Result<RecapEngines> {
    let env = ProviderEnv {
        policy: CallPolicy::default(),
        observer: Arc::new(NoObserver),
    };
    let summarizer = match &config.providers.llm {
        Some(llm) => Some(build_llm(Some(&llm.to_spec()), &env).context("language model (providers.llm)")?),
        None => None,
    };
    let tts = config
        .providers
        .tts
        .as_ref()
        .map(crate::config::ProviderConfig::to_spec);
    let narrator = build_tts(tts.as_ref(), &env).context("text to speech (providers.tts)")?;
    Ok(RecapEngines {
        summarizer,
        narrator: Some(narrator),
        narrator_voice: String::new(),
    })
}

/// Runs the gateway until SIGTERM or Ctrl-C, with its health and metrics
/// listener on `server.metrics_addr`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let settings = settings(&config);
    tracing::info!(
        admin = %settings.admin_addr,
        grpc = %settings.grpc_addr,
        workers = settings.workers.addresses.len(),
        database = %config.storage.url.redacted(),
        "gateway starting"
    );
    crate::observability::recorder()?;
    let recaps = recap_engines(&config)?;
    let gateway = Gateway::start_with_discord(settings, recaps)
        .await
        .context("the gateway cannot start")?;
    let shutdown = crate::worker_mode::shutdown_signal().shared();
    let (_, observability) = crate::observability::serve(
        config.metrics_addr(Mode::Gateway).0,
        readiness(Arc::clone(gateway.orchestrator())),
        shutdown.clone(),
    )
    .await?;
    let served = gateway.serve_until(shutdown).await;
    let _ = observability.await;
    served.context("the gateway stopped with an error")?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// The gateway is ready when its database answers and at least one worker
/// answers with its circuit closed.
pub fn readiness(orchestrator: Arc<Orchestrator>) -> Readiness {
    Arc::new(move || {
        let orchestrator = Arc::clone(&orchestrator);
        Box::pin(async move {
            let database = match orchestrator.store().ping().await {
                Ok(()) => Check::ready("database", format!("{:?} answers", orchestrator.store().backend())),
                Err(error) => Check::failing("database", error.to_string()),
            };
            let health = orchestrator.workers().health().await;
            let healthy = health
                .iter()
                .filter(|worker| worker.error.is_none() && worker.circuit == CircuitState::Closed)
                .count();
            let detail = health
                .iter()
                .map(|worker| match &worker.error {
                    None => format!("{}: {:?}", worker.address, worker.circuit),
                    Some(error) => format!("{}: {error}", worker.address),
                })
                .collect::<Vec<_>>()
                .join("; ");
            let workers = match (health.len(), healthy) {
                (0, _) => Check::failing("workers", "no workers configured (workers.addresses or workers.dns)"),
                (_, 0) => Check::failing("workers", format!("no worker answers: {detail}")),
                (total, healthy) => Check::ready("workers", format!("{healthy} of {total} answer: {detail}")),
            };
            vec![database, workers]
        })
    })
}

/// Applies the database migrations and says what was done.
pub async fn migrate(config: &Config) -> anyhow::Result<String> {
    let url = config.storage.url.expose();
    let report = glyphoxa_gateway::migrate(url)
        .await
        .with_context(|| format!("migrating {}", config.storage.url.redacted()))?;
    Ok(format!(
        "{}: {} migration(s) applied, schema version {}",
        config.storage.url.redacted(),
        report.applied,
        report.version
    ))
}
