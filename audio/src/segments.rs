//! Offline segmentation: the engine's exact VAD + segmenter path run over a
//! whole file, for audio engineers tuning the `vad` settings
//! (`glyphoxa audio segments <file.wav>`).
//!
//! `start_ms` is the first voiced frame (pre-roll excluded), `end_ms` the
//! end-of-speech decision; `voice_end_ms` (the end of the last voiced frame)
//! gives the detection delay. At the end of the input, silence is appended
//! until the hangover runs out, as the silence clock would do live.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::error::AudioError;
use crate::frame::{
    frames_to_ms, ms_to_frames_ceil, InputFrame, UtteranceId, INPUT_FRAME_SAMPLES, INPUT_SAMPLE_RATE,
    SILENT_INPUT_FRAME,
};
use crate::segmenter::{EndReason, SegmenterEvent};
use crate::settings::VadSettings;
use crate::speaker::{SpeakerTrack, TrackOutput};
use crate::wav::{read_wav, read_wav_file};

/// One detected utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// Start of the first voiced frame, in ms from the start of the file.
    pub start_ms: u64,
    /// When the end-of-speech decision was taken, in ms.
    pub end_ms: u64,
    /// End of the last voiced frame, in ms (not serialized).
    #[serde(skip)]
    pub voice_end_ms: u64,
    /// Why the segment ended (not serialized).
    #[serde(skip)]
    pub reason: EndReason,
}

impl Segment {
    /// The VAD's detection delay: end of voice → end decision.
    pub fn detection_delay_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.voice_end_ms)
    }
}

/// The result of segmenting one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segmentation {
    /// Utterances in order.
    pub segments: Vec<Segment>,
    /// Length of the input in ms (not serialized).
    #[serde(skip)]
    pub duration_ms: u64,
}

impl Segmentation {
    /// The tool's output: exactly `{"segments":[{"start_ms":N,"end_ms":N},...]}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"segments\":[]}"))
    }

    /// Mean detection delay over the segments (None without segments).
    pub fn mean_detection_delay_ms(&self) -> Option<u64> {
        let n = self.segments.len() as u64;
        (n > 0).then(|| self.segments.iter().map(Segment::detection_delay_ms).sum::<u64>() / n)
    }
}

#[derive(Default)]
struct Collect {
    next: u64,
    segments: Vec<Segment>,
}

impl TrackOutput for Collect {
    fn new_utterance(&mut self) -> UtteranceId {
        self.next += 1;
        UtteranceId(self.next)
    }

    fn on_event(&mut self, _utterance: UtteranceId, event: SegmenterEvent) {
        if let SegmenterEvent::SpeechEnded {
            first_voiced,
            last_voiced,
            decided,
            reason,
        } = event
        {
            self.segments.push(Segment {
                start_ms: frames_to_ms(first_voiced),
                end_ms: frames_to_ms(decided + 1),
                voice_end_ms: frames_to_ms(last_voiced + 1),
                reason,
            });
        }
    }

    fn on_audio(&mut self, _utterance: UtteranceId, _frame: &InputFrame) {}
}

/// Segments 16 kHz mono PCM.
pub fn segment_samples(samples: &[i16], settings: &VadSettings) -> Result<Segmentation, AudioError> {
    let mut track = SpeakerTrack::new(settings)?;
    let mut out = Collect::default();
    let mut frame = SILENT_INPUT_FRAME;
    for chunk in samples.chunks(INPUT_FRAME_SAMPLES) {
        frame[..chunk.len()].copy_from_slice(chunk);
        frame[chunk.len()..].fill(0);
        track.process(&frame, &mut out)?;
    }
    // Let an open utterance end as it would live (the silence clock).
    let tail = ms_to_frames_ceil(settings.hangover_ms) + 1;
    for _ in 0..tail {
        if track.current_utterance().is_none() {
            break;
        }
        track.process(&SILENT_INPUT_FRAME, &mut out)?;
    }
    track.finish(&mut out);
    Ok(Segmentation {
        segments: out.segments,
        duration_ms: samples.len() as u64 * 1000 / u64::from(INPUT_SAMPLE_RATE),
    })
}

/// Reads a WAV stream (any PCM rate and channel count, extra chunks
/// tolerated), converts it to 16 kHz mono and segments it.
pub fn segment_wav(reader: impl Read, settings: &VadSettings) -> Result<Segmentation, AudioError> {
    settings.validate()?;
    let audio = read_wav(reader)?;
    segment_samples(&audio.to_mono_16k()?, settings)
}

/// [`segment_wav`] on a file.
pub fn segment_wav_file(path: &Path, settings: &VadSettings) -> Result<Segmentation, AudioError> {
    settings.validate()?;
    let audio = read_wav_file(path)?;
    segment_samples(&audio.to_mono_16k()?, settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_exactly_start_and_end() {
        let s = Segmentation {
            segments: vec![Segment {
                start_ms: 100,
                end_ms: 900,
                voice_end_ms: 500,
                reason: EndReason::Hangover,
            }],
            duration_ms: 1000,
        };
        assert_eq!(s.to_json(), r#"{"segments":[{"start_ms":100,"end_ms":900}]}"#);
        assert_eq!(s.mean_detection_delay_ms(), Some(400));
        let empty = Segmentation {
            segments: vec![],
            duration_ms: 0,
        };
        assert_eq!(empty.to_json(), r#"{"segments":[]}"#);
    }

    #[test]
    fn silence_and_empty_input_have_no_segments() {
        let s = segment_samples(&[0; 16_000], &VadSettings::default()).unwrap();
        assert!(s.segments.is_empty());
        let s = segment_samples(&[], &VadSettings::default()).unwrap();
        assert!(s.segments.is_empty());
    }
}
