//! A loopback fake of Deepgram's streaming `/v1/listen` WebSocket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// How the fake behaves for each connection.
#[derive(Debug, Clone, Default)]
pub struct DeepgramScript {
    /// The final transcript sent after `Finalize`.
    pub final_transcript: String,
    /// An interim transcript sent once half a second of audio has arrived.
    pub interim: Option<String>,
    /// Refuse the WebSocket upgrade with this HTTP status (401, 429, ...).
    pub reject_status: Option<u16>,
    /// Send a non-JSON text frame after the first audio.
    pub malformed: bool,
    /// Never answer `Finalize` (a provider that hangs).
    pub hang_after_finalize: bool,
    /// Wait this long before answering `Finalize`.
    pub finalize_delay: Duration,
}

/// What the fake saw of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeepgramSession {
    /// Path and query of the upgrade request.
    pub uri: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// Audio bytes received.
    pub audio_bytes: usize,
    /// Whether `Finalize` arrived.
    pub finalized: bool,
    /// Whether `CloseStream` arrived.
    pub close_stream: bool,
}

#[derive(Default)]
struct Shared {
    script: Mutex<DeepgramScript>,
    sessions: Mutex<Vec<DeepgramSession>>,
    hangups: AtomicUsize,
}

/// A loopback Deepgram. Stops when dropped.
pub struct FakeDeepgram {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeDeepgram {
    /// Starts the fake on `127.0.0.1` with a free port.
    pub async fn start(script: DeepgramScript) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            ..Shared::default()
        });
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, accept_shared.clone()));
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`: the base URL to configure.
    pub fn url(&self) -> Result<url::Url, url::ParseError> {
        url::Url::parse(&format!("http://{}", self.addr))
    }

    /// Replaces the script for later connections.
    pub fn set_script(&self, script: DeepgramScript) {
        if let Ok(mut current) = self.shared.script.lock() {
            *current = script;
        }
    }

    /// Every connection so far.
    pub fn sessions(&self) -> Vec<DeepgramSession> {
        self.shared.sessions.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Connections the client closed before `CloseStream`.
    pub fn hangups(&self) -> usize {
        self.shared.hangups.load(Ordering::SeqCst)
    }
}

impl Drop for FakeDeepgram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn results(transcript: &str, is_final: bool) -> String {
    json!({
        "type": "Results",
        "channel_index": [0, 1],
        "duration": 1.0,
        "start": 0.0,
        "is_final": is_final,
        "speech_final": is_final,
        "from_finalize": is_final,
        "channel": { "alternatives": [{ "transcript": transcript, "confidence": 0.93, "words": [] }] },
    })
    .to_string()
}

async fn serve(socket: tokio::net::TcpStream, shared: Arc<Shared>) {
    let script = shared.script.lock().map(|s| s.clone()).unwrap_or_default();
    let mut record = DeepgramSession::default();
    // The signature is tungstenite's callback type; its error is an HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        record.uri = request.uri().to_string();
        record.authorization = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match script.reject_status {
            Some(status) => {
                let mut error = ErrorResponse::new(Some(format!("{{\"err_msg\":\"rejected with {status}\"}}")));
                *error.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::from_u16(status)
                    .unwrap_or(tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST);
                Err(error)
            }
            None => Ok(response),
        }
    };
    let accepted = tokio_tungstenite::accept_hdr_async(socket, callback).await;
    let index = {
        let Ok(mut sessions) = shared.sessions.lock() else {
            return;
        };
        sessions.push(record);
        sessions.len() - 1
    };
    let Ok(mut ws) = accepted else { return };
    let update = |f: &dyn Fn(&mut DeepgramSession)| {
        if let Ok(mut sessions) = shared.sessions.lock() {
            if let Some(session) = sessions.get_mut(index) {
                f(session);
            }
        }
    };
    let mut audio_bytes = 0usize;
    let mut interim_sent = false;
    let mut malformed_sent = false;
    while let Some(message) = ws.next().await {
        let Ok(message) = message else { break };
        match message {
            Message::Binary(bytes) => {
                audio_bytes += bytes.len();
                update(&|s| s.audio_bytes = audio_bytes);
                if script.malformed && !malformed_sent {
                    malformed_sent = true;
                    let _ = ws.send(Message::Text("{this is not json".into())).await;
                }
                if let (Some(interim), false) = (&script.interim, interim_sent) {
                    if audio_bytes >= 16_000 {
                        interim_sent = true;
                        let _ = ws.send(Message::Text(results(interim, false).into())).await;
                    }
                }
            }
            Message::Text(text) => {
                let kind = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                    .unwrap_or_default();
                match kind.as_str() {
                    "Finalize" => {
                        update(&|s| s.finalized = true);
                        if script.hang_after_finalize {
                            continue;
                        }
                        tokio::time::sleep(script.finalize_delay).await;
                        let _ = ws
                            .send(Message::Text(results(&script.final_transcript, true).into()))
                            .await;
                    }
                    "CloseStream" => {
                        update(&|s| s.close_stream = true);
                        if script.hang_after_finalize {
                            continue;
                        }
                        let metadata = json!({ "type": "Metadata", "request_id": "fake", "duration": audio_bytes as f64 / 32_000.0 });
                        let _ = ws.send(Message::Text(metadata.to_string().into())).await;
                        let _ = ws.close(None).await;
                        return;
                    }
                    _ => {}
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    // The client went away before CloseStream was answered.
    shared.hangups.fetch_add(1, Ordering::SeqCst);
}
