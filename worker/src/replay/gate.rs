//! The provider gate of a deterministic replay: every STT, LLM and TTS call
//! of the replayed session goes through it.
//!
//! The session runs on a paused tokio clock (its virtual time) whose runtime
//! advances time only when it has nothing left to do. The gate keeps that
//! clock still while a provider call is *in flight*, so a provider's answer
//! takes no virtual time at all, however long it really took:
//!
//! - **In flight** is every stretch in which the pipeline waits for a
//!   provider: an STT session from the end of its audio until the
//!   transcript is handed over; `chat`, `synthesize` and `prepare` until
//!   they return; each pull of an LLM token or TTS chunk stream until the
//!   item is handed over (a stream the pipeline does not poll — a TTS stream
//!   waiting for room in the mixer — is not in flight). Dropping a call or
//!   stream cancels its work and ends its flight.
//! - While anything is in flight a blocking task of the replay's runtime
//!   waits for the count to drop to zero; tokio does not auto-advance a
//!   paused clock while a blocking task runs, so virtual time (and with it
//!   the audio engine's ticks, every pipeline timer and every stage
//!   timestamp) stands still.
//! - The calls themselves run on the caller's runtime (the provider
//!   runtime, real time: network, local engines, fakes' sleeps), one at a
//!   time and in the order the pipeline made them, so scripted providers
//!   answer in the same order on every run and each call's duration is its
//!   own. A request's deadline is the turn's, in virtual time, which calls
//!   do not consume: the gate sends requests without it, so how slowly a
//!   loaded machine answers never changes the outcome; the providers' own
//!   time limits still apply, and the gate gives up on a call (or on one
//!   item of a stream) after [`CALL_LIMIT`] so a hung provider cannot hang
//!   the replay.
//! - The gate records what each call delivered, when (virtual time) and
//!   after how much provider time; [`ProviderGate::share_of`] finds a turn's
//!   own calls and returns the provider time on its critical path, which the
//!   report adds to the virtual stage times.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};
use glyphoxa_pipeline::providers::{
    ChatRequest, LanguageModel, LlmEvent, LlmStream, PcmStream, ProviderError, Role, SpeechToText, SttRequest,
    SttSession, TextToSpeech, TranscriptEvent, TtsRequest, STT_SAMPLE_RATE,
};
use glyphoxa_pipeline::splitter::SentenceSplitter;
use glyphoxa_pipeline::timing::TurnResult;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::Providers;

/// How long (real time) the gate waits for one provider call, or for one
/// item of a stream, before it fails the call.
pub(crate) const CALL_LIMIT: Duration = Duration::from_secs(120);

/// A provider call (or stream pull) waiting for its turn on the provider runtime.
type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which provider a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Stt,
    Llm,
    Tts,
}

/// Something a call handed to the pipeline.
#[derive(Debug, Clone)]
struct Delivery {
    /// Virtual time of the hand-over (the pipeline stamps its stages with it).
    at: Instant,
    /// Provider time the call had taken up to and including this item.
    wall: Duration,
    /// The item's text: an STT transcript or an LLM token.
    text: Option<String>,
}

/// One provider call as the gate saw it.
#[derive(Debug, Clone)]
struct CallRecord {
    kind: CallKind,
    /// LLM: the last user message; TTS: the text; STT: empty.
    key: String,
    /// Provider time so far.
    wall: Duration,
    deliveries: Vec<Delivery>,
}

struct Shared {
    /// The replay's runtime, whose clock the gate holds still.
    replay: Handle,
    jobs: mpsc::UnboundedSender<Job>,
    in_flight: Mutex<usize>,
    landed: Condvar,
    calls: Mutex<Vec<CallRecord>>,
}

/// Runs a replayed session's provider calls; see the module documentation.
#[derive(Clone)]
pub(crate) struct ProviderGate {
    shared: Arc<Shared>,
}

/// Provider time on the critical path of one turn, as measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ProviderShare {
    /// The turn's STT call.
    pub stt: Duration,
    /// The turn's model call until its first token.
    pub llm_first_token: Option<Duration>,
    /// The turn's model call until the token that completed the first sentence.
    pub llm_first_sentence: Option<Duration>,
    /// The first sentence's TTS call until its first audio.
    pub tts_first_audio: Option<Duration>,
}

