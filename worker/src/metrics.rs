//! The worker's Prometheus metrics (exported by the binary on `/metrics`):
//!
//! - `glyphoxa_turns_total{outcome}`: turns by how they ended;
//! - `glyphoxa_turn_stage_seconds{stage,outcome}`: each stage's latency
//!   (`vad`, `stt`, `llm_first_token`, `first_sentence`, `tts_first_audio`,
//!   `first_frame`) and `total` (speech end → first frame out);
//! - `glyphoxa_turn_failures_total{npc}` is not kept: failures count under
//!   `outcome="failed"` and their reason goes to the transcript events;
//! - `glyphoxa_active_sessions`: sessions running on this worker;
//! - `glyphoxa_late_ticks_total`, `glyphoxa_tick_overruns_total`: audio ticks
//!   of every session of this worker that started more than 1 ms late, and a
//!   whole tick period (20 ms) or more late. The tick thread only bumps its
//!   clock's atomic counters; each session's pump publishes their growth
//!   about once a second ([`ClockCounters`]);
//! - `glyphoxa_worker_rpc_seconds{method,code}`: how long each
//!   `SessionWorkerService` call took on this worker (`method` as in the
//!   proto, e.g. `StartSession`; `code` the gRPC status name, `OK` or e.g.
//!   `NOT_FOUND`, and `CANCELLED` for calls the caller gave up on), whether
//!   it came over gRPC or in-process (full mode) — see [`timed_rpc`];
//! - `glyphoxa_provider_errors_total{stage,provider}` is recorded by the
//!   pipeline (`glyphoxa_pipeline::metrics`): failed STT, LLM and TTS calls.
//!
//! Recording is cheap and never blocks; without an installed recorder it
//! does nothing.

use std::future::Future;
use std::time::Instant as StdInstant;

use glyphoxa_audio::ClockSnapshot;
use glyphoxa_pipeline::orchestrator::SessionEvent;
use glyphoxa_pipeline::timing::TurnResult;
use glyphoxa_proto::ApiError;

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

/// Publishes the growth of one session's tick counters. Runs on the async
/// side (the session's pump), never on the tick thread.
#[derive(Debug, Default)]
pub struct ClockCounters {
    published: ClockSnapshot,
}

impl ClockCounters {
    /// Adds what `now` counts beyond the last published snapshot to
    /// `glyphoxa_late_ticks_total` and `glyphoxa_tick_overruns_total`.
    pub fn publish(&mut self, now: ClockSnapshot) {
        let late = now.late_ticks.saturating_sub(self.published.late_ticks);
        let overruns = now.overruns.saturating_sub(self.published.overruns);
        // Zeros too: the series exist (and rates work) before the first overrun.
        metrics::counter!("glyphoxa_late_ticks_total").increment(late);
        metrics::counter!("glyphoxa_tick_overruns_total").increment(overruns);
        self.published = now;
    }
}

/// The gRPC status name of a call's result.
fn rpc_code(error: Option<&ApiError>) -> &'static str {
    error.map_or("OK", ApiError::code_name)
}

/// Measures one call; a call dropped before it answered (the client went
/// away or its deadline passed) counts as `CANCELLED`.
struct RpcTimer {
    method: &'static str,
    started: StdInstant,
    code: Option<&'static str>,
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        let code = self.code.unwrap_or("CANCELLED");
        metrics::histogram!("glyphoxa_worker_rpc_seconds", "method" => self.method, "code" => code)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Runs one `SessionWorkerService` call (`method` as named in the proto)
/// and records its latency and result code in `glyphoxa_worker_rpc_seconds`.
pub async fn timed_rpc<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let mut timer = RpcTimer {
        method,
        started: StdInstant::now(),
        code: None,
    };
    let result = call.await;
    timer.code = Some(rpc_code(result.as_ref().err()));
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;
    use glyphoxa_pipeline::timing::{TurnOutcome, TurnTimings};
    use metrics::{SharedString, Unit};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::CompositeKey;
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
            played_ms: 0.0,
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

    type Series = Vec<(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)>;

    /// The value of the series `name` whose labels include `labels`.
    fn series<'a>(snapshot: &'a Series, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
        snapshot
            .iter()
            .find(|(key, ..)| {
                key.key().name() == name
                    && labels
                        .iter()
                        .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, _, _, value)| value)
    }

    #[test]
    fn tick_counters_publish_only_what_grew_since_the_last_snapshot() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let at = |ticks, late_ticks, overruns| ClockSnapshot {
            ticks,
            late_ticks,
            overruns,
            ..ClockSnapshot::default()
        };
        metrics::with_local_recorder(&recorder, || {
            let mut session_a = ClockCounters::default();
            let mut session_b = ClockCounters::default();
            session_a.publish(at(50, 3, 1));
            session_a.publish(at(100, 5, 1));
            session_a.publish(at(150, 5, 1));
            session_b.publish(at(50, 2, 0));
        });
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(
            series(&snapshot, "glyphoxa_late_ticks_total", &[]),
            Some(&DebugValue::Counter(7))
        );
        assert_eq!(
            series(&snapshot, "glyphoxa_tick_overruns_total", &[]),
            Some(&DebugValue::Counter(1))
        );
        // A healthy session publishes the series at zero.
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || ClockCounters::default().publish(at(50, 0, 0)));
        let snapshot = snapshotter.snapshot().into_vec();
        assert_eq!(
            series(&snapshot, "glyphoxa_late_ticks_total", &[]),
            Some(&DebugValue::Counter(0))
        );
        assert_eq!(
            series(&snapshot, "glyphoxa_tick_overruns_total", &[]),
            Some(&DebugValue::Counter(0))
        );
    }

    #[test]
    fn each_rpc_records_its_latency_by_method_and_code() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let ok = timed_rpc("GetStatus", async { Ok::<_, ApiError>(7) }).now_or_never();
            assert_eq!(ok, Some(Ok(7)));
            let missing = timed_rpc("StopSession", async { Err::<(), _>(ApiError::not_found("no session")) });
            assert!(matches!(missing.now_or_never(), Some(Err(ApiError::NotFound(_)))));
            // The caller gave up while the call was still running.
            let abandoned = timed_rpc("PlayAudio", std::future::pending::<Result<(), ApiError>>());
            assert!(abandoned.now_or_never().is_none());
        });
        let snapshot = snapshotter.snapshot().into_vec();
        for (method, code) in [
            ("GetStatus", "OK"),
            ("StopSession", "NOT_FOUND"),
            ("PlayAudio", "CANCELLED"),
        ] {
            let value = series(
                &snapshot,
                "glyphoxa_worker_rpc_seconds",
                &[("method", method), ("code", code)],
            );
            let Some(DebugValue::Histogram(seconds)) = value else {
                panic!("no {method} {code} latency: {value:?}");
            };
            assert_eq!(seconds.len(), 1);
            assert!(seconds[0].into_inner() >= 0.0);
        }
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
            played_ms: 0.0,
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
