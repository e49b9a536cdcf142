//! What the NPC brain needs from the audio mixer: lines of speech to play,
//! cuts, and reports of what was actually heard.
//!
//! The worker implements [`Playback`] over the realtime mixer; tests use a
//! simulated one. A line is one NPC reply (all its sentences) or one
//! narration: the brain writes PCM as TTS produces it, then finishes the
//! line; the mixer reports when its first frame went out and, at the end,
//! how much was played and whether it was cut.

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::roster::NpcId;

/// Mixer priority of a line (SPEC §7: narrator > NPC speech > ambience).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Background sound, ducked under speech.
    Ambience,
    /// An NPC speaking.
    Npc,
    /// Narration (voice recap), above NPC speech.
    Narrator,
}

/// What the mixer reports when a line is over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineReport {
    /// Milliseconds of audio written to the line.
    pub written_ms: f64,
    /// Milliseconds actually played (handed to the transport).
    pub played_ms: f64,
    /// Whether the line was cut before its end.
    pub cut: bool,
}

/// Why a line could not be opened or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlaybackError {
    /// The session's audio engine is gone.
    #[error("the audio engine has stopped")]
    Stopped,
    /// The line was cut; nothing more will be played.
    #[error("the line was cut")]
    Cut,
    /// The audio cannot be played (e.g. an unsupported sample rate).
    #[error("cannot play this audio: {0}")]
    Unsupported(String),
    /// Every mixer slot is in use.
    #[error("the mixer has no free source slot")]
    Busy,
}

/// Receives one line's PCM. Dropping the writer ends the line like
/// [`LineWriter::finish`]: what was written still plays.
#[async_trait]
pub trait LineWriter: Send {
    /// Appends interleaved samples; waits while the mixer's buffer is full
    /// (back-pressure). Fails with [`PlaybackError::Cut`] once the line is cut.
    async fn write(&mut self, samples: &[i16]) -> Result<(), PlaybackError>;

    /// No more audio: the line ends when what was written has played.
    fn finish(self: Box<Self>);
}

/// Notifications about one line.
#[derive(Debug)]
pub struct LineMonitor {
    /// When the line's first frame was handed to the transport.
    pub first_frame: oneshot::Receiver<Instant>,
    /// The final report.
    pub done: oneshot::Receiver<LineReport>,
}

/// The mixer, as the brain sees it.
pub trait Playback: Send + Sync {
    /// Opens a line of `sample_rate`/`channels` audio for `npc` (or the narrator).
    fn open_line(
        &self,
        npc: Option<&NpcId>,
        priority: Priority,
        sample_rate: u32,
        channels: u16,
    ) -> Result<(Box<dyn LineWriter>, LineMonitor), PlaybackError>;

    /// Cuts `npc`'s current line and drops its queued audio, effective within one frame.
    fn cut_npc(&self, npc: &NpcId);

    /// Cuts everything.
    fn cut_all(&self);
}
