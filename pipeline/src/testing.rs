//! In-process fakes for exercising the NPC brain without audio or network
//! (feature `fakes`): scripted STT, LLM and TTS with configurable latency,
//! errors and hangs, and a simulated mixer that plays lines in (tokio) real
//! time, frame by frame, and reports exactly what it played.
//!
//! With tokio's paused clock these make turn tests deterministic.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::playback::{LineMonitor, LineReport, LineWriter, Playback, PlaybackError, Priority};
use crate::providers::{
    ChatRequest, FinishReason, LanguageModel, LlmEvent, LlmStream, PcmChunk, PcmStream, ProviderError, SpeechToText,
    SttRequest, SttSession, TextToSpeech, Transcript, TtsRequest,
};
use crate::roster::NpcId;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a scripted provider does for one call.
#[derive(Debug, Clone)]
pub enum Scripted<T> {
    /// Answer with this after the configured latency.
    Answer(T),
    /// Fail with this message.
    Fail(String),
    /// Never answer.
    Hang,
}

/// Speech to text that answers from a script, in call order; when the
/// script is empty it answers with the fallback text.
pub struct ScriptedStt {
    script: Mutex<VecDeque<Scripted<String>>>,
    fallback: String,
    latency: Duration,
    requests: Arc<Mutex<Vec<(SttRequest, usize)>>>,
}

impl ScriptedStt {
    /// Transcripts in order; each takes `latency` after the audio ends.
    pub fn new(script: Vec<Scripted<String>>, latency: Duration) -> Self {
        Self {
            script: Mutex::new(script.into()),
            fallback: String::new(),
            latency,
            requests: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Queues another transcript.
    pub fn push(&self, item: Scripted<String>) {
        lock(&self.script).push_back(item);
    }

    /// Every request so far, with the number of samples it carried.
    pub fn requests(&self) -> Vec<(SttRequest, usize)> {
        lock(&self.requests).clone()
    }
}

#[async_trait]
impl SpeechToText for ScriptedStt {
    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn open(&self, request: SttRequest) -> Result<SttSession, ProviderError> {
        let next = lock(&self.script)
            .pop_front()
            .unwrap_or_else(|| Scripted::Answer(self.fallback.clone()));
        let index = {
            let mut requests = lock(&self.requests);
            requests.push((request, 0));
            requests.len() - 1
        };
        let latency = self.latency;
        let requests = self.requests.clone();
        let session = SttSession::batch("scripted", move |audio| async move {
            if let Some(entry) = lock(&requests).get_mut(index) {
                entry.1 = audio.len();
            }
            tokio::time::sleep(latency).await;
            match next {
                Scripted::Answer(text) => Ok(Transcript {
                    text,
                    confidence: Some(1.0),
                }),
                Scripted::Fail(message) => Err(ProviderError::protocol("scripted", message)),
                Scripted::Hang => std::future::pending().await,
            }
        });
        Ok(session)
    }
}

/// A language model that streams scripted replies word by word.
pub struct ScriptedLlm {
    script: Mutex<VecDeque<Scripted<String>>>,
    fallback: String,
    first_token: Duration,
    per_token: Duration,
    requests: Mutex<Vec<ChatRequest>>,
    prepared: Mutex<Vec<ChatRequest>>,
}

impl ScriptedLlm {
    /// Replies in call order; the first token after `first_token`, then one word every `per_token`.
    pub fn new(script: Vec<Scripted<String>>, first_token: Duration, per_token: Duration) -> Self {
        Self {
            script: Mutex::new(script.into()),
            fallback: "Hmm.".into(),
            first_token,
            per_token,
            requests: Mutex::new(Vec::new()),
            prepared: Mutex::new(Vec::new()),
        }
    }

    /// Every prompt handed to [`LanguageModel::prepare`] so far.
    pub fn prepared(&self) -> Vec<ChatRequest> {
        lock(&self.prepared).clone()
    }

    /// Queues another reply.
    pub fn push(&self, item: Scripted<String>) {
        lock(&self.script).push_back(item);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.requests).clone()
    }
}

#[async_trait]
impl LanguageModel for ScriptedLlm {
    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn prepare(&self, request: ChatRequest) -> Result<(), ProviderError> {
        lock(&self.prepared).push(request);
        Ok(())
    }

