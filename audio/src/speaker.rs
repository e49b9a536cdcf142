//! One speaker's audio path: VAD, segmenter and pre-roll history.
//!
//! [`SpeakerTrack`] classifies each 20 ms frame, runs the hysteresis
//! segmenter and streams the utterance's audio (pre-roll and onset frames
//! first, then every frame until the end decision) to a [`TrackOutput`]. The
//! engine's speaker slots and the offline segmentation tool share it, so both
//! make exactly the same decisions. No allocation after construction.

use crate::error::AudioError;
use crate::frame::{ms_to_frames_ceil, InputFrame, UtteranceId, INPUT_FRAME_SAMPLES};
use crate::segmenter::{EndReason, Segmenter, SegmenterEvent};
use crate::settings::VadSettings;
use crate::vad::VoiceDetector;

/// Receives what a [`SpeakerTrack`] decides and the audio of its utterances.
pub trait TrackOutput {
    /// Allocates the id of a new utterance.
    fn new_utterance(&mut self) -> UtteranceId;
    /// A segmenter decision, with the utterance it belongs to.
    fn on_event(&mut self, utterance: UtteranceId, event: SegmenterEvent);
    /// One frame of an utterance's audio, in stream order (pre-roll first).
    fn on_audio(&mut self, utterance: UtteranceId, frame: &InputFrame);
}

/// Fixed-capacity history of the most recent frames (pre-roll + onset).
#[derive(Debug)]
struct History {
    frames: Vec<InputFrame>,
    /// Slot of the oldest frame.
    head: usize,
    len: usize,
    /// Stream index of the newest frame (valid when len > 0).
    newest: u64,
}

