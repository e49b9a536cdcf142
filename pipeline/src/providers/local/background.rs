//! Local engines that load in the background: building one returns at once
//! (a worker serves before its models are in memory) while a thread reads
//! the weights; the first call waits for that load, later calls do not.
//! A load failure is returned by every call, with what failed.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::llama::{LocalLlm, PROVIDER as LLM_PROVIDER};
use super::whisper::{LocalWhisper, PROVIDER as STT_PROVIDER};
use crate::providers::{ChatRequest, LanguageModel, LlmStream, ProviderError, SpeechToText, SttRequest, SttSession};

type Loaded<E> = Option<Result<Arc<E>, ProviderError>>;

/// An engine being loaded on its own thread.
pub struct Background<E> {
    loaded: watch::Receiver<Loaded<E>>,
    provider: &'static str,
}

impl<E> std::fmt::Debug for Background<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.loaded.borrow() {
            None => "loading",
            Some(Ok(_)) => "loaded",
            Some(Err(_)) => "failed",
        };
        f.debug_struct("Background")
            .field("provider", &self.provider)
            .field("state", &state)
            .finish()
    }
}

impl<E: Send + Sync + 'static> Background<E> {
    /// Starts `load` on a new thread named after `provider`.
    pub fn start(
        provider: &'static str,
        load: impl FnOnce() -> Result<E, ProviderError> + Send + 'static,
    ) -> Result<Self, ProviderError> {
        let (publish, loaded) = watch::channel(None);
        std::thread::Builder::new()
            .name(format!("{provider}-load"))
            .spawn(move || {
                let result = load().map(Arc::new);
                if let Err(error) = &result {
                    tracing::error!(provider, %error, "the local engine failed to load");
                }
                // Nobody listening any more is fine: the engine was dropped.
                let _ = publish.send(Some(result));
            })
            .map_err(|error| ProviderError::protocol(provider, format!("cannot start the loading thread: {error}")))?;
        Ok(Self { loaded, provider })
    }

    /// The engine, once loaded (waits for the load the first time).
    pub async fn engine(&self) -> Result<Arc<E>, ProviderError> {
        let mut loaded = self.loaded.clone();
        let state = loaded
            .wait_for(Option::is_some)
            .await
            .map_err(|_| ProviderError::protocol(self.provider, "the loading thread ended without an engine"))?;
        match &*state {
            Some(result) => result.clone(),
            None => Err(ProviderError::protocol(self.provider, "the engine is not loaded")),
        }
    }

    /// Whether the load has finished (successfully or not).
    pub fn is_settled(&self) -> bool {
        self.loaded.borrow().is_some()
    }
}

#[async_trait]
impl SpeechToText for Background<LocalWhisper> {
    fn name(&self) -> &'static str {
        STT_PROVIDER
    }

    async fn open(&self, request: SttRequest) -> Result<SttSession, ProviderError> {
        self.engine().await?.open(request).await
    }

    async fn ready(&self) -> Result<(), ProviderError> {
        self.engine().await.map(drop)
    }
}

#[async_trait]
impl LanguageModel for Background<LocalLlm> {
    fn name(&self) -> &'static str {
        LLM_PROVIDER
    }

    async fn prepare(&self, request: ChatRequest) -> Result<(), ProviderError> {
        self.engine().await?.prepare(request).await
    }

    async fn chat(&self, request: ChatRequest) -> Result<LlmStream, ProviderError> {
        self.engine().await?.chat(request).await
    }

    async fn ready(&self) -> Result<(), ProviderError> {
        self.engine().await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn building_returns_before_the_load_and_callers_wait_for_it() {
        let (release, gate) = mpsc::channel::<()>();
        let engine = Background::start("test", move || {
            gate.recv()
                .map_err(|e| ProviderError::protocol("test", e.to_string()))?;
            Ok(41_u32)
        })
        .unwrap();
        assert!(!engine.is_settled(), "the load is still running");
        let waiting = tokio::spawn(async move {
            let value = engine.engine().await.unwrap();
            (*value + 1, engine)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the caller waits for the load");
        release.send(()).unwrap();
        let (value, engine) = waiting.await.unwrap();
        assert_eq!(value, 42);
        assert!(engine.is_settled());
        assert_eq!(*engine.engine().await.unwrap(), 41, "later calls get the same engine");
    }

    #[tokio::test]
    async fn a_failed_load_fails_every_call_with_its_reason() {
        let engine: Background<u32> =
            Background::start("test", || Err(ProviderError::protocol("test", "weights are corrupt"))).unwrap();
        for _ in 0..2 {
            let error = engine.engine().await.unwrap_err();
            assert!(error.to_string().contains("weights are corrupt"), "{error}");
        }
    }

    #[tokio::test]
    async fn a_panicking_load_is_an_error_not_a_hang() {
        let engine: Background<u32> = Background::start("test", || panic!("boom")).unwrap();
        let error = tokio::time::timeout(Duration::from_secs(5), engine.engine())
            .await
            .expect("no hang")
            .unwrap_err();
        assert!(error.to_string().contains("loading thread ended"), "{error}");
    }
}
