//! Reply builders in the OpenAI-compatible wire formats.

use std::time::Duration;

use serde_json::json;

use super::http::Reply;

/// One SSE event carrying `value` as data.
pub fn sse_event(value: &serde_json::Value) -> Vec<u8> {
    format!("data: {value}\n\n").into_bytes()
}

/// The end-of-stream marker.
pub fn sse_done() -> Vec<u8> {
    b"data: [DONE]\n\n".to_vec()
}

fn delta_chunk(delta: serde_json::Value, finish: Option<&str>) -> serde_json::Value {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    })
}

/// A streamed chat completion: one SSE event per token, the finish reason,
/// usage and `[DONE]`, paced `interval` apart after `first_token` delay.
pub fn chat_stream(tokens: &[&str], first_token: Duration, interval: Duration) -> Reply {
    let mut chunks = vec![sse_event(&delta_chunk(
        json!({ "role": "assistant", "content": "" }),
        None,
    ))];
    for token in tokens {
        chunks.push(sse_event(&delta_chunk(json!({ "content": token }), None)));
    }
    chunks.push(sse_event(&delta_chunk(json!({}), Some("stop"))));
    chunks.push(sse_event(&json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [],
        "usage": { "prompt_tokens": 42, "completion_tokens": tokens.len(), "total_tokens": 42 + tokens.len() },
    })));
    chunks.push(sse_done());
    Reply::stream("text/event-stream", chunks)
        .first_byte_after(first_token)
        .paced(interval)
}

/// A streamed tool call whose JSON arguments arrive in `argument_pieces`.
pub fn tool_call_stream(id: &str, name: &str, argument_pieces: &[&str]) -> Reply {
    let mut chunks = vec![sse_event(&delta_chunk(
        json!({ "role": "assistant", "tool_calls": [{ "index": 0, "id": id, "type": "function", "function": { "name": name, "arguments": "" } }] }),
        None,
    ))];
    for piece in argument_pieces {
        chunks.push(sse_event(&delta_chunk(
            json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }),
            None,
        )));
    }
    chunks.push(sse_event(&delta_chunk(json!({}), Some("tool_calls"))));
    chunks.push(sse_done());
    Reply::stream("text/event-stream", chunks)
}

/// A transcription response (`{"text": ...}`).
pub fn transcription(text: &str) -> Reply {
    Reply::json(&json!({ "text": text }))
}

/// Raw s16le PCM streamed `samples_per_chunk` samples at a time.
pub fn pcm_stream(samples: &[i16], samples_per_chunk: usize, first_byte: Duration, interval: Duration) -> Reply {
    let chunks = samples
        .chunks(samples_per_chunk.max(1))
        .map(|chunk| chunk.iter().flat_map(|s| s.to_le_bytes()).collect())
        .collect();
    Reply::stream("audio/pcm", chunks)
        .first_byte_after(first_byte)
        .paced(interval)
}

/// A tone of `ms` milliseconds at `sample_rate`: audible test speech.
pub fn tone(ms: u32, sample_rate: u32) -> Vec<i16> {
    let count = (u64::from(ms) * u64::from(sample_rate) / 1000) as usize;
    (0..count)
        .map(|i| {
            let t = i as f64 / f64::from(sample_rate);
            ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16
        })
        .collect()
}
