//! Log output: human-readable or JSON lines on stderr, filtered by
//! `server.log_level` (overridden by `RUST_LOG`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, ServerConfig};

/// Crates too talkative for the configured level, and the level they get
/// unless the configured filter names them (or `RUST_LOG` is used):
/// llama.cpp reports every model-loading step at INFO, serenity every
/// HTTP route and gateway event at DEBUG.
const TALKATIVE: [(&str, &str); 2] = [("llama-cpp-2", "warn"), ("serenity", "info")];

/// The configured filter with [`TALKATIVE`] crates turned down.
fn quiet_engines(log_level: &str) -> String {
    let mut filter = log_level.to_string();
    for (target, level) in TALKATIVE {
        let named = target.split('-').next().is_some_and(|stem| log_level.contains(stem));
        if !named {
            filter.push_str(&format!(",{target}={level}"));
        }
    }
    filter
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
        assert_eq!(quiet_engines("info"), "info,llama-cpp-2=warn,serenity=info");
        assert_eq!(
            quiet_engines("debug,llama-cpp-2=info"),
            "debug,llama-cpp-2=info,serenity=info"
        );
        assert_eq!(
            quiet_engines("debug,serenity=trace"),
            "debug,serenity=trace,llama-cpp-2=warn"
        );
    }
}
