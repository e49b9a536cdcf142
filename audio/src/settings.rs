//! Plain settings structs of the audio core and their validation.
//!
//! The binary maps its YAML `audio` section onto these; every struct has a
//! `Default` with the tuned values and a `validate` that names the offending
//! field and the accepted range.

use crate::error::AudioError;
use crate::frame::{SpeakerId, FRAME_MS};

/// Voice activity detection and utterance segmentation, per speaker.
#[derive(Debug, Clone, PartialEq)]
pub struct VadSettings {
    /// webrtc-vad aggressiveness, 0 (lenient) to 3 (most restrictive).
    pub aggressiveness: u8,
    /// Consecutive voiced 20 ms frames needed before speech is confirmed.
    pub onset_frames: u32,
    /// Unvoiced time after the last voiced frame before speech is declared ended.
    pub hangover_ms: u32,
    /// Audio kept from before the first voiced frame, so the first syllable
    /// reaches STT.
    pub preroll_ms: u32,
    /// An utterance is ended (reason `MaxLength`) once it is this long.
    pub max_utterance_ms: u32,
    /// Unvoiced time after which a provisional `VoicingStopped` is reported
    /// (used for barge-in decisions; the utterance goes on until the hangover).
    pub voicing_stop_ms: u32,
}

impl Default for VadSettings {
    fn default() -> Self {
        Self {
            aggressiveness: 2,
            // 120 ms: below it, webrtc-vad's first frames on a noisy stream
            // (before its noise model adapts) start false utterances.
            onset_frames: 6,
            hangover_ms: 300,
            preroll_ms: 240,
            max_utterance_ms: 30_000,
            voicing_stop_ms: 100,
        }
    }
}

impl VadSettings {
    /// Checks every field; the error names the field and the accepted range.
    pub fn validate(&self) -> Result<(), AudioError> {
        if self.aggressiveness > 3 {
            return Err(AudioError::setting(
                "vad.aggressiveness",
                format!("must be 0, 1, 2 or 3, got {}", self.aggressiveness),
            ));
        }
        check_range("vad.onset_frames", self.onset_frames, 1, 50)?;
        check_range("vad.hangover_ms", self.hangover_ms, FRAME_MS, 10_000)?;
        check_range("vad.preroll_ms", self.preroll_ms, 0, 2_000)?;
        check_range("vad.max_utterance_ms", self.max_utterance_ms, 1_000, 600_000)?;
        check_range("vad.voicing_stop_ms", self.voicing_stop_ms, FRAME_MS, self.hangover_ms)?;
        Ok(())
    }
}

/// The silence clock: what happens when a speaker's packets stop arriving.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceClockSettings {
    /// Missing frames are tolerated this long (network jitter) before
    /// synthetic silence is fed; late frames arriving within it are played in
    /// order, so jitter never splits a turn.
    pub jitter_grace_ms: u32,
    /// Synthetic silence is fed for at most this long after the last real frame.
    pub cap_ms: u32,
    /// At most this many queued frames of one speaker are processed per tick
    /// (catching up after a burst).
    pub max_catch_up_frames: u32,
}

impl Default for SilenceClockSettings {
    fn default() -> Self {
        Self {
            jitter_grace_ms: 60,
            cap_ms: 2_000,
            max_catch_up_frames: 5,
        }
    }
}

impl SilenceClockSettings {
    /// Checks every field (the cap must cover the VAD hangover, or utterances
    /// of a speaker who went quiet would never end).
    pub fn validate(&self, vad: &VadSettings) -> Result<(), AudioError> {
        check_range("silence.jitter_grace_ms", self.jitter_grace_ms, 0, 1_000)?;
        check_range(
            "silence.cap_ms",
            self.cap_ms,
            vad.hangover_ms.saturating_add(FRAME_MS),
            60_000,
        )?;
        check_range("silence.max_catch_up_frames", self.max_catch_up_frames, 1, 50)?;
        Ok(())
    }
}

