//! What a session leaves behind: transcript lines and turn results (as
//! workers report them), recaps (text and cached narrated audio) and player
//! feedback.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::tenants::for_update;
use super::{from_json, to_json, with_pool, with_tx, Ctx, StoreError, TenantStore};
use crate::ids::{DiscordId, SessionId};

/// Longest feedback comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;
const MAX_TRANSCRIPT_TEXT_CHARS: usize = 20_000;

/// What happened to an NPC turn (mirrors the gRPC `TurnOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnOutcome {
    /// Played to the end.
    Spoke,
    /// Interrupted while playing.
    Cut,
    /// A provider failed; nothing played.
    Failed,
    /// Abandoned before any audio played.
    Yielded,
    /// Addressed no NPC.
    NoTarget,
}

impl TurnOutcome {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spoke => "spoke",
            Self::Cut => "cut",
            Self::Failed => "failed",
            Self::Yielded => "yielded",
            Self::NoTarget => "no_target",
        }
    }
}

impl fmt::Display for TurnOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TurnOutcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spoke" => Ok(Self::Spoke),
            "cut" => Ok(Self::Cut),
            "failed" => Ok(Self::Failed),
            "yielded" => Ok(Self::Yielded),
            "no_target" => Ok(Self::NoTarget),
            other => Err(format!("unknown turn outcome {other:?}")),
        }
    }
}

/// One transcript line: a final player utterance or an NPC line as played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTranscriptLine {
    /// Discord user id of the player, or the NPC id.
    pub speaker_id: String,
    /// Display name of the speaker.
    pub speaker_name: String,
    /// The NPC's id for NPC lines.
    pub npc_id: Option<String>,
    /// What was said (for cut NPC lines: what was played).
    pub text: String,
    /// Speech start, unix ms.
    pub start_ms: i64,
    /// Speech end, unix ms.
    pub end_ms: i64,
    /// For NPC lines: spoke or cut.
    pub outcome: Option<TurnOutcome>,
    /// The turn the line belongs to.
    pub turn_id: Option<String>,
    /// Dictated by the DM rather than generated.
    pub puppet: bool,
}

/// A stored transcript line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptEntry {
    /// Insertion order within the database.
    pub id: i64,
    /// The session.
    pub session_id: SessionId,
    /// The worker's event sequence number, when it came from one.
    pub sequence: Option<i64>,
    /// The line.
    pub line: NewTranscriptLine,
}

/// The result of one NPC turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRecord {
    /// Turn id, unique within the session.
    pub turn_id: String,
    /// The NPC that answered (or should have).
    pub npc_id: Option<String>,
    /// Its name.
    pub npc_name: Option<String>,
    /// What happened.
    pub outcome: TurnOutcome,
    /// Stage latencies in ms since the end of the player's speech, by stage
    /// name (`vad_end_of_speech_ms`, `stt_final_ms`, …); absent stages are
    /// missing.
    pub latencies: BTreeMap<String, f64>,
    /// When the player's voice stopped, unix ms.
    pub speech_end_ms: Option<i64>,
    /// The player whose utterance started the turn.
    pub speaker_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// NPC audio played, ms.
    pub played_ms: i64,
    /// When the event happened, unix ms.
    pub at_ms: i64,
}

/// One session event as persisted by [`TenantStore::record_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEventRecord {
    /// A transcript line.
    Transcript(NewTranscriptLine),
    /// A turn result.
    Turn(TurnRecord),
    /// An NPC was muted or unmuted (advances the sequence; not stored).
    NpcState {
        /// The NPC's id.
        npc_id: String,
        /// Whether it is muted now.
        muted: bool,
    },
}

/// Narrated recap audio: PCM s16le, interleaved.
#[derive(Clone, PartialEq, Eq)]
pub struct RecapAudio {
    /// The samples.
    pub pcm: Vec<u8>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels (1 or 2).
    pub channels: u16,
}

impl fmt::Debug for RecapAudio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecapAudio")
            .field("bytes", &self.pcm.len())
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .finish()
    }
}

/// A session's cached recap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recap {
    /// The session.
    pub session_id: SessionId,
    /// The summary text.
    pub text: String,
    /// The narrated audio, once synthesised.
    pub audio: Option<RecapAudio>,
    /// Created, unix ms.
    pub created_at: i64,
    /// Last changed, unix ms.
    pub updated_at: i64,
}

/// The four `/feedback` ratings, each 1..=5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackRatings {
    /// Voice latency.
    pub voice_latency: u8,
    /// NPC personality.
    pub npc_personality: u8,
    /// Memory accuracy.
    pub memory_accuracy: u8,
    /// DM workflow.
    pub dm_workflow: u8,
}

