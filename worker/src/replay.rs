//! Offline replay: a whole session from WAV files through the real runtime
//! (audio engine, NPC brain, configured providers) on the loopback
//! transport, with a per-turn latency report and the NPCs' audio.
//!
//! Each input file is one speaker, starting at the session's start. The
//! replay runs until every input has been heard, every utterance has been
//! answered and every reply has been played.
//!
//! # Deterministic (virtual) pacing — the default
//!
//! SPEC §8: the replay's virtual clock advances only while no provider call
//! is in flight, STT requests go out in speech order, and at the end of the
//! input it waits for every turn to finish. Concretely:
//!
//! - The session runs on its own thread, on a current-thread tokio runtime
//!   whose clock starts paused: that clock *is* the virtual time. The
//!   pipeline's timers (barge-in confirm window, coalescing, deadlines, the
//!   pump's polling) and its stage timestamps all follow it. tokio moves a
//!   paused clock forward only when the runtime has nothing left to do, to
//!   the next timer — so virtual time never passes while the pipeline still
//!   has work ready at the current instant.
//! - The audio engine runs on a stepped [`VirtualClock`]. A driver task
//!   sleeps until tick `n` is due (`epoch + n × 20 ms` of virtual time),
//!   pushes every speaker's frame `n` into the engine (stepped loopback
//!   transport) and runs exactly that tick; the output frame goes to the
//!   transport as usual.
//! - Every provider call goes through a gate (`gate.rs`): while one is in
//!   flight, virtual time stands still (no tick, no timer), the call runs on
//!   the caller's runtime in real time, one call at a time in the order the
//!   pipeline made them. A slow provider therefore changes nothing the
//!   session does: the next speaker's audio is heard at the same point
//!   relative to the call as with an instant provider, and two runs over
//!   the same input give the same turns, transcripts, replies and output.
//! - Latencies stay meaningful: each stage is reported as the virtual time
//!   from the voice's end (the pipeline's own work, the VAD, the mixer)
//!   plus the measured time of the provider calls on the turn's critical
//!   path (its STT call; its model call up to the first token / first
//!   sentence; the first sentence's TTS call up to its first audio). A fake
//!   provider that sleeps 250 ms adds 250 ms, as it would in real time.
//!
//! # Real-time pacing (`--realtime`)
//!
//! [`Pacing::Realtime`] is the live path: the wall clock paces the engine,
//! the loopback transport feeds the input in real time and providers run
//! concurrently with the audio. Results then depend on the machine's speed.

mod gate;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use glyphoxa_audio::{ClockStats, EngineSettings, VirtualClock, FRAME_MS, INPUT_SAMPLE_RATE};
use glyphoxa_pipeline::knowledge::Knowledge;
use glyphoxa_pipeline::orchestrator::{SessionEvent, SessionSettings};
use glyphoxa_pipeline::roster::Roster;
use glyphoxa_pipeline::timing::{TurnOutcome, TurnResult};
use glyphoxa_pipeline::transcript::MemoryTranscript;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use self::gate::{ProviderGate, ProviderShare};
use crate::runtime::{Providers, RuntimeError, SessionRuntime, SessionSpec};
use crate::transport::loopback::{LoopbackOutput, LoopbackSpeaker, LoopbackTransport};

/// One engine tick of virtual time.
const TICK: Duration = Duration::from_millis(FRAME_MS as u64);
/// Longest wall time one engine tick may take before the replay gives up.
const TICK_LIMIT: Duration = Duration::from_secs(10);
/// Virtual ticks between two progress reports (one second of input).
const PROGRESS_TICKS: u64 = 50;

/// How a replay is paced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pacing {
    /// Deterministic: a virtual clock that stands still while a provider
    /// call is in flight (see the module documentation).
    #[default]
    Virtual,
    /// The input plays in real time against the wall clock, as in a live
    /// session; results depend on the machine's speed.
    Realtime,
}

