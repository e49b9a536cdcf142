//! Loopback fakes of the providers' servers, for tests, benches and the
//! latency harness (feature `fakes`).
//!
//! Each fake speaks its provider's real protocol on 127.0.0.1: OpenAI-style
//! REST with SSE and streamed PCM ([`FakeHttpServer`] plus the reply
//! builders in [`openai`]), ElevenLabs' streamed PCM (same server), and
//! Deepgram's WebSocket ([`deepgram::FakeDeepgram`]). Replies are scripted:
//! time to first byte, pacing, error statuses, hangs and malformed payloads.

pub mod deepgram;
mod http;
pub mod openai;

pub use http::{FakeHttpServer, RecordedRequest, Reply};
