//! A running voice session: one audio engine (its own realtime thread), one
//! NPC brain (async task), one voice transport, and the pump between them.
//!
//! The pump polls the engine's lock-free rings every few milliseconds (the
//! tick never waits for it): speech events and utterance audio go to the
//! brain, source reports to the brain's lines, output frames to the
//! transport. About once a second it also publishes the growth of the
//! engine clock's late-tick and overrun counters (the tick thread itself
//! only bumps atomics).
//!
//! Every task of the session runs in its `session` span (field
//! `session_id`), so its log lines carry the session's id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glyphoxa_audio::{
    output_ring, Clock, ClockStats, EngineEvent, EngineSettings, NpcId as MixerNpc, OutputCodec, OutputReceiver,
    RealClock, SessionControl, SessionEngine, SpeakerId, UtteranceAssembler, UtteranceId,
};
use glyphoxa_pipeline::knowledge::Knowledge;
use glyphoxa_pipeline::orchestrator::{
    spawn_session, SessionEvent, SessionHandle, SessionServices, SessionSettings, SpeechInput,
};
use glyphoxa_pipeline::playback::Playback;
use glyphoxa_pipeline::providers::{LanguageModel, SpeechToText, TextToSpeech};
use glyphoxa_pipeline::roster::Roster;
use glyphoxa_pipeline::transcript::TranscriptSink;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::playback::{LineRegistry, MixerPlayback};
use crate::transport::{TransportError, VoiceTransport};

