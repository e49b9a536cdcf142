//! Clients for OpenAI-compatible APIs: OpenAI itself, Groq, Ollama,
//! llama.cpp server, vLLM, whisper.cpp server, speaches, Kokoro-FastAPI —
//! anything that serves the same routes under a `base_url` (which includes
//! the API version, e.g. `http://localhost:11434/v1`).

mod llm;
mod stt;
mod tts;

pub use llm::{ChatDecoder, OpenAiChat};
pub use stt::OpenAiTranscription;
pub use tts::OpenAiSpeech;

/// The OpenAI API itself.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Provider name in logs, metrics and errors.
pub const PROVIDER: &str = "openai";

/// Adds the bearer key to a request when one is configured (local servers need none).
fn authorize(request: reqwest::RequestBuilder, api_key: Option<&str>) -> reqwest::RequestBuilder {
    match api_key {
        Some(key) if !key.is_empty() => request.bearer_auth(key),
        _ => request,
    }
}
