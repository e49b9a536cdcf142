//! Log output: human-readable or JSON lines on stderr, filtered by
//! `server.log_level` (overridden by `RUST_LOG`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServerConfig};

/// llama.cpp reports every model-loading step at INFO; keep it to warnings
/// unless the configured filter names it (or `RUST_LOG` is used).
fn quiet_engines(log_level: &str) -> String {
    if log_level.contains("llama") {
        log_level.to_string()
    } else {
        format!("{log_level},llama-cpp-2=warn")
    }
}

/// Installs the global logger; a second call does nothing.
pub fn init(server: &ServerConfig) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| EnvFilter::try_new(text).ok())
        .or_else(|| EnvFilter::try_new(quiet_engines(&server.log_level)).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match server.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::quiet_engines;

    #[test]
    fn llama_cpp_is_quiet_unless_asked_for() {
        assert_eq!(quiet_engines("info"), "info,llama-cpp-2=warn");
        assert_eq!(quiet_engines("debug,llama-cpp-2=info"), "debug,llama-cpp-2=info");
    }
}