/// How often the pump looks at the engine's rings: the engine's events
/// (end of speech) wait for it, so it bounds what the pipeline adds to a
/// turn (1 ms on average); a few hundred cheap wake-ups per second per session.
const PUMP_INTERVAL: Duration = Duration::from_millis(2);
/// Output frames buffered between the engine and the transport.
const OUTPUT_RING_FRAMES: usize = 50;
/// How often the pump publishes the tick clock's counters.
const CLOCK_METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// Why a session could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The audio engine refused its settings or could not start.
    #[error("audio engine: {0}")]
    Audio(#[from] glyphoxa_audio::AudioError),
    /// The voice transport failed.
    #[error("voice transport: {0}")]
    Transport(#[from] TransportError),
}

/// The providers a session talks to.
#[derive(Clone)]
pub struct Providers {
    /// Speech to text.
    pub stt: Arc<dyn SpeechToText>,
    /// The language model.
    pub llm: Arc<dyn LanguageModel>,
    /// Speech synthesis.
    pub tts: Arc<dyn TextToSpeech>,
}

/// Everything needed to start a session.
pub struct SessionSpec {
    /// Brain settings (session id, DM, campaign, timing policies).
    pub brain: SessionSettings,
    /// Audio engine settings.
    pub engine: EngineSettings,
    /// The NPCs.
    pub roster: Roster,
    /// The campaign knowledge.
    pub knowledge: Knowledge,
    /// Where transcript lines go.
    pub transcript: Arc<dyn TranscriptSink>,
    /// Tick phase offset (sessions of one worker are staggered).
    pub phase: Duration,
}

/// A running session.
pub struct SessionRuntime {
    engine: Option<SessionEngine>,
    brain: SessionHandle,
    brain_task: Option<JoinHandle<()>>,
    pump: Option<JoinHandle<Box<dyn VoiceTransport>>>,
    /// Requests for the transport, which lives inside the pump.
    transport_requests: mpsc::Sender<TransportRequest>,
    stop: CancellationToken,
    control: SessionControl,
    playback: Arc<MixerPlayback>,
    started_at: SystemTime,
    span: tracing::Span,
}

impl SessionRuntime {
    /// Starts the engine thread, the brain, the transport and the pump. The
    /// returned receiver carries everything the brain reports.
    pub async fn start(
        spec: SessionSpec,
        providers: Providers,
        transport: Box<dyn VoiceTransport>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<SessionEvent>), RuntimeError> {
        let clock = RealClock::new(spec.phase);
        let clock_stats = clock.stats();
        Self::start_with_clock(spec, providers, transport, clock, clock_stats).await
    }

    /// Like [`SessionRuntime::start`], with the engine's tick paced by
    /// `clock` instead of the wall clock (offline replay steps a
    /// [`glyphoxa_audio::VirtualClock`]); `clock_stats` turns the tick
    /// stamps of engine events into instants.
    pub async fn start_with_clock(
        spec: SessionSpec,
        providers: Providers,
        mut transport: Box<dyn VoiceTransport>,
        clock: impl Clock + 'static,
        clock_stats: Arc<ClockStats>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<SessionEvent>), RuntimeError> {
        // Error level, so that the id stays on warnings when info is filtered out.
        let span = tracing::error_span!("session", session_id = %spec.brain.session_id);
        let mut engine_settings = spec.engine.clone();
        if !transport.wants_opus() {
            engine_settings.output.codec = OutputCodec::Pcm;
        }
        let (sink, output) = output_ring(OUTPUT_RING_FRAMES);
        let name = format!("session-{}", spec.brain.session_id);
        let (engine, handles) = SessionEngine::spawn(&name, &engine_settings, Box::new(sink), clock)?;
        let base = Instant::now();
        let registry = LineRegistry::default();
        let npcs: HashMap<_, _> = spec
            .roster
            .npcs()
            .iter()
            .enumerate()
            .map(|(i, npc)| (npc.id.clone(), MixerNpc(i as u64 + 1)))
            .collect();
        let playback = Arc::new(MixerPlayback::new(handles.control.clone(), npcs, registry.clone()));
        let services = SessionServices {
            stt: providers.stt,
            llm: providers.llm,
            tts: providers.tts,
            playback: playback.clone() as Arc<dyn Playback>,
            transcript: spec.transcript,
        };
        let (brain, events, brain_task) =
            span.in_scope(|| spawn_session(spec.brain, spec.roster, spec.knowledge, services));
        if let Err(error) = transport.start(handles.control.clone()).instrument(span.clone()).await {
            let _ = brain.stop().await;
            engine.stop();
            return Err(error.into());
        }
        let stop = CancellationToken::new();
        let (transport_requests, requests) = mpsc::channel(4);
        let pumping = pump(
            Pump {
                events: handles.events,
                utterances: handles.utterances,
                output,
                assembler: UtteranceAssembler::new(),
                finished: HashMap::new(),
                brain: brain.clone(),
                registry,
                base,
                clock: clock_stats,
                phase: spec.phase,
            },
            transport,
            requests,
            stop.clone(),
        );
        let pump = tokio::spawn(pumping.instrument(span.clone()));
        Ok((
            Self {
                engine: Some(engine),
                brain,
                brain_task: Some(brain_task),
                pump: Some(pump),
                transport_requests,
                stop,
                control: handles.control,
                playback,
                started_at: SystemTime::now(),
                span,
            },
            events,
        ))
    }

    /// Moves the voice connection to a new voice server (Discord's
    /// VOICE_SERVER_UPDATE, forwarded by the gateway); an empty
    /// `voice_session_id` keeps the current one. Frames wait while the
    /// transport reconnects.
    pub async fn update_voice_server(
        &self,
        token: &str,
        endpoint: &str,
        voice_session_id: &str,
    ) -> Result<(), RuntimeError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = TransportRequest::UpdateVoiceServer {
            token: token.to_string(),
            endpoint: endpoint.to_string(),
            voice_session_id: voice_session_id.to_string(),
            reply,
        };
        let gone = || RuntimeError::Transport(TransportError::Connection("the session's pump has stopped".into()));
        self.transport_requests.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(RuntimeError::Transport)
    }

    /// The brain: NPC controls, knowledge updates.
    pub fn brain(&self) -> &SessionHandle {
        &self.brain
    }

    /// The session's tracing span (`session`, field `session_id`), for the
    /// worker's own tasks of this session.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The mixer, for PlayAudio.
    pub fn playback(&self) -> &Arc<MixerPlayback> {
        &self.playback
    }

    /// Whether any line (NPC reply, narration) is still playing or queued.
    pub fn playback_busy(&self) -> bool {
        self.playback.open_lines() > 0
    }

    /// The engine's control handle.
    pub fn control(&self) -> &SessionControl {
        &self.control
    }

    /// When the session started (wall clock), in Unix milliseconds.
    pub fn started_at_unix_ms(&self) -> i64 {
        self.started_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// Whether every part is still running.
    pub fn is_healthy(&self) -> bool {
        self.engine.as_ref().is_some_and(SessionEngine::is_running)
            && self.pump.as_ref().is_some_and(|p| !p.is_finished())
    }

    /// Stops gracefully: the brain finishes (the running turn is cut and
    /// reported, transcript lines are written), then the pump, the
    /// transport and the engine thread. Returns the transport, stopped.
    pub async fn stop(mut self) -> Result<Box<dyn VoiceTransport>, RuntimeError> {
        let _ = self.brain.stop().await;
        if let Some(task) = self.brain_task.take() {
            let _ = task.await;
        }
        self.stop.cancel();
        let transport = match self.pump.take() {
            Some(pump) => pump.await.ok(),
            None => None,
        };
        if let Some(engine) = self.engine.take() {
            engine.stop();
        }
        match transport {
            Some(mut transport) => {
                transport.stop().await?;
                Ok(transport)
            }
            None => Err(RuntimeError::Transport(TransportError::Io(
                "the session's pump task failed".into(),
            ))),
        }
    }
}

impl Drop for SessionRuntime {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.brain_task.take() {
            task.abort();
        }
        if let Some(engine) = self.engine.take() {
            engine.stop();
        }
    }
}

