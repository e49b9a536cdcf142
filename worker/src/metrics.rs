//! The worker's Prometheus metrics (exported by the binary on `/metrics`):
//!
//! - `glyphoxa_turns_total{outcome}`: turns by how they ended;
//! - `glyphoxa_turn_stage_seconds{stage,outcome}`: each stage's latency
//!   (`vad`, `stt`, `llm_first_token`, `first_sentence`, `tts_first_audio`,
//!   `first_frame`) and `total` (speech end → first frame out);
//! - `glyphoxa_turn_failures_total{npc}` is not kept: failures count under
//!   `outcome="failed"` and their reason goes to the transcript events;
//! - `glyphoxa_active_sessions`: sessions running on this worker.
//!
//! Recording is cheap and never blocks; without an installed recorder it
//! does nothing.

use glyphoxa_pipeline::orchestrator::SessionEvent;
use glyphoxa_pipeline::timing::TurnResult;

/// Records what a session event says about latency and outcomes.
pub fn record_event(event: &SessionEvent) {
    if let SessionEvent::Turn(turn) = event {
        record_turn(turn);
    }
}

/// Counts the turn and records each of its stage latencies.
pub fn record_turn(turn: &TurnResult) {
    let outcome = turn.outcome.as_str();
    metrics::counter!("glyphoxa_turns_total", "outcome" => outcome).increment(1);
    let latencies = turn.timings.latencies();
    let stages = [
        ("vad", latencies.vad_ms),
        ("stt", latencies.stt_ms),
        ("llm_first_token", latencies.llm_first_token_ms),
        ("first_sentence", latencies.first_sentence_ms),
        ("tts_first_audio", latencies.tts_first_audio_ms),
        ("first_frame", latencies.first_frame_ms),
        ("total", latencies.total_ms),
    ];
    for (stage, ms) in stages {
        if let Some(ms) = ms {
            metrics::histogram!("glyphoxa_turn_stage_seconds", "stage" => stage, "outcome" => outcome)
                .record(ms / 1000.0);
        }
    }
}

/// Publishes how many sessions run on this worker.
pub fn set_active_sessions(active: usize) {
    metrics::gauge!("glyphoxa_active_sessions").set(active as f64);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use glyphoxa_pipeline::timing::{TurnOutcome, TurnTimings};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tokio::time::Instant;

    use super::*;

    #[test]
    fn a_turn_records_its_outcome_and_each_measured_stage() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let t0 = Instant::now();
        let at = |ms| Some(t0 + Duration::from_millis(ms));
        let turn = TurnResult {
            turn_id: 1,
            speaker_id: "u1".into(),
            speaker_name: "Ana".into(),
            transcript: "Grimble, a drink".into(),
            npc: None,
            reply_heard: "Coming up.".into(),
            outcome: TurnOutcome::Spoke,
            timings: TurnTimings {
                speech_end: at(0),
                vad_end: at(400),
                stt_final: at(600),
                llm_first_token: at(800),
                first_sentence: at(900),
                tts_first_audio: at(1000),
                first_frame: at(1020),
            },
            error: None,
        };
        metrics::with_local_recorder(&recorder, || record_turn(&turn));
        let snapshot = snapshotter.snapshot().into_vec();
        let find = |name: &str, stage: Option<&str>| {
            snapshot
                .iter()
                .find(|(key, _, _, _)| {
                    key.key().name() == name
                        && stage.is_none_or(|s| key.key().labels().any(|l| l.key() == "stage" && l.value() == s))
                })
                .map(|(_, _, _, value)| value)
        };
        assert_eq!(find("glyphoxa_turns_total", None), Some(&DebugValue::Counter(1)));
        let Some(DebugValue::Histogram(total)) = find("glyphoxa_turn_stage_seconds", Some("total")) else {
            panic!("no total latency in {snapshot:?}");
        };
        assert_eq!(total.len(), 1);
        assert!((total[0].into_inner() - 1.02).abs() < 1e-9);
        let Some(DebugValue::Histogram(stt)) = find("glyphoxa_turn_stage_seconds", Some("stt")) else {
            panic!("no stt latency");
        };
        assert!((stt[0].into_inner() - 0.2).abs() < 1e-9);
    }

    #[test]
    fn a_turn_without_audio_records_no_latency() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let turn = TurnResult {
            turn_id: 2,
            speaker_id: "u1".into(),
            speaker_name: "Ana".into(),
            transcript: "hmm".into(),
            npc: None,
            reply_heard: String::new(),
            outcome: TurnOutcome::NoTarget,
            timings: TurnTimings::default(),
            error: None,
        };
        metrics::with_local_recorder(&recorder, || record_turn(&turn));
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(snapshot.len(), 1, "{snapshot:?}");
        assert_eq!(snapshot[0].0.key().name(), "glyphoxa_turns_total");
    }
}
