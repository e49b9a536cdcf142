//! Errors of the audio core. Every variant says what went wrong and, where it
//! helps, what to do about it.

use crate::frame::SpeakerId;

/// Everything that can go wrong in `glyphoxa-audio`.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A settings field is out of range; the message names the accepted range.
    #[error("invalid audio setting `{field}`: {message}")]
    InvalidSetting {
        /// The dotted path of the field, e.g. `vad.hangover_ms`.
        field: &'static str,
        /// What is wrong and what is accepted.
        message: String,
    },

    /// Reading a file or stream failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read.
        context: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The input is not a WAV file this reader understands.
    #[error("not a usable WAV file: {0}")]
    WavFormat(String),

    /// The WAV file ends before its data chunk does.
    #[error("truncated WAV file: the data chunk declares {declared} bytes but the file ends after {found}")]
    TruncatedWav {
        /// Bytes the data chunk header promises.
        declared: u64,
        /// Bytes actually present.
        found: u64,
    },

    /// A sample rate outside what the core can handle.
    #[error("unsupported sample rate {rate} Hz: {reason}")]
    UnsupportedSampleRate {
        /// The offending rate.
        rate: u32,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A channel count outside what the core can handle.
    #[error("unsupported channel count {channels}: {reason}")]
    UnsupportedChannels {
        /// The offending count.
        channels: u32,
        /// Why it is refused.
        reason: &'static str,
    },

    /// An audio frame or packet without any samples.
    #[error("empty {what}: a frame must carry 20 ms of audio")]
    EmptyFrame {
        /// Which kind of frame was empty.
        what: &'static str,
    },

    /// A frame of the wrong length.
    #[error("{what} has {got} samples, expected {expected}")]
    FrameLength {
        /// Which kind of frame.
        what: &'static str,
        /// The expected sample count.
        expected: usize,
        /// The sample count received.
        got: usize,
    },

    /// The Opus library refused an operation (e.g. a garbage packet).
    #[error("opus {context} failed: {source}")]
    Opus {
        /// What was attempted.
        context: &'static str,
        /// The libopus error.
        #[source]
        source: opus2::Error,
    },

    /// The resampler could not be built or run.
    #[error("resampler {context} failed: {message}")]
    Resampler {
        /// What was attempted.
        context: &'static str,
        /// Rubato's message.
        message: String,
    },

    /// The engine's command queue is full: the tick thread is stalled or gone.
    #[error("the audio engine's command queue is full (is the session's tick thread running?)")]
    CommandQueueFull,

    /// The engine has shut down; its handles no longer do anything.
    #[error("the audio engine has stopped")]
    EngineStopped,

    /// All speaker slots are taken; raise `max_speakers` in the settings.
    #[error("no free speaker slot: all {max} are in use (raise `max_speakers`)")]
    NoFreeSpeakerSlot {
        /// The configured slot count.
        max: usize,
    },

    /// The speaker already has an input attached.
    #[error("speaker {0:?} already has an input attached")]
    SpeakerAlreadyAttached(SpeakerId),

    /// The bot itself cannot be attached as a speaker (it would hear itself).
    #[error("speaker {0:?} is the bot itself; its audio is never listened to")]
    OwnSpeaker(SpeakerId),

    /// A speaker's input ring is full: the tick thread is not keeping up.
    #[error("input ring of speaker {0:?} is full; frame dropped")]
    InputFull(SpeakerId),

    /// The realtime thread could not be started.
    #[error("could not start the audio tick thread: {0}")]
    ThreadSpawn(#[source] std::io::Error),
}

impl AudioError {
    /// Shorthand for [`AudioError::InvalidSetting`].
    pub(crate) fn setting(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidSetting {
            field,
            message: message.into(),
        }
    }
}
