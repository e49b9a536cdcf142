//! Frame geometry and the identifiers shared by every part of the core.
//!
//! Everything in the realtime core moves in 20 ms frames: speaker input is
//! 16 kHz mono (320 samples), playback output is 48 kHz interleaved stereo
//! (960 sample frames, 1920 samples).

/// Length of one frame (one tick) in milliseconds.
pub const FRAME_MS: u32 = 20;

/// Sample rate of speaker input, the VAD and utterance audio.
pub const INPUT_SAMPLE_RATE: u32 = 16_000;

/// Samples in one 20 ms input frame (16 kHz mono).
pub const INPUT_FRAME_SAMPLES: usize = (INPUT_SAMPLE_RATE / 1000 * FRAME_MS) as usize;

/// Sample rate of the mixed output handed to the voice transport.
pub const OUTPUT_SAMPLE_RATE: u32 = 48_000;

/// Channels of the mixed output (interleaved stereo).
pub const OUTPUT_CHANNELS: usize = 2;

/// Sample frames (per channel) in one 20 ms output frame.
pub const OUTPUT_FRAME_LEN: usize = (OUTPUT_SAMPLE_RATE / 1000 * FRAME_MS) as usize;

/// Interleaved samples in one 20 ms output frame (960 × 2).
pub const OUTPUT_FRAME_SAMPLES: usize = OUTPUT_FRAME_LEN * OUTPUT_CHANNELS;

/// One 20 ms frame of speaker input: 16 kHz mono PCM.
pub type InputFrame = [i16; INPUT_FRAME_SAMPLES];

/// A silent input frame.
pub const SILENT_INPUT_FRAME: InputFrame = [0; INPUT_FRAME_SAMPLES];

/// Who is talking: the voice transport's user id (a Discord user id, a loopback
/// file index, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpeakerId(pub u64);

/// An NPC of the session's roster, as the pipeline numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NpcId(pub u64);

/// One playback source (one NPC line, one narrator line, one PlayAudio stream).
///
/// Ids are handed out by [`crate::SessionControl::open_source`] in increasing
/// order, which is also the play order within a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u64);

/// A playback queue: consecutive lines of one queue play one after another,
/// optionally separated by a randomized gap (typically one queue per NPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u64);

/// One utterance of one speaker, numbered per session from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UtteranceId(pub u64);

/// Converts a count of 20 ms frames to milliseconds.
pub const fn frames_to_ms(frames: u64) -> u64 {
    frames * FRAME_MS as u64
}

/// Converts milliseconds to whole 20 ms frames, rounding up.
pub const fn ms_to_frames_ceil(ms: u32) -> u32 {
    ms.div_ceil(FRAME_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_twenty_milliseconds() {
        assert_eq!(INPUT_FRAME_SAMPLES, 320);
        assert_eq!(OUTPUT_FRAME_LEN, 960);
        assert_eq!(OUTPUT_FRAME_SAMPLES, 1920);
        assert_eq!(ms_to_frames_ceil(300), 15);
        assert_eq!(ms_to_frames_ceil(301), 16);
        assert_eq!(ms_to_frames_ceil(0), 0);
        assert_eq!(frames_to_ms(15), 300);
    }
}
