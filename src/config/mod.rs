//! Glyphoxa's configuration: one strict YAML file, `${ENV}` expansion,
//! environment overrides and per-mode defaults (SPEC §9).
//!
//! Precedence is environment > file > defaults. Loading checks the shape
//! and every value; what a particular mode needs to run (a bot token, an
//! admin key) is checked by [`Config::requirements`] when that mode starts,
//! so a configuration that references unset variables still passes
//! `check-config` on a fresh machine.

mod sections;
mod values;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use glyphoxa_pipeline::campaign::{Campaign, CampaignError};
use glyphoxa_pipeline::yaml::{self, Interpolation, YamlError};

pub use sections::*;
pub use values::{Bounded, DatabaseUrl, DiscordId, Endpoint, ListenAddr, Secret};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "glyphoxa.yaml";

/// The three ways the binary runs (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One process: bot, commands, session control and the voice worker.
    Full,
    /// The multi-tenant control plane.
    Gateway,
    /// A voice worker behind gateways.
    Worker,
}

impl Mode {
    /// The lower-case name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Gateway => "gateway",
            Mode::Worker => "worker",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environment as seen when loading: a snapshot, so tests can supply their own.
pub type Environment = HashMap<String, String>;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist or cannot be read.
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The configuration has errors; all of them are listed.
    #[error("{}", list_errors(.source_name, .errors))]
    Invalid {
        /// The file (or "environment") the errors are in.
        source_name: String,
        /// Each error with its key path and line.
        errors: Vec<YamlError>,
    },
    /// The configured campaign file is missing or invalid.
    #[error("campaign: {0}")]
    Campaign(#[from] CampaignError),
}

fn list_errors(source_name: &str, errors: &[YamlError]) -> String {
    let mut out = format!("invalid configuration in {source_name}:");
    for error in errors {
        out.push_str("\n  ");
        out.push_str(&error.to_string());
    }
    out
}

/// A configuration as loaded, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The effective configuration (file, then environment overrides).
    pub config: Config,
    /// The file it was read from; `None` = defaults only.
    pub file: Option<PathBuf>,
}

impl LoadedConfig {
    /// Loads the configuration as the binary does: `explicit` (from
    /// `--config`) must exist; without it `./glyphoxa.yaml` is read if it
    /// exists, otherwise the defaults are used. Then the environment's
    /// `GLYPHOXA_*` variables override.
    pub fn load(explicit: Option<&Path>, env: &Environment) -> Result<Self, ConfigError> {
        let file = match explicit {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|path| path.is_file()),
        };
        let mut config = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.clone(),
                    source,
                })?;
                let mut config = Config::from_yaml(&text, &path.display().to_string(), env)?;
                config.resolve_paths(path);
                config
            }
            None => Config::default(),
        };
        config.apply_environment(env)?;
        Ok(Self { config, file })
    }

    /// Where the configuration came from, for messages.
    pub fn source(&self) -> String {
        match &self.file {
            Some(path) => path.display().to_string(),
            None => "defaults (no configuration file)".to_string(),
        }
    }
}