impl FeedbackRatings {
    /// Ratings clamped to 1..=5 (SPEC §2).
    pub fn clamped(voice_latency: i64, npc_personality: i64, memory_accuracy: i64, dm_workflow: i64) -> Self {
        let clamp = |v: i64| u8::try_from(v.clamp(1, 5)).unwrap_or(1);
        Self {
            voice_latency: clamp(voice_latency),
            npc_personality: clamp(npc_personality),
            memory_accuracy: clamp(memory_accuracy),
            dm_workflow: clamp(dm_workflow),
        }
    }

    /// The mean of the four ratings.
    pub fn average(&self) -> f64 {
        f64::from(
            u16::from(self.voice_latency)
                + u16::from(self.npc_personality)
                + u16::from(self.memory_accuracy)
                + u16::from(self.dm_workflow),
        ) / 4.0
    }
}

/// A player's feedback on a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// Its id.
    pub id: String,
    /// The session.
    pub session_id: SessionId,
    /// The player.
    pub user_id: DiscordId,
    /// The ratings.
    pub ratings: FeedbackRatings,
    /// Free text (≤ 1000 characters).
    pub comment: String,
    /// Created, unix ms.
    pub created_at: i64,
    /// Last changed, unix ms.
    pub updated_at: i64,
}

fn corrupt(what: &'static str, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        message: message.to_string(),
    }
}

#[derive(sqlx::FromRow)]
struct TranscriptRow {
    id: i64,
    session_id: String,
    sequence: Option<i64>,
    speaker_id: String,
    speaker_name: String,
    npc_id: Option<String>,
    text: String,
    start_ms: i64,
    end_ms: i64,
    outcome: Option<String>,
    turn_id: Option<String>,
    puppet: bool,
}

const TRANSCRIPT_COLUMNS: &str =
    "id, session_id, sequence, speaker_id, speaker_name, npc_id, text, start_ms, end_ms, outcome, turn_id, puppet";

impl TranscriptRow {
    fn into_entry(self) -> Result<TranscriptEntry, StoreError> {
        Ok(TranscriptEntry {
            id: self.id,
            session_id: SessionId::parse(&self.session_id).map_err(|e| corrupt("transcript session_id", e))?,
            sequence: self.sequence,
            line: NewTranscriptLine {
                speaker_id: self.speaker_id,
                speaker_name: self.speaker_name,
                npc_id: self.npc_id,
                text: self.text,
                start_ms: self.start_ms,
                end_ms: self.end_ms,
                outcome: self
                    .outcome
                    .map(|o| o.parse())
                    .transpose()
                    .map_err(|e: String| corrupt("transcript outcome", e))?,
                turn_id: self.turn_id,
                puppet: self.puppet,
            },
        })
    }
}

#[derive(sqlx::FromRow)]
struct TurnRow {
    turn_id: String,
    npc_id: Option<String>,
    npc_name: Option<String>,
    outcome: String,
    latencies: String,
    speech_end_ms: Option<i64>,
    speaker_id: Option<String>,
    error: Option<String>,
    played_ms: i64,
    at_ms: i64,
}

