//! Shared HTTP plumbing for the REST providers: the client, requests with
//! retries, and streamed response bodies decoded chunk by chunk.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::error::ProviderError;
use super::metrics::{CallMeter, CallObserver, CallOutcome, Stage};
use super::policy::{CallPolicy, Guarded};

/// Longest part of an error body quoted in an error message.
const ERROR_BODY_CHARS: usize = 300;

/// An HTTP client tuned for latency: no Nagle delay, kept-alive connections.
pub fn http_client(policy: &CallPolicy) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(policy.first_byte_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| ProviderError::Config {
            provider: "http",
            message: format!("cannot build the HTTP client: {e}"),
        })
}

/// Joins `path` to a base URL, keeping the base's own path (`/v1`).
pub fn join_url(base: &url::Url, path: &str) -> String {
    format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Everything a provider call shares: who, how patient, who measures.
#[derive(Clone)]
pub struct CallContext {
    /// Provider name.
    pub provider: &'static str,
    /// Stage served.
    pub stage: Stage,
    /// Timeouts and retries.
    pub policy: CallPolicy,
    /// Receives the call's measurements.
    pub observer: Arc<dyn CallObserver>,
}

impl CallContext {
    /// Sends the request built by `build` (once per attempt) until a success
    /// status arrives, with the retry policy; returns the response and the
    /// running meter, and the call deadline.
    pub async fn send(
        &self,
        turn_deadline: Option<Instant>,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, CallMeter, Instant), ProviderError> {
        let mut meter = CallMeter::start(self.observer.clone(), self.provider, self.stage);
        let deadline = self.policy.call_deadline(turn_deadline);
        let provider = self.provider;
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let result = self
            .policy
            .retry(provider, deadline, |number| {
                attempts.store(number, std::sync::atomic::Ordering::Relaxed);
                let request = build();
                async move {
                    let response = request
                        .send()
                        .await
                        .map_err(|e| ProviderError::from_reqwest(provider, &e))?;
                    check_status(provider, response).await
                }
            })
            .await;
        meter.attempt(attempts.load(std::sync::atomic::Ordering::Relaxed));
        match result {
            Ok(response) => Ok((response, meter, deadline)),
            Err(error) => {
                meter.finish(CallOutcome::Failed(error.outcome_label()));
                Err(error)
            }
        }
    }
}

/// Turns a non-success status into [`ProviderError::Http`] with the body's start.
pub async fn check_status(
    provider: &'static str,
    response: reqwest::Response,
) -> Result<reqwest::Response, ProviderError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(ProviderError::Http {
        provider,
        status: status.as_u16(),
        body: body.chars().take(ERROR_BODY_CHARS).collect(),
    })
}

/// Decodes a streamed body into items, chunk by chunk.
pub trait ChunkDecoder: Send + 'static {
    /// What the stream yields.
    type Item: Send + 'static;

    /// Decodes the next piece of the body.
    fn decode(&mut self, bytes: &[u8], out: &mut VecDeque<Self::Item>) -> Result<(), ProviderError>;

    /// The body ended; flush what is left or complain about a truncated answer.
    fn finish(&mut self, out: &mut VecDeque<Self::Item>) -> Result<(), ProviderError>;

    /// How many units (tokens, samples) an item carries, for metrics.
    fn units(item: &Self::Item) -> u64;

    /// Whether the protocol's end marker was seen (the rest of the body is ignored).
    fn is_done(&self) -> bool {
        false
    }
}

struct DecodeState<D: ChunkDecoder> {
    body: BoxStream<'static, Result<Bytes, ProviderError>>,
    decoder: D,
    ready: VecDeque<D::Item>,
    meter: CallMeter,
    ended: bool,
}

/// Streams `response`'s body through `decoder`, with the idle timeout and
/// the call deadline; the meter reports when the stream ends or is dropped.
pub fn decoded_stream<D: ChunkDecoder>(
    context: &CallContext,
    response: reqwest::Response,
    decoder: D,
    meter: CallMeter,
    deadline: Instant,
) -> BoxStream<'static, Result<D::Item, ProviderError>> {
    let provider = context.provider;
    let body = response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| ProviderError::from_reqwest(provider, &e)))
        .boxed();
    decode_bytes(provider, &context.policy, body, decoder, meter, deadline)
}

/// Streams any byte source through `decoder` (see [`decoded_stream`]).
pub fn decode_bytes<D: ChunkDecoder>(
    provider: &'static str,
    policy: &CallPolicy,
    body: BoxStream<'static, Result<Bytes, ProviderError>>,
    decoder: D,
    meter: CallMeter,
    deadline: Instant,
) -> BoxStream<'static, Result<D::Item, ProviderError>> {
    let body = Guarded::new(body, provider, policy, deadline).boxed();
    let state = DecodeState {
        body,
        decoder,
        ready: VecDeque::new(),
        meter,
        ended: false,
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.ready.pop_front() {
                return Some((Ok(item), state));
            }
            if state.ended {
                return None;
            }
            let step = match state.body.next().await {
                Some(Ok(bytes)) => {
                    let before = state.ready.len();
                    let result = state.decoder.decode(&bytes, &mut state.ready);
                    let units = state.ready.iter().skip(before).map(D::units).sum();
                    state.meter.received(bytes.len() as u64, units);
                    result.map(|()| state.decoder.is_done())
                }
                Some(Err(error)) => Err(error),
                None => state.decoder.finish(&mut state.ready).map(|()| true),
            };
            match step {
                Ok(false) => {}
                Ok(true) => {
                    state.ended = true;
                    state.meter.finish(CallOutcome::Ok);
                }
                Err(error) => {
                    state.ended = true;
                    state.ready.clear();
                    state.meter.finish(CallOutcome::Failed(error.outcome_label()));
                    return Some((Err(error), state));
                }
            }
        }
    })
    .boxed()
}
