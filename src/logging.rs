//! Log output: human-readable or JSON lines on stderr, filtered by
//! `server.log_level` (overridden by `RUST_LOG`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServerConfig};

/// Installs the global logger; a second call does nothing.
pub fn init(server: &ServerConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| EnvFilter::try_new(text).ok())
        .or_else(|| EnvFilter::try_new(&server.log_level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match server.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
