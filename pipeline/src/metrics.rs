//! The pipeline's Prometheus metrics (exported by the binary on `/metrics`
//! with the worker's own, see `glyphoxa_worker::metrics`):
//!
//! - `glyphoxa_provider_errors_total{stage,provider}`: provider calls that
//!   failed while a session used them — `stage` is `stt`, `llm` or `tts`,
//!   `provider` the provider's `name()`. A call fails when the provider
//!   returns an error (its own timeouts and retries included) or when it
//!   still owes an answer as the turn's (or the utterance's) deadline passes.
//!   Calls the orchestrator cancels (barge-in, a newer utterance) are not
//!   errors.
//!
//! Each failure is also logged (`provider call failed`) inside the turn's
//! span, so the line carries the session and turn ids.
//!
//! Recording is cheap and never blocks; without an installed recorder it
//! does nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_util::stream::{BoxStream, Stream};
use tokio::time::Instant;

use crate::providers::{
    ChatRequest, LanguageModel, LlmStream, PcmStream, ProviderError, Stage, TextToSpeech, TtsRequest,
};

/// Counts one failed call of `provider` serving `stage`.
pub fn record_provider_error(stage: Stage, provider: &'static str) {
    metrics::counter!("glyphoxa_provider_errors_total", "stage" => stage.as_str(), "provider" => provider).increment(1);
}

/// Makes `glyphoxa_provider_errors_total{stage, provider}` exist at zero
/// for a provider in use, so dashboards and rates see it before its first
/// failure.
pub fn declare_provider(stage: Stage, provider: &'static str) {
    metrics::counter!("glyphoxa_provider_errors_total", "stage" => stage.as_str(), "provider" => provider).increment(0);
}

/// Watches one provider call: counts (and logs) its failure once.
struct CallWatch {
    stage: Stage,
    provider: &'static str,
    deadline: Option<Instant>,
    /// The caller is waiting for the provider (for its answer or its next chunk).
    waiting: bool,
    /// The call is over (answered in full, or failed and counted).
    over: bool,
}

impl CallWatch {
    fn new(stage: Stage, provider: &'static str, deadline: Option<Instant>) -> Self {
        Self {
            stage,
            provider,
            deadline,
            waiting: true,
            over: false,
        }
    }

    fn failed(&mut self, error: &ProviderError) {
        if !self.over {
            self.over = true;
            tracing::warn!(stage = self.stage.as_str(), provider = self.provider, %error, "provider call failed");
            record_provider_error(self.stage, self.provider);
        }
    }
}

impl Drop for CallWatch {
    fn drop(&mut self) {
        // Dropped while the provider still owed an answer: the turn gave up on
        // it at its deadline (a cancelled turn drops its calls before that).
        let too_late = self.deadline.is_some_and(|deadline| Instant::now() >= deadline);
        if !self.over && self.waiting && too_late {
            self.over = true;
            tracing::warn!(
                stage = self.stage.as_str(),
                provider = self.provider,
                "provider call failed: no answer before the deadline"
            );
            record_provider_error(self.stage, self.provider);
        }
    }
}

/// A provider's answer stream, watched.
struct Watched<T> {
    inner: BoxStream<'static, Result<T, ProviderError>>,
    watch: CallWatch,
}

impl<T> Stream for Watched<T> {
    type Item = Result<T, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = this.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Pending => this.watch.waiting = true,
            Poll::Ready(Some(Ok(_))) => this.watch.waiting = false,
            Poll::Ready(Some(Err(error))) => this.watch.failed(error),
            Poll::Ready(None) => this.watch.over = true,
        }
        polled
    }
}

async fn watched<T: Send + 'static>(
    mut watch: CallWatch,
    call: impl Future<Output = Result<BoxStream<'static, Result<T, ProviderError>>, ProviderError>>,
) -> Result<BoxStream<'static, Result<T, ProviderError>>, ProviderError> {
    match call.await {
        Ok(inner) => {
            watch.waiting = false;
            Ok(Box::pin(Watched { inner, watch }))
        }
        Err(error) => {
            watch.failed(&error);
            Err(error)
        }
    }
}

/// A language model whose failed calls are counted.
struct WatchedLlm(Arc<dyn LanguageModel>);

#[async_trait]
impl LanguageModel for WatchedLlm {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn chat(&self, request: ChatRequest) -> Result<LlmStream, ProviderError> {
        let watch = CallWatch::new(Stage::Llm, self.0.name(), request.deadline);
        watched(watch, self.0.chat(request)).await
    }

    async fn prepare(&self, request: ChatRequest) -> Result<(), ProviderError> {
        self.0.prepare(request).await
    }