/// What happens to a source while a higher-priority source holds the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outranked {
    /// It waits (nothing is consumed) and resumes afterwards.
    Pause,
    /// It keeps playing at the ducking gain.
    Duck,
    /// It is cut (reported as cut).
    Cut,
}

/// Playback mixing.
#[derive(Debug, Clone, PartialEq)]
pub struct MixerSettings {
    /// Shortest gap between consecutive lines of one queue.
    pub gap_min_ms: u32,
    /// Longest gap between consecutive lines of one queue (uniformly drawn).
    pub gap_max_ms: u32,
    /// Gain applied to a ducked source, in dB (negative).
    pub duck_gain_db: f32,
    /// Peak level the limiter never exceeds, in dBFS.
    pub limiter_threshold_dbfs: f32,
    /// Limiter release time constant in milliseconds.
    pub limiter_release_ms: f32,
    /// What NPC speech does while a narrator source plays.
    pub npc_outranked: Outranked,
    /// What ambience does while NPC speech or the narrator plays.
    pub ambience_outranked: Outranked,
    /// Capacity of each source's ring, in milliseconds of source audio.
    pub source_ring_ms: u32,
    /// Seed of the gap randomizer (deterministic output for a given input).
    pub seed: u64,
}

impl Default for MixerSettings {
    fn default() -> Self {
        Self {
            gap_min_ms: 150,
            gap_max_ms: 400,
            duck_gain_db: -12.0,
            limiter_threshold_dbfs: -1.0,
            limiter_release_ms: 80.0,
            npc_outranked: Outranked::Pause,
            ambience_outranked: Outranked::Duck,
            source_ring_ms: 2_000,
            seed: 0x6c79_7068_6f78_6121,
        }
    }
}

impl MixerSettings {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), AudioError> {
        check_range("mixer.gap_max_ms", self.gap_max_ms, 0, 10_000)?;
        check_range("mixer.gap_min_ms", self.gap_min_ms, 0, self.gap_max_ms)?;
        check_float("mixer.duck_gain_db", self.duck_gain_db, -80.0, 0.0)?;
        check_float("mixer.limiter_threshold_dbfs", self.limiter_threshold_dbfs, -30.0, 0.0)?;
        check_float("mixer.limiter_release_ms", self.limiter_release_ms, 1.0, 5_000.0)?;
        check_range("mixer.source_ring_ms", self.source_ring_ms, 100, 60_000)?;
        Ok(())
    }
}

/// Opus encoder application mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusApplication {
    /// Best for speech intelligibility.
    Voip,
    /// Best for general audio (what songbird uses).
    Audio,
    /// Lowest delay, lower quality.
    LowDelay,
}

/// Opus encoding of the output.
#[derive(Debug, Clone, PartialEq)]
pub struct OpusSettings {
    /// Target bitrate in bits per second.
    pub bitrate_bps: u32,
    /// Encoder complexity, 0 (fastest) to 10 (best).
    pub complexity: u8,
    /// Application mode.
    pub application: OpusApplication,
}

impl Default for OpusSettings {
    fn default() -> Self {
        Self {
            bitrate_bps: 64_000,
            complexity: 10,
            application: OpusApplication::Audio,
        }
    }
}

impl OpusSettings {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), AudioError> {
        check_range("output.opus.bitrate_bps", self.bitrate_bps, 6_000, 510_000)?;
        if self.complexity > 10 {
            return Err(AudioError::setting(
                "output.opus.complexity",
                format!("must be between 0 and 10, got {}", self.complexity),
            ));
        }
        Ok(())
    }
}

/// How the output frame is handed to the transport.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputCodec {
    /// Opus-encoded in the tick (for transports that pass Opus through).
    Opus(OpusSettings),
    /// Raw 48 kHz stereo PCM only.
    Pcm,
}

/// The output side of the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSettings {
    /// Codec of the output frames.
    pub codec: OutputCodec,
    /// Frames of encoded silence still produced after the last audible frame
    /// (lets the far end's decoder fade out); afterwards silent frames carry
    /// no Opus packet.
    pub tail_frames: u32,
}