/// Marks the pipeline as waiting for a provider while it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn begin(shared: &Arc<Shared>) -> Self {
        let mut count = lock(&shared.in_flight);
        *count += 1;
        if *count == 1 {
            // tokio does not auto-advance a paused clock while a blocking task
            // of its runtime runs: this one keeps virtual time still until
            // nothing is in flight any more.
            let waiting = Arc::clone(shared);
            drop(shared.replay.spawn_blocking(move || {
                let mut count = lock(&waiting.in_flight);
                while *count > 0 {
                    count = waiting.landed.wait(count).unwrap_or_else(PoisonError::into_inner);
                }
            }));
        }
        Self(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut count = lock(&self.0.in_flight);
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.0.landed.notify_all();
        }
    }
}

fn gone(provider: &'static str) -> ProviderError {
    ProviderError::Unavailable {
        provider,
        message: "the replay's provider runtime has stopped".into(),
    }
}

impl ProviderGate {
    /// A gate whose calls run on `providers` (one at a time) while the
    /// session runs on the paused clock of `replay`.
    pub(crate) fn new(providers: &Handle, replay: Handle) -> Self {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        providers.spawn(async move {
            while let Some(job) = queue.recv().await {
                job.await;
            }
        });
        Self {
            shared: Arc::new(Shared {
                replay,
                jobs,
                in_flight: Mutex::new(0),
                landed: Condvar::new(),
                calls: Mutex::new(Vec::new()),
            }),
        }
    }

    /// `providers`, with every call going through the gate.
    pub(crate) fn wrap(&self, providers: Providers) -> Providers {
        Providers {
            stt: Arc::new(GatedStt {
                inner: providers.stt,
                gate: self.clone(),
            }),
            llm: Arc::new(GatedLlm {
                inner: providers.llm,
                gate: self.clone(),
            }),
            tts: Arc::new(GatedTts {
                inner: providers.tts,
                gate: self.clone(),
            }),
        }
    }

    /// Provider calls and stream pulls in flight right now.
    pub(crate) fn in_flight(&self) -> usize {
        *lock(&self.shared.in_flight)
    }

    fn begin(&self) -> InFlight {
        InFlight::begin(&self.shared)
    }

    fn open_call(&self, kind: CallKind, key: String) -> usize {
        let mut calls = lock(&self.shared.calls);
        calls.push(CallRecord {
            kind,
            key,
            wall: Duration::ZERO,
            deliveries: Vec::new(),
        });
        calls.len() - 1
    }

    fn add_wall(&self, call: usize, took: Duration) {
        if let Some(record) = lock(&self.shared.calls).get_mut(call) {
            record.wall += took;
        }
    }

    fn delivered(&self, call: usize, text: Option<String>) {
        let at = Instant::now();
        if let Some(record) = lock(&self.shared.calls).get_mut(call) {
            let wall = record.wall;
            record.deliveries.push(Delivery { at, wall, text });
        }
    }

