//! Deepgram streaming speech to text over WebSocket (`/v1/listen`).
//!
//! Audio goes out as binary linear16 frames while the player speaks;
//! interim results come back as partial transcripts. Our VAD decides when
//! the utterance ends: then we send `Finalize` and `CloseStream`, collect
//! the final results and report them joined as the final transcript.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::error::{error_chain, ProviderError};
use super::metrics::{CallMeter, CallObserver, CallOutcome, Stage};
use super::policy::CallPolicy;
use super::stt::{SpeechToText, SttRequest, SttSession, Transcript, TranscriptEvent, STT_SAMPLE_RATE};

/// Provider name in logs, metrics and errors.
pub const PROVIDER: &str = "deepgram";
/// The Deepgram API.
pub const DEFAULT_BASE_URL: &str = "wss://api.deepgram.com";

/// Streaming transcription through Deepgram.
#[derive(Clone)]
pub struct DeepgramStt {
    base_url: url::Url,
    api_key: String,
    model: String,
    policy: CallPolicy,
    observer: Arc<dyn CallObserver>,
}

impl DeepgramStt {
    /// A client for `base_url` (`wss://api.deepgram.com`; `http(s)` is turned
    /// into `ws(s)`) with `model` (e.g. `nova-2`).
    pub fn new(
        base_url: url::Url,
        api_key: String,
        model: impl Into<String>,
        policy: CallPolicy,
        observer: Arc<dyn CallObserver>,
    ) -> Result<Self, ProviderError> {
        if api_key.trim().is_empty() {
            return Err(ProviderError::Config {
                provider: PROVIDER,
                message: "an API key is required: set providers.stt.api_key".into(),
            });
        }
        Ok(Self {
            base_url,
            api_key,
            model: model.into(),
            policy,
            observer,
        })
    }

    /// The `/v1/listen` URL with the query for `request`.
    pub fn listen_url(&self, request: &SttRequest) -> Result<url::Url, ProviderError> {
        let mut url = self.base_url.clone();
        let scheme = match url.scheme() {
            "http" | "ws" => "ws",
            _ => "wss",
        };
        url.set_scheme(scheme).map_err(|()| ProviderError::Config {
            provider: PROVIDER,
            message: format!("cannot use {} as a WebSocket URL", self.base_url),
        })?;
        let path = format!("{}/v1/listen", url.path().trim_end_matches('/'));
        url.set_path(&path);
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("model", &self.model)
                .append_pair("encoding", "linear16")
                .append_pair("sample_rate", &STT_SAMPLE_RATE.to_string())
                .append_pair("channels", "1")
                .append_pair("interim_results", "true")
                .append_pair("punctuate", "true");
            if let Some(language) = &request.language {
                query.append_pair("language", language);
            }
            for keyword in &request.keywords {
                query.append_pair("keywords", &format!("{keyword}:2"));
            }
        }
        Ok(url)
    }
}

#[derive(Deserialize)]
struct ResultsJson {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    channel: Option<ChannelJson>,
    #[serde(default)]
    is_final: bool,
}

#[derive(Deserialize)]
struct ChannelJson {
    #[serde(default)]
    alternatives: Vec<AlternativeJson>,
}

#[derive(Deserialize)]
struct AlternativeJson {
    #[serde(default)]
    transcript: String,
    #[serde(default)]
    confidence: Option<f32>,
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[async_trait]
impl SpeechToText for DeepgramStt {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn open(&self, request: SttRequest) -> Result<SttSession, ProviderError> {
        let url = self.listen_url(&request)?;
        let mut meter = CallMeter::start(self.observer.clone(), PROVIDER, Stage::Stt);
        let deadline = self.policy.call_deadline(request.deadline);
        let api_key = self.api_key.clone();
        let connected = self
            .policy
            .retry(PROVIDER, deadline, |attempt| {
                meter.attempt(attempt);
                connect(url.clone(), api_key.clone())
            })
            .await;
        let socket = match connected {
            Ok(socket) => socket,
            Err(error) => {
                meter.finish(CallOutcome::Failed(error.outcome_label()));
                return Err(error);
            }
        };
        let policy = self.policy.clone();
        Ok(SttSession::spawn(PROVIDER, move |audio, events| {
            run_session(socket, audio, events, meter, policy, deadline)
        }))
    }
}

async fn connect(url: url::Url, api_key: String) -> Result<WsStream, ProviderError> {
    let mut request = url.as_str().into_client_request().map_err(|e| ProviderError::Config {
        provider: PROVIDER,
        message: format!("bad URL {url}: {e}"),
    })?;
    let header = format!("Token {api_key}").parse().map_err(|_| ProviderError::Config {
        provider: PROVIDER,
        message: "the API key contains characters not allowed in a header".into(),
    })?;
    request.headers_mut().insert("Authorization", header);
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).chars().take(300).collect())
                .unwrap_or_default();
            Err(ProviderError::Http {
                provider: PROVIDER,
                status: response.status().as_u16(),
                body,
            })
        }
        Err(error) => Err(ProviderError::Connect {
            provider: PROVIDER,
            message: error_chain(&error),
        }),
    }
}

