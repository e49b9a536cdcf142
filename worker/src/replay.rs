//! Offline replay: a whole session from WAV files through the real runtime
//! (audio engine, NPC brain, configured providers) on the loopback
//! transport, with a per-turn latency report and the NPCs' audio.
//!
//! Each input file is one speaker, starting at the session's start. The
//! replay runs until every input has been heard, every utterance has been
//! answered and every reply has been played.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use glyphoxa_audio::{EngineSettings, INPUT_SAMPLE_RATE};
use glyphoxa_pipeline::knowledge::Knowledge;
use glyphoxa_pipeline::orchestrator::{SessionEvent, SessionSettings};
use glyphoxa_pipeline::roster::Roster;
use glyphoxa_pipeline::timing::{TurnOutcome, TurnResult};
use glyphoxa_pipeline::transcript::MemoryTranscript;
use serde::Serialize;
use tokio::time::Instant;

use crate::runtime::{Providers, RuntimeError, SessionRuntime, SessionSpec};
use crate::transport::loopback::{LoopbackOutput, LoopbackSpeaker, LoopbackTransport};

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
    /// Longest time to wait for the last turns after the input ends.
    pub drain_timeout: Duration,
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

fn report_turn(turn: &TurnResult, start: Instant, names: &Roster) -> ReportTurn {
    let t = &turn.timings;
    let origin = t.speech_end.or(t.vad_end);
    let since = |at: Option<Instant>| match (origin, at) {
        (Some(from), Some(to)) => Some(round(to.saturating_duration_since(from).as_secs_f64() * 1000.0)),
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
            vad_end_ms: since(t.vad_end),
            stt_final_ms: since(t.stt_final),
            llm_first_token_ms: since(t.llm_first_token),
            first_sentence_ms: since(t.first_sentence),
            tts_first_audio_ms: since(t.tts_first_audio),
            first_frame_ms: since(t.first_frame),
        },
        error: turn.error.clone(),
    }
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// Runs the replay in real time. `progress` is called about once a second
/// with (ms of input heard, total ms of input).
pub async fn replay(
    spec: ReplaySpec,
    providers: Providers,
    mut progress: impl FnMut(u64, u64),
) -> Result<ReplayReport, RuntimeError> {
    let input_ms = spec
        .speakers
        .iter()
        .map(|(_, s)| s.samples.len() as u64 * 1000 / u64::from(INPUT_SAMPLE_RATE))
        .max()
        .unwrap_or(0);
    let names: Vec<(String, u64)> = spec.speakers.iter().map(|(name, s)| (name.clone(), s.id)).collect();
    let transport = LoopbackTransport::new(spec.speakers.into_iter().map(|(_, s)| s).collect(), None);
    let output = transport.output();
    let roster = spec.roster.clone();
    let start = Instant::now();
    let (runtime, mut events) = SessionRuntime::start(
        SessionSpec {
            brain: spec.brain,
            engine: spec.engine,
            roster: spec.roster,
            knowledge: spec.knowledge,
            transcript: Arc::new(MemoryTranscript::default()),
            phase: Duration::ZERO,
        },
        providers,
        Box::new(transport),
    )
    .await?;
    for (name, id) in &names {
        let _ = runtime.brain().set_speaker_name(&id.to_string(), name);
    }
    let mut turns = Vec::new();
    let started = StdInstant::now();
    let mut last_progress = StdInstant::now();
    // The input plays in real time; then let the last utterance end and every turn finish.
    let input_done = start + Duration::from_millis(input_ms);
    loop {
        while let Ok(event) = events.try_recv() {
            if let SessionEvent::Turn(turn) = event {
                turns.push(report_turn(&turn, start, &roster));
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
            turns.push(report_turn(&turn, start, &roster));
        }
    }
    progress(input_ms, input_ms);
    let output = output.lock().map(|o| o.clone()).unwrap_or_default();
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
    Ok(ReplayReport { turns, summary, output })
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