    async fn chat(&self, request: ChatRequest) -> Result<LlmStream, ProviderError> {
        lock(&self.requests).push(request);
        let next = lock(&self.script)
            .pop_front()
            .unwrap_or_else(|| Scripted::Answer(self.fallback.clone()));
        let reply = match next {
            Scripted::Answer(reply) => reply,
            Scripted::Fail(message) => {
                tokio::time::sleep(self.first_token).await;
                return Err(ProviderError::Http {
                    provider: "scripted",
                    status: 500,
                    body: message,
                });
            }
            Scripted::Hang => std::future::pending().await,
        };
        let words: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
        let (first, per) = (self.first_token, self.per_token);
        let tokens = stream::iter(words.into_iter().enumerate()).then(move |(i, word)| async move {
            tokio::time::sleep(if i == 0 { first } else { per }).await;
            Ok(LlmEvent::Text(word))
        });
        let end = stream::iter([Ok(LlmEvent::Finished(FinishReason::Stop))]);
        Ok(tokens.chain(end).boxed())
    }
}

/// Text to speech that "speaks" a tone: `ms_per_char` of 24 kHz mono audio
/// per character, in 20 ms chunks, the first after `first_audio`.
pub struct ToneTts {
    first_audio: Duration,
    ms_per_char: u32,
    fail_on: Mutex<Vec<String>>,
    requests: Mutex<Vec<TtsRequest>>,
}

/// The rate [`ToneTts`] produces.
pub const TONE_RATE: u32 = 24_000;

impl ToneTts {
    /// A tone voice with this latency and speaking rate.
    pub fn new(first_audio: Duration, ms_per_char: u32) -> Self {
        Self {
            first_audio,
            ms_per_char,
            fail_on: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Fails requests whose text contains `text`.
    pub fn fail_on(&self, text: &str) {
        lock(&self.fail_on).push(text.to_string());
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<TtsRequest> {
        lock(&self.requests).clone()
    }

    /// How long `text` takes to speak.
    pub fn duration_of(&self, text: &str) -> Duration {
        Duration::from_millis(u64::from(self.ms_per_char) * text.chars().count() as u64)
    }
}

#[async_trait]
impl TextToSpeech for ToneTts {
    fn name(&self) -> &'static str {
        "tone"
    }

    async fn synthesize(&self, request: TtsRequest) -> Result<PcmStream, ProviderError> {
        lock(&self.requests).push(request.clone());
        tokio::time::sleep(self.first_audio).await;
        if lock(&self.fail_on).iter().any(|t| request.text.contains(t.as_str())) {
            return Err(ProviderError::Http {
                provider: "tone",
                status: 500,
                body: "scripted TTS failure".into(),
            });
        }
        let samples = (self.duration_of(&request.text).as_millis() as usize) * TONE_RATE as usize / 1000;
        let chunk = TONE_RATE as usize / 50;
        let chunks: Vec<Result<PcmChunk, ProviderError>> = (0..samples.div_ceil(chunk))
            .map(|i| {
                let len = chunk.min(samples - i * chunk);
                Ok(PcmChunk {
                    samples: (0..len).map(|j| (((i * chunk + j) % 40) as i16 - 20) * 400).collect(),
                    sample_rate: TONE_RATE,
                    channels: 1,
                })
            })
            .collect();
        Ok(stream::iter(chunks).boxed())
    }
}

/// What the simulated mixer played in one 20 ms frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayedFrame {
    /// When the frame went out.
    pub at: Instant,
    /// Whose line it was (`None` = narrator); `None` frame owner = silence.
    pub owner: Option<Option<NpcId>>,
}

struct SimLine {
    id: u64,
    npc: Option<NpcId>,
    priority: Priority,
    ms_per_sample: f64,
    buffered_ms: f64,
    written_ms: f64,
    played_ms: f64,
    finished: bool,
    cut: bool,
    first_frame: Option<oneshot::Sender<Instant>>,
    done: Option<oneshot::Sender<LineReport>>,
}

#[derive(Default)]
struct SimState {
    lines: Vec<SimLine>,
    next_id: u64,
    frames: Vec<PlayedFrame>,
    cuts: Vec<(Instant, Option<NpcId>)>,
}

/// A mixer that plays one line at a time (highest priority first, then in
/// order of opening), 20 ms per frame in tokio time, like the real one.
pub struct SimulatedPlayback {
    state: Arc<Mutex<SimState>>,
    buffer_ms: f64,
    ticker: tokio::task::JoinHandle<()>,
}

/// One frame.
const FRAME_MS: f64 = 20.0;

impl SimulatedPlayback {
    /// Starts the simulated mixer; a line buffers at most `buffer_ms` ahead (back-pressure).
    pub fn start(buffer_ms: f64) -> Arc<Self> {
        let state = Arc::new(Mutex::new(SimState::default()));
        let tick_state = state.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(20));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                tick(&tick_state);
            }
        });
        Arc::new(Self {
            state,
            buffer_ms,
            ticker,
        })
    }

    /// Every frame played so far.
    pub fn frames(&self) -> Vec<PlayedFrame> {
        lock(&self.state).frames.clone()
    }

    /// Milliseconds of audio played for `npc` so far.
    pub fn played_ms(&self, npc: Option<&NpcId>) -> f64 {
        lock(&self.state)
            .frames
            .iter()
            .filter(|f| f.owner.as_ref().is_some_and(|o| o.as_ref() == npc))
            .count() as f64
            * FRAME_MS
    }

    /// Every cut, with when and whose (`None` = everything).
    pub fn cuts(&self) -> Vec<(Instant, Option<NpcId>)> {
        lock(&self.state).cuts.clone()
    }

    /// Whether `npc` is being heard right now.
    pub fn is_audible(&self, npc: &NpcId) -> bool {
        lock(&self.state)
            .frames
            .last()
            .is_some_and(|f| f.owner.as_ref().is_some_and(|o| o.as_ref() == Some(npc)))
    }
}

