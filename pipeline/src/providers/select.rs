//! Building providers from configuration (`providers.stt|llm|tts`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::deepgram::{self, DeepgramStt};
use super::elevenlabs::{self, ElevenLabsSpeech, VoiceSettings};
use super::error::ProviderError;
use super::espeak::EspeakTts;
use super::http::{http_client, CallContext};
use super::llm::LanguageModel;
use super::local::{self, Background, LocalLlm, LocalLlmConfig, LocalWhisper, LocalWhisperConfig};
use super::metrics::{CallObserver, Stage};
use super::openai::{self, OpenAiChat, OpenAiSpeech, OpenAiTranscription};
use super::policy::CallPolicy;
use super::stt::SpeechToText;
use super::tts::TextToSpeech;

/// One configured provider: `{name, base_url, api_key, model, options}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderSpec {
    /// Provider name (`openai`, `deepgram`, `elevenlabs`, `espeak`, `local`).
    pub name: String,
    /// API origin; `None` = the provider's own.
    pub base_url: Option<url::Url>,
    /// API key; `None` or empty = none.
    pub api_key: Option<String>,
    /// Model name; `None` = the provider's default.
    pub model: Option<String>,
    /// Provider-specific settings.
    pub options: BTreeMap<String, Value>,
}

/// What every provider shares: timeouts and retries, and the metrics sink.
#[derive(Clone)]
pub struct ProviderEnv {
    /// Timeouts and retries of every call.
    pub policy: CallPolicy,
    /// Receives every call's measurements.
    pub observer: Arc<dyn CallObserver>,
}

impl ProviderSpec {
    fn key(&self) -> Option<String> {
        self.api_key.clone().filter(|key| !key.trim().is_empty())
    }

    fn base_url(&self, default: &str) -> Result<url::Url, ProviderError> {
        match &self.base_url {
            Some(url) => Ok(url.clone()),
            None => url::Url::parse(default).map_err(|e| self.error(format!("bad default URL: {e}"))),
        }
    }

    fn model(&self, default: &str) -> String {
        self.model
            .clone()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| default.to_string())
    }

    fn error(&self, message: String) -> ProviderError {
        ProviderError::Config {
            provider: provider_name(&self.name),
            message,
        }
    }

    /// Rejects option keys the provider does not know.
    fn allow_options(&self, stage: &str, known: &[&str]) -> Result<(), ProviderError> {
        for key in self.options.keys() {
            if !known.contains(&key.as_str()) {
                let expected = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(self.error(format!(
                    "providers.{stage}.options.{key}: unknown option (known: {expected})"
                )));
            }
        }
        Ok(())
    }

    fn string_option(&self, stage: &str, key: &str) -> Result<Option<String>, ProviderError> {
        match self.options.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.error(format!("providers.{stage}.options.{key}: expected text, found {other}"))),
        }
    }

    fn number_option(
        &self,
        stage: &str,
        key: &str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Option<f64>, ProviderError> {
        match self.options.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if range.contains(&v) => Ok(Some(v)),
                _ => Err(self.error(format!(
                    "providers.{stage}.options.{key}: {n} is out of range {}..={}",
                    range.start(),
                    range.end()
                ))),
            },
            Some(other) => Err(self.error(format!(
                "providers.{stage}.options.{key}: expected a number, found {other}"
            ))),
        }
    }

    fn bool_option(&self, stage: &str, key: &str) -> Result<Option<bool>, ProviderError> {
        match self.options.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(format!(
                "providers.{stage}.options.{key}: expected true or false, found {other}"
            ))),
        }
    }
}

fn provider_name(name: &str) -> &'static str {
    match name {
        "openai" => openai::PROVIDER,
        "deepgram" => deepgram::PROVIDER,
        "elevenlabs" => elevenlabs::PROVIDER,
        "espeak" => super::espeak::PROVIDER,
        "local" => "local",
        _ => "provider",
    }
}

fn context(env: &ProviderEnv, provider: &'static str, stage: Stage) -> CallContext {
    CallContext {
        provider,
        stage,
        policy: env.policy.clone(),
        observer: env.observer.clone(),
    }
}

