//! `POST /audio/transcriptions`: the utterance as a WAV file, multipart.

use async_trait::async_trait;

use super::{authorize, PROVIDER};
use crate::providers::error::ProviderError;
use crate::providers::http::{join_url, CallContext};
use crate::providers::pcm::encode_wav;
use crate::providers::stt::{SpeechToText, SttRequest, SttSession, Transcript, STT_SAMPLE_RATE};

/// Batch transcription through an OpenAI-compatible API.
#[derive(Clone)]
pub struct OpenAiTranscription {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    context: CallContext,
}

impl OpenAiTranscription {
    /// A client for `base_url` (including `/v1`) with `model` (e.g. `whisper-1`).
    pub fn new(
        client: reqwest::Client,
        base_url: &url::Url,
        api_key: Option<String>,
        model: impl Into<String>,
        context: CallContext,
    ) -> Self {
        Self {
            client,
            url: join_url(base_url, "audio/transcriptions"),
            api_key,
            model: model.into(),
            context,
        }
    }
}

#[derive(serde::Deserialize)]
struct TranscriptionResponse {
    text: String,
}

#[async_trait]
impl SpeechToText for OpenAiTranscription {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn open(&self, request: SttRequest) -> Result<SttSession, ProviderError> {
        let this = self.clone();
        Ok(SttSession::batch(PROVIDER, move |audio| async move {
            this.transcribe_wav(audio, request).await
        }))
    }
}

impl OpenAiTranscription {
    async fn transcribe_wav(&self, audio: Vec<i16>, request: SttRequest) -> Result<Transcript, ProviderError> {
        if audio.is_empty() {
            return Ok(Transcript {
                text: String::new(),
                confidence: None,
            });
        }
        let wav = encode_wav(&audio, STT_SAMPLE_RATE)
            .map_err(|e| ProviderError::protocol(PROVIDER, format!("cannot encode WAV: {e}")))?;
        let prompt = request.keywords.join(", ");
        let (response, mut meter, deadline) = self
            .context
            .send(request.deadline, || {
                let mut form = reqwest::multipart::Form::new()
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(wav.clone())
                            .file_name("utterance.wav")
                            .mime_str("audio/wav")
                            .unwrap_or_else(|_| reqwest::multipart::Part::bytes(wav.clone())),
                    )
                    .text("model", self.model.clone())
                    .text("response_format", "json");
                if let Some(language) = &request.language {
                    form = form.text("language", language.clone());
                }
                if !prompt.is_empty() {
                    form = form.text("prompt", prompt.clone());
                }
                authorize(self.client.post(&self.url), self.api_key.as_deref()).multipart(form)
            })
            .await?;
        let result = async {
            let body = tokio::time::timeout_at(deadline, response.bytes())
                .await
                .map_err(|_| ProviderError::Timeout {
                    provider: PROVIDER,
                    after: self.context.policy.total_timeout,
                    what: "transcription body",
                })?
                .map_err(|e| ProviderError::from_reqwest(PROVIDER, &e))?;
            meter.received(body.len() as u64, 1);
            let parsed: TranscriptionResponse = serde_json::from_slice(&body).map_err(|e| {
                ProviderError::protocol(PROVIDER, format!("transcription is not the expected JSON: {e}"))
            })?;
            Ok(Transcript {
                text: parsed.text.trim().to_string(),
                confidence: None,
            })
        }
        .await;
        meter.finish_with(&result);
        result
    }
}
