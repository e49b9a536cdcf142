//! The async side's control of a running session: attaching speakers (their
//! input rings), opening playback sources, and commands (cut, mute, stop)
//! sent through a lock-free queue that the tick drains at its start, so a
//! command takes effect in the very next output frame.
//!
//! Locks here are only ever taken by async-side callers (handing out speaker
//! producers); the tick thread touches nothing but lock-free queues.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_queue::ArrayQueue;
use ringbuf::traits::{Observer, Producer};
use ringbuf::HeapProd;

use crate::error::AudioError;
use crate::frame::{NpcId, SourceId, SpeakerId, INPUT_FRAME_SAMPLES};
use crate::mixer::source::PlaybackSource;
use crate::mixer::{CutTarget, SourceSpec, SourceWriter};
use crate::stats::{EngineStats, StatsSnapshot};

/// A command for the tick thread.
pub(crate) enum Command {
    AttachSpeaker { slot: usize, speaker: SpeakerId },
    DetachSpeaker { slot: usize },
    StartSource(Box<PlaybackSource>),
    FinishSource(SourceId),
    Cut(CutTarget),
    SetNpcMuted(NpcId, bool),
    SetBotSpeaker(Option<SpeakerId>),
    Shutdown,
}

/// Async-side bookkeeping of speaker slots.
#[derive(Default)]
struct Speakers {
    /// Producer of each slot's input ring while the slot is free.
    producers: Vec<Option<HeapProd<i16>>>,
    attached: Vec<SpeakerId>,
    bot: Option<SpeakerId>,
}

/// State shared between the control handles and the tick.
pub(crate) struct Shared {
    pub(crate) commands: ArrayQueue<Command>,
    pub(crate) disposal: Arc<ArrayQueue<Box<PlaybackSource>>>,
    /// Speaker slots the tick has released (ring cleared, state reset).
    pub(crate) free_slots: ArrayQueue<usize>,
    speakers: Mutex<Speakers>,
    pub(crate) stats: EngineStats,
    next_source: AtomicU64,
    pub(crate) stopped: AtomicBool,
    source_ring_ms: u32,
    max_speakers: usize,
}

impl Shared {
    pub(crate) fn new(
        command_capacity: usize,
        max_sources: usize,
        producers: Vec<HeapProd<i16>>,
        bot: Option<SpeakerId>,
        source_ring_ms: u32,
    ) -> Self {
        let max_speakers = producers.len();
        let free_slots = ArrayQueue::new(max_speakers.max(1));
        for slot in 0..max_speakers {
            // Cannot fail: the queue holds exactly max_speakers entries.
            let _ = free_slots.push(slot);
        }
        Self {
            commands: ArrayQueue::new(command_capacity),
            // Every box is either queued as a command, in a mixer slot or
            // here, so this capacity is never exceeded.
            disposal: Arc::new(ArrayQueue::new(command_capacity + max_sources)),
            free_slots,
            speakers: Mutex::new(Speakers {
                producers: producers.into_iter().map(Some).collect(),
                attached: Vec::new(),
                bot,
            }),
            stats: EngineStats::default(),
            next_source: AtomicU64::new(1),
            stopped: AtomicBool::new(false),
            source_ring_ms,
            max_speakers,
        }
    }

    fn speakers(&self) -> MutexGuard<'_, Speakers> {
        // A panic while holding this lock cannot leave Speakers inconsistent
        // in a way that matters more than refusing service would.
        self.speakers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, command: Command) -> Result<(), AudioError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(AudioError::EngineStopped);
        }
        self.commands.push(command).map_err(|_| AudioError::CommandQueueFull)
    }

    fn collect_garbage(&self) {
        while self.disposal.pop().is_some() {}
    }
}

/// Sends `FinishSource` when a writer is dropped.
pub(crate) struct FinishOnDrop(Arc<Shared>);

impl FinishOnDrop {
    pub(crate) fn finish(self, id: SourceId) {
        let _ = self.0.send(Command::FinishSource(id));
    }
}

/// Controls a running session from the async side. Cheap to clone; every
/// method returns at once.
#[derive(Clone)]
pub struct SessionControl {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionControl").finish_non_exhaustive()
    }
}

impl SessionControl {
    /// Gives the transport an input for a speaker (claims a speaker slot; the
    /// tick resets that slot's VAD before the first frame). The bot's own id
    /// is refused: it never hears itself.
    pub fn attach_speaker(&self, speaker: SpeakerId) -> Result<SpeakerInput, AudioError> {
        let mut speakers = self.shared.speakers();
        if speakers.bot == Some(speaker) {
            return Err(AudioError::OwnSpeaker(speaker));
        }
        if speakers.attached.contains(&speaker) {
            return Err(AudioError::SpeakerAlreadyAttached(speaker));
        }
        let slot = self.shared.free_slots.pop().ok_or(AudioError::NoFreeSpeakerSlot {
            max: self.shared.max_speakers,
        })?;
        let Some(prod) = speakers.producers.get_mut(slot).and_then(Option::take) else {
            return Err(AudioError::NoFreeSpeakerSlot {
                max: self.shared.max_speakers,
            });
        };
        if let Err(e) = self.shared.send(Command::AttachSpeaker { slot, speaker }) {
            speakers.producers[slot] = Some(prod);
            let _ = self.shared.free_slots.push(slot);
            return Err(e);
        }
        speakers.attached.push(speaker);
        Ok(SpeakerInput {
            speaker,
            slot,
            prod: Some(prod),
            shared: Arc::clone(&self.shared),
        })
    }

