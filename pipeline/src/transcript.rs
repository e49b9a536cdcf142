//! The session transcript: every final utterance and every delivered NPC
//! line, written through a [`TranscriptSink`] as it happens, so a crash
//! loses at most the line in flight.

use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::roster::NpcId;

/// What kind of line an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A player's (or the DM's) final utterance.
    Utterance,
    /// An NPC line heard completely.
    Spoke,
    /// An NPC line cut off; the text is what was heard.
    Cut,
}

impl EntryKind {
    /// Lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Utterance => "utterance",
            EntryKind::Spoke => "spoke",
            EntryKind::Cut => "cut",
        }
    }
}

/// One line of the transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptEntry {
    /// The voice session.
    pub session_id: String,
    /// Who spoke: a Discord user id, or the NPC's id for NPC lines.
    pub speaker_id: String,
    /// Display name of the speaker.
    pub speaker_name: String,
    /// Set for NPC lines.
    pub npc_id: Option<NpcId>,
    /// What was said (for NPC lines: what was heard).
    pub text: String,
    /// When the line started.
    pub started_at: SystemTime,
    /// When it ended.
    pub ended_at: SystemTime,
    /// Utterance, spoken line or cut line.
    pub kind: EntryKind,
}

/// A transcript line could not be stored.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot store transcript line: {0}")]
pub struct TranscriptError(pub String);

/// Where transcript lines go (the gateway's store, a file, memory).
#[async_trait]
pub trait TranscriptSink: Send + Sync {
    /// Stores one line; called as each line happens.
    async fn append(&self, entry: &TranscriptEntry) -> Result<(), TranscriptError>;
}

/// Keeps the transcript in memory.
#[derive(Debug, Default)]
pub struct MemoryTranscript {
    entries: Mutex<Vec<TranscriptEntry>>,
}

impl MemoryTranscript {
    /// A copy of every line so far.
    pub fn entries(&self) -> Vec<TranscriptEntry> {
        self.entries.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl TranscriptSink for MemoryTranscript {
    async fn append(&self, entry: &TranscriptEntry) -> Result<(), TranscriptError> {
        self.entries
            .lock()
            .map_err(|_| TranscriptError("transcript lock poisoned".into()))?
            .push(entry.clone());
        Ok(())
    }
}
