//! Text to speech: a sentence in, PCM chunks out as they are synthesized.

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use tokio::time::Instant;

use super::error::ProviderError;
use super::pcm::PcmChunk;
use crate::campaign::VoiceSpec;

/// What one synthesis asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct TtsRequest {
    /// The text to speak (one sentence, typically).
    pub text: String,
    /// The NPC's voice; unset fields use the provider's defaults.
    pub voice: VoiceSpec,
    /// When the whole turn must be over; the call never runs past it.
    pub deadline: Option<Instant>,
}

/// A stream of synthesized audio; dropping it cancels the call.
pub type PcmStream = BoxStream<'static, Result<PcmChunk, ProviderError>>;

/// A text-to-speech provider.
#[async_trait]
pub trait TextToSpeech: Send + Sync {
    /// Provider name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Starts synthesizing; resolves once audio is on its way.
    async fn synthesize(&self, request: TtsRequest) -> Result<PcmStream, ProviderError>;
}