fn require_key(spec: &ProviderSpec, stage: &str) -> Result<String, ProviderError> {
    spec.key().ok_or_else(|| {
        spec.error(format!(
            "needs an API key: set providers.{stage}.api_key (e.g. api_key: ${{{}_API_KEY}})",
            spec.name.to_uppercase()
        ))
    })
}

/// Needs a key only when talking to the real OpenAI API.
fn openai_key(spec: &ProviderSpec, stage: &str) -> Result<Option<String>, ProviderError> {
    if spec.base_url.is_none() && spec.key().is_none() {
        return Err(spec.error(format!(
            "needs providers.{stage}.api_key for api.openai.com, or providers.{stage}.base_url pointing at a compatible server"
        )));
    }
    Ok(spec.key())
}

/// The models directory for the local engines: `options.models_dir`, else
/// the caller's, else `$GLYPHOXA_MODELS_DIR` or the user's data directory.
fn models_dir(spec: &ProviderSpec, stage: &str, given: Option<&Path>) -> Result<PathBuf, ProviderError> {
    if let Some(dir) = spec.string_option(stage, "models_dir")? {
        return Ok(PathBuf::from(dir));
    }
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => local::models::default_dir().map_err(|e| local_error(e.into())),
    }
}

fn local_error(error: local::LocalEngineError) -> ProviderError {
    error.into_provider("local")
}

fn count_option(spec: &ProviderSpec, stage: &str, key: &str, max: f64) -> Result<Option<usize>, ProviderError> {
    match spec.number_option(stage, key, 1.0..=max)? {
        Some(v) if v.fract() != 0.0 => Err(spec.error(format!(
            "providers.{stage}.options.{key}: expected a whole number, found {v}"
        ))),
        Some(v) => Ok(Some(v as usize)),
        None => Ok(None),
    }
}

fn local_spec() -> ProviderSpec {
    ProviderSpec {
        name: "local".into(),
        ..ProviderSpec::default()
    }
}

/// The local Whisper engine for `spec` (`providers.stt` with `name: local`).
fn local_stt(
    spec: &ProviderSpec,
    env: &ProviderEnv,
    given: Option<&Path>,
) -> Result<Arc<dyn SpeechToText>, ProviderError> {
    spec.allow_options("stt", &["model_dir", "models_dir", "language", "workers"])?;
    let language = spec.string_option("stt", "language")?.filter(|l| !l.trim().is_empty());
    let workers = count_option(spec, "stt", "workers", 64.0)?;
    let mut config = match spec.string_option("stt", "model_dir")? {
        Some(dir) => LocalWhisperConfig::new(dir),
        None => {
            let english = language
                .as_deref()
                .is_none_or(|l| l.trim().to_ascii_lowercase().starts_with("en"));
            let default = if english {
                local::models::WHISPER_TINY_EN.id
            } else {
                local::models::WHISPER_BASE.id
            };
            let id = spec.model(default);
            let package = local::models::find(&id)
                .filter(|p| p.kind == local::models::ModelKind::SpeechToText)
                .ok_or_else(|| spec.error(format!("providers.stt.model: {id:?} is not a local speech model (use whisper-tiny.en or whisper-base, or options.model_dir)")))?;
            let dir = models_dir(spec, "stt", given)?;
            LocalWhisperConfig::installed(&dir, package).map_err(local_error)?
        }
    };
    config.language = language;
    if let Some(workers) = workers {
        config.workers = workers;
    }
    // Check the files now; reading the weights happens in the background
    // so the process serves at once.
    config.check().map_err(local_error)?;
    let (policy, observer) = (env.policy.clone(), env.observer.clone());
    let engine = Background::start(local::STT_PROVIDER, move || {
        let engine = LocalWhisper::load(&config, policy, observer).map_err(local_error)?;
        tracing::info!(model = %engine.describe(), "local speech recognition ready");
        Ok(engine)
    })?;
    Ok(Arc::new(engine))
}