    /// Opens a playback source; write its PCM through the returned writer
    /// and call [`finish_source`](Self::finish_source) (or drop the writer)
    /// when the stream is complete.
    pub fn open_source(&self, spec: SourceSpec) -> Result<SourceWriter, AudioError> {
        self.shared.collect_garbage();
        let id = SourceId(self.shared.next_source.fetch_add(1, Ordering::Relaxed));
        let channels = usize::from(spec.channels);
        let (source, prod, flags) = PlaybackSource::create(id, spec, self.shared.source_ring_ms)?;
        self.shared.send(Command::StartSource(source))?;
        Ok(SourceWriter {
            id,
            channels,
            prod,
            flags,
            on_drop: Some(FinishOnDrop(Arc::clone(&self.shared))),
        })
    }

    /// Declares the writer's stream complete: the source plays out what was
    /// written and then reports `SourceFinished`.
    pub fn finish_source(&self, mut writer: SourceWriter) -> Result<(), AudioError> {
        writer.on_drop = None;
        self.shared.send(Command::FinishSource(writer.id))
    }

    /// Cuts one source (queued or playing) in the next output frame.
    pub fn cut_source(&self, source: SourceId) -> Result<(), AudioError> {
        self.shared.send(Command::Cut(CutTarget::Source(source)))
    }

    /// Cuts everything an NPC is saying or has queued, in the next frame.
    pub fn cut_npc(&self, npc: NpcId) -> Result<(), AudioError> {
        self.shared.send(Command::Cut(CutTarget::Npc(npc)))
    }

    /// Cuts every source, in the next frame.
    pub fn cut_all(&self) -> Result<(), AudioError> {
        self.shared.send(Command::Cut(CutTarget::All))
    }

    /// Mutes an NPC (cuts its audio and queue now; its new sources are cut
    /// on arrival) or unmutes it.
    pub fn set_npc_muted(&self, npc: NpcId, muted: bool) -> Result<(), AudioError> {
        self.shared.send(Command::SetNpcMuted(npc, muted))
    }

    /// Sets the bot's own speaker id (never listened to).
    pub fn set_bot_speaker(&self, speaker: Option<SpeakerId>) -> Result<(), AudioError> {
        self.shared.speakers().bot = speaker;
        self.shared.send(Command::SetBotSpeaker(speaker))
    }

    /// Asks the tick thread to stop after the current tick.
    pub fn shutdown(&self) -> Result<(), AudioError> {
        self.shared.send(Command::Shutdown)
    }

    /// True once the tick loop has ended.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// A copy of the engine's counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }
}

/// The transport's input for one speaker: 16 kHz mono PCM, normally one
/// 20 ms frame per packet. Dropping it detaches the speaker (an open
/// utterance ends) and frees the slot.
pub struct SpeakerInput {
    speaker: SpeakerId,
    slot: usize,
    prod: Option<HeapProd<i16>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SpeakerInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeakerInput")
            .field("speaker", &self.speaker)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl SpeakerInput {
    /// The speaker this input belongs to.
    pub fn speaker(&self) -> SpeakerId {
        self.speaker
    }

    /// Pushes one 20 ms frame (exactly 320 samples). A full ring drops the
    /// frame with [`AudioError::InputFull`].
    pub fn push_frame(&mut self, frame: &[i16]) -> Result<(), AudioError> {
        if frame.is_empty() {
            return Err(AudioError::EmptyFrame { what: "speaker frame" });
        }
        if frame.len() != INPUT_FRAME_SAMPLES {
            return Err(AudioError::FrameLength {
                what: "speaker frame",
                expected: INPUT_FRAME_SAMPLES,
                got: frame.len(),
            });
        }
        self.push_samples(frame).map(|_| ())
    }

    /// Pushes any whole number of samples (e.g. 10 or 40 ms packets); all
    /// or nothing.
    pub fn push_samples(&mut self, samples: &[i16]) -> Result<usize, AudioError> {
        if samples.is_empty() {
            return Err(AudioError::EmptyFrame { what: "speaker packet" });
        }
        let Some(prod) = self.prod.as_mut() else {
            return Err(AudioError::EngineStopped);
        };
        if prod.vacant_len() < samples.len() {
            EngineStats::add(&self.shared.stats.input_overflows, 1);
            return Err(AudioError::InputFull(self.speaker));
        }
        Ok(prod.push_slice(samples))
    }
}

impl Drop for SpeakerInput {
    fn drop(&mut self) {
        let mut speakers = self.shared.speakers();
        speakers.attached.retain(|&s| s != self.speaker);
        if let Some(slot) = speakers.producers.get_mut(self.slot) {
            *slot = self.prod.take();
        }
        drop(speakers);
        if self.shared.send(Command::DetachSpeaker { slot: self.slot }).is_err() {
            EngineStats::add(&self.shared.stats.leaked_speaker_slots, 1);
        }
    }
}
