//! `glyphoxa --mode gateway` and `glyphoxa migrate`.

use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use futures_util::FutureExt;
use glyphoxa_gateway::bots::{BotCounts, BotManager};
use glyphoxa_gateway::commands::RecapEngines;
use glyphoxa_gateway::ids::TenantId;
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
        readiness(Arc::clone(gateway.orchestrator()), Arc::clone(gateway.bots())),
        shutdown.clone(),
    )
    .await?;
    let served = gateway.serve_until(shutdown).await;
    let _ = observability.await;
    served.context("the gateway stopped with an error")?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// The gateway is ready when its database answers, at least one worker
/// answers with its circuit closed, and its tenants' bots are reachable
/// (see [`bots_check`]).
pub fn readiness(orchestrator: Arc<Orchestrator>, bots: Arc<dyn BotManager>) -> Readiness {
    Arc::new(move || {
        let orchestrator = Arc::clone(&orchestrator);
        let bots = Arc::clone(&bots);
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
            vec![database, workers, bots_check(&BotCounts::of(&bots.statuses()))]
        })
    })
}

/// The `bots` readiness check of a gateway: ready without tenant bots or
/// while at least one is connected; one tenant's failing bot (a rejected
/// token) is that tenant's problem and only named in the detail, but no
/// bot connected at all means Discord cannot be reached from here.
pub fn bots_check(counts: &BotCounts) -> Check {
    if counts.total() == 0 {
        return Check::ready("bots", "no tenant bots");
    }
    let mut detail = format!(
        "{} of {} connected, {} connecting, {} disconnected, {} failed",
        counts.connected,
        counts.total(),
        counts.connecting,
        counts.disconnected,
        counts.error
    );
    if !counts.failed_tenants.is_empty() {
        let tenants: Vec<&str> = counts.failed_tenants.iter().map(TenantId::as_str).collect();
        detail.push_str(&format!(" (failed: {})", tenants.join(", ")));
    }
    if counts.connected == 0 {
        Check::failing("bots", detail)
    } else {
        Check::ready("bots", detail)
    }
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

#[cfg(test)]
mod tests {
    use glyphoxa_gateway::bots::{BotState, BotStatus};

    use super::*;

    fn bots(states: &[(&str, BotState)]) -> BotCounts {
        let statuses: Vec<(TenantId, BotStatus)> = states
            .iter()
            .map(|(tenant, state)| {
                let status = BotStatus {
                    state: *state,
                    message: None,
                    guild_count: 1,
                };
                (TenantId::parse(tenant).expect("tenant id"), status)
            })
            .collect();
        BotCounts::of(&statuses)
    }

    #[test]
    fn the_bots_check_fails_only_when_no_bot_is_connected() {
        let none = bots_check(&bots(&[]));
        assert!(none.ready && none.detail.contains("no tenant bots"), "{none:?}");

        let one_bad = bots_check(&bots(&[("acme", BotState::Connected), ("bravo", BotState::Error)]));
        assert!(one_bad.ready, "one tenant's rejected token: {one_bad:?}");
        assert!(
            one_bad.detail.contains("1 of 2 connected") && one_bad.detail.contains("failed: bravo"),
            "{one_bad:?}"
        );

        let starting = bots_check(&bots(&[("acme", BotState::Connecting)]));
        assert!(!starting.ready, "{starting:?}");
        let all_bad = bots_check(&bots(&[("acme", BotState::Error), ("bravo", BotState::Disconnected)]));
        assert!(
            !all_bad.ready && all_bad.detail.contains("0 of 2 connected"),
            "{all_bad:?}"
        );
    }
}
