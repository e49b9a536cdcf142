//! The sections of `glyphoxa.yaml` (SPEC §9), with their defaults.
//!
//! Every section rejects unknown keys, and every key is optional: an empty
//! file (or no file) is a complete configuration for the offline defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::values::{self, Bounded, DatabaseUrl, DiscordId, Endpoint, ListenAddr, Secret};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen addresses, logging and the keys of this process.
    pub server: ServerConfig,
    /// The Discord bot (full mode).
    pub discord: DiscordConfig,
    /// Speech-to-text, language model and text-to-speech providers.
    pub providers: ProvidersConfig,
    /// VAD, barge-in, mixer and codec tuning.
    pub audio: AudioConfig,
    /// Where sessions, campaigns and transcripts are stored.
    pub storage: StorageConfig,
    /// Path of the campaign file; absent = the bundled example campaign.
    /// A relative path is relative to the configuration file.
    pub campaign: Option<PathBuf>,
    /// This process as a voice worker.
    pub worker: WorkerConfig,
    /// The workers a gateway places sessions on.
    pub workers: WorkersConfig,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `server:` — listen addresses, logging, keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Log filter, e.g. `info` or `glyphoxa=debug,info`.
    #[serde(deserialize_with = "values::log_filter")]
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// gRPC listen address (`GLYPHOXA_GRPC_ADDR`); default `0.0.0.0:50051`
    /// for a worker, `0.0.0.0:50052` for a gateway.
    #[serde(deserialize_with = "values::listen_addr")]
    pub grpc_addr: Option<ListenAddr>,
    /// Health, readiness and Prometheus listen address
    /// (`GLYPHOXA_METRICS_ADDR`); default `0.0.0.0:9090`, worker `0.0.0.0:9091`.
    #[serde(deserialize_with = "values::listen_addr")]
    pub metrics_addr: Option<ListenAddr>,
    /// Admin REST API listen address (`GLYPHOXA_ADMIN_ADDR`, gateway mode);
    /// default `0.0.0.0:8081`.
    #[serde(deserialize_with = "values::listen_addr")]
    pub admin_addr: Option<ListenAddr>,
    /// Key for the admin API (`GLYPHOXA_ADMIN_KEY`); gateway mode refuses to start without it.
    pub admin_key: Secret,
    /// 32 random bytes, base64, that encrypt stored bot tokens (`GLYPHOXA_SECRET_KEY`).
    pub secret_key: Secret,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: LogFormat::Text,
            grpc_addr: None,
            metrics_addr: None,
            admin_addr: None,
            admin_key: Secret::default(),
            secret_key: Secret::default(),
        }
    }
}

/// `discord:` — the bot of full mode.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// The bot token (keep it in an environment variable: `token: ${DISCORD_TOKEN}`).
    pub token: Secret,
    /// The guild (server) the bot serves; unset = every guild it is in.
    #[serde(deserialize_with = "values::discord_id")]
    pub guild_id: Option<DiscordId>,
    /// Members with this role may use DM commands; unset = everyone.
    #[serde(deserialize_with = "values::discord_id")]
    pub dm_role_id: Option<DiscordId>,
    /// Text channel for the live session dashboard; unset = where `/session start` was used.
    #[serde(deserialize_with = "values::discord_id")]
    pub dashboard_channel_id: Option<DiscordId>,
    /// Origin replacing `https://discord.com` (`GLYPHOXA_DISCORD_API_URL`),
    /// e.g. a proxy; unset = Discord itself.
    #[serde(deserialize_with = "values::http_url")]
    pub api_url: Option<Endpoint>,
}

/// `providers:` — absent entries use the local offline engines.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvidersConfig {
    /// Speech to text; absent = local Whisper.
    pub stt: Option<ProviderConfig>,
    /// Language model; absent = local llama.cpp model.
    pub llm: Option<ProviderConfig>,
    /// Text to speech; absent = espeak-ng.
    pub tts: Option<ProviderConfig>,
}

