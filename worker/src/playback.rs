//! The NPC brain's [`Playback`] over the realtime mixer of a session.
//!
//! Each line becomes one mixer source. Writes copy PCM into the source's
//! lock-free ring and wait (asynchronously) while it is full, which gives
//! TTS and PlayAudio streams back-pressure. The session's event pump
//! resolves each line's first-frame and completion notifications from the
//! engine's `SourceStarted` / `SourceFinished` events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use glyphoxa_audio::{NpcId as MixerNpc, SessionControl, SourceId, SourceReport, SourceSpec, SourceWriter};
use glyphoxa_pipeline::playback::{LineMonitor, LineReport, LineWriter, Playback, PlaybackError, Priority};
use glyphoxa_pipeline::roster::NpcId;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How often a writer waiting for room in a full ring looks again.
const RING_POLL: Duration = Duration::from_millis(5);

/// Where a line's notifications go when the engine reports on its source.
struct LineSlot {
    first_frame: Option<oneshot::Sender<Instant>>,
    done: Option<oneshot::Sender<LineReport>>,
    written_micros: Arc<AtomicU64>,
}

/// Lines waiting for engine reports, by source.
#[derive(Clone, Default)]
pub struct LineRegistry {
    slots: Arc<Mutex<HashMap<SourceId, LineSlot>>>,
}

impl LineRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SourceId, LineSlot>> {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The source's first frame went out at `at`.
    pub fn started(&self, source: SourceId, at: Instant) {
        if let Some(first) = self.lock().get_mut(&source).and_then(|slot| slot.first_frame.take()) {
            let _ = first.send(at);
        }
    }

    /// The source ended.
    pub fn finished(&self, report: &SourceReport) {
        if let Some(mut slot) = self.lock().remove(&report.source) {
            let written_ms = slot.written_micros.load(Ordering::Relaxed) as f64 / 1000.0;
            if let Some(done) = slot.done.take() {
                let _ = done.send(LineReport {
                    written_ms,
                    played_ms: report.played_ms as f64,
                    cut: report.cut,
                });
            }
        }
    }

    /// Lines still open.
    pub fn open_lines(&self) -> usize {
        self.lock().len()
    }
}

/// The mixer of one session, as the brain sees it.
pub struct MixerPlayback {
    control: SessionControl,
    npcs: HashMap<NpcId, MixerNpc>,
    registry: LineRegistry,
}

impl MixerPlayback {
    /// Wraps a session's control handle; `npcs` numbers the roster for the mixer.
    pub fn new(control: SessionControl, npcs: HashMap<NpcId, MixerNpc>, registry: LineRegistry) -> Self {
        Self {
            control,
            npcs,
            registry,
        }
    }

    /// Lines not yet reported finished by the mixer.
    pub fn open_lines(&self) -> usize {
        self.registry.open_lines()
    }

    /// Opens a line for an arbitrary source spec (PlayAudio uses this).
    pub fn open_spec(&self, spec: SourceSpec) -> Result<(Box<dyn LineWriter>, LineMonitor), PlaybackError> {
        let channels = usize::from(spec.channels.max(1));
        let rate = spec.sample_rate.max(1);
        let writer = self
            .control
            .open_source(spec)
            .map_err(|e| PlaybackError::Unsupported(e.to_string()))?;
        let (first_tx, first_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let written_micros = Arc::new(AtomicU64::new(0));
        self.registry.lock().insert(
            writer.id(),
            LineSlot {
                first_frame: Some(first_tx),
                done: Some(done_tx),
                written_micros: written_micros.clone(),
            },
        );
        Ok((
            Box::new(MixerLine {
                writer: Some(writer),
                control: self.control.clone(),
                channels,
                rate,
                written_micros,
            }),
            LineMonitor {
                first_frame: first_rx,
                done: done_rx,
            },
        ))
    }
}

impl Playback for MixerPlayback {
    fn open_line(
        &self,
        npc: Option<&NpcId>,
        priority: Priority,
        sample_rate: u32,
        channels: u16,
    ) -> Result<(Box<dyn LineWriter>, LineMonitor), PlaybackError> {
        let spec = match (priority, npc.and_then(|id| self.npcs.get(id))) {
            (Priority::Npc, Some(npc)) => SourceSpec::npc(*npc, sample_rate, channels),
            (Priority::Narrator, _) | (Priority::Npc, None) => SourceSpec::narrator(sample_rate, channels),
            (Priority::Ambience, _) => SourceSpec::ambience(sample_rate, channels),
        };
        self.open_spec(spec)
    }

    fn cut_npc(&self, npc: &NpcId) {
        if let Some(npc) = self.npcs.get(npc) {
            let _ = self.control.cut_npc(*npc);
        }
    }

    fn cut_all(&self) {
        let _ = self.control.cut_all();
    }
}

/// One line being written into a mixer source.
struct MixerLine {
    writer: Option<SourceWriter>,
    control: SessionControl,
    channels: usize,
    rate: u32,
    written_micros: Arc<AtomicU64>,
}

#[async_trait]
impl LineWriter for MixerLine {
    async fn write(&mut self, samples: &[i16]) -> Result<(), PlaybackError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(PlaybackError::Cut);
        };
        let whole = samples.len() / self.channels * self.channels;
        let mut rest = &samples[..whole];
        while !rest.is_empty() {
            if writer.is_cut() || writer.is_done() {
                return Err(PlaybackError::Cut);
            }
            if self.control.is_stopped() {
                return Err(PlaybackError::Stopped);
            }
            let taken = writer.write(rest);
            if taken > 0 {
                let micros = taken as u64 * 1_000_000 / self.channels as u64 / u64::from(self.rate);
                self.written_micros.fetch_add(micros, Ordering::Relaxed);
                rest = &rest[taken..];
            } else {
                tokio::time::sleep(RING_POLL).await;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) {
        if let Some(writer) = self.writer.take() {
            let _ = self.control.finish_source(writer);
        }
    }
}

impl Drop for MixerLine {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = self.control.finish_source(writer);
        }
    }
}