/// The local llama.cpp engine for `spec` (`providers.llm` with `name: local`).
fn local_llm(
    spec: &ProviderSpec,
    env: &ProviderEnv,
    given: Option<&Path>,
) -> Result<Arc<dyn LanguageModel>, ProviderError> {
    spec.allow_options(
        "llm",
        &[
            "models_dir",
            "context_size",
            "threads",
            "cache_slots",
            "temperature",
            "chat_template",
        ],
    )?;
    let context_size = count_option(spec, "llm", "context_size", 1_048_576.0)?;
    let threads = count_option(spec, "llm", "threads", 256.0)?;
    let cache_slots = count_option(spec, "llm", "cache_slots", 64.0)?;
    let temperature = spec.number_option("llm", "temperature", 0.0..=2.0)?;
    let chat_template = spec.string_option("llm", "chat_template")?;
    let model = spec.model(local::models::SMOLLM2_135M.id);
    let mut config = if model.ends_with(".gguf") || model.contains(std::path::MAIN_SEPARATOR) {
        LocalLlmConfig::new(&model)
    } else {
        let package = local::models::find(&model)
            .filter(|p| p.kind == local::models::ModelKind::LanguageModel)
            .ok_or_else(|| {
                spec.error(format!(
                    "providers.llm.model: {model:?} is neither a local model ({}) nor a path to a .gguf file",
                    local::models::SMOLLM2_135M.id
                ))
            })?;
        let dir = models_dir(spec, "llm", given)?;
        LocalLlmConfig::installed(&dir, package).map_err(local_error)?
    };
    if let Some(n) = context_size {
        config.context_size = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(n) = threads {
        config.threads = n;
    }
    if let Some(n) = cache_slots {
        config.cache_slots = n;
    }
    if let Some(t) = temperature {
        config.temperature = t as f32;
    }
    config.chat_template = chat_template;
    config.check().map_err(local_error)?;
    let (policy, observer) = (env.policy.clone(), env.observer.clone());
    let engine = Background::start(local::LLM_PROVIDER, move || {
        let engine = LocalLlm::load(&config, policy, observer).map_err(local_error)?;
        tracing::info!(model = %engine.describe(), "local language model ready");
        Ok(engine)
    })?;
    Ok(Arc::new(engine))
}

/// The speech-to-text provider for `spec` (`None` = the local Whisper
/// engine, with models from `$GLYPHOXA_MODELS_DIR` or the user's data directory).
pub fn build_stt(spec: Option<&ProviderSpec>, env: &ProviderEnv) -> Result<Arc<dyn SpeechToText>, ProviderError> {
    build_stt_with_models(spec, env, None)
}

/// [`build_stt`] with the local engine's models in `models_dir` (`None` = the default directory).
pub fn build_stt_with_models(
    spec: Option<&ProviderSpec>,
    env: &ProviderEnv,
    models_dir: Option<&Path>,
) -> Result<Arc<dyn SpeechToText>, ProviderError> {
    let Some(spec) = spec else {
        return local_stt(&local_spec(), env, models_dir);
    };
    match spec.name.as_str() {
        "openai" => {
            spec.allow_options("stt", &[])?;
            let key = openai_key(spec, "stt")?;
            let client = http_client(&env.policy)?;
            Ok(Arc::new(OpenAiTranscription::new(
                client,
                &spec.base_url(openai::DEFAULT_BASE_URL)?,
                key,
                spec.model("whisper-1"),
                context(env, openai::PROVIDER, Stage::Stt),
            )))
        }
        "deepgram" => {
            spec.allow_options("stt", &[])?;
            let key = require_key(spec, "stt")?;
            Ok(Arc::new(DeepgramStt::new(
                spec.base_url(deepgram::DEFAULT_BASE_URL)?,
                key,
                spec.model("nova-2"),
                env.policy.clone(),
                env.observer.clone(),
            )?))
        }
        "local" => local_stt(spec, env, models_dir),
        other => Err(spec.error(format!("unknown stt provider {other:?}: use local, openai or deepgram"))),
    }
}

/// The language model for `spec` (`None` = the local llama.cpp engine, with
/// models from `$GLYPHOXA_MODELS_DIR` or the user's data directory).
pub fn build_llm(spec: Option<&ProviderSpec>, env: &ProviderEnv) -> Result<Arc<dyn LanguageModel>, ProviderError> {
    build_llm_with_models(spec, env, None)
}

/// [`build_llm`] with the local engine's models in `models_dir` (`None` = the default directory).
pub fn build_llm_with_models(
    spec: Option<&ProviderSpec>,
    env: &ProviderEnv,
    models_dir: Option<&Path>,
) -> Result<Arc<dyn LanguageModel>, ProviderError> {
    let Some(spec) = spec else {
        return local_llm(&local_spec(), env, models_dir);
    };
    match spec.name.as_str() {
        "openai" => {
            spec.allow_options("llm", &["include_usage"])?;
            let key = openai_key(spec, "llm")?;
            let client = http_client(&env.policy)?;
            let chat = OpenAiChat::new(
                client,
                &spec.base_url(openai::DEFAULT_BASE_URL)?,
                key,
                spec.model("gpt-4o-mini"),
                context(env, openai::PROVIDER, Stage::Llm),
            )
            .with_usage(spec.bool_option("llm", "include_usage")?.unwrap_or(true));
            Ok(Arc::new(chat))
        }
        "local" => local_llm(spec, env, models_dir),
        other => Err(spec.error(format!("unknown llm provider {other:?}: use local or openai"))),
    }
}

/// The text-to-speech provider for `spec` (`None` = espeak-ng).
pub fn build_tts(spec: Option<&ProviderSpec>, env: &ProviderEnv) -> Result<Arc<dyn TextToSpeech>, ProviderError> {
    let default = ProviderSpec {
        name: "espeak".into(),
        ..ProviderSpec::default()
    };
    let spec = spec.unwrap_or(&default);
    match spec.name.as_str() {
        "espeak" => {
            spec.allow_options("tts", &["program", "voice"])?;
            let program = spec
                .string_option("tts", "program")?
                .unwrap_or_else(|| "espeak-ng".into());
            let voice = spec.string_option("tts", "voice")?.unwrap_or_else(|| "en-us".into());
            Ok(Arc::new(EspeakTts::new(
                program,
                voice,
                env.policy.clone(),
                env.observer.clone(),
            )))
        }
        "openai" => {
            spec.allow_options("tts", &["voice"])?;
            let key = openai_key(spec, "tts")?;
            let client = http_client(&env.policy)?;
            Ok(Arc::new(OpenAiSpeech::new(
                client,
                &spec.base_url(openai::DEFAULT_BASE_URL)?,
                key,
                spec.model("tts-1"),
                spec.string_option("tts", "voice")?.unwrap_or_else(|| "alloy".into()),
                context(env, openai::PROVIDER, Stage::Tts),
            )))
        }
        "elevenlabs" => {
            spec.allow_options(
                "tts",
                &["voice", "stability", "similarity_boost", "style", "use_speaker_boost"],
            )?;
            let key = require_key(spec, "tts")?;
            let defaults = VoiceSettings::default();
            let settings = VoiceSettings {
                stability: spec
                    .number_option("tts", "stability", 0.0..=1.0)?
                    .map_or(defaults.stability, |v| v as f32),
                similarity_boost: spec
                    .number_option("tts", "similarity_boost", 0.0..=1.0)?
                    .map_or(defaults.similarity_boost, |v| v as f32),
                style: spec
                    .number_option("tts", "style", 0.0..=1.0)?
                    .map_or(defaults.style, |v| v as f32),
                use_speaker_boost: spec
                    .bool_option("tts", "use_speaker_boost")?
                    .unwrap_or(defaults.use_speaker_boost),
            };
            let voice = spec.string_option("tts", "voice")?.unwrap_or_default();
            Ok(Arc::new(ElevenLabsSpeech::new(
                http_client(&env.policy)?,
                spec.base_url(elevenlabs::DEFAULT_BASE_URL)?,
                key,
                spec.model("eleven_flash_v2_5"),
                voice,
                settings,
                context(env, elevenlabs::PROVIDER, Stage::Tts),
            )?))
        }
        other => Err(spec.error(format!(
            "unknown tts provider {other:?}: use espeak, openai or elevenlabs"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::NoObserver;

    fn env() -> ProviderEnv {
        ProviderEnv {
            policy: CallPolicy::default(),
            observer: Arc::new(NoObserver),
        }
    }

    fn spec(name: &str) -> ProviderSpec {
        ProviderSpec {
            name: name.into(),
            ..ProviderSpec::default()
        }
    }

    fn err<T>(result: Result<T, ProviderError>) -> String {
        match result {
            Ok(_) => panic!("provider built"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn missing_keys_and_urls_are_clear_errors() {
        assert_eq!(
            err(build_stt(Some(&spec("deepgram")), &env())),
            "deepgram: needs an API key: set providers.stt.api_key (e.g. api_key: ${DEEPGRAM_API_KEY})"
        );
        assert_eq!(
            err(build_tts(Some(&spec("elevenlabs")), &env())),
            "elevenlabs: needs an API key: set providers.tts.api_key (e.g. api_key: ${ELEVENLABS_API_KEY})"
        );
        assert!(err(build_llm(Some(&spec("openai")), &env()))
            .contains("needs providers.llm.api_key for api.openai.com, or providers.llm.base_url"));
    }

    #[test]
    fn local_openai_compatible_server_needs_no_key() {
        let mut ollama = spec("openai");
        ollama.base_url = Some(url::Url::parse("http://localhost:11434/v1").unwrap());
        assert_eq!(build_llm(Some(&ollama), &env()).unwrap().name(), "openai");
        assert_eq!(build_stt(Some(&ollama), &env()).unwrap().name(), "openai");
        assert_eq!(build_tts(Some(&ollama), &env()).unwrap().name(), "openai");
    }

    #[test]
    fn espeak_is_the_default_tts() {
        assert_eq!(build_tts(None, &env()).unwrap().name(), "espeak");
    }

    #[test]
    fn unknown_names_and_options_are_rejected() {
        assert!(err(build_tts(Some(&spec("festival")), &env())).contains("unknown tts provider \"festival\""));
        let mut eleven = spec("elevenlabs");
        eleven.api_key = Some("k".into());
        eleven.options.insert("stabilty".into(), Value::from(0.3));
        assert!(err(build_tts(Some(&eleven), &env())).contains("providers.tts.options.stabilty: unknown option"));
        eleven.options.clear();
        eleven.options.insert("stability".into(), Value::from(3));
        assert!(err(build_tts(Some(&eleven), &env())).contains("out of range"));
    }

    #[test]
    fn local_engines_without_models_name_the_install_command() {
        let empty = tempfile::tempdir().unwrap();
        let dir = Some(empty.path());
        let llm = err(build_llm_with_models(None, &env(), dir));
        assert!(llm.contains("smollm2-135m-instruct is not installed"), "{llm}");
        assert!(llm.contains("glyphoxa models install"), "{llm}");
        let stt = err(build_stt_with_models(Some(&spec("local")), &env(), dir));
        assert!(stt.contains("whisper-tiny.en is not installed"), "{stt}");
        let mut german = spec("local");
        german.options.insert("language".into(), Value::from("de"));
        assert!(err(build_stt_with_models(Some(&german), &env(), dir)).contains("whisper-base is not installed"));
        let mut gguf = spec("local");
        gguf.model = Some("/nowhere/model.gguf".into());
        assert!(err(build_llm_with_models(Some(&gguf), &env(), dir)).contains("/nowhere/model.gguf does not exist"));
        let mut bad = spec("local");
        bad.options.insert("threads".into(), Value::from(1.5));
        assert!(err(build_llm_with_models(Some(&bad), &env(), dir)).contains("whole number"));
        bad.options.clear();
        bad.model = Some("gpt-5".into());
        assert!(err(build_llm_with_models(Some(&bad), &env(), dir)).contains("neither a local model"));
    }
}
