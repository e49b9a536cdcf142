//! Language models: chat messages (and tools) in, a stream of tokens out.

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use tokio::time::Instant;

use super::error::ProviderError;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions: the persona and the campaign knowledge.
    System,
    /// A player (or the DM).
    User,
    /// The NPC.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The role's name in chat APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// Tool calls the assistant made in this message.
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the call it answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message with text only.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Function name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
}

/// A function call the model made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The provider's id for the call.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments as JSON text, assembled from all streamed pieces.
    pub arguments: String,
}

/// What one model call asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation so far, system prompt first.
    pub messages: Vec<ChatMessage>,
    /// Functions the model may call.
    pub tools: Vec<ToolSpec>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Texts that end generation.
    pub stop: Vec<String>,
    /// When the whole turn must be over; the call never runs past it.
    pub deadline: Option<Instant>,
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model finished (or hit a stop sequence).
    Stop,
    /// The token limit was reached.
    Length,
    /// The model wants tool results.
    ToolCalls,
    /// The provider filtered the content.
    ContentFilter,
    /// Something else, as the provider named it.
    Other(String),
}

impl FinishReason {
    /// Reads an OpenAI-style finish reason.
    pub fn parse(text: &str) -> Self {
        match text {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_string()),
        }
    }
}

/// Token counts of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens read (prompt).
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

/// What a model stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// The next piece of the reply's text.
    Text(String),
    /// A complete tool call (its streamed argument pieces joined).
    ToolCall(ToolCall),
    /// Token counts, when the provider reports them.
    Usage(Usage),
    /// Generation ended; the stream ends after this.
    Finished(FinishReason),
}

/// A stream of model events; dropping it cancels the call.
pub type LlmStream = BoxStream<'static, Result<LlmEvent, ProviderError>>;

/// A chat language model.
#[async_trait]
pub trait LanguageModel: Send + Sync {
    /// Provider name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Starts generating a reply; resolves once the provider has accepted the request.
    async fn chat(&self, request: ChatRequest) -> Result<LlmStream, ProviderError>;

    /// Reads `request`'s prompt ahead of time so that a later request
    /// starting with the same messages answers sooner. Only engines with a
    /// prompt cache of their own do anything (the local llama.cpp engine);
    /// remote providers are never called for it.
    async fn prepare(&self, request: ChatRequest) -> Result<(), ProviderError> {
        let _ = request;
        Ok(())
    }

    /// Waits until the model can answer without loading first (local
    /// engines load in the background); remote providers are ready at once.
    async fn ready(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}
