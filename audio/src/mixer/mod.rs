//! The playback mixer: plays the open sources into one 48 kHz stereo frame
//! per tick.
//!
//! Sources are ordered by priority (narrator > NPC speech > ambience). While a
//! higher-priority source holds the floor (it started and has not finished),
//! lower ones are paused, ducked or cut as the settings say; sources of equal
//! priority are truly summed. Lines of one queue play one after another with
//! a randomized gap. The summed bus goes through a peak limiter, so
//! overlapping sources never wrap around. Cuts take effect in the frame
//! being mixed. Nothing here allocates after construction, and finished
//! sources are handed back for disposal off the realtime thread.

mod gap;
mod limiter;
pub(crate) mod source;

pub use gap::GapRandomizer;
pub use limiter::Limiter;
pub use source::{SourceClass, SourceSpec, SourceWriter};

use std::sync::atomic::Ordering;

use crate::frame::{ms_to_frames_ceil, NpcId, QueueId, SourceId, OUTPUT_FRAME_LEN, OUTPUT_FRAME_SAMPLES};
use crate::settings::{MixerSettings, Outranked};
use source::{PlaybackSource, Render};

/// How a source ended, as reported to the pipeline (which commits only what
/// was heard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceReport {
    /// The source.
    pub source: SourceId,
    /// Tick at which it ended.
    pub tick: u64,
    /// Milliseconds of its audio actually handed to the transport.
    pub played_ms: u64,
    /// True if it was cut (by a command, a mute, pre-emption or overflow).
    pub cut: bool,
    /// Ticks on which it had started but had no audio ready.
    pub underruns: u32,
}

/// Where the mixer reports to (the engine's event ring and disposal queue).
pub(crate) trait MixerReports {
    /// The source's first audio went into frame `tick` (a latency stamp).
    fn source_started(&mut self, source: SourceId, tick: u64);
    /// The source is finished.
    fn source_finished(&mut self, report: SourceReport);
    /// Hands a finished source back for dropping off the realtime thread.
    fn dispose(&mut self, source: Box<PlaybackSource>);
}

/// Which sources a cut applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutTarget {
    Source(SourceId),
    Npc(NpcId),
    All,
}

impl CutTarget {
    fn matches(self, source: &PlaybackSource) -> bool {
        match self {
            CutTarget::Source(id) => source.id == id,
            CutTarget::Npc(npc) => source.spec.class == SourceClass::Npc(npc),
            CutTarget::All => true,
        }
    }
}

/// Muted NPCs remembered at most (more are ignored, and counted).
const MAX_MUTED_NPCS: usize = 64;

/// The mixer state of one session.
pub(crate) struct Mixer {
    slots: Vec<Option<Box<PlaybackSource>>>,
    /// For each queue whose last line ended: the tick its next line may start.
    queue_next: Vec<(QueueId, u64)>,
    muted: Vec<NpcId>,
    bus: Vec<f32>,
    scratch: Vec<f32>,
    limiter: Limiter,
    gaps: GapRandomizer,
    duck_gain: f32,
    npc_outranked: Outranked,
    ambience_outranked: Outranked,
    /// Sources refused because every slot was taken.
    pub(crate) overflows: u64,
}

impl Mixer {
    /// Preallocates everything for `max_sources` open sources.
    pub(crate) fn new(settings: &MixerSettings, max_sources: usize) -> Self {
        Self {
            slots: (0..max_sources).map(|_| None).collect(),
            queue_next: Vec::with_capacity(max_sources * 2),
            muted: Vec::with_capacity(MAX_MUTED_NPCS),
            bus: vec![0.0; OUTPUT_FRAME_SAMPLES],
            scratch: vec![0.0; OUTPUT_FRAME_SAMPLES],
            limiter: Limiter::new(settings.limiter_threshold_dbfs, settings.limiter_release_ms),
            gaps: GapRandomizer::new(
                settings.seed,
                u64::from(ms_to_frames_ceil(settings.gap_min_ms)),
                u64::from(ms_to_frames_ceil(settings.gap_max_ms)),
            ),
            duck_gain: 10f32.powf(settings.duck_gain_db / 20.0),
            npc_outranked: settings.npc_outranked,
            ambience_outranked: settings.ambience_outranked,
            overflows: 0,
        }
    }

    /// Open sources (playing, paused or waiting for their turn).
    pub(crate) fn open_sources(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Takes a new source; a muted NPC's source or one beyond capacity is
    /// reported cut at once.
    pub(crate) fn add(&mut self, source: Box<PlaybackSource>, tick: u64, reports: &mut impl MixerReports) {
        if let SourceClass::Npc(npc) = source.spec.class {
            if self.muted.contains(&npc) {
                self.retire(source, tick, true, reports);
                return;
            }
        }
        match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(source),
            None => {
                self.overflows += 1;
                self.retire(source, tick, true, reports);
            }
        }
    }

    /// The writer has written everything.
    pub(crate) fn end_of_stream(&mut self, id: SourceId) {
        for source in self.slots.iter_mut().flatten() {
            if source.id == id {
                source.end_of_stream = true;
            }
        }
    }