/// What to replay.
pub struct ReplaySpec {
    /// One entry per speaker: display name and audio.
    pub speakers: Vec<(String, LoopbackSpeaker)>,
    /// Brain settings (campaign, timing policies).
    pub brain: SessionSettings,
    /// Audio engine settings.
    pub engine: EngineSettings,
    /// The NPCs.
    pub roster: Roster,
    /// Campaign knowledge.
    pub knowledge: Knowledge,
    /// Longest time to wait for the last turns after the input ends
    /// (virtual time when the pacing is virtual).
    pub drain_timeout: Duration,
    /// Virtual (deterministic) or real time.
    pub pacing: Pacing,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The session could not start or stop.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The replay's own machinery failed (its thread, runtime or engine clock).
    #[error("the replay could not run: {0}")]
    Setup(String),
}

/// Milliseconds of each stage, counted from the moment the voice stopped.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StageTimes {
    /// VAD end-of-speech decision.
    pub vad_end_ms: Option<f64>,
    /// Final transcript.
    pub stt_final_ms: Option<f64>,
    /// First model token.
    pub llm_first_token_ms: Option<f64>,
    /// First complete sentence.
    pub first_sentence_ms: Option<f64>,
    /// First TTS audio.
    pub tts_first_audio_ms: Option<f64>,
    /// First audio frame handed to the transport.
    pub first_frame_ms: Option<f64>,
}

/// One turn of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportTurn {
    /// Who spoke.
    pub speaker: String,
    /// What they said.
    pub transcript: String,
    /// The NPC that answered (or was addressed).
    pub npc: Option<String>,
    /// The reply as heard.
    pub reply: String,
    /// spoke / cut / failed / yielded / no_target.
    pub outcome: String,
    /// When the voice stopped, ms since the start of the replay.
    pub speech_end_at_ms: Option<f64>,
    /// Stage timestamps relative to the voice stopping.
    pub stages: StageTimes,
    /// What failed, if anything.
    pub error: Option<String>,
}

/// Totals over all turns.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReportSummary {
    /// Turns in the report.
    pub turns: usize,
    /// Turns per outcome.
    pub spoke: usize,
    /// Cut turns.
    pub cut: usize,
    /// Failed turns.
    pub failed: usize,
    /// Yielded turns.
    pub yielded: usize,
    /// Utterances that addressed nobody.
    pub no_target: usize,
    /// Median speech end → first frame, over turns that got that far.
    pub response_p50_ms: Option<f64>,
    /// 95th percentile of the same.
    pub response_p95_ms: Option<f64>,
    /// Mean VAD detection delay (voice end → end-of-speech decision).
    pub vad_delay_mean_ms: Option<f64>,
    /// Length of the input, in ms.
    pub input_ms: u64,
    /// Length of the output audio, in ms.
    pub output_ms: u64,
    /// Output frames with audible NPC audio.
    pub audible_frames: u64,
}

/// The replay's result: turns, summary and the output audio.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Every turn, in the order they ended.
    pub turns: Vec<ReportTurn>,
    /// Totals.
    pub summary: ReportSummary,
    /// The NPCs' audio as the channel heard it (not serialized).
    #[serde(skip)]
    pub output: LoopbackOutput,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index.min(sorted.len() - 1)).copied()
}

