//! Speech and language providers behind streaming traits.
//!
//! - [`SpeechToText`]: per-utterance session, PCM in, partial and final transcripts out.
//! - [`LanguageModel`]: messages and tools in, text deltas, tool calls, usage and finish out.
//! - [`TextToSpeech`]: text in, PCM chunks (with rate and channels) out.
//!
//! Every call is cancellable by dropping it, bounded by a [`CallPolicy`]
//! (timeouts, bounded jittered retries, the turn's deadline) and measured by
//! a [`CallMeter`]. Implementations speak the real wire protocols:
//! OpenAI-compatible REST, Deepgram's WebSocket, ElevenLabs' streaming REST,
//! and the local espeak-ng program. The fully offline engines — Whisper for
//! speech and llama.cpp for chat, with their model installer — are in [`local`].

pub mod deepgram;
pub mod elevenlabs;
mod error;
pub mod espeak;
#[cfg(feature = "fakes")]
pub mod fake;
pub mod http;
mod llm;
pub mod local;
mod metrics;
pub mod openai;
mod pcm;
mod policy;
mod select;
mod sse;
mod stt;
mod tts;

pub use error::ProviderError;
pub use llm::{
    ChatMessage, ChatRequest, FinishReason, LanguageModel, LlmEvent, LlmStream, Role, ToolCall, ToolSpec, Usage,
};
pub use local::{LocalLlm, LocalLlmConfig, LocalWhisper, LocalWhisperConfig};
pub use metrics::{CallLog, CallMeter, CallObserver, CallOutcome, CallRecord, NoObserver, Stage};
pub use pcm::{encode_wav, PcmBodyDecoder, PcmChunk, S16leAssembler};
pub use policy::{CallPolicy, Guarded};
pub use select::{
    build_llm, build_llm_with_models, build_stt, build_stt_with_models, build_tts, ProviderEnv, ProviderSpec,
};
pub use sse::{SseDecoder, SseError, SseEvent};
pub use stt::{SpeechToText, SttRequest, SttSession, Transcript, TranscriptEvent, STT_SAMPLE_RATE};
pub use tts::{PcmStream, TextToSpeech, TtsRequest};