/// Pumps audio out and results in until the final transcript is known.
async fn run_session(
    socket: WsStream,
    mut audio: mpsc::Receiver<Vec<i16>>,
    events: mpsc::Sender<Result<TranscriptEvent, ProviderError>>,
    mut meter: CallMeter,
    policy: CallPolicy,
    deadline: Instant,
) {
    let result = exchange(socket, &mut audio, &events, &mut meter, &policy, deadline).await;
    meter.finish_with(&result);
    let _ = events.send(result.map(TranscriptEvent::Final)).await;
}

async fn exchange(
    socket: WsStream,
    audio: &mut mpsc::Receiver<Vec<i16>>,
    events: &mpsc::Sender<Result<TranscriptEvent, ProviderError>>,
    meter: &mut CallMeter,
    policy: &CallPolicy,
    deadline: Instant,
) -> Result<Transcript, ProviderError> {
    let (mut sink, mut stream) = socket.split();
    let send_error = |e: tokio_tungstenite::tungstenite::Error| ProviderError::Connect {
        provider: PROVIDER,
        message: error_chain(&e),
    };
    let mut finals: Vec<String> = Vec::new();
    let mut confidence: Option<f32> = None;
    let mut audio_open = true;
    // After the audio ends, the final results must come within the first-byte timeout.
    let mut final_by = deadline;
    loop {
        tokio::select! {
            chunk = audio.recv(), if audio_open => match chunk {
                Some(samples) => {
                    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                    sink.send(Message::Binary(bytes.into())).await.map_err(send_error)?;
                }
                None => {
                    audio_open = false;
                    sink.send(Message::Text(r#"{"type":"Finalize"}"#.into())).await.map_err(send_error)?;
                    sink.send(Message::Text(r#"{"type":"CloseStream"}"#.into())).await.map_err(send_error)?;
                    final_by = deadline.min(Instant::now() + policy.first_byte_timeout);
                }
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    meter.received(text.len() as u64, 1);
                    let parsed: ResultsJson = serde_json::from_str(&text).map_err(|e| {
                        ProviderError::protocol(PROVIDER, format!("message is not the expected JSON ({e})"))
                    })?;
                    if parsed.kind != "Results" {
                        continue; // Metadata, SpeechStarted, UtteranceEnd
                    }
                    let best = parsed.channel.and_then(|c| c.alternatives.into_iter().next());
                    let Some(best) = best else { continue };
                    if parsed.is_final {
                        if !best.transcript.trim().is_empty() {
                            finals.push(best.transcript.trim().to_string());
                            confidence = best.confidence.or(confidence);
                        }
                    } else if !best.transcript.trim().is_empty() {
                        let mut text = finals.join(" ");
                        if !text.is_empty() {
                            text.push(' ');
                        }
                        text.push_str(best.transcript.trim());
                        let _ = events.send(Ok(TranscriptEvent::Partial(Transcript { text, confidence: best.confidence }))).await;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    return Err(ProviderError::protocol(PROVIDER, "unexpected binary message"));
                }
                Some(Ok(Message::Close(_))) | None => {
                    if audio_open {
                        return Err(ProviderError::protocol(PROVIDER, "the server closed the stream before the utterance ended"));
                    }
                    return Ok(Transcript { text: finals.join(" "), confidence });
                }
                Some(Ok(_)) => {} // ping/pong are answered by tungstenite
                Some(Err(error)) => return Err(ProviderError::Connect { provider: PROVIDER, message: error_chain(&error) }),
            },
            _ = tokio::time::sleep_until(final_by) => {
                return Err(ProviderError::Timeout {
                    provider: PROVIDER,
                    after: policy.first_byte_timeout,
                    what: if audio_open { "the turn's deadline" } else { "final transcript" },
                });
            }
        }
    }
}