impl Drop for SimulatedPlayback {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

fn tick(state: &Mutex<SimState>) {
    let now = Instant::now();
    let mut state = lock(state);
    // The line that plays: highest priority, earliest opened, with audio or unfinished.
    let playing = state
        .lines
        .iter_mut()
        .filter(|l| !l.cut && (l.buffered_ms > 0.0 || !l.finished))
        .max_by(|a, b| a.priority.cmp(&b.priority).then(b.id.cmp(&a.id)));
    let mut owner = None;
    if let Some(line) = playing {
        if line.buffered_ms > 0.0 {
            let step = line.buffered_ms.min(FRAME_MS);
            line.buffered_ms -= step;
            line.played_ms += step;
            owner = Some(line.npc.clone());
            if let Some(first) = line.first_frame.take() {
                let _ = first.send(now);
            }
        }
    }
    state.frames.push(PlayedFrame { at: now, owner });
    // Finished lines report.
    state.lines.retain_mut(|line| {
        let over = line.cut || (line.finished && line.buffered_ms <= 0.0);
        if over {
            if let Some(done) = line.done.take() {
                let _ = done.send(LineReport {
                    written_ms: line.written_ms,
                    played_ms: line.played_ms,
                    cut: line.cut,
                });
            }
        }
        !over
    });
}

struct SimWriter {
    state: Arc<Mutex<SimState>>,
    id: u64,
    buffer_ms: f64,
}

#[async_trait]
impl LineWriter for SimWriter {
    async fn write(&mut self, samples: &[i16]) -> Result<(), PlaybackError> {
        loop {
            {
                let mut state = lock(&self.state);
                let Some(line) = state.lines.iter_mut().find(|l| l.id == self.id) else {
                    return Err(PlaybackError::Cut);
                };
                if line.cut {
                    return Err(PlaybackError::Cut);
                }
                if line.buffered_ms < self.buffer_ms {
                    let ms = samples.len() as f64 * line.ms_per_sample;
                    line.buffered_ms += ms;
                    line.written_ms += ms;
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn finish(self: Box<Self>) {
        // Dropping marks the line finished.
    }
}

impl Drop for SimWriter {
    fn drop(&mut self) {
        if let Some(line) = lock(&self.state).lines.iter_mut().find(|l| l.id == self.id) {
            line.finished = true;
        }
    }
}

impl Playback for SimulatedPlayback {
    fn open_line(
        &self,
        npc: Option<&NpcId>,
        priority: Priority,
        sample_rate: u32,
        channels: u16,
    ) -> Result<(Box<dyn LineWriter>, LineMonitor), PlaybackError> {
        if sample_rate == 0 || channels == 0 {
            return Err(PlaybackError::Unsupported(format!("{sample_rate} Hz × {channels}")));
        }
        let (first_tx, first_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = state.next_id;
        state.lines.push(SimLine {
            id,
            npc: npc.cloned(),
            priority,
            ms_per_sample: 1000.0 / f64::from(sample_rate) / f64::from(channels),
            buffered_ms: 0.0,
            written_ms: 0.0,
            played_ms: 0.0,
            finished: false,
            cut: false,
            first_frame: Some(first_tx),
            done: Some(done_tx),
        });
        Ok((
            Box::new(SimWriter {
                state: self.state.clone(),
                id,
                buffer_ms: self.buffer_ms,
            }),
            LineMonitor {
                first_frame: first_rx,
                done: done_rx,
            },
        ))
    }

    fn cut_npc(&self, npc: &NpcId) {
        let mut state = lock(&self.state);
        let now = Instant::now();
        state.cuts.push((now, Some(npc.clone())));
        for line in state.lines.iter_mut().filter(|l| l.npc.as_ref() == Some(npc)) {
            line.cut = true;
            line.buffered_ms = 0.0;
        }
    }

    fn cut_all(&self) {
        let mut state = lock(&self.state);
        state.cuts.push((Instant::now(), None));
        for line in &mut state.lines {
            line.cut = true;
            line.buffered_ms = 0.0;
        }
    }
}
