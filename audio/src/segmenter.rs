//! The hysteresis segmenter: turns a speaker's per-frame voiced/unvoiced
//! decisions into utterances.
//!
//! Speech starts after `onset_frames` consecutive voiced frames (the start is
//! dated to the first of them), a provisional `VoicingStopped` follows
//! `voicing_stop_ms` of non-voice (and `VoicingResumed` when voice returns,
//! for barge-in), and speech ends once `hangover_ms` pass without voice or the
//! utterance reaches `max_utterance_ms`. Pure logic over frame indices: no
//! audio, no clock, no allocation.

use crate::frame::{ms_to_frames_ceil, FRAME_MS};
use crate::settings::VadSettings;

/// Why an utterance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The hangover passed without voice.
    Hangover,
    /// The utterance reached the configured maximum length.
    MaxLength,
    /// The input ended (offline tools) or the speaker was detached.
    EndOfInput,
}

/// What the segmenter decided at one frame. Frame `k` covers
/// `[20k, 20k + 20)` ms of the speaker's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmenterEvent {
    /// Speech confirmed; it began at `first_voiced`.
    SpeechStarted {
        /// Index of the first voiced frame of the onset.
        first_voiced: u64,
    },
    /// Provisional: no voice for `voicing_stop_ms` (speech may resume).
    VoicingStopped {
        /// Index of the last voiced frame so far.
        last_voiced: u64,
    },
    /// Voice came back after a `VoicingStopped`.
    VoicingResumed,
    /// The utterance is over.
    SpeechEnded {
        /// Index of the first voiced frame.
        first_voiced: u64,
        /// Index of the last voiced frame.
        last_voiced: u64,
        /// Index of the frame at whose end the decision was taken.
        decided: u64,
        /// Why it ended.
        reason: EndReason,
    },
}

impl SegmenterEvent {
    /// Start of frame `index` in milliseconds.
    pub fn frame_start_ms(index: u64) -> u64 {
        index * u64::from(FRAME_MS)
    }
}

/// The outcome of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterStep {
    /// What was decided at this frame, if anything.
    pub event: Option<SegmenterEvent>,
    /// True if this frame belongs to an utterance whose start was already
    /// reported (its audio goes to STT); false for frames before the onset
    /// (they may still join as onset or pre-roll when speech starts).
    pub in_utterance: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle {
        voiced_run: u32,
    },
    Speech {
        first_voiced: u64,
        last_voiced: u64,
        unvoiced_run: u32,
        stopped: bool,
    },
}

/// Hysteresis over voiced/unvoiced frames for one speaker.
#[derive(Debug, Clone)]
pub struct Segmenter {
    onset: u32,
    hangover: u32,
    voicing_stop: u32,
    max_frames: u64,
    next_frame: u64,
    state: State,
}

impl Segmenter {
    /// Creates a segmenter; durations are rounded up to whole frames.
    pub fn new(settings: &VadSettings) -> Self {
        Self {
            onset: settings.onset_frames.max(1),
            hangover: ms_to_frames_ceil(settings.hangover_ms).max(1),
            voicing_stop: ms_to_frames_ceil(settings.voicing_stop_ms).max(1),
            max_frames: u64::from(ms_to_frames_ceil(settings.max_utterance_ms).max(1)),
            next_frame: 0,
            state: State::Idle { voiced_run: 0 },
        }
    }

    /// Starts over for a new stream (frame indices restart at 0).
    pub fn reset(&mut self) {
        self.next_frame = 0;
        self.state = State::Idle { voiced_run: 0 };
    }

    /// Index of the next frame to be pushed (= frames seen so far).
    pub fn frames_seen(&self) -> u64 {
        self.next_frame
    }

    /// Frames of onset required before speech is confirmed.
    pub fn onset_frames(&self) -> u32 {
        self.onset
    }