/// One turn of the report. `start` is when the input began; `share` is the
/// provider time to add to the stages (virtual pacing, where calls take no
/// virtual time), `None` when the timestamps already include it.
fn report_turn(turn: &TurnResult, start: Instant, names: &Roster, share: Option<ProviderShare>) -> ReportTurn {
    let t = &turn.timings;
    let origin = t.speech_end.or(t.vad_end);
    let share = share.unwrap_or_default();
    let sentence = share.stt + share.llm_first_sentence.or(share.llm_first_token).unwrap_or_default();
    let audio = sentence + share.tts_first_audio.unwrap_or_default();
    let since = |at: Option<Instant>, extra: Duration| match (origin, at) {
        (Some(from), Some(to)) => Some(round(
            (to.saturating_duration_since(from) + extra).as_secs_f64() * 1000.0,
        )),
        _ => None,
    };
    ReportTurn {
        speaker: turn.speaker_name.clone(),
        transcript: turn.transcript.clone(),
        npc: turn.npc.as_ref().map(|id| {
            names
                .get(id)
                .map_or_else(|| id.to_string(), |n| n.definition.name.clone())
        }),
        reply: turn.reply_heard.clone(),
        outcome: turn.outcome.as_str().to_string(),
        speech_end_at_ms: origin.map(|at| round(at.saturating_duration_since(start).as_secs_f64() * 1000.0)),
        stages: StageTimes {
            vad_end_ms: since(t.vad_end, Duration::ZERO),
            stt_final_ms: since(t.stt_final, share.stt),
            llm_first_token_ms: since(t.llm_first_token, share.stt + share.llm_first_token.unwrap_or_default()),
            first_sentence_ms: since(t.first_sentence, sentence),
            tts_first_audio_ms: since(t.tts_first_audio, audio),
            first_frame_ms: since(t.first_frame, audio),
        },
        error: turn.error.clone(),
    }
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// Longest input, in ms.
fn input_ms(speakers: &[(String, LoopbackSpeaker)]) -> u64 {
    speakers
        .iter()
        .map(|(_, s)| s.samples.len() as u64 * 1000 / u64::from(INPUT_SAMPLE_RATE))
        .max()
        .unwrap_or(0)
}

/// Runs the replay. `progress` is called about once a second of input with
/// (ms of input heard, total ms of input). With [`Pacing::Virtual`] the
/// session runs on a thread of its own while the providers run on the
/// caller's runtime (which must keep running, as it does while this future
/// is awaited).
pub async fn replay(
    spec: ReplaySpec,
    providers: Providers,
    progress: impl FnMut(u64, u64),
) -> Result<ReplayReport, ReplayError> {
    match spec.pacing {
        Pacing::Virtual => replay_virtual(spec, providers, progress).await,
        Pacing::Realtime => Ok(replay_realtime(spec, providers, progress).await?),
    }
}

/// Virtual pacing: the session on a paused-clock runtime of its own thread.
async fn replay_virtual(
    spec: ReplaySpec,
    providers: Providers,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplayReport, ReplayError> {
    let provider_runtime = Handle::current();
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let (done_tx, mut done) = oneshot::channel();
    std::thread::Builder::new()
        .name("glyphoxa-replay".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .map_err(|e| ReplayError::Setup(format!("cannot start the replay's runtime: {e}")))
                .and_then(|runtime| {
                    let result = runtime.block_on(drive(spec, providers, provider_runtime, progress_tx));
                    // Blocking tasks (the gate's) end with the last call; never wait long for them.
                    runtime.shutdown_timeout(Duration::from_secs(1));
                    result
                });
            let _ = done_tx.send(result);
        })
        .map_err(|e| ReplayError::Setup(format!("cannot start the replay's thread: {e}")))?;
    loop {
        tokio::select! {
            biased;
            Some((heard, total)) = progress_rx.recv() => progress(heard, total),
            result = &mut done => {
                return result.unwrap_or_else(|_| Err(ReplayError::Setup("the replay's thread ended without a result".into())));
            }
        }
    }
}

/// Drives a session tick by tick on the (paused) clock of the current
/// runtime; see the module documentation.
async fn drive(
    spec: ReplaySpec,
    providers: Providers,
    provider_runtime: Handle,
    progress: mpsc::UnboundedSender<(u64, u64)>,
) -> Result<ReplayReport, ReplayError> {
    let gate = ProviderGate::new(&provider_runtime, Handle::current());
    let providers = gate.wrap(providers);
    let input_ms = input_ms(&spec.speakers);
    let names: Vec<(String, u64)> = spec.speakers.iter().map(|(name, s)| (name.clone(), s.id)).collect();
    // The names the pipeline's sentence splitter strips from replies.
    let labels: Vec<String> = spec
        .roster
        .names()
        .into_iter()
        .map(str::to_string)
        .chain(names.iter().map(|(name, _)| name.clone()))
        .collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let (transport, mut feeder) = LoopbackTransport::stepped(spec.speakers.into_iter().map(|(_, s)| s).collect(), None);
    let output = transport.output();
    let roster = spec.roster.clone();
    // After the input: the silence clock ends any open utterance within
    // its grace and cap; then wait for every turn and line to finish.
    let silence = &spec.engine.silence;
    let settle_ticks = ticks(Duration::from_millis(u64::from(
        silence.jitter_grace_ms + silence.cap_ms + FRAME_MS,
    )));
    let drain_ticks = ticks(spec.drain_timeout);
    // Tick n runs at epoch + n × 20 ms of virtual time; the session gets one
    // tick period to settle first.
    let epoch = Instant::now() + TICK;
    let (clock, stepper) = VirtualClock::stepped();
    let stats = Arc::new(ClockStats::with_epoch(epoch.into_std()));
    let (runtime, mut events) = SessionRuntime::start_with_clock(
        session_spec(spec.brain, spec.engine, spec.roster, spec.knowledge),
        providers,
        Box::new(transport),
        clock,
        stats,
    )
    .await?;
    name_speakers(&runtime, &names);
    let mut turns = Vec::new();
    let mut tick: u64 = 0;
    let mut input_end: Option<u64> = None;
    let mut idle: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        // Reached only once the runtime ran out of work before this tick.
        tokio::time::sleep_until(epoch + TICK * u32::try_from(tick).unwrap_or(u32::MAX)).await;
        // A call made at this very instant: the clock stands still until it
        // lands and its consequences have settled, then the tick runs.
        while gate.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        while let Ok(event) = events.try_recv() {
            if let SessionEvent::Turn(turn) = event {
                turns.push(turn);
            }
        }
        if let Some(end) = input_end {
            let after = tick - end;
            if after >= settle_ticks {
                let was_idle = idle.as_ref().is_some_and(tokio::task::JoinHandle::is_finished);
                if was_idle && !runtime.playback_busy() {
                    break;
                }
                if after >= settle_ticks + drain_ticks {
                    tracing::warn!(
                        "replay: turns still running {:?} after the input; stopping",
                        spec.drain_timeout
                    );
                    break;
                }
                if was_idle || idle.is_none() {
                    let brain = runtime.brain().clone();
                    idle = Some(tokio::spawn(async move {
                        let _ = brain.idle().await;
                    }));
                }
            }
        }
        if input_end.is_none() && !feeder.feed_tick() {
            input_end = Some(tick);
        }
        // The engine thread runs this one tick while this thread waits
        // (microseconds): nothing else of the session runs meanwhile.
        if stepper.run(1, TICK_LIMIT) <= tick {
            return Err(ReplayError::Setup(format!("the audio engine did not run tick {tick}")));
        }
        tick += 1;
        if input_end.is_none() && tick.is_multiple_of(PROGRESS_TICKS) {
            let _ = progress.send(((tick * u64::from(FRAME_MS)).min(input_ms), input_ms));
        }
    }
    let _ = runtime.stop().await?;
    drop(stepper);
    while let Some(event) = events.recv().await {
        if let SessionEvent::Turn(turn) = event {
            turns.push(turn);
        }
    }
    let _ = progress.send((input_ms, input_ms));
    let output = output.lock().map(|o| o.clone()).unwrap_or_default();
    let turns = turns
        .iter()
        .map(|turn| report_turn(turn, epoch, &roster, Some(gate.share_of(turn, &labels))))
        .collect();
    Ok(ReplayReport::new(turns, output, input_ms))
}

