//! Speech to text: one transcription session per utterance.
//!
//! The caller streams the utterance's 16 kHz mono PCM in, closes the audio
//! when the VAD decides the utterance ended, and reads partial and final
//! transcripts out. Streaming providers (Deepgram) transcribe while audio
//! arrives; batch providers (OpenAI-compatible REST) buffer the audio and
//! send it when it is closed. Dropping the session cancels its network work.

use std::future::Future;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::ProviderError;

/// Sample rate of the audio STT providers receive.
pub const STT_SAMPLE_RATE: u32 = 16_000;

/// What a transcription needs to know besides the audio.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SttRequest {
    /// Spoken language (ISO 639-1, e.g. `en`, `de`); `None` = the provider's default.
    pub language: Option<String>,
    /// Names the recognizer should favour (NPCs, places): keyword hints.
    pub keywords: Vec<String>,
    /// When the whole turn must be over; the call never runs past it.
    pub deadline: Option<Instant>,
}

/// A transcript of (part of) an utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// What was said.
    pub text: String,
    /// The recognizer's confidence, 0 to 1, when it gives one.
    pub confidence: Option<f32>,
}

/// What a transcription session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptEvent {
    /// A provisional transcript of the audio so far; may change.
    Partial(Transcript),
    /// The final transcript of the whole utterance; the session ends after it.
    Final(Transcript),
}

/// A speech-to-text provider.
#[async_trait]
pub trait SpeechToText: Send + Sync {
    /// Provider name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Opens a transcription session for one utterance.
    async fn open(&self, request: SttRequest) -> Result<SttSession, ProviderError>;

    /// Waits until the provider can transcribe without loading first
    /// (local engines load in the background); remote providers are ready
    /// at once.
    async fn ready(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// Audio travelling into a session: at most this many chunks are queued.
const AUDIO_QUEUE: usize = 64;

/// One utterance being transcribed. Dropping it cancels the work.
pub struct SttSession {
    provider: &'static str,
    audio: Option<mpsc::Sender<Vec<i16>>>,
    events: mpsc::Receiver<Result<TranscriptEvent, ProviderError>>,
    task: JoinHandle<()>,
}

impl SttSession {
    /// Starts a session whose work runs in `work`: it reads audio chunks until
    /// the channel closes and sends events; it is aborted when the session is dropped.
    pub fn spawn<F, Fut>(provider: &'static str, work: F) -> Self
    where
        F: FnOnce(mpsc::Receiver<Vec<i16>>, mpsc::Sender<Result<TranscriptEvent, ProviderError>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(16);
        let task = tokio::spawn(work(audio_rx, events_tx));
        Self {
            provider,
            audio: Some(audio_tx),
            events: events_rx,
            task,
        }
    }

    /// A session for a batch provider: buffers all audio, then calls
    /// `transcribe` once with it and reports its result as the final transcript.
    pub fn batch<F, Fut>(provider: &'static str, transcribe: F) -> Self
    where
        F: FnOnce(Vec<i16>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Transcript, ProviderError>> + Send + 'static,
    {
        Self::spawn(provider, move |mut audio, events| async move {
            let mut utterance = Vec::new();
            while let Some(chunk) = audio.recv().await {
                utterance.extend_from_slice(&chunk);
            }
            let result = transcribe(utterance).await.map(TranscriptEvent::Final);
            let _ = events.send(result).await;
        })
    }

    /// Sends a piece of the utterance (16 kHz mono).
    pub async fn send_audio(&mut self, pcm: &[i16]) -> Result<(), ProviderError> {
        let closed = || ProviderError::protocol(self.provider, "the transcription session ended before the audio did");
        let sender = self.audio.as_ref().ok_or_else(closed)?;
        sender.send(pcm.to_vec()).await.map_err(|_| closed())
    }

    /// Marks the end of the utterance: the provider finalizes its transcript.
    pub fn finish_audio(&mut self) {
        self.audio = None;
    }

    /// The next event; `None` when the session is over.
    pub async fn next_event(&mut self) -> Option<Result<TranscriptEvent, ProviderError>> {
        self.events.recv().await
    }

    /// Sends the whole utterance, ends it and waits for the final transcript.
    pub async fn transcribe(mut self, pcm: &[i16]) -> Result<Transcript, ProviderError> {
        for chunk in pcm.chunks(STT_SAMPLE_RATE as usize / 10) {
            self.send_audio(chunk).await?;
        }
        self.finish_audio();
        self.final_transcript().await
    }

    /// Waits for the final transcript, skipping partials.
    pub async fn final_transcript(&mut self) -> Result<Transcript, ProviderError> {
        while let Some(event) = self.next_event().await {
            if let TranscriptEvent::Final(transcript) = event? {
                return Ok(transcript);
            }
        }
        Err(ProviderError::protocol(
            self.provider,
            "the session ended without a final transcript",
        ))
    }
}

impl Drop for SttSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}