    /// True while an utterance is open.
    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    /// Feeds the decision for the next frame.
    pub fn push(&mut self, voiced: bool) -> SegmenterStep {
        let k = self.next_frame;
        self.next_frame += 1;
        match &mut self.state {
            State::Idle { voiced_run } => {
                *voiced_run = if voiced { *voiced_run + 1 } else { 0 };
                if *voiced_run >= self.onset {
                    let first_voiced = k + 1 - u64::from(self.onset);
                    self.state = State::Speech {
                        first_voiced,
                        last_voiced: k,
                        unvoiced_run: 0,
                        stopped: false,
                    };
                    return SegmenterStep {
                        event: Some(SegmenterEvent::SpeechStarted { first_voiced }),
                        in_utterance: true,
                    };
                }
                SegmenterStep {
                    event: None,
                    in_utterance: false,
                }
            }
            State::Speech {
                first_voiced,
                last_voiced,
                unvoiced_run,
                stopped,
            } => {
                let mut event = None;
                if voiced {
                    *last_voiced = k;
                    *unvoiced_run = 0;
                    if *stopped {
                        *stopped = false;
                        event = Some(SegmenterEvent::VoicingResumed);
                    }
                } else {
                    *unvoiced_run += 1;
                    if *unvoiced_run >= self.hangover {
                        let ended = SegmenterEvent::SpeechEnded {
                            first_voiced: *first_voiced,
                            last_voiced: *last_voiced,
                            decided: k,
                            reason: EndReason::Hangover,
                        };
                        self.state = State::Idle { voiced_run: 0 };
                        return SegmenterStep {
                            event: Some(ended),
                            in_utterance: true,
                        };
                    }
                    if *unvoiced_run == self.voicing_stop && !*stopped {
                        *stopped = true;
                        event = Some(SegmenterEvent::VoicingStopped {
                            last_voiced: *last_voiced,
                        });
                    }
                }
                if k + 1 - *first_voiced >= self.max_frames {
                    let ended = SegmenterEvent::SpeechEnded {
                        first_voiced: *first_voiced,
                        last_voiced: *last_voiced,
                        decided: k,
                        reason: EndReason::MaxLength,
                    };
                    self.state = State::Idle { voiced_run: 0 };
                    return SegmenterStep {
                        event: Some(ended),
                        in_utterance: true,
                    };
                }
                SegmenterStep {
                    event,
                    in_utterance: true,
                }
            }
        }
    }

    /// Ends an open utterance now (end of input); the decision is dated to
    /// the last frame seen.
    pub fn flush(&mut self) -> Option<SegmenterEvent> {
        match self.state {
            State::Idle { .. } => {
                self.state = State::Idle { voiced_run: 0 };
                None
            }
            State::Speech {
                first_voiced,
                last_voiced,
                ..
            } => {
                self.state = State::Idle { voiced_run: 0 };
                Some(SegmenterEvent::SpeechEnded {
                    first_voiced,
                    last_voiced,
                    decided: self.next_frame.saturating_sub(1),
                    reason: EndReason::EndOfInput,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> VadSettings {
        VadSettings {
            onset_frames: 3,
            hangover_ms: 100, // 5 frames
            voicing_stop_ms: 40,
            max_utterance_ms: 1_000, // 50 frames
            ..VadSettings::default()
        }
    }

    fn run(seg: &mut Segmenter, pattern: &str) -> Vec<(u64, SegmenterEvent)> {
        let mut out = Vec::new();
        for c in pattern.chars() {
            let k = seg.frames_seen();
            if let Some(e) = seg.push(c == '#').event {
                out.push((k, e));
            }
        }
        out
    }

    #[test]
    fn onset_dates_the_start_to_the_first_voiced_frame() {
        let mut seg = Segmenter::new(&settings());
        let ev = run(&mut seg, "..#.##.###");
        assert_eq!(ev, vec![(9, SegmenterEvent::SpeechStarted { first_voiced: 7 })]);
    }

    #[test]
    fn hangover_ends_and_short_gaps_do_not() {
        let mut seg = Segmenter::new(&settings());
        // gap of 4 unvoiced frames (< 5) does not end; then 5 do.
        let ev = run(&mut seg, "###....###.....");
        assert_eq!(
            ev,
            vec![
                (2, SegmenterEvent::SpeechStarted { first_voiced: 0 }),
                (4, SegmenterEvent::VoicingStopped { last_voiced: 2 }),
                (7, SegmenterEvent::VoicingResumed),
                (11, SegmenterEvent::VoicingStopped { last_voiced: 9 }),
                (
                    14,
                    SegmenterEvent::SpeechEnded {
                        first_voiced: 0,
                        last_voiced: 9,
                        decided: 14,
                        reason: EndReason::Hangover
                    }
                ),
            ]
        );
        assert!(!seg.in_speech());
    }

    #[test]
    fn max_length_ends_and_speech_restarts_after_a_new_onset() {
        let mut seg = Segmenter::new(&settings());
        let ev = run(&mut seg, &"#".repeat(56));
        assert_eq!(ev[0], (2, SegmenterEvent::SpeechStarted { first_voiced: 0 }));
        assert_eq!(
            ev[1],
            (
                49,
                SegmenterEvent::SpeechEnded {
                    first_voiced: 0,
                    last_voiced: 49,
                    decided: 49,
                    reason: EndReason::MaxLength
                }
            )
        );
        assert_eq!(ev[2], (52, SegmenterEvent::SpeechStarted { first_voiced: 50 }));
        assert_eq!(ev.len(), 3);
    }

    #[test]
    fn flush_closes_an_open_utterance() {
        let mut seg = Segmenter::new(&settings());
        run(&mut seg, "#####");
        assert_eq!(
            seg.flush(),
            Some(SegmenterEvent::SpeechEnded {
                first_voiced: 0,
                last_voiced: 4,
                decided: 4,
                reason: EndReason::EndOfInput
            })
        );
        assert_eq!(seg.flush(), None);
    }
}
