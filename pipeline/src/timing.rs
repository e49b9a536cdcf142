//! Turn outcomes and stage timestamps (SPEC §8): every turn is counted,
//! whether it spoke, was cut, failed, yielded the floor or had no target.

use std::time::Duration;

use tokio::time::Instant;

use crate::roster::NpcId;

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurnOutcome {
    /// The NPC's reply was played completely.
    Spoke,
    /// The reply was cut (barge-in, mute); only the heard part was committed.
    Cut,
    /// A provider failed; nothing or only part was played.
    Failed,
    /// The turn gave up the floor before it was heard (a newer utterance took over).
    Yielded,
    /// The utterance addressed nobody.
    NoTarget,
}

impl TurnOutcome {
    /// Lower-case label for metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnOutcome::Spoke => "spoke",
            TurnOutcome::Cut => "cut",
            TurnOutcome::Failed => "failed",
            TurnOutcome::Yielded => "yielded",
            TurnOutcome::NoTarget => "no_target",
        }
    }
}

/// When each stage of a turn happened (monotonic time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnTimings {
    /// The player's voice actually stopped.
    pub speech_end: Option<Instant>,
    /// The VAD decided the utterance was over.
    pub vad_end: Option<Instant>,
    /// The final transcript arrived.
    pub stt_final: Option<Instant>,
    /// The language model's first token arrived.
    pub llm_first_token: Option<Instant>,
    /// The first complete sentence was handed to TTS.
    pub first_sentence: Option<Instant>,
    /// TTS delivered the first audio.
    pub tts_first_audio: Option<Instant>,
    /// The first audio frame was handed to the voice transport.
    pub first_frame: Option<Instant>,
}

/// Milliseconds of each stage, measured from the previous stage, plus the total.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageLatencies {
    /// Speech end → VAD end-of-speech decision (the VAD's own delay).
    pub vad_ms: Option<f64>,
    /// VAD decision → final transcript.
    pub stt_ms: Option<f64>,
    /// Final transcript → first LLM token.
    pub llm_first_token_ms: Option<f64>,
    /// First token → first complete sentence.
    pub first_sentence_ms: Option<f64>,
    /// First sentence → first TTS audio.
    pub tts_first_audio_ms: Option<f64>,
    /// First TTS audio → first frame out.
    pub first_frame_ms: Option<f64>,
    /// Speech end → first frame out: what the player experiences.
    pub total_ms: Option<f64>,
}

fn between(from: Option<Instant>, to: Option<Instant>) -> Option<f64> {
    match (from, to) {
        (Some(from), Some(to)) => Some(to.saturating_duration_since(from).as_secs_f64() * 1000.0),
        _ => None,
    }
}

impl TurnTimings {
    /// Each stage's latency.
    pub fn latencies(&self) -> StageLatencies {
        StageLatencies {
            vad_ms: between(self.speech_end, self.vad_end),
            stt_ms: between(self.vad_end, self.stt_final),
            llm_first_token_ms: between(self.stt_final, self.llm_first_token),
            first_sentence_ms: between(self.llm_first_token, self.first_sentence),
            tts_first_audio_ms: between(self.first_sentence, self.tts_first_audio),
            first_frame_ms: between(self.tts_first_audio, self.first_frame),
            total_ms: between(self.speech_end.or(self.vad_end), self.first_frame),
        }
    }

    /// Speech end → first frame out, if the turn got that far.
    pub fn response_time(&self) -> Option<Duration> {
        match (self.speech_end.or(self.vad_end), self.first_frame) {
            (Some(from), Some(to)) => Some(to.saturating_duration_since(from)),
            _ => None,
        }
    }
}

/// Everything known about one finished turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnResult {
    /// Session-unique turn number.
    pub turn_id: u64,
    /// Who spoke (Discord user id, or the DM for puppet lines).
    pub speaker_id: String,
    /// Their display name.
    pub speaker_name: String,
    /// What they said (empty for puppet lines).
    pub transcript: String,
    /// The NPC that answered, if any.
    pub npc: Option<NpcId>,
    /// The reply text that was actually heard.
    pub reply_heard: String,
    /// How much of the reply's audio was played, in milliseconds (0 when
    /// nothing was).
    pub played_ms: f64,
    /// How the turn ended.
    pub outcome: TurnOutcome,
    /// Stage timestamps.
    pub timings: TurnTimings,
    /// What went wrong, for failed turns.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_chain_from_speech_end() {
        let t0 = Instant::now();
        let ms = |n| Some(t0 + Duration::from_millis(n));
        let timings = TurnTimings {
            speech_end: ms(0),
            vad_end: ms(320),
            stt_final: ms(570),
            llm_first_token: ms(730),
            first_sentence: ms(900),
            tts_first_audio: ms(975),
            first_frame: ms(990),
        };
        let l = timings.latencies();
        assert_eq!(l.vad_ms, Some(320.0));
        assert_eq!(l.stt_ms, Some(250.0));
        assert_eq!(l.llm_first_token_ms, Some(160.0));
        assert_eq!(l.first_sentence_ms, Some(170.0));
        assert_eq!(l.tts_first_audio_ms, Some(75.0));
        assert_eq!(l.first_frame_ms, Some(15.0));
        assert_eq!(l.total_ms, Some(990.0));
        assert_eq!(timings.response_time(), Some(Duration::from_millis(990)));
        assert_eq!(TurnTimings::default().latencies().total_ms, None);
    }
}