    async fn ready(&self) -> Result<(), ProviderError> {
        self.0.ready().await
    }
}

/// A voice whose failed calls are counted.
struct WatchedTts(Arc<dyn TextToSpeech>);

#[async_trait]
impl TextToSpeech for WatchedTts {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn synthesize(&self, request: TtsRequest) -> Result<PcmStream, ProviderError> {
        let watch = CallWatch::new(Stage::Tts, self.0.name(), request.deadline);
        watched(watch, self.0.synthesize(request)).await
    }
}

/// `llm`, with every failed call counted in `glyphoxa_provider_errors_total`.
pub(crate) fn watch_llm(llm: &Arc<dyn LanguageModel>) -> Arc<dyn LanguageModel> {
    Arc::new(WatchedLlm(llm.clone()))
}

/// `tts`, with every failed call counted in `glyphoxa_provider_errors_total`.
pub(crate) fn watch_tts(tts: &Arc<dyn TextToSpeech>) -> Arc<dyn TextToSpeech> {
    Arc::new(WatchedTts(tts.clone()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    use super::*;
    use crate::campaign::VoiceSpec;
    use crate::testing::{Scripted, ScriptedLlm, ToneTts};

    /// Runs `test` on a paused current-thread runtime with a local recorder;
    /// returns the provider error counts as `(stage, provider, count)`.
    fn errors_recorded<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> Vec<(String, String, u64)> {
        let recorder = DebuggingRecorder::new();
        let snapshotter: Snapshotter = recorder.snapshotter();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || runtime.block_on(test()));
        let label = |key: &metrics::Key, name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_string())
                .unwrap_or_default()
        };
        let mut counts: Vec<(String, String, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == "glyphoxa_provider_errors_total")
            .map(|(key, _, _, value)| {
                let DebugValue::Counter(count) = value else {
                    panic!("not a counter: {value:?}")
                };
                (label(key.key(), "stage"), label(key.key(), "provider"), count)
            })
            .collect();
        counts.sort();
        counts
    }

    fn request(deadline: Option<Instant>) -> ChatRequest {
        ChatRequest {
            deadline,
            ..ChatRequest::default()
        }
    }

    #[test]
    fn failed_llm_and_tts_calls_are_counted_by_stage_and_provider() {
        let counts = errors_recorded(|| async {
            let llm: Arc<dyn LanguageModel> = Arc::new(ScriptedLlm::new(
                vec![Scripted::Fail("overloaded".into()), Scripted::Answer("Fine.".into())],
                Duration::from_millis(10),
                Duration::from_millis(10),
            ));
            let llm = watch_llm(&llm);
            assert!(llm.chat(request(None)).await.is_err());
            let mut reply = llm.chat(request(None)).await.unwrap();
            while let Some(event) = reply.next().await {
                event.unwrap();
            }
            let tone = Arc::new(ToneTts::new(Duration::from_millis(10), 10));
            tone.fail_on("cursed");
            let tts = watch_tts(&(tone as Arc<dyn TextToSpeech>));
            let speak = |text: &str| TtsRequest {
                text: text.into(),
                voice: VoiceSpec::default(),
                deadline: None,
            };
            assert!(tts.synthesize(speak("A cursed line.")).await.is_err());
            let audio = tts.synthesize(speak("A good line.")).await.unwrap();
            assert!(audio.count().await > 0);
        });
        assert_eq!(
            counts,
            [
                ("llm".to_string(), "scripted".to_string(), 1),
                ("tts".to_string(), "tone".to_string(), 1)
            ]
        );
    }

    #[test]
    fn a_call_still_unanswered_at_the_deadline_is_counted_and_a_cancelled_one_is_not() {
        let counts = errors_recorded(|| async {
            let hung: Arc<dyn LanguageModel> = Arc::new(ScriptedLlm::new(
                vec![Scripted::Hang, Scripted::Hang],
                Duration::ZERO,
                Duration::ZERO,
            ));
            let llm = watch_llm(&hung);
            // Cancelled (dropped) before its deadline: not a provider failure.
            let deadline = Instant::now() + Duration::from_secs(1);
            let cancelled = tokio::time::timeout(Duration::from_millis(100), llm.chat(request(Some(deadline)))).await;
            assert!(cancelled.is_err());
            // Given up at its deadline: a failure.
            let deadline = Instant::now() + Duration::from_secs(1);
            let timed_out = tokio::time::timeout_at(deadline, llm.chat(request(Some(deadline)))).await;
            assert!(timed_out.is_err());
        });
        assert_eq!(counts, [("llm".to_string(), "scripted".to_string(), 1)]);
    }
}