    /// Runs `work` on the provider runtime after every call made before it,
    /// for at most [`CALL_LIMIT`]. Returns its result and how long it ran
    /// (on the provider runtime's clock). Dropping the returned future
    /// cancels the work.
    async fn execute<T>(
        &self,
        provider: &'static str,
        work: impl Future<Output = Result<T, ProviderError>> + Send + 'static,
    ) -> (Result<T, ProviderError>, Duration)
    where
        T: Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let cancel = CancellationToken::new();
        let _cancel_when_dropped = cancel.clone().drop_guard();
        let job: Job = Box::pin(async move {
            let started = Instant::now();
            let outcome = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                outcome = tokio::time::timeout(CALL_LIMIT, work) => outcome,
            };
            let result = outcome.unwrap_or_else(|_| {
                Err(ProviderError::Timeout {
                    provider,
                    after: CALL_LIMIT,
                    what: "the replay's limit for one call",
                })
            });
            let _ = answer.send((result, started.elapsed()));
        });
        if self.shared.jobs.send(job).is_err() {
            return (Err(gone(provider)), Duration::ZERO);
        }
        answered.await.unwrap_or_else(|_| (Err(gone(provider)), Duration::ZERO))
    }

    /// `stream` pulled item by item through the gate; `text_of` picks the
    /// text worth recording from an item.
    fn gated_stream<T: Send + 'static>(
        &self,
        provider: &'static str,
        call: usize,
        stream: BoxStream<'static, Result<T, ProviderError>>,
        text_of: fn(&Result<T, ProviderError>) -> Option<String>,
    ) -> BoxStream<'static, Result<T, ProviderError>> {
        let gate = self.clone();
        stream::unfold(Some(stream), move |state| {
            let gate = gate.clone();
            async move {
                let stream = state?;
                let flight = gate.begin();
                let (pulled, took) = gate
                    .execute(provider, async move {
                        let mut stream = stream;
                        let item = stream.next().await;
                        Ok((item, stream))
                    })
                    .await;
                gate.add_wall(call, took);
                let next = match pulled {
                    Ok((Some(item), stream)) => {
                        gate.delivered(call, text_of(&item));
                        Some((item, Some(stream)))
                    }
                    Ok((None, _)) => None,
                    Err(error) => Some((Err(error), None)),
                };
                drop(flight);
                next
            }
        })
        .boxed()
    }

    /// The provider time on `turn`'s critical path: its STT call, its model
    /// call up to the first token and up to the first sentence (`labels` are
    /// the names the pipeline's sentence splitter strips), and the first
    /// sentence's TTS call up to its first audio. A turn's calls are the ones
    /// whose deliveries carry the turn's stage timestamps (virtual time
    /// stands still during calls, so a stage is stamped with the instant of
    /// the delivery that completed it); texts break ties.
    pub(crate) fn share_of(&self, turn: &TurnResult, labels: &[&str]) -> ProviderShare {
        let calls = lock(&self.shared.calls);
        let timings = &turn.timings;
        let transcript = turn.transcript.trim();
        let mut share = ProviderShare::default();
        // STT: the transcript that arrived at the turn's stt_final.
        let stt = pick_last(&calls, |c| {
            let at = c.deliveries.first().map(|d| d.at);
            (c.kind == CallKind::Stt && at.is_some() && at == timings.stt_final).then(|| {
                c.deliveries
                    .first()
                    .and_then(|d| d.text.as_deref())
                    .is_some_and(|text| !text.trim().is_empty() && transcript.ends_with(text.trim()))
            })
        });
        if let Some(stt) = stt {
            share.stt = calls[stt].wall;
        }
        // LLM: the call whose first token is the turn's first token.
        let first_text = |c: &CallRecord| c.deliveries.iter().find(|d| d.text.is_some()).cloned();
        let llm = pick_last(&calls, |c| {
            let at = first_text(c).map(|d| d.at);
            (c.kind == CallKind::Llm && at.is_some() && at == timings.llm_first_token)
                .then(|| !transcript.is_empty() && c.key.contains(transcript))
        });
        if let Some(llm) = llm {
            let record = &calls[llm];
            share.llm_first_token = first_text(record).map(|d| d.wall);
            let mut splitter = SentenceSplitter::new(labels);
            share.llm_first_sentence = record
                .deliveries
                .iter()
                .find(|d| d.text.as_deref().is_some_and(|text| !splitter.push(text).is_empty()))
                .map(|d| d.wall)
                .or_else(|| splitter.finish().map(|_| record.wall));
        }
        // TTS: the first call after the model's whose first audio is the turn's.
        let tts = calls.iter().enumerate().position(|(i, c)| {
            let at = c.deliveries.first().map(|d| d.at);
            c.kind == CallKind::Tts && llm.is_none_or(|llm| i > llm) && at.is_some() && at == timings.tts_first_audio
        });
        if let Some(tts) = tts {
            share.tts_first_audio = calls[tts].deliveries.first().map(|d| d.wall);
        }
        share
    }
}

/// The last call `candidate` accepts (`Some(_)`), preferring the last one it
/// marks as a good match (`Some(true)`).
fn pick_last(calls: &[CallRecord], candidate: impl Fn(&CallRecord) -> Option<bool>) -> Option<usize> {
    let mut any = None;
    for (i, call) in calls.iter().enumerate().rev() {
        match candidate(call) {
            Some(true) => return Some(i),
            Some(false) if any.is_none() => any = Some(i),
            _ => {}
        }
    }
    any
}

/// Speech to text through the gate.
struct GatedStt {
    inner: Arc<dyn SpeechToText>,
    gate: ProviderGate,
}