impl Default for OutputSettings {
    fn default() -> Self {
        Self {
            codec: OutputCodec::Opus(OpusSettings::default()),
            tail_frames: 5,
        }
    }
}

impl OutputSettings {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), AudioError> {
        if let OutputCodec::Opus(opus) = &self.codec {
            opus.validate()?;
        }
        check_range("output.tail_frames", self.tail_frames, 0, 500)
    }
}

/// Everything a session's engine needs; all buffers are sized from it when
/// the session starts.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// Speaker slots (VAD instances) created at session start.
    pub max_speakers: usize,
    /// Playback sources that can be open at once (playing or queued).
    pub max_sources: usize,
    /// Capacity of each speaker's input ring, in milliseconds.
    pub input_ring_ms: u32,
    /// Capacity of the command queue.
    pub command_capacity: usize,
    /// Capacity of the event ring.
    pub event_capacity: usize,
    /// Capacity of the utterance audio ring, in milliseconds of audio.
    pub utterance_ring_ms: u32,
    /// The bot's own speaker id: never listened to.
    pub bot_speaker: Option<SpeakerId>,
    /// Per-speaker VAD and segmentation.
    pub vad: VadSettings,
    /// The silence clock.
    pub silence: SilenceClockSettings,
    /// Playback mixing.
    pub mixer: MixerSettings,
    /// Output codec.
    pub output: OutputSettings,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_speakers: 16,
            max_sources: 16,
            input_ring_ms: 1_000,
            command_capacity: 256,
            event_capacity: 1_024,
            utterance_ring_ms: 10_000,
            bot_speaker: None,
            vad: VadSettings::default(),
            silence: SilenceClockSettings::default(),
            mixer: MixerSettings::default(),
            output: OutputSettings::default(),
        }
    }
}

impl EngineSettings {
    /// Checks every field of every section.
    pub fn validate(&self) -> Result<(), AudioError> {
        check_range("max_speakers", self.max_speakers, 1, 256)?;
        check_range("max_sources", self.max_sources, 1, 256)?;
        check_range("input_ring_ms", self.input_ring_ms, 100, 60_000)?;
        check_range("command_capacity", self.command_capacity, 16, 65_536)?;
        check_range("event_capacity", self.event_capacity, 16, 1 << 20)?;
        check_range("utterance_ring_ms", self.utterance_ring_ms, 1_000, 600_000)?;
        self.vad.validate()?;
        self.silence.validate(&self.vad)?;
        self.mixer.validate()?;
        self.output.validate()
    }
}

fn check_range<T>(field: &'static str, value: T, min: T, max: T) -> Result<(), AudioError>
where
    T: PartialOrd + std::fmt::Display,
{
    if value < min || value > max {
        return Err(AudioError::setting(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

fn check_float(field: &'static str, value: f32, min: f32, max: f32) -> Result<(), AudioError> {
    if !value.is_finite() || value < min || value > max {
        return Err(AudioError::setting(
            field,
            format!("must be a number between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        EngineSettings::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_field_and_range() {
        let mut s = EngineSettings::default();
        s.vad.aggressiveness = 7;
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("vad.aggressiveness"), "{msg}");
        assert!(msg.contains("got 7"), "{msg}");

        let mut s = EngineSettings::default();
        s.silence.cap_ms = 100;
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("silence.cap_ms"), "{msg}");

        let mut s = EngineSettings::default();
        s.mixer.gap_min_ms = 500;
        s.mixer.gap_max_ms = 100;
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("mixer.gap_min_ms"), "{msg}");

        let mut s = EngineSettings::default();
        s.mixer.duck_gain_db = f32::NAN;
        assert!(s.validate().is_err());

        let mut s = EngineSettings::default();
        s.output.codec = OutputCodec::Opus(OpusSettings {
            complexity: 11,
            ..OpusSettings::default()
        });
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("output.opus.complexity"), "{msg}");
    }
}
