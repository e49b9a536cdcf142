//! Per-call measurements: time to first byte/token, total time, volume, outcome.
//!
//! Every provider call carries a [`CallMeter`]. When the call ends — finished,
//! failed, or dropped because the turn was cancelled — the meter hands one
//! [`CallRecord`] to the configured [`CallObserver`], so the latency report
//! counts every call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Which pipeline stage a call served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Speech to text.
    Stt,
    /// Language model.
    Llm,
    /// Text to speech.
    Tts,
}

impl Stage {
    /// Lower-case label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Stt => "stt",
            Stage::Llm => "llm",
            Stage::Tts => "tts",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The answer arrived completely.
    Ok,
    /// The caller stopped listening (turn cancelled, barge-in).
    Cancelled,
    /// The call failed; the label says how (`timeout`, `http_500`, ...).
    Failed(String),
}

/// The measurements of one provider call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// Provider name, e.g. `openai`.
    pub provider: &'static str,
    /// The stage it served.
    pub stage: Stage,
    /// When the call started.
    pub started: Instant,
    /// Time to the first byte of audio / first token / first transcript.
    pub first_byte: Option<Duration>,
    /// Time until the call ended.
    pub total: Duration,
    /// Bytes received.
    pub bytes: u64,
    /// Tokens (LLM), samples (TTS) or transcript events (STT) received.
    pub units: u64,
    /// Requests made (1 + retries).
    pub attempts: u32,
    /// How it ended.
    pub outcome: CallOutcome,
}

/// Receives a record for every finished call.
pub trait CallObserver: Send + Sync {
    /// Called once per call, when it ends.
    fn record(&self, record: CallRecord);
}

/// Discards records.
#[derive(Debug, Default)]
pub struct NoObserver;

impl CallObserver for NoObserver {
    fn record(&self, _record: CallRecord) {}
}

/// Keeps every record in memory (latency reports, tests).
#[derive(Debug, Default)]
pub struct CallLog {
    records: Mutex<Vec<CallRecord>>,
}

impl CallLog {
    /// A snapshot of the records so far.
    pub fn records(&self) -> Vec<CallRecord> {
        self.records.lock().map(|records| records.clone()).unwrap_or_default()
    }
}

impl CallObserver for CallLog {
    fn record(&self, record: CallRecord) {
        if let Ok(mut records) = self.records.lock() {
            records.push(record);
        }
    }
}

/// Measures one call; reports it when finished or dropped.
pub struct CallMeter {
    observer: Arc<dyn CallObserver>,
    record: Option<CallRecord>,
}

impl CallMeter {
    /// Starts measuring a call of `provider` for `stage`.
    pub fn start(observer: Arc<dyn CallObserver>, provider: &'static str, stage: Stage) -> Self {
        Self {
            observer,
            record: Some(CallRecord {
                provider,
                stage,
                started: Instant::now(),
                first_byte: None,
                total: Duration::ZERO,
                bytes: 0,
                units: 0,
                attempts: 0,
                outcome: CallOutcome::Cancelled,
            }),
        }
    }

    /// Notes that request number `attempt` is being made.
    pub fn attempt(&mut self, attempt: u32) {
        if let Some(record) = &mut self.record {
            record.attempts = record.attempts.max(attempt);
        }
    }

    /// Notes `bytes` received carrying `units` (tokens, samples, events);
    /// the first call with data fixes the time to first byte.
    pub fn received(&mut self, bytes: u64, units: u64) {
        if let Some(record) = &mut self.record {
            if record.first_byte.is_none() && (bytes > 0 || units > 0) {
                record.first_byte = Some(record.started.elapsed());
            }
            record.bytes += bytes;
            record.units += units;
        }
    }

    /// Ends the call with `outcome` and reports it.
    pub fn finish(&mut self, outcome: CallOutcome) {
        if let Some(mut record) = self.record.take() {
            record.total = record.started.elapsed();
            record.outcome = outcome;
            self.observer.record(record);
        }
    }

    /// Ends the call with the outcome of `result`.
    pub fn finish_with<T>(&mut self, result: &Result<T, super::ProviderError>) {
        self.finish(match result {
            Ok(_) => CallOutcome::Ok,
            Err(error) => CallOutcome::Failed(error.outcome_label()),
        });
    }
}

impl Drop for CallMeter {
    fn drop(&mut self) {
        // Not finished = the caller stopped listening.
        self.finish(CallOutcome::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn dropped_meter_reports_cancelled_with_first_byte() {
        let log = Arc::new(CallLog::default());
        {
            let mut meter = CallMeter::start(log.clone(), "fake", Stage::Tts);
            meter.attempt(1);
            tokio::time::sleep(Duration::from_millis(30)).await;
            meter.received(480, 240);
            tokio::time::sleep(Duration::from_millis(20)).await;
            meter.received(480, 240);
        }
        let records = log.records();
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record.outcome, CallOutcome::Cancelled);
        assert_eq!(record.first_byte, Some(Duration::from_millis(30)));
        assert_eq!(record.total, Duration::from_millis(50));
        assert_eq!((record.bytes, record.units, record.attempts), (960, 480, 1));
    }

    #[tokio::test]
    async fn finished_meter_reports_once() {
        let log = Arc::new(CallLog::default());
        let mut meter = CallMeter::start(log.clone(), "fake", Stage::Llm);
        meter.finish(CallOutcome::Failed("timeout".into()));
        drop(meter);
        assert_eq!(log.records().len(), 1);
        assert_eq!(log.records()[0].outcome, CallOutcome::Failed("timeout".into()));
    }
}