#[async_trait]
impl SpeechToText for GatedStt {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn open(&self, request: SttRequest) -> Result<SttSession, ProviderError> {
        let gate = self.gate.clone();
        let inner = Arc::clone(&self.inner);
        let provider = inner.name();
        Ok(SttSession::spawn(provider, move |mut audio, events| async move {
            // The pipeline hands over the utterance's audio; the provider is
            // called once all of it is there, and is in flight from then on.
            let mut utterance = Vec::new();
            while let Some(chunk) = audio.recv().await {
                utterance.extend_from_slice(&chunk);
            }
            let flight = gate.begin();
            let call = gate.open_call(CallKind::Stt, String::new());
            let (result, took) = gate
                .execute(provider, async move {
                    let mut request = request;
                    request.deadline = None;
                    let mut session = inner.open(request).await?;
                    for chunk in utterance.chunks(STT_SAMPLE_RATE as usize / 10) {
                        session.send_audio(chunk).await?;
                    }
                    session.finish_audio();
                    let mut out = Vec::new();
                    while let Some(event) = session.next_event().await {
                        let last = !matches!(event, Ok(TranscriptEvent::Partial(_)));
                        out.push(event);
                        if last {
                            break;
                        }
                    }
                    Ok(out)
                })
                .await;
            gate.add_wall(call, took);
            let out = result.unwrap_or_else(|error| vec![Err(error)]);
            let text = out.iter().find_map(|event| match event {
                Ok(TranscriptEvent::Final(transcript)) => Some(transcript.text.clone()),
                _ => None,
            });
            gate.delivered(call, text);
            for event in out {
                if events.send(event).await.is_err() {
                    break;
                }
            }
            drop(flight);
        }))
    }

    async fn ready(&self) -> Result<(), ProviderError> {
        self.inner.ready().await
    }
}

/// A language model through the gate.
struct GatedLlm {
    inner: Arc<dyn LanguageModel>,
    gate: ProviderGate,
}

fn token_text(event: &Result<LlmEvent, ProviderError>) -> Option<String> {
    match event {
        Ok(LlmEvent::Text(text)) => Some(text.clone()),
        _ => None,
    }
}

#[async_trait]
impl LanguageModel for GatedLlm {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn chat(&self, request: ChatRequest) -> Result<LlmStream, ProviderError> {
        let provider = self.inner.name();
        let key = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let call = self.gate.open_call(CallKind::Llm, key);
        let flight = self.gate.begin();
        let inner = Arc::clone(&self.inner);
        let (result, took) = self
            .gate
            .execute(provider, async move {
                let mut request = request;
                request.deadline = None;
                inner.chat(request).await
            })
            .await;
        self.gate.add_wall(call, took);
        let stream = result?;
        drop(flight);
        Ok(self.gate.gated_stream(provider, call, stream, token_text))
    }

    async fn prepare(&self, request: ChatRequest) -> Result<(), ProviderError> {
        let provider = self.inner.name();
        let flight = self.gate.begin();
        let inner = Arc::clone(&self.inner);
        let (result, _) = self
            .gate
            .execute(provider, async move {
                let mut request = request;
                request.deadline = None;
                inner.prepare(request).await
            })
            .await;
        drop(flight);
        result
    }

    async fn ready(&self) -> Result<(), ProviderError> {
        self.inner.ready().await
    }
}

/// Speech synthesis through the gate.
struct GatedTts {
    inner: Arc<dyn TextToSpeech>,
    gate: ProviderGate,
}

fn no_text(_: &Result<glyphoxa_pipeline::providers::PcmChunk, ProviderError>) -> Option<String> {
    None
}

#[async_trait]
impl TextToSpeech for GatedTts {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn synthesize(&self, request: TtsRequest) -> Result<PcmStream, ProviderError> {
        let provider = self.inner.name();
        let call = self.gate.open_call(CallKind::Tts, request.text.clone());
        let flight = self.gate.begin();
        let inner = Arc::clone(&self.inner);
        let (result, took) = self
            .gate
            .execute(provider, async move {
                let mut request = request;
                request.deadline = None;
                inner.synthesize(request).await
            })
            .await;
        self.gate.add_wall(call, took);
        let stream = result?;
        drop(flight);
        Ok(self.gate.gated_stream(provider, call, stream, no_text))
    }
}