#[derive(sqlx::FromRow)]
struct RecapRow {
    session_id: String,
    text: String,
    audio: Option<Vec<u8>>,
    audio_sample_rate: Option<i64>,
    audio_channels: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl RecapRow {
    fn into_recap(self) -> Result<Recap, StoreError> {
        let audio = match (self.audio, self.audio_sample_rate, self.audio_channels) {
            (Some(pcm), Some(rate), Some(channels)) => Some(RecapAudio {
                pcm,
                sample_rate: u32::try_from(rate).map_err(|e| corrupt("recap sample rate", e))?,
                channels: u16::try_from(channels).map_err(|e| corrupt("recap channels", e))?,
            }),
            _ => None,
        };
        Ok(Recap {
            session_id: SessionId::parse(&self.session_id).map_err(|e| corrupt("recap session_id", e))?,
            text: self.text,
            audio,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct FeedbackRow {
    id: String,
    session_id: String,
    user_id: String,
    voice_latency: i64,
    npc_personality: i64,
    memory_accuracy: i64,
    dm_workflow: i64,
    comment: String,
    created_at: i64,
    updated_at: i64,
}

const FEEDBACK_COLUMNS: &str =
    "id, session_id, user_id, voice_latency, npc_personality, memory_accuracy, dm_workflow, comment, created_at, updated_at";

impl FeedbackRow {
    fn into_feedback(self) -> Result<Feedback, StoreError> {
        Ok(Feedback {
            id: self.id,
            session_id: SessionId::parse(&self.session_id).map_err(|e| corrupt("feedback session_id", e))?,
            user_id: DiscordId::parse(&self.user_id).map_err(|e| corrupt("feedback user_id", e))?,
            ratings: FeedbackRatings::clamped(
                self.voice_latency,
                self.npc_personality,
                self.memory_accuracy,
                self.dm_workflow,
            ),
            comment: self.comment,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn check_line(line: &NewTranscriptLine) -> Result<(), StoreError> {
    if line.text.chars().count() > MAX_TRANSCRIPT_TEXT_CHARS {
        return Err(StoreError::invalid(
            "transcript text",
            format!("longer than {MAX_TRANSCRIPT_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Maps a foreign-key failure (no such session for this tenant) to NotFound.
fn session_missing(error: StoreError, session: &SessionId) -> StoreError {
    if error.is_foreign_key_violation() {
        StoreError::NotFound(format!("session {session}"))
    } else {
        error
    }
}

const INSERT_TRANSCRIPT: &str =
    "INSERT INTO transcript_entries (tenant_id, session_id, sequence, speaker_id, speaker_name, npc_id, \
     text, start_ms, end_ms, outcome, turn_id, puppet) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

const INSERT_TURN: &str = "INSERT INTO turn_results (tenant_id, session_id, sequence, turn_id, npc_id, npc_name, outcome, latencies, \
     speech_end_ms, speaker_id, error, played_ms, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

impl TenantStore {
    /// Persists one worker event of `session` unless its `sequence` is at or
    /// below the last one persisted for that session (a resend): `Some(true)`
    /// when stored, `Some(false)` for a duplicate, `None` for an unknown
    /// session. Events of ended sessions are still stored (a worker flushes
    /// its last lines after the stop).
    pub async fn record_event(
        &self,
        session: &SessionId,
        sequence: u64,
        event: &SessionEventRecord,
    ) -> Result<Option<bool>, StoreError> {
        if let SessionEventRecord::Transcript(line) = event {
            check_line(line)?;
        }
        let sequence = i64::try_from(sequence).map_err(|_| StoreError::invalid("event sequence", "too large"))?;
        let latencies = match event {
            SessionEventRecord::Turn(turn) => to_json("turn latencies", &turn.latencies)?,
            _ => String::new(),
        };
        let lock = format!(
            "SELECT last_event_sequence FROM sessions WHERE tenant_id = $1 AND id = $2{}",
            for_update(self.backend())
        );
        let outcome = with_tx!(&self.db, "recording a session event", |tx, backend| {
            let last: Option<i64> = sqlx::query_scalar(&lock)
                .bind(self.tid())
                .bind(session.as_str())
                .fetch_optional(&mut *tx)
                .await
                .ctx("recording a session event")?;
            match last {
                None => None,
                Some(last) if sequence <= last => Some(false),
                Some(_) => {
                    sqlx::query("UPDATE sessions SET last_event_sequence = $3 WHERE tenant_id = $1 AND id = $2")
                        .bind(self.tid())
                        .bind(session.as_str())
                        .bind(sequence)
                        .execute(&mut *tx)
                        .await
                        .ctx("recording a session event")?;
                    match event {
                        SessionEventRecord::Transcript(line) => {
                            sqlx::query(INSERT_TRANSCRIPT)
                                .bind(self.tid())
                                .bind(session.as_str())
                                .bind(Some(sequence))
                                .bind(&line.speaker_id)
                                .bind(&line.speaker_name)
                                .bind(line.npc_id.as_deref())
                                .bind(&line.text)
                                .bind(line.start_ms)
                                .bind(line.end_ms)
                                .bind(line.outcome.map(TurnOutcome::as_str))
                                .bind(line.turn_id.as_deref())
                                .bind(line.puppet)
                                .execute(&mut *tx)
                                .await
                                .ctx("recording a transcript line")?;
                        }
                        SessionEventRecord::Turn(turn) => {
                            sqlx::query(INSERT_TURN)
                                .bind(self.tid())
                                .bind(session.as_str())
                                .bind(Some(sequence))
                                .bind(&turn.turn_id)
                                .bind(turn.npc_id.as_deref())
                                .bind(turn.npc_name.as_deref())
                                .bind(turn.outcome.as_str())
                                .bind(&latencies)
                                .bind(turn.speech_end_ms)
                                .bind(turn.speaker_id.as_deref())
                                .bind(turn.error.as_deref())
                                .bind(turn.played_ms)
                                .bind(turn.at_ms)
                                .execute(&mut *tx)
                                .await
                                .ctx("recording a turn result")?;
                        }
                        SessionEventRecord::NpcState { .. } => {}
                    }
                    Some(true)
                }
            }
        });
        Ok(outcome)
    }

    /// Appends a transcript line that did not come from a worker event.
    /// [`StoreError::NotFound`] if the session is not this tenant's.
    pub async fn append_transcript(&self, session: &SessionId, line: &NewTranscriptLine) -> Result<(), StoreError> {
        check_line(line)?;
        with_pool!(&self.db, |pool| {
            sqlx::query(INSERT_TRANSCRIPT)
                .bind(self.tid())
                .bind(session.as_str())
                .bind(None::<i64>)
                .bind(&line.speaker_id)
                .bind(&line.speaker_name)
                .bind(line.npc_id.as_deref())
                .bind(&line.text)
                .bind(line.start_ms)
                .bind(line.end_ms)
                .bind(line.outcome.map(TurnOutcome::as_str))
                .bind(line.turn_id.as_deref())
                .bind(line.puppet)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .ctx("appending a transcript line")
        .map_err(|e| session_missing(e, session))?;
        Ok(())
    }

    /// The session's transcript in order, at most `limit` lines from the start.
    pub async fn transcript(&self, session: &SessionId, limit: u32) -> Result<Vec<TranscriptEntry>, StoreError> {
        let sql = format!(
            "SELECT {TRANSCRIPT_COLUMNS} FROM transcript_entries WHERE tenant_id = $1 AND session_id = $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<TranscriptRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, TranscriptRow>(&sql)
                .bind(self.tid())
                .bind(session.as_str())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .ctx("reading a transcript")?;
        rows.into_iter().map(TranscriptRow::into_entry).collect()
    }

    /// How many transcript lines the session has.
    pub async fn transcript_count(&self, session: &SessionId) -> Result<i64, StoreError> {
        with_pool!(&self.db, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM transcript_entries WHERE tenant_id = $1 AND session_id = $2")
                .bind(self.tid())
                .bind(session.as_str())
                .fetch_one(pool)
                .await
        })
        .ctx("counting transcript lines")
    }

    /// The session's turn results in order, at most `limit`.
    pub async fn turn_results(&self, session: &SessionId, limit: u32) -> Result<Vec<TurnRecord>, StoreError> {
        let rows: Vec<TurnRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, TurnRow>(
                "SELECT turn_id, npc_id, npc_name, outcome, latencies, speech_end_ms, speaker_id, error, played_ms, at_ms \
                 FROM turn_results WHERE tenant_id = $1 AND session_id = $2 ORDER BY id LIMIT $3",
            )
            .bind(self.tid())
            .bind(session.as_str())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })
        .ctx("reading turn results")?;
        rows.into_iter()
            .map(|row| {
                Ok(TurnRecord {
                    turn_id: row.turn_id,
                    npc_id: row.npc_id,
                    npc_name: row.npc_name,
                    outcome: row.outcome.parse().map_err(|e: String| corrupt("turn outcome", e))?,
                    latencies: from_json("turn latencies", &row.latencies)?,
                    speech_end_ms: row.speech_end_ms,
                    speaker_id: row.speaker_id,
                    error: row.error,
                    played_ms: row.played_ms,
                    at_ms: row.at_ms,
                })
            })
            .collect()
    }

    /// The highest event sequence persisted for the session (0 = none), or
    /// `None` if the session is not this tenant's.
    pub async fn last_event_sequence(&self, session: &SessionId) -> Result<Option<i64>, StoreError> {
        with_pool!(&self.db, |pool| {
            sqlx::query_scalar("SELECT last_event_sequence FROM sessions WHERE tenant_id = $1 AND id = $2")
                .bind(self.tid())
                .bind(session.as_str())
                .fetch_optional(pool)
                .await
        })
        .ctx("reading the last event sequence")
    }

    /// Saves the session's recap text; cached audio is dropped when the text
    /// changes. [`StoreError::NotFound`] if the session is not this tenant's.
    pub async fn save_recap(&self, session: &SessionId, text: &str) -> Result<Recap, StoreError> {
        let now = self.now_ms();
        let row: RecapRow = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, RecapRow>(
                "INSERT INTO recaps (tenant_id, session_id, text, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (tenant_id, session_id) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at, \
                 audio = CASE WHEN recaps.text = excluded.text THEN recaps.audio ELSE NULL END, \
                 audio_sample_rate = CASE WHEN recaps.text = excluded.text THEN recaps.audio_sample_rate ELSE NULL END, \
                 audio_channels = CASE WHEN recaps.text = excluded.text THEN recaps.audio_channels ELSE NULL END \
                 RETURNING session_id, text, audio, audio_sample_rate, audio_channels, created_at, updated_at",
            )
            .bind(self.tid())
            .bind(session.as_str())
            .bind(text)
            .bind(now)
            .fetch_one(pool)
            .await
        })
        .ctx("saving a recap")
        .map_err(|e| session_missing(e, session))?;
        row.into_recap()
    }

    /// Caches the narrated audio of the session's recap; `false` if the
    /// session has no recap text yet.
    pub async fn save_recap_audio(&self, session: &SessionId, audio: &RecapAudio) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let done = with_pool!(&self.db, |pool| {
            sqlx::query(
                "UPDATE recaps SET audio = $3, audio_sample_rate = $4, audio_channels = $5, updated_at = $6 \
                 WHERE tenant_id = $1 AND session_id = $2",
            )
            .bind(self.tid())
            .bind(session.as_str())
            .bind(audio.pcm.as_slice())
            .bind(i64::from(audio.sample_rate))
            .bind(i64::from(audio.channels))
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .ctx("caching recap audio")?;
        Ok(done > 0)
    }

    /// The session's cached recap.
    pub async fn recap(&self, session: &SessionId) -> Result<Option<Recap>, StoreError> {
        let row: Option<RecapRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, RecapRow>(
                "SELECT session_id, text, audio, audio_sample_rate, audio_channels, created_at, updated_at \
                 FROM recaps WHERE tenant_id = $1 AND session_id = $2",
            )
            .bind(self.tid())
            .bind(session.as_str())
            .fetch_optional(pool)
            .await
        })
        .ctx("reading a recap")?;
        row.map(RecapRow::into_recap).transpose()
    }

    /// Saves a player's feedback on a session (a second submission by the
    /// same player replaces the first). [`StoreError::NotFound`] if the
    /// session is not this tenant's.
    pub async fn save_feedback(
        &self,
        session: &SessionId,
        user: &DiscordId,
        ratings: FeedbackRatings,
        comment: &str,
    ) -> Result<Feedback, StoreError> {
        let count = comment.chars().count();
        if count > MAX_COMMENT_CHARS {
            return Err(StoreError::invalid(
                "feedback comment",
                format!("is {count} characters long; at most {MAX_COMMENT_CHARS} are allowed"),
            ));
        }
        let ratings = FeedbackRatings::clamped(
            i64::from(ratings.voice_latency),
            i64::from(ratings.npc_personality),
            i64::from(ratings.memory_accuracy),
            i64::from(ratings.dm_workflow),
        );
        let now = self.now_ms();
        let sql = format!(
            "INSERT INTO feedback (tenant_id, id, session_id, user_id, voice_latency, npc_personality, memory_accuracy, dm_workflow, \
             comment, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (tenant_id, session_id, user_id) DO UPDATE SET voice_latency = excluded.voice_latency, \
             npc_personality = excluded.npc_personality, memory_accuracy = excluded.memory_accuracy, \
             dm_workflow = excluded.dm_workflow, comment = excluded.comment, updated_at = excluded.updated_at \
             RETURNING {FEEDBACK_COLUMNS}"
        );
        let row: FeedbackRow = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, FeedbackRow>(&sql)
                .bind(self.tid())
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(session.as_str())
                .bind(user.as_str())
                .bind(i64::from(ratings.voice_latency))
                .bind(i64::from(ratings.npc_personality))
                .bind(i64::from(ratings.memory_accuracy))
                .bind(i64::from(ratings.dm_workflow))
                .bind(comment.trim())
                .bind(now)
                .fetch_one(pool)
                .await
        })
        .ctx("saving feedback")
        .map_err(|e| session_missing(e, session))?;
        row.into_feedback()
    }

    /// Feedback of one session, or of all the tenant's sessions, newest first.
    pub async fn feedback(&self, session: Option<&SessionId>) -> Result<Vec<Feedback>, StoreError> {
        let sql = format!(
            "SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE tenant_id = $1 AND ($2 = '' OR session_id = $2) \
             ORDER BY created_at DESC, id"
        );
        let rows: Vec<FeedbackRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, FeedbackRow>(&sql)
                .bind(self.tid())
                .bind(session.map_or("", |s| s.as_str()))
                .fetch_all(pool)
                .await
        })
        .ctx("reading feedback")?;
        rows.into_iter().map(FeedbackRow::into_feedback).collect()
    }
}
