//! `POST /chat/completions` with `stream: true`: the reply as Server-Sent
//! Events, tool-call arguments assembled from their streamed pieces.

use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{authorize, PROVIDER};
use crate::providers::error::ProviderError;
use crate::providers::http::{decoded_stream, join_url, CallContext, ChunkDecoder};
use crate::providers::llm::{
    ChatMessage, ChatRequest, FinishReason, LanguageModel, LlmEvent, LlmStream, ToolCall, Usage,
};
use crate::providers::sse::{SseDecoder, SseEvent};

/// Streaming chat completions through an OpenAI-compatible API.
#[derive(Clone)]
pub struct OpenAiChat {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    include_usage: bool,
    context: CallContext,
}

impl OpenAiChat {
    /// A client for `base_url` (including `/v1`) and `model`.
    pub fn new(
        client: reqwest::Client,
        base_url: &url::Url,
        api_key: Option<String>,
        model: impl Into<String>,
        context: CallContext,
    ) -> Self {
        Self {
            client,
            url: join_url(base_url, "chat/completions"),
            api_key,
            model: model.into(),
            include_usage: true,
            context,
        }
    }

    /// Whether to ask for token usage (`stream_options.include_usage`);
    /// some older servers reject the field.
    pub fn with_usage(mut self, include_usage: bool) -> Self {
        self.include_usage = include_usage;
        self
    }

    /// The JSON body for `request`.
    pub fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": request.messages.iter().map(message_json).collect::<Vec<_>>(),
            "stream": true,
        });
        if self.include_usage {
            body["stream_options"] = json!({ "include_usage": true });
        }
        if let Some(max_tokens) = request.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        if let Some(temperature) = request.temperature {
            body["temperature"] = json!(temperature);
        }
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|tool| {
                    json!({
                        "type": "function",
                        "function": { "name": tool.name, "description": tool.description, "parameters": tool.parameters },
                    })
                })
                .collect();
        }
        body
    }
}

fn message_json(message: &ChatMessage) -> Value {
    let mut value = json!({ "role": message.role.as_str(), "content": message.content });
    if !message.tool_calls.is_empty() {
        value["tool_calls"] = message
            .tool_calls
            .iter()
            .map(|call| json!({ "id": call.id, "type": "function", "function": { "name": call.name, "arguments": call.arguments } }))
            .collect();
    }
    if let Some(id) = &message.tool_call_id {
        value["tool_call_id"] = json!(id);
    }
    value
}

#[async_trait]
impl LanguageModel for OpenAiChat {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn chat(&self, request: ChatRequest) -> Result<LlmStream, ProviderError> {
        let body = self.body(&request);
        let (response, meter, deadline) = self
            .context
            .send(request.deadline, || {
                authorize(self.client.post(&self.url), self.api_key.as_deref())
                    .header(reqwest::header::ACCEPT, "text/event-stream")
                    .json(&body)
            })
            .await?;
        Ok(decoded_stream(
            &self.context,
            response,
            ChatDecoder::default(),
            meter,
            deadline,
        ))
    }
}

/// Decodes the SSE stream of a chat completion into [`LlmEvent`]s.
#[derive(Default)]
pub struct ChatDecoder {
    sse: SseDecoder,
    events: Vec<SseEvent>,
    tool_calls: BTreeMap<u64, ToolCall>,
    finish: Option<FinishReason>,
    done: bool,
}

