//! ElevenLabs streaming text to speech:
//! `POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_24000`.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::error::ProviderError;
use super::http::{decoded_stream, join_url, CallContext};
use super::pcm::PcmBodyDecoder;
use super::tts::{PcmStream, TextToSpeech, TtsRequest};

/// Provider name in logs, metrics and errors.
pub const PROVIDER: &str = "elevenlabs";
/// The ElevenLabs API.
pub const DEFAULT_BASE_URL: &str = "https://api.elevenlabs.io";
/// Sample rate requested (`pcm_24000`).
pub const ELEVENLABS_PCM_RATE: u32 = 24_000;

/// Voice settings sent with every request (from the provider's `options`).
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceSettings {
    /// 0..1: higher is more stable, less expressive.
    pub stability: f32,
    /// 0..1: how closely to match the original voice.
    pub similarity_boost: f32,
    /// 0..1: style exaggeration.
    pub style: f32,
    /// Boosts similarity to the speaker at some latency cost.
    pub use_speaker_boost: bool,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        Self {
            stability: 0.5,
            similarity_boost: 0.75,
            style: 0.0,
            use_speaker_boost: true,
        }
    }
}

/// Streaming synthesis through ElevenLabs.
#[derive(Clone)]
pub struct ElevenLabsSpeech {
    client: reqwest::Client,
    base_url: url::Url,
    api_key: String,
    model: String,
    default_voice: String,
    settings: VoiceSettings,
    context: CallContext,
}

impl ElevenLabsSpeech {
    /// A client for `base_url` (the API origin), with `model` (e.g.
    /// `eleven_flash_v2_5`) and the voice id used when an NPC names none.
    pub fn new(
        client: reqwest::Client,
        base_url: url::Url,
        api_key: String,
        model: impl Into<String>,
        default_voice: impl Into<String>,
        settings: VoiceSettings,
        context: CallContext,
    ) -> Result<Self, ProviderError> {
        if api_key.trim().is_empty() {
            return Err(ProviderError::Config {
                provider: PROVIDER,
                message: "an API key is required: set providers.tts.api_key".into(),
            });
        }
        Ok(Self {
            client,
            base_url,
            api_key,
            model: model.into(),
            default_voice: default_voice.into(),
            settings,
            context,
        })
    }

    /// The JSON body for `request`.
    pub fn body(&self, request: &TtsRequest) -> Value {
        json!({
            "text": request.text,
            "model_id": self.model,
            "voice_settings": {
                "stability": self.settings.stability,
                "similarity_boost": self.settings.similarity_boost,
                "style": self.settings.style,
                "use_speaker_boost": self.settings.use_speaker_boost,
                "speed": request.voice.speed.clamp(0.7, 1.2),
            },
        })
    }
}

#[async_trait]
impl TextToSpeech for ElevenLabsSpeech {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn synthesize(&self, request: TtsRequest) -> Result<PcmStream, ProviderError> {
        let voice = request
            .voice
            .voice_id
            .clone()
            .unwrap_or_else(|| self.default_voice.clone());
        let mut url = url::Url::parse(&join_url(&self.base_url, &format!("v1/text-to-speech/{voice}/stream")))
            .map_err(|e| ProviderError::Config {
                provider: PROVIDER,
                message: format!("bad voice id {voice:?}: {e}"),
            })?;
        url.query_pairs_mut().append_pair("output_format", "pcm_24000");
        let body = self.body(&request);
        let (response, meter, deadline) = self
            .context
            .send(request.deadline, || {
                self.client
                    .post(url.clone())
                    .header("xi-api-key", &self.api_key)
                    .json(&body)
            })
            .await?;
        Ok(decoded_stream(
            &self.context,
            response,
            PcmBodyDecoder::new(ELEVENLABS_PCM_RATE, 1),
            meter,
            deadline,
        ))
    }
}