/// Whole ticks covering `duration`.
fn ticks(duration: Duration) -> u64 {
    (duration.as_millis() as u64).div_ceil(u64::from(FRAME_MS))
}

/// Real-time pacing: the input plays against the wall clock.
async fn replay_realtime(
    spec: ReplaySpec,
    providers: Providers,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplayReport, RuntimeError> {
    let input_ms = input_ms(&spec.speakers);
    let names: Vec<(String, u64)> = spec.speakers.iter().map(|(name, s)| (name.clone(), s.id)).collect();
    let transport = LoopbackTransport::new(spec.speakers.into_iter().map(|(_, s)| s).collect(), None);
    let output = transport.output();
    let roster = spec.roster.clone();
    let start = Instant::now();
    let (runtime, mut events) = SessionRuntime::start(
        session_spec(spec.brain, spec.engine, spec.roster, spec.knowledge),
        providers,
        Box::new(transport),
    )
    .await?;
    name_speakers(&runtime, &names);
    let mut turns = Vec::new();
    let started = StdInstant::now();
    let mut last_progress = StdInstant::now();
    // The input plays in real time; then let the last utterance end and every turn finish.
    let input_done = start + Duration::from_millis(input_ms);
    loop {
        while let Ok(event) = events.try_recv() {
            if let SessionEvent::Turn(turn) = event {
                turns.push(report_turn(&turn, start, &roster, None));
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = StdInstant::now();
            progress((started.elapsed().as_millis() as u64).min(input_ms), input_ms);
        }
        if Instant::now() >= input_done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Hangover + silence clock: the last utterance ends within a second after the input.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let _ = tokio::time::timeout(spec.drain_timeout, runtime.brain().idle()).await;
    // Let the last reply play out.
    let drain_until = StdInstant::now() + spec.drain_timeout;
    while runtime.playback_busy() && StdInstant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = runtime.stop().await?;
    while let Some(event) = events.recv().await {
        if let SessionEvent::Turn(turn) = event {
            turns.push(report_turn(&turn, start, &roster, None));
        }
    }
    progress(input_ms, input_ms);
    let output = output.lock().map(|o| o.clone()).unwrap_or_default();
    Ok(ReplayReport::new(turns, output, input_ms))
}

impl ReplayReport {
    /// The report over `turns` (in the order they ended) and the output audio.
    fn new(turns: Vec<ReportTurn>, output: LoopbackOutput, input_ms: u64) -> Self {
        let mut responses: Vec<f64> = turns.iter().filter_map(|t| t.stages.first_frame_ms).collect();
        responses.sort_by(f64::total_cmp);
        let vad: Vec<f64> = turns.iter().filter_map(|t| t.stages.vad_end_ms).collect();
        let count = |outcome: TurnOutcome| turns.iter().filter(|t| t.outcome == outcome.as_str()).count();
        let summary = ReportSummary {
            turns: turns.len(),
            spoke: count(TurnOutcome::Spoke),
            cut: count(TurnOutcome::Cut),
            failed: count(TurnOutcome::Failed),
            yielded: count(TurnOutcome::Yielded),
            no_target: count(TurnOutcome::NoTarget),
            response_p50_ms: percentile(&responses, 0.5),
            response_p95_ms: percentile(&responses, 0.95),
            vad_delay_mean_ms: (!vad.is_empty()).then(|| round(vad.iter().sum::<f64>() / vad.len() as f64)),
            input_ms,
            output_ms: output.duration_ms(),
            audible_frames: output.audible_frames,
        };
        Self { turns, summary, output }
    }
}

impl ReplayReport {
    /// The per-turn table printed by `glyphoxa replay`.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        let mut out = String::new();
        out.push_str(&format!(
            "{:<3} {:<10} {:<12} {:<9} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  {}\n",
            "#", "speaker", "npc", "outcome", "vad", "stt", "llm", "sent", "tts", "frame", "reply"
        ));
        for (i, turn) in self.turns.iter().enumerate() {
            let s = &turn.stages;
            let reply: String = turn.reply.chars().take(48).collect();
            out.push_str(&format!(
                "{:<3} {:<10} {:<12} {:<9} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  {}\n",
                i + 1,
                truncate(&turn.speaker, 10),
                truncate(turn.npc.as_deref().unwrap_or("-"), 12),
                turn.outcome,
                ms(s.vad_end_ms),
                ms(s.stt_final_ms),
                ms(s.llm_first_token_ms),
                ms(s.first_sentence_ms),
                ms(s.tts_first_audio_ms),
                ms(s.first_frame_ms),
                reply
            ));
        }
        let summary = &self.summary;
        out.push_str(&format!(
            "{} turns: {} spoke, {} cut, {} failed, {} yielded, {} no target; speech end → first frame p50 {} ms, p95 {} ms; VAD delay mean {} ms\n",
            summary.turns,
            summary.spoke,
            summary.cut,
            summary.failed,
            summary.yielded,
            summary.no_target,
            ms(summary.response_p50_ms),
            ms(summary.response_p95_ms),
            ms(summary.vad_delay_mean_ms),
        ));
        out.push_str("(stage columns: ms after the player's voice stopped)\n");
        out
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

fn truncate(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}

/// The runtime's spec for a replayed session: an in-memory transcript and no
/// phase offset (one session, nothing to stagger).
fn session_spec(brain: SessionSettings, engine: EngineSettings, roster: Roster, knowledge: Knowledge) -> SessionSpec {
    SessionSpec {
        brain,
        engine,
        roster,
        knowledge,
        transcript: Arc::new(MemoryTranscript::default()),
        phase: Duration::ZERO,
    }
}

/// Tells the brain each speaker's display name.
fn name_speakers(runtime: &SessionRuntime, names: &[(String, u64)]) {
    for (name, id) in names {
        let _ = runtime.brain().set_speaker_name(&id.to_string(), name);
    }
}
