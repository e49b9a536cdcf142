//! `POST /audio/speech` with `response_format: pcm`: 24 kHz mono s16le,
//! streamed as it is synthesized.

use async_trait::async_trait;
use serde_json::json;

use super::{authorize, PROVIDER};
use crate::providers::error::ProviderError;
use crate::providers::http::{decoded_stream, join_url, CallContext};
use crate::providers::pcm::PcmBodyDecoder;
use crate::providers::tts::{PcmStream, TextToSpeech, TtsRequest};

/// Sample rate of OpenAI's `pcm` response format.
pub const OPENAI_PCM_RATE: u32 = 24_000;

/// Streaming speech synthesis through an OpenAI-compatible API.
#[derive(Clone)]
pub struct OpenAiSpeech {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    default_voice: String,
    context: CallContext,
}

impl OpenAiSpeech {
    /// A client for `base_url` (including `/v1`), `model` (e.g. `tts-1`) and
    /// the voice used when an NPC names none (e.g. `alloy`).
    pub fn new(
        client: reqwest::Client,
        base_url: &url::Url,
        api_key: Option<String>,
        model: impl Into<String>,
        default_voice: impl Into<String>,
        context: CallContext,
    ) -> Self {
        Self {
            client,
            url: join_url(base_url, "audio/speech"),
            api_key,
            model: model.into(),
            default_voice: default_voice.into(),
            context,
        }
    }
}

#[async_trait]
impl TextToSpeech for OpenAiSpeech {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn synthesize(&self, request: TtsRequest) -> Result<PcmStream, ProviderError> {
        let voice = request
            .voice
            .voice_id
            .clone()
            .unwrap_or_else(|| self.default_voice.clone());
        let body = json!({
            "model": self.model,
            "input": request.text,
            "voice": voice,
            "response_format": "pcm",
            "speed": request.voice.speed.clamp(0.25, 4.0),
        });
        let (response, meter, deadline) = self
            .context
            .send(request.deadline, || {
                authorize(self.client.post(&self.url), self.api_key.as_deref()).json(&body)
            })
            .await?;
        Ok(decoded_stream(
            &self.context,
            response,
            PcmBodyDecoder::new(OPENAI_PCM_RATE, 1),
            meter,
            deadline,
        ))
    }
}