/// Which stage a provider serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Speech to text.
    Stt,
    /// Language model.
    Llm,
    /// Text to speech.
    Tts,
}

impl ProviderKind {
    /// The key under `providers:`.
    pub fn key(self) -> &'static str {
        match self {
            ProviderKind::Stt => "stt",
            ProviderKind::Llm => "llm",
            ProviderKind::Tts => "tts",
        }
    }

    /// The provider names this stage accepts, the local default first.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Stt => &["local", "openai", "deepgram"],
            ProviderKind::Llm => &["local", "openai"],
            ProviderKind::Tts => &["espeak", "openai", "elevenlabs"],
        }
    }

    /// Providers of this stage that cannot work without an API key.
    pub fn needs_api_key(self, name: &str) -> bool {
        matches!(
            (self, name),
            (ProviderKind::Stt, "deepgram") | (ProviderKind::Tts, "elevenlabs")
        )
    }
}

/// One provider entry: `{name, base_url, api_key, model, options}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Provider name, e.g. `openai`, `deepgram`, `elevenlabs`, `espeak`, `local`.
    pub name: String,
    /// API origin, e.g. `http://localhost:11434/v1` for Ollama; unset = the provider's own.
    #[serde(default, deserialize_with = "values::http_url")]
    pub base_url: Option<Endpoint>,
    /// API key (keep it in an environment variable: `api_key: ${OPENAI_API_KEY}`).
    #[serde(default)]
    pub api_key: Secret,
    /// Model name or, for local engines, a model file path; unset = the provider's default.
    #[serde(default)]
    pub model: Option<String>,
    /// Provider-specific settings (e.g. `language: de`, `temperature: 0.7`).
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
}

impl ProviderConfig {
    /// The provider description the pipeline builds clients from.
    pub fn to_spec(&self) -> glyphoxa_pipeline::providers::ProviderSpec {
        glyphoxa_pipeline::providers::ProviderSpec {
            name: self.name.clone(),
            base_url: self.base_url.as_ref().map(|endpoint| endpoint.url().clone()),
            api_key: Some(self.api_key.expose().to_string()).filter(|key| !key.is_empty()),
            model: self.model.clone(),
            options: self.options.clone(),
        }
    }
}

/// `audio:` — tuning for audio engineers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    /// Voice activity detection and utterance segmentation.
    pub vad: VadConfig,
    /// When a player's speech cuts an NPC off.
    pub barge_in: BargeInConfig,
    /// The output mixer.
    pub mixer: MixerConfig,
    /// The Opus encoder of the output.
    pub opus: OpusConfig,
}

/// `audio.vad:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VadConfig {
    /// 0 (least aggressive, keeps more noise as speech) to 3 (most).
    pub aggressiveness: Bounded<0, 3>,
    /// Voiced 20 ms frames in a row before speech counts as started.
    pub onset_frames: Bounded<1, 50>,
    /// Silence (ms) after which an utterance ends.
    pub hangover_ms: Bounded<60, 5000>,
    /// Audio (ms) before the detected start that is sent to STT too.
    pub preroll_ms: Bounded<0, 1000>,
    /// Longest utterance (ms); longer speech is cut into several.
    pub max_utterance_ms: Bounded<1000, 120_000>,
    /// Longest synthetic silence (ms) fed for a speaker who stopped sending audio.
    pub silence_cap_ms: Bounded<100, 10_000>,
    /// Silence (ms) after which a provisional "voicing stopped" is reported (barge-in decisions).
    pub voicing_stop_ms: Bounded<20, 1000>,
}

impl VadConfig {
    /// The audio engine's VAD settings.
    pub fn to_settings(&self) -> glyphoxa_audio::VadSettings {
        glyphoxa_audio::VadSettings {
            aggressiveness: self.aggressiveness.get() as u8,
            onset_frames: self.onset_frames.get(),
            hangover_ms: self.hangover_ms.get(),
            preroll_ms: self.preroll_ms.get(),
            max_utterance_ms: self.max_utterance_ms.get(),
            voicing_stop_ms: self.voicing_stop_ms.get(),
        }
    }
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            aggressiveness: Bounded::new(2),
            onset_frames: Bounded::new(6),
            hangover_ms: Bounded::new(300),
            preroll_ms: Bounded::new(240),
            max_utterance_ms: Bounded::new(30_000),
            silence_cap_ms: Bounded::new(2_000),
            voicing_stop_ms: Bounded::new(100),
        }
    }
}