    /// Cuts matching sources now: they are absent from the frame being mixed.
    pub(crate) fn cut(&mut self, target: CutTarget, tick: u64, reports: &mut impl MixerReports) {
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(|s| target.matches(s)) {
                if let Some(source) = self.slots[i].take() {
                    self.retire(source, tick, true, reports);
                }
            }
        }
    }

    /// Mutes (cutting its audio and queue) or unmutes an NPC.
    pub(crate) fn set_npc_muted(&mut self, npc: NpcId, muted: bool, tick: u64, reports: &mut impl MixerReports) {
        if muted {
            if !self.muted.contains(&npc) && self.muted.len() < MAX_MUTED_NPCS {
                self.muted.push(npc);
            }
            self.cut(CutTarget::Npc(npc), tick, reports);
        } else {
            self.muted.retain(|&m| m != npc);
        }
    }

    fn retire(&mut self, source: Box<PlaybackSource>, tick: u64, cut: bool, reports: &mut impl MixerReports) {
        if cut {
            source.flags.cut.store(true, Ordering::Relaxed);
        }
        source.flags.done.store(true, Ordering::Relaxed);
        if let (Some(queue), true) = (source.spec.queue, source.has_started()) {
            let next = tick + 1 + self.gaps.next_gap();
            self.set_queue_next(queue, next);
        }
        reports.source_finished(SourceReport {
            source: source.id,
            tick,
            played_ms: source.played_ms(),
            cut,
            underruns: source.underruns,
        });
        reports.dispose(source);
    }

    fn set_queue_next(&mut self, queue: QueueId, next: u64) {
        if let Some(entry) = self.queue_next.iter_mut().find(|(q, _)| *q == queue) {
            entry.1 = next;
        } else if self.queue_next.len() < self.queue_next.capacity() {
            self.queue_next.push((queue, next));
        } else if let Some(oldest) = self.queue_next.iter_mut().min_by_key(|(_, t)| *t) {
            *oldest = (queue, next);
        }
    }

    fn queue_next(&self, queue: QueueId) -> Option<u64> {
        self.queue_next.iter().find(|(q, _)| *q == queue).map(|(_, t)| *t)
    }

    /// May slot `i` play at `tick`? (first of its queue, gap elapsed)
    fn eligible(&self, i: usize, tick: u64) -> bool {
        let Some(source) = self.slots[i].as_ref() else {
            return false;
        };
        let Some(queue) = source.spec.queue else {
            return true;
        };
        let earlier = self
            .slots
            .iter()
            .flatten()
            .any(|other| other.spec.queue == Some(queue) && other.id < source.id);
        if earlier {
            return false;
        }
        if !source.has_started() && source.spec.gap_before {
            if let Some(next) = self.queue_next(queue) {
                return tick >= next;
            }
        }
        true
    }

    fn policy(&self, class: SourceClass) -> Outranked {
        match class {
            SourceClass::Narrator => Outranked::Duck,
            SourceClass::Npc(_) => self.npc_outranked,
            SourceClass::Ambience => self.ambience_outranked,
        }
    }

    /// Mixes frame `tick` into `out` (1920 interleaved i16); returns true if
    /// any source was audible in it.
    pub(crate) fn mix(&mut self, tick: u64, out: &mut [i16], reports: &mut impl MixerReports) -> bool {
        self.bus.fill(0.0);
        let mut audible = false;
        let mut higher_holds_floor = false;
        for priority in (0..=2u8).rev() {
            let mut holds_floor = false;
            for i in 0..self.slots.len() {
                let Some(class) = self.slots[i].as_ref().map(|s| s.spec.class) else {
                    continue;
                };
                if class.priority() != priority || !self.eligible(i, tick) {
                    continue;
                }
                let target = if higher_holds_floor {
                    match self.policy(class) {
                        Outranked::Pause => {
                            holds_floor |= self.slots[i].as_ref().is_some_and(|s| s.has_started());
                            continue;
                        }
                        Outranked::Cut => {
                            if let Some(source) = self.slots[i].take() {
                                self.retire(source, tick, true, reports);
                            }
                            continue;
                        }
                        Outranked::Duck => self.duck_gain,
                    }
                } else {
                    1.0
                };
                let Some(source) = self.slots[i].as_mut() else {
                    continue;
                };
                if !source.has_started() {
                    source.gain = target;
                }
                match source.render(&mut self.scratch) {
                    Render::Audio(_) => {
                        if source.started_tick.is_none() {
                            source.started_tick = Some(tick);
                            reports.source_started(source.id, tick);
                        }
                        let from = source.gain;
                        let step = (target - from) / OUTPUT_FRAME_LEN as f32;
                        let user = source.spec.gain;
                        for (n, (bus, s)) in self
                            .bus
                            .chunks_exact_mut(2)
                            .zip(self.scratch.chunks_exact(2))
                            .enumerate()
                        {
                            let g = (from + step * (n + 1) as f32) * user;
                            bus[0] += s[0] * g;
                            bus[1] += s[1] * g;
                        }
                        source.gain = target;
                        audible = true;
                        holds_floor = true;
                        if source.is_played_out() {
                            if let Some(done) = self.slots[i].take() {
                                self.retire(done, tick, false, reports);
                            }
                        }
                    }
                    Render::Starved => {
                        if source.has_started() {
                            source.underruns += 1;
                            holds_floor = true;
                        }
                    }
                    Render::Finished => {
                        if let Some(done) = self.slots[i].take() {
                            self.retire(done, tick, false, reports);
                        }
                    }
                }
            }
            higher_holds_floor |= holds_floor;
        }
        if audible {
            self.limiter.process(&self.bus, out);
        } else {
            self.limiter.process_silence(out);
        }
        audible
    }
}