impl Config {
    /// Parses configuration YAML, expanding `${VAR}` from `env` (an unset
    /// variable expands to the empty string). `source_name` names the text
    /// in errors. Environment overrides are not applied here.
    pub fn from_yaml(text: &str, source_name: &str, env: &Environment) -> Result<Self, ConfigError> {
        let config: Config =
            yaml::from_str(text, Interpolation::Variables(env.clone())).map_err(|error| ConfigError::Invalid {
                source_name: source_name.to_string(),
                errors: vec![error],
            })?;
        let errors = config.cross_field_errors();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                source_name: source_name.to_string(),
                errors,
            })
        }
    }

    /// Checks that need more than one value at a time.
    fn cross_field_errors(&self) -> Vec<YamlError> {
        let mut errors = Vec::new();
        let mixer = &self.audio.mixer;
        if mixer.gap_min_ms > mixer.gap_max_ms {
            errors.push(YamlError::new(
                "audio.mixer",
                format!(
                    "gap_min_ms ({}) is larger than gap_max_ms ({})",
                    mixer.gap_min_ms.get(),
                    mixer.gap_max_ms.get()
                ),
                None,
            ));
        }
        for (kind, entry) in self.provider_entries() {
            let Some(entry) = entry else { continue };
            if !kind.names().contains(&entry.name.as_str()) {
                errors.push(YamlError::new(
                    format!("providers.{}.name", kind.key()),
                    format!(
                        "unknown {} provider {:?}: use one of {}",
                        kind.key(),
                        entry.name,
                        kind.names().join(", ")
                    ),
                    None,
                ));
            }
        }
        errors
    }

    /// The three provider entries with their stage.
    pub fn provider_entries(&self) -> [(ProviderKind, Option<&ProviderConfig>); 3] {
        [
            (ProviderKind::Stt, self.providers.stt.as_ref()),
            (ProviderKind::Llm, self.providers.llm.as_ref()),
            (ProviderKind::Tts, self.providers.tts.as_ref()),
        ]
    }

    /// Makes a relative campaign path relative to the configuration file's folder.
    fn resolve_paths(&mut self, config_file: &Path) {
        if let (Some(campaign), Some(dir)) = (&self.campaign, config_file.parent()) {
            if campaign.is_relative() && !dir.as_os_str().is_empty() {
                self.campaign = Some(dir.join(campaign));
            }
        }
    }

    /// Applies the `GLYPHOXA_*` environment variables (they win over the file).
    pub fn apply_environment(&mut self, env: &Environment) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let listen = |name: &str, target: &mut Option<ListenAddr>, errors: &mut Vec<YamlError>| {
            if let Some(value) = get(name) {
                match value.parse() {
                    Ok(addr) => *target = Some(addr),
                    Err(message) => errors.push(YamlError::new(name, message, None)),
                }
            }
        };
        listen("GLYPHOXA_GRPC_ADDR", &mut self.server.grpc_addr, &mut errors);
        listen("GLYPHOXA_METRICS_ADDR", &mut self.server.metrics_addr, &mut errors);
        listen("GLYPHOXA_ADMIN_ADDR", &mut self.server.admin_addr, &mut errors);
        if let Some(value) = get("GLYPHOXA_ADMIN_KEY") {
            self.server.admin_key = Secret::new(value);
        }
        if let Some(value) = get("GLYPHOXA_SECRET_KEY") {
            self.server.secret_key = Secret::new(value);
        }
        if let Some(value) = get("GLYPHOXA_DATABASE_URL") {
            match DatabaseUrl::parse(value) {
                Ok(url) => self.storage.url = url,
                Err(message) => errors.push(YamlError::new("GLYPHOXA_DATABASE_URL", message, None)),
            }
        }
        let endpoint = |name: &str, target: &mut Option<Endpoint>, errors: &mut Vec<YamlError>| {
            if let Some(value) = get(name) {
                match Endpoint::parse(value, &["http", "https"]) {
                    Ok(url) => *target = Some(url),
                    Err(message) => errors.push(YamlError::new(name, message, None)),
                }
            }
        };
        endpoint("GLYPHOXA_GATEWAY_ADDR", &mut self.worker.gateway_addr, &mut errors);
        endpoint("GLYPHOXA_DISCORD_API_URL", &mut self.discord.api_url, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                source_name: "environment".into(),
                errors,
            })
        }
    }

    /// The gRPC listen address of `mode` (worker `0.0.0.0:50051`, otherwise `0.0.0.0:50052`).
    pub fn grpc_addr(&self, mode: Mode) -> ListenAddr {
        let default = if mode == Mode::Worker { 50051 } else { 50052 };
        self.server
            .grpc_addr
            .unwrap_or(ListenAddr(([0, 0, 0, 0], default).into()))
    }

    /// The health/metrics listen address of `mode` (worker `0.0.0.0:9091`, otherwise `0.0.0.0:9090`).
    pub fn metrics_addr(&self, mode: Mode) -> ListenAddr {
        let default = if mode == Mode::Worker { 9091 } else { 9090 };
        self.server
            .metrics_addr
            .unwrap_or(ListenAddr(([0, 0, 0, 0], default).into()))
    }

    /// The admin API listen address (default `0.0.0.0:8081`).
    pub fn admin_addr(&self) -> ListenAddr {
        self.server
            .admin_addr
            .unwrap_or(ListenAddr(([0, 0, 0, 0], 8081).into()))
    }

    /// The campaign: the configured file, or the bundled example.
    pub fn load_campaign(&self) -> Result<Campaign, ConfigError> {
        match &self.campaign {
            Some(path) => Ok(Campaign::load(path)?),
            None => Ok(Campaign::example()),
        }
    }

    /// What `mode` needs that this configuration lacks, as messages telling
    /// how to supply it. Empty = the mode can start.
    pub fn requirements(&self, mode: Mode) -> Vec<String> {
        let mut missing = Vec::new();
        if mode == Mode::Full && !self.discord.token.is_set() {
            missing.push(
                "discord.token: full mode needs the bot token; set `discord: { token: ${DISCORD_TOKEN} }` and export DISCORD_TOKEN".to_string(),
            );
        }
        if mode == Mode::Gateway {
            if !self.server.admin_key.is_set() {
                missing.push("GLYPHOXA_ADMIN_KEY: gateway mode needs an admin API key; export GLYPHOXA_ADMIN_KEY=<a long random string>".to_string());
            }
            if self.workers.addresses.is_empty() && self.workers.dns.is_none() {
                missing.push(
                    "workers: gateway mode needs at least one worker; list them under `workers: { addresses: [...] }`"
                        .to_string(),
                );
            }
        }
        for (kind, entry) in self.provider_entries() {
            let Some(entry) = entry else { continue };
            if kind.needs_api_key(&entry.name) && !entry.api_key.is_set() {
                missing.push(format!(
                    "providers.{}.api_key: the {} provider needs an API key; set `api_key: ${{...}}` to an environment variable holding it",
                    kind.key(),
                    entry.name
                ));
            }
            if entry.name == "openai" && entry.base_url.is_none() && !entry.api_key.is_set() {
                missing.push(format!(
                    "providers.{}: the openai provider needs `api_key` for api.openai.com, or `base_url` pointing at a compatible server (Ollama, llama.cpp, vLLM, speaches, ...)",
                    kind.key()
                ));
            }
        }
        missing
    }

    /// This configuration with the defaults that depend on `mode` filled in
    /// (listen addresses), as that mode would run it.
    pub fn effective(&self, mode: Mode) -> Config {
        let mut config = self.clone();
        config.server.grpc_addr = Some(self.grpc_addr(mode));
        config.server.metrics_addr = Some(self.metrics_addr(mode));
        config.server.admin_addr = Some(self.admin_addr());
        config
    }

    /// The configuration as YAML, secrets shown as `<redacted>`.
    pub fn to_redacted_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