/// `audio.barge_in:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BargeInConfig {
    /// Whether players may interrupt NPCs at all.
    pub enabled: bool,
    /// How long (ms) a player must keep talking over an NPC to cut it.
    pub confirm_ms: Bounded<0, 3000>,
    /// Two speech segments closer than this (ms) are one utterance.
    pub coalesce_ms: Bounded<0, 3000>,
}

impl Default for BargeInConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            confirm_ms: Bounded::new(250),
            coalesce_ms: Bounded::new(600),
        }
    }
}

/// `audio.mixer:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixerConfig {
    /// Shortest pause (ms) between two lines of the same NPC queue.
    pub gap_min_ms: Bounded<0, 5000>,
    /// Longest pause (ms); the pause is random between the two.
    pub gap_max_ms: Bounded<0, 5000>,
    /// How much (dB) lower-priority audio is turned down under speech.
    pub duck_db: Bounded<0, 60>,
}

impl Default for MixerConfig {
    fn default() -> Self {
        Self {
            gap_min_ms: Bounded::new(120),
            gap_max_ms: Bounded::new(350),
            duck_db: Bounded::new(12),
        }
    }
}

/// `audio.opus:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpusConfig {
    /// Output bitrate in bits per second.
    pub bitrate: Bounded<6_000, 510_000>,
    /// Encoder complexity, 0 (cheapest) to 10 (best).
    pub complexity: Bounded<0, 10>,
}

impl Default for OpusConfig {
    fn default() -> Self {
        Self {
            bitrate: Bounded::new(64_000),
            complexity: Bounded::new(5),
        }
    }
}

/// `storage:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://FILE` (created if missing) or `postgres://user@host/db`
    /// (`GLYPHOXA_DATABASE_URL`).
    pub url: DatabaseUrl,
    /// Largest number of pooled database connections.
    pub max_connections: Bounded<1, 1000>,
}

/// The database used when none is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://glyphoxa.db";

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::default_sqlite(),
            max_connections: Bounded::new(10),
        }
    }
}

/// How a worker reaches the voice channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// Discord voice through songbird.
    #[default]
    Discord,
    /// WAV files in and out, for tests and demos.
    Loopback,
}

/// `worker:`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// `discord` or `loopback`.
    pub transport: TransportKind,
    /// The gateway this worker reports to (`GLYPHOXA_GATEWAY_ADDR`); unset = standalone.
    #[serde(deserialize_with = "values::grpc_url")]
    pub gateway_addr: Option<Endpoint>,
    /// Name this worker reports in heartbeats; unset = the host name.
    pub id: Option<String>,
    /// Most voice sessions this worker runs at once.
    pub capacity: Bounded<1, 10_000>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            transport: TransportKind::Discord,
            gateway_addr: None,
            id: None,
            capacity: Bounded::new(32),
        }
    }
}

/// `workers:` — the voice workers of a gateway.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Worker gRPC addresses, e.g. `http://worker-1:50051`.
    #[serde(deserialize_with = "values::grpc_urls")]
    pub addresses: Vec<Endpoint>,
    /// A DNS name whose addresses are all workers (e.g. a headless service,
    /// `http://workers.glyphoxa.svc:50051`); used with or instead of `addresses`.
    #[serde(deserialize_with = "values::grpc_url")]
    pub dns: Option<Endpoint>,
    /// Deadline (ms) of one control call to a worker.
    pub call_timeout_ms: Bounded<10, 60_000>,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            dns: None,
            call_timeout_ms: Bounded::new(2_000),
        }
    }
}
