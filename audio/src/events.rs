//! What the tick thread tells the async side: events (VAD decisions, source
//! reports, latency stamps) and the utterance audio stream, each through its
//! own SPSC ring of fixed-size records (nothing allocates on the tick).
//!
//! Utterance audio leaves the thread as it is decided, frame by frame
//! (pre-roll first), so streaming STT can start before the speaker stops;
//! [`UtteranceAssembler`] collects whole utterances for batch STT.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use ringbuf::traits::Consumer;
use ringbuf::HeapCons;

use crate::frame::{InputFrame, SourceId, SpeakerId, UtteranceId};
use crate::mixer::source::PlaybackSource;
use crate::mixer::SourceReport;
use crate::segmenter::EndReason;

/// The end of an utterance. Times are in milliseconds of the speaker's stream
/// (since the speaker was attached; synthetic silence included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechEnd {
    /// Who spoke.
    pub speaker: SpeakerId,
    /// Which utterance.
    pub utterance: UtteranceId,
    /// Engine tick at which the end was decided (latency stamp).
    pub tick: u64,
    /// Start of the first voiced frame (pre-roll not included).
    pub start_ms: u64,
    /// End of the last voiced frame: when the voice actually stopped.
    pub voice_end_ms: u64,
    /// When the end-of-speech decision was taken.
    pub end_ms: u64,
    /// Why it ended.
    pub reason: EndReason,
    /// Audio frames of this utterance lost to a full utterance ring.
    pub frames_dropped: u32,
}

impl SpeechEnd {
    /// The VAD's own detection delay: true end of voice → end decision.
    pub fn detection_delay_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.voice_end_ms)
    }
}

/// One thing the tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEvent {
    /// Speech confirmed (after the onset frames).
    SpeechStarted {
        /// Who speaks.
        speaker: SpeakerId,
        /// The new utterance.
        utterance: UtteranceId,
        /// Engine tick of the decision.
        tick: u64,
        /// Stream time of the first voiced frame.
        start_ms: u64,
    },
    /// Provisional: the voice paused (the utterance may still go on).
    VoicingStopped {
        /// Who paused.
        speaker: SpeakerId,
        /// The open utterance.
        utterance: UtteranceId,
        /// Engine tick of the decision.
        tick: u64,
        /// Stream time at which the voice stopped.
        voice_end_ms: u64,
    },
    /// The voice came back before the hangover ran out.
    VoicingResumed {
        /// Who resumed.
        speaker: SpeakerId,
        /// The open utterance.
        utterance: UtteranceId,
        /// Engine tick of the decision.
        tick: u64,
    },
    /// The utterance is over; its last audio chunk is in the utterance ring.
    SpeechEnded(SpeechEnd),
    /// Latency stamp: the source's first audio went out in frame `tick`.
    SourceStarted {
        /// The source.
        source: SourceId,
        /// Tick of the first output frame carrying its audio.
        tick: u64,
    },
    /// The source ended (played out or cut), with the duration heard.
    SourceFinished(SourceReport),
}

/// Whether an utterance chunk carries audio or closes the utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// 20 ms of the utterance's audio.
    Audio,
    /// The utterance is complete (no samples).
    End,
}

/// One record of the utterance audio ring.
#[derive(Clone, Copy)]
pub struct UtteranceChunk {
    /// Who spoke.
    pub speaker: SpeakerId,
    /// Which utterance.
    pub utterance: UtteranceId,
    /// Audio or end marker.
    pub kind: ChunkKind,
    /// 20 ms of 16 kHz mono (zeros for an end marker).
    pub samples: InputFrame,
}

impl std::fmt::Debug for UtteranceChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtteranceChunk")
            .field("speaker", &self.speaker)
            .field("utterance", &self.utterance)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The async side's end of the event ring. Poll it every few milliseconds;
/// polling also drops finished sources handed back by the tick.
pub struct EventReceiver {
    pub(crate) cons: HeapCons<EngineEvent>,
    pub(crate) disposal: Arc<ArrayQueue<Box<PlaybackSource>>>,
}

impl std::fmt::Debug for EventReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReceiver").finish_non_exhaustive()
    }
}

impl EventReceiver {
    /// The next event, if any (never blocks).
    pub fn try_recv(&mut self) -> Option<EngineEvent> {
        while self.disposal.pop().is_some() {}
        self.cons.try_pop()
    }

    /// Takes every pending event.
    pub fn drain(&mut self) -> Vec<EngineEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.try_recv() {
            out.push(e);
        }
        out
    }
}

/// The async side's end of the utterance audio ring (typically the STT task).
pub struct UtteranceReceiver {
    pub(crate) cons: HeapCons<UtteranceChunk>,
}

impl std::fmt::Debug for UtteranceReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtteranceReceiver").finish_non_exhaustive()
    }
}

impl UtteranceReceiver {
    /// The next chunk, if any (never blocks).
    pub fn try_recv(&mut self) -> Option<UtteranceChunk> {
        self.cons.try_pop()
    }
}

/// A complete utterance, assembled off the realtime thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    /// Who spoke.
    pub speaker: SpeakerId,
    /// Which utterance.
    pub id: UtteranceId,
    /// 16 kHz mono PCM, pre-roll included, up to the end decision.
    pub samples: Vec<i16>,
}

/// Collects utterance chunks into whole utterances (for batch STT).
#[derive(Debug, Default)]
pub struct UtteranceAssembler {
    open: HashMap<UtteranceId, Utterance>,
}

impl UtteranceAssembler {
    /// An empty assembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a chunk; returns the utterance when its end marker arrives.
    pub fn push(&mut self, chunk: &UtteranceChunk) -> Option<Utterance> {
        match chunk.kind {
            ChunkKind::Audio => {
                self.open
                    .entry(chunk.utterance)
                    .or_insert_with(|| Utterance {
                        speaker: chunk.speaker,
                        id: chunk.utterance,
                        samples: Vec::new(),
                    })
                    .samples
                    .extend_from_slice(&chunk.samples);
                None
            }
            ChunkKind::End => Some(self.open.remove(&chunk.utterance).unwrap_or(Utterance {
                speaker: chunk.speaker,
                id: chunk.utterance,
                samples: Vec::new(),
            })),
        }
    }
}