impl History {
    fn new(capacity: usize) -> Self {
        Self {
            frames: vec![[0; INPUT_FRAME_SAMPLES]; capacity.max(1)],
            head: 0,
            len: 0,
            newest: 0,
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    fn push(&mut self, index: u64, frame: &InputFrame) {
        let cap = self.frames.len();
        if self.len == cap {
            self.frames[self.head] = *frame;
            self.head = (self.head + 1) % cap;
        } else {
            self.frames[(self.head + self.len) % cap] = *frame;
            self.len += 1;
        }
        self.newest = index;
    }

    /// The frame with stream index `index`, if still held.
    fn get(&self, index: u64) -> Option<&InputFrame> {
        if self.len == 0 || index > self.newest {
            return None;
        }
        let back = usize::try_from(self.newest - index).ok()?;
        if back >= self.len {
            return None;
        }
        let pos = (self.head + self.len - 1 - back) % self.frames.len();
        self.frames.get(pos)
    }

    fn oldest(&self) -> u64 {
        self.newest + 1 - self.len as u64
    }
}

/// VAD + segmenter + pre-roll for one speaker.
#[derive(Debug)]
pub struct SpeakerTrack {
    detector: VoiceDetector,
    segmenter: Segmenter,
    history: History,
    preroll: u64,
    utterance: Option<UtteranceId>,
}

impl SpeakerTrack {
    /// Creates a track (allocates, including the C VAD: session start only).
    pub fn new(settings: &VadSettings) -> Result<Self, AudioError> {
        settings.validate()?;
        let preroll = ms_to_frames_ceil(settings.preroll_ms);
        Ok(Self {
            detector: VoiceDetector::new(settings.aggressiveness)?,
            segmenter: Segmenter::new(settings),
            history: History::new((preroll + settings.onset_frames) as usize),
            preroll: u64::from(preroll),
            utterance: None,
        })
    }

    /// Forgets everything for a new speaker (no allocation).
    pub fn reset(&mut self) {
        self.detector.reset();
        self.segmenter.reset();
        self.history.clear();
        self.utterance = None;
    }

    /// Frames processed since the last reset (the speaker's stream clock).
    pub fn frames_seen(&self) -> u64 {
        self.segmenter.frames_seen()
    }

    /// The open utterance, if speech is in progress.
    pub fn current_utterance(&self) -> Option<UtteranceId> {
        self.utterance
    }

    /// Processes the next 20 ms frame of the stream.
    pub fn process(&mut self, frame: &InputFrame, out: &mut impl TrackOutput) -> Result<(), AudioError> {
        let index = self.segmenter.frames_seen();
        self.history.push(index, frame);
        let voiced = self.detector.is_voiced(frame)?;
        let step = self.segmenter.push(voiced);
        match step.event {
            Some(SegmenterEvent::SpeechStarted { first_voiced }) => {
                let id = out.new_utterance();
                self.utterance = Some(id);
                out.on_event(id, SegmenterEvent::SpeechStarted { first_voiced });
                let from = first_voiced.saturating_sub(self.preroll).max(self.history.oldest());
                for i in from..=index {
                    if let Some(f) = self.history.get(i) {
                        out.on_audio(id, f);
                    }
                }
            }
            Some(event) => {
                if let Some(id) = self.utterance {
                    if step.in_utterance {
                        out.on_audio(id, frame);
                    }
                    out.on_event(id, event);
                    if let SegmenterEvent::SpeechEnded { reason, .. } = event {
                        self.utterance = None;
                        if reason == EndReason::MaxLength {
                            // The next utterance's pre-roll must not repeat this one's audio.
                            self.history.clear();
                        }
                    }
                }
            }
            None => {
                if let (Some(id), true) = (self.utterance, step.in_utterance) {
                    out.on_audio(id, frame);
                }
            }
        }
        Ok(())
    }

    /// Ends an open utterance now (end of input or speaker detached).
    pub fn finish(&mut self, out: &mut impl TrackOutput) {
        if let (Some(event), Some(id)) = (self.segmenter.flush(), self.utterance.take()) {
            out.on_event(id, event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        next: u64,
        events: Vec<(UtteranceId, SegmenterEvent)>,
        audio: Vec<(UtteranceId, i16)>,
    }

    impl TrackOutput for Collect {
        fn new_utterance(&mut self) -> UtteranceId {
            self.next += 1;
            UtteranceId(self.next)
        }
        fn on_event(&mut self, u: UtteranceId, e: SegmenterEvent) {
            self.events.push((u, e));
        }
        fn on_audio(&mut self, u: UtteranceId, f: &InputFrame) {
            // Frames are tagged by their first sample (see `frame`).
            self.audio.push((u, f[0]));
        }
    }

    /// A frame whose first sample is its stream index; voiced frames carry a
    /// loud buzz, unvoiced ones silence.
    fn frame(index: usize, voiced: bool) -> InputFrame {
        let mut f = [0i16; INPUT_FRAME_SAMPLES];
        if voiced {
            for (i, s) in f.iter_mut().enumerate() {
                let t = (index * INPUT_FRAME_SAMPLES + i) as f32 / 16_000.0;
                let mut v = 0.0;
                for h in 1..12 {
                    v += (2.0 * std::f32::consts::PI * 150.0 * h as f32 * t).sin() / h as f32;
                }
                *s = (v * 4_000.0) as i16;
            }
        }
        f[0] = index as i16;
        f
    }

    #[test]
    fn utterance_audio_starts_with_the_preroll_and_ends_at_the_decision() {
        let settings = VadSettings {
            preroll_ms: 100, // 5 frames
            onset_frames: 3,
            hangover_ms: 200, // 10 frames
            ..VadSettings::default()
        };
        let mut track = SpeakerTrack::new(&settings).unwrap();
        let mut out = Collect::default();
        let pattern = [false; 20].iter().chain([true; 30].iter()).chain([false; 30].iter());
        for (k, voiced) in pattern.enumerate() {
            track.process(&frame(k, *voiced), &mut out).unwrap();
        }
        let started = out
            .events
            .iter()
            .find_map(|(_, e)| match e {
                SegmenterEvent::SpeechStarted { first_voiced } => Some(*first_voiced),
                _ => None,
            })
            .unwrap();
        let ended = out
            .events
            .iter()
            .find_map(|(_, e)| match e {
                SegmenterEvent::SpeechEnded { decided, .. } => Some(*decided),
                _ => None,
            })
            .unwrap();
        // webrtc-vad needs a frame or two to react; the start is near frame 20.
        assert!((20..=22).contains(&started), "started at {started}");
        let first_audio = out.audio.first().unwrap().1 as u64;
        let last_audio = out.audio.last().unwrap().1 as u64;
        assert_eq!(first_audio, started - 5, "pre-roll of five frames");
        assert_eq!(last_audio, ended, "audio runs to the decision");
        let tags: Vec<i16> = out.audio.iter().map(|a| a.1).collect();
        let expected: Vec<i16> = (first_audio as i16..=last_audio as i16).collect();
        assert_eq!(tags, expected, "contiguous, in order, no duplicates");
        assert!(out.audio.iter().all(|a| a.0 == UtteranceId(1)));
    }
}
