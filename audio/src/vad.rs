//! Frame-level voice activity detection with webrtc-vad (libfvad).
//!
//! webrtc-vad was chosen over a pure-Rust or neural VAD because it is the
//! proven detector the spec names, costs a few microseconds per 20 ms frame
//! (fifty sessions fit one core) and processes without heap allocation. Its
//! `Vad` is neither `Send` nor allocation-free to create, so the engine
//! creates a fixed pool of detectors on the realtime thread at session start
//! and [`reset`](VoiceDetector::reset)s them on reuse.

use webrtc_vad::{SampleRate, Vad, VadMode};

use crate::error::AudioError;
use crate::frame::INPUT_FRAME_SAMPLES;

/// One speaker's frame classifier: 20 ms of 16 kHz mono in, voiced or not out.
pub struct VoiceDetector {
    vad: Vad,
    aggressiveness: u8,
}

impl std::fmt::Debug for VoiceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceDetector")
            .field("aggressiveness", &self.aggressiveness)
            .finish_non_exhaustive()
    }
}

fn mode(aggressiveness: u8) -> VadMode {
    match aggressiveness {
        0 => VadMode::Quality,
        1 => VadMode::LowBitrate,
        2 => VadMode::Aggressive,
        _ => VadMode::VeryAggressive,
    }
}

impl VoiceDetector {
    /// Creates a detector (allocates in C: call at session start only).
    pub fn new(aggressiveness: u8) -> Result<Self, AudioError> {
        if aggressiveness > 3 {
            return Err(AudioError::setting(
                "vad.aggressiveness",
                format!("must be 0, 1, 2 or 3, got {aggressiveness}"),
            ));
        }
        Ok(Self {
            vad: Vad::new_with_rate_and_mode(SampleRate::Rate16kHz, mode(aggressiveness)),
            aggressiveness,
        })
    }

    /// Clears all adaptive state for a new speaker (no allocation).
    pub fn reset(&mut self) {
        // fvad_reset also restores the default rate and mode: set them again.
        self.vad.reset();
        self.vad.set_sample_rate(SampleRate::Rate16kHz);
        self.vad.set_mode(mode(self.aggressiveness));
    }

    /// Classifies one 20 ms frame (exactly 320 samples; anything else,
    /// including an empty frame, is an error and never reaches the C code).
    pub fn is_voiced(&mut self, frame: &[i16]) -> Result<bool, AudioError> {
        if frame.is_empty() {
            return Err(AudioError::EmptyFrame { what: "VAD frame" });
        }
        if frame.len() != INPUT_FRAME_SAMPLES {
            return Err(AudioError::FrameLength {
                what: "VAD frame",
                expected: INPUT_FRAME_SAMPLES,
                got: frame.len(),
            });
        }
        self.vad.is_voice_segment(frame).map_err(|()| AudioError::FrameLength {
            what: "VAD frame",
            expected: INPUT_FRAME_SAMPLES,
            got: frame.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_unvoiced_and_bad_frames_are_errors() {
        let mut vad = VoiceDetector::new(2).unwrap();
        assert!(!vad.is_voiced(&[0; INPUT_FRAME_SAMPLES]).unwrap());
        assert!(matches!(vad.is_voiced(&[]), Err(AudioError::EmptyFrame { .. })));
        assert!(vad.is_voiced(&[0; 100]).is_err());
        vad.reset();
        assert!(!vad.is_voiced(&[0; INPUT_FRAME_SAMPLES]).unwrap());
        assert!(VoiceDetector::new(4).is_err());
    }

    #[test]
    fn a_voiced_signal_is_detected() {
        // A harmonic-rich 150 Hz buzz at speech level.
        let mut vad = VoiceDetector::new(2).unwrap();
        let mut voiced = 0;
        for f in 0..50 {
            let frame: Vec<i16> = (0..INPUT_FRAME_SAMPLES)
                .map(|i| {
                    let t = (f * INPUT_FRAME_SAMPLES + i) as f32 / 16_000.0;
                    let mut s = 0.0;
                    for h in 1..12 {
                        s += (2.0 * std::f32::consts::PI * 150.0 * h as f32 * t).sin() / h as f32;
                    }
                    (s * 4_000.0) as i16
                })
                .collect();
            if vad.is_voiced(&frame).unwrap() {
                voiced += 1;
            }
        }
        assert!(voiced > 40, "only {voiced} of 50 frames voiced");
    }
}