struct Pump {
    events: glyphoxa_audio::EventReceiver,
    utterances: glyphoxa_audio::UtteranceReceiver,
    output: OutputReceiver,
    assembler: UtteranceAssembler,
    /// Utterances whose audio is complete, waiting for their SpeechEnded.
    finished: HashMap<UtteranceId, Vec<i16>>,
    brain: SessionHandle,
    registry: LineRegistry,
    base: Instant,
    clock: Arc<glyphoxa_audio::ClockStats>,
    phase: Duration,
}

impl Pump {
    /// When tick `tick` was due on the engine's clock.
    fn tick_instant(&self, tick: u64) -> Instant {
        match self.clock.tick_deadline(tick, self.phase) {
            Some(deadline) => Instant::from_std(deadline),
            None => self.base + Duration::from_millis(tick * u64::from(glyphoxa_audio::FRAME_MS)),
        }
    }

    fn drain_utterances(&mut self) {
        while let Some(chunk) = self.utterances.try_recv() {
            if let Some(utterance) = self.assembler.push(&chunk) {
                self.finished.insert(utterance.id, utterance.samples);
            }
        }
    }

    fn step(&mut self, transport: &mut dyn VoiceTransport) {
        self.drain_utterances();
        while let Some(event) = self.events.try_recv() {
            let speech = |speaker: SpeakerId| speaker.0.to_string();
            let input = match event {
                EngineEvent::SpeechStarted { speaker, tick, .. } => Some(SpeechInput::Started {
                    speaker: speech(speaker),
                    at: self.tick_instant(tick),
                }),
                EngineEvent::VoicingStopped { speaker, tick, .. } => Some(SpeechInput::VoicingStopped {
                    speaker: speech(speaker),
                    at: self.tick_instant(tick),
                }),
                EngineEvent::VoicingResumed { speaker, tick, .. } => Some(SpeechInput::VoicingResumed {
                    speaker: speech(speaker),
                    at: self.tick_instant(tick),
                }),
                EngineEvent::SpeechEnded(end) => {
                    self.drain_utterances();
                    let audio = self.finished.remove(&end.utterance).unwrap_or_default();
                    let decided_at = self.tick_instant(end.tick);
                    let back = |ms: u64| {
                        decided_at
                            .checked_sub(Duration::from_millis(end.end_ms.saturating_sub(ms)))
                            .unwrap_or(decided_at)
                    };
                    Some(SpeechInput::Ended {
                        speaker: speech(end.speaker),
                        audio,
                        voice_start: back(end.start_ms),
                        voice_end: back(end.voice_end_ms),
                        decided_at,
                    })
                }
                EngineEvent::SourceStarted { source, tick } => {
                    self.registry.started(source, self.tick_instant(tick));
                    None
                }
                EngineEvent::SourceFinished(report) => {
                    self.registry.finished(&report);
                    None
                }
            };
            if let Some(input) = input {
                let _ = self.brain.speech(input);
            }
        }
        while let Some(packet) = self.output.try_recv() {
            transport.deliver(&packet);
        }
    }
}

/// What the rest of the worker asks of a session's transport.
enum TransportRequest {
    /// Reconnect to a new voice server.
    UpdateVoiceServer {
        token: String,
        endpoint: String,
        voice_session_id: String,
        reply: tokio::sync::oneshot::Sender<Result<(), TransportError>>,
    },
}

async fn pump(
    mut pump: Pump,
    mut transport: Box<dyn VoiceTransport>,
    mut requests: mpsc::Receiver<TransportRequest>,
    stop: CancellationToken,
) -> Box<dyn VoiceTransport> {
    let mut interval = tokio::time::interval(PUMP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock_metrics = crate::metrics::ClockCounters::default();
    let mut publish = tokio::time::interval(CLOCK_METRICS_INTERVAL);
    publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = interval.tick() => pump.step(transport.as_mut()),
            _ = publish.tick() => clock_metrics.publish(pump.clock.snapshot()),
            Some(request) = requests.recv() => match request {
                TransportRequest::UpdateVoiceServer { token, endpoint, voice_session_id, reply } => {
                    let result = transport.update_voice_server(&token, &endpoint, &voice_session_id).await;
                    if let Err(error) = &result {
                        tracing::warn!(%error, "moving the voice connection failed");
                    }
                    let _ = reply.send(result);
                }
            },
        }
    }
    pump.step(transport.as_mut());
    clock_metrics.publish(pump.clock.snapshot());
    transport
}
