//! `glyphoxa --mode gateway` and `glyphoxa migrate`.

use std::time::Duration;

use anyhow::Context;
use glyphoxa_gateway::GatewaySettings;

use crate::config::{Config, Mode};

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
    settings
}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let settings = settings(&config);
    tracing::info!(
        admin = %settings.admin_addr,
        grpc = %settings.grpc_addr,
        workers = settings.workers.addresses.len(),
        database = %config.storage.url.redacted(),
        "gateway starting"
    );
    glyphoxa_gateway::run(settings, crate::worker_mode::shutdown_signal())
        .await
        .context("the gateway stopped with an error")?;
    tracing::info!("gateway stopped");
    Ok(())
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