#[derive(Deserialize)]
struct ChunkJson {
    #[serde(default)]
    choices: Vec<ChoiceJson>,
    #[serde(default)]
    usage: Option<UsageJson>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceJson {
    #[serde(default)]
    delta: Option<DeltaJson>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct DeltaJson {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDeltaJson>,
}

#[derive(Deserialize)]
struct ToolCallDeltaJson {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDeltaJson>,
}

#[derive(Deserialize)]
struct FunctionDeltaJson {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl ChatDecoder {
    fn handle(&mut self, data: &str, out: &mut VecDeque<LlmEvent>) -> Result<(), ProviderError> {
        if data.trim() == "[DONE]" {
            self.end(out);
            return Ok(());
        }
        let chunk: ChunkJson = serde_json::from_str(data).map_err(|e| {
            ProviderError::protocol(
                PROVIDER,
                format!("stream chunk is not the expected JSON ({e}): {}", truncate(data)),
            )
        })?;
        if let Some(error) = chunk.error {
            return Err(ProviderError::protocol(
                PROVIDER,
                format!("error inside the stream: {}", truncate(&error.to_string())),
            ));
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                    out.push_back(LlmEvent::Text(text));
                }
                for piece in delta.tool_calls {
                    let call = self.tool_calls.entry(piece.index).or_insert_with(|| ToolCall {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                    if let Some(id) = piece.id {
                        call.id = id;
                    }
                    if let Some(function) = piece.function {
                        if let Some(name) = function.name {
                            call.name.push_str(&name);
                        }
                        if let Some(arguments) = function.arguments {
                            call.arguments.push_str(&arguments);
                        }
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(FinishReason::parse(&reason));
            }
        }
        if let Some(usage) = chunk.usage {
            out.push_back(LlmEvent::Usage(Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            }));
        }
        Ok(())
    }

    fn end(&mut self, out: &mut VecDeque<LlmEvent>) {
        if self.done {
            return;
        }
        self.done = true;
        for (_, call) in std::mem::take(&mut self.tool_calls) {
            out.push_back(LlmEvent::ToolCall(call));
        }
        out.push_back(LlmEvent::Finished(self.finish.take().unwrap_or(FinishReason::Stop)));
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

impl ChunkDecoder for ChatDecoder {
    type Item = LlmEvent;

    fn decode(&mut self, bytes: &[u8], out: &mut VecDeque<LlmEvent>) -> Result<(), ProviderError> {
        self.sse
            .push(bytes, &mut self.events)
            .map_err(|e| ProviderError::protocol(PROVIDER, e.to_string()))?;
        for event in std::mem::take(&mut self.events) {
            if !self.done {
                self.handle(&event.data, out)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut VecDeque<LlmEvent>) -> Result<(), ProviderError> {
        self.sse
            .finish(&mut self.events)
            .map_err(|e| ProviderError::protocol(PROVIDER, e.to_string()))?;
        for event in std::mem::take(&mut self.events) {
            if !self.done {
                self.handle(&event.data, out)?;
            }
        }
        if self.done {
            Ok(())
        } else if self.finish.is_some() {
            // Some servers end without [DONE] after the finishing chunk.
            self.end(out);
            Ok(())
        } else {
            Err(ProviderError::protocol(
                PROVIDER,
                "the stream ended before the reply finished",
            ))
        }
    }

    fn units(item: &LlmEvent) -> u64 {
        u64::from(matches!(item, LlmEvent::Text(_)))
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(body: &str, piece: usize) -> Result<Vec<LlmEvent>, ProviderError> {
        let mut decoder = ChatDecoder::default();
        let mut out = VecDeque::new();
        for chunk in body.as_bytes().chunks(piece) {
            decoder.decode(chunk, &mut out)?;
        }
        decoder.finish(&mut out)?;
        Ok(out.into_iter().collect())
    }

    #[test]
    fn tool_call_arguments_are_assembled_from_pieces() {
        let body = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"roll_dice\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"sides\\\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\": 20}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        for piece in [1, 7, 64, 4096] {
            let events = decode_all(body, piece).unwrap();
            assert_eq!(
                events,
                [
                    LlmEvent::ToolCall(ToolCall {
                        id: "call_1".into(),
                        name: "roll_dice".into(),
                        arguments: "{\"sides\": 20}".into()
                    }),
                    LlmEvent::Finished(FinishReason::ToolCalls)
                ]
            );
        }
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let err = decode_all("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n", 5).unwrap_err();
        assert!(err.to_string().contains("ended before the reply finished"), "{err}");
    }

    #[test]
    fn malformed_chunk_is_an_error() {
        let err = decode_all("data: {not json\n\n", 100).unwrap_err();
        assert!(matches!(err, ProviderError::Protocol { .. }));
    }

    #[test]
    fn body_carries_tools_stop_and_limits() {
        let chat = OpenAiChat::new(
            reqwest::Client::new(),
            &url::Url::parse("http://x/v1").unwrap(),
            None,
            "m",
            CallContext {
                provider: PROVIDER,
                stage: crate::providers::Stage::Llm,
                policy: Default::default(),
                observer: std::sync::Arc::new(crate::providers::NoObserver),
            },
        );
        let request = ChatRequest {
            messages: vec![ChatMessage::new(crate::providers::Role::System, "be brief")],
            tools: vec![crate::providers::ToolSpec {
                name: "roll".into(),
                description: "roll dice".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: Some(60),
            temperature: Some(0.5),
            stop: vec!["\n\n".into()],
            deadline: None,
        };
        let body = chat.body(&request);
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["max_tokens"], json!(60));
        assert_eq!(body["stop"], json!(["\n\n"]));
        assert_eq!(body["tools"][0]["function"]["name"], json!("roll"));
        assert_eq!(body["messages"][0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(body["stream_options"]["include_usage"], json!(true));
    }
}
