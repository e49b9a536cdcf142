//! The realtime audio core of a Glyphoxa voice session.
//!
//! One dedicated OS thread per session runs a 20 ms tick ([`SessionEngine`],
//! [`SessionCore`]): it segments each speaker's audio with a VAD, mixes the
//! NPCs' speech and hands one output frame to the voice transport. Nothing on
//! that thread allocates, blocks or logs. This crate knows nothing of
//! Discord, gRPC or async runtimes.
//!
//! ```no_run
//! use glyphoxa_audio::{
//!     output_ring, EngineSettings, NpcId, RealClock, SessionEngine, SourceSpec, SpeakerId,
//! };
//! # fn main() -> Result<(), glyphoxa_audio::AudioError> {
//! let (sink, mut frames) = output_ring(50);
//! let (engine, mut handles) = SessionEngine::spawn(
//!     "session-1",
//!     &EngineSettings::default(),
//!     Box::new(sink),
//!     RealClock::new(glyphoxa_audio::stagger_phase(0)),
//! )?;
//! // The transport pushes 16 kHz mono frames per speaker ...
//! let mut alice = handles.control.attach_speaker(SpeakerId(42))?;
//! alice.push_frame(&[0i16; 320])?;
//! // ... the pipeline writes TTS audio into a source ...
//! let mut line = handles.control.open_source(SourceSpec::npc(NpcId(1), 24_000, 1))?;
//! line.write(&[0i16; 480]);
//! handles.control.finish_source(line)?;
//! // ... and polls events, utterance audio and output frames.
//! while let Some(event) = handles.events.try_recv() { let _ = event; }
//! while let Some(frame) = frames.try_recv() { let _ = frame.opus(); }
//! engine.stop();
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod control;
pub mod engine;
pub mod error;
pub mod events;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod frame;
pub mod mixer;
pub mod opus;
pub mod output;
pub mod resample;
pub mod segmenter;
pub mod segments;
pub mod settings;
pub mod silence_clock;
pub mod speaker;
pub mod stats;
pub mod tick;
pub mod vad;
pub mod wav;

pub use crate::clock::{
    stagger_phase, Clock, ClockSnapshot, ClockStats, ClockStepper, ClockStopper, RealClock, VirtualClock,
};
pub use crate::control::{SessionControl, SpeakerInput};
pub use crate::engine::SessionEngine;
pub use crate::error::AudioError;
pub use crate::events::{
    ChunkKind, EngineEvent, EventReceiver, SpeechEnd, Utterance, UtteranceAssembler, UtteranceChunk, UtteranceReceiver,
};
pub use crate::frame::{
    InputFrame, NpcId, QueueId, SourceId, SpeakerId, UtteranceId, FRAME_MS, INPUT_FRAME_SAMPLES, INPUT_SAMPLE_RATE,
    OUTPUT_CHANNELS, OUTPUT_FRAME_LEN, OUTPUT_FRAME_SAMPLES, OUTPUT_SAMPLE_RATE,
};
pub use crate::mixer::{SourceClass, SourceReport, SourceSpec, SourceWriter};
pub use crate::opus::{OpusFrameEncoder, OpusSpeakerDecoder, MAX_OPUS_PACKET};
pub use crate::output::{output_ring, NullSink, OutputFrame, OutputPacket, OutputReceiver, OutputSink, RingSink};
pub use crate::resample::StreamResampler;
pub use crate::segmenter::EndReason;
pub use crate::segments::{segment_samples, segment_wav, segment_wav_file, Segment, Segmentation};
pub use crate::settings::{
    EngineSettings, MixerSettings, OpusApplication, OpusSettings, OutputCodec, OutputSettings, Outranked,
    SilenceClockSettings, VadSettings,
};
pub use crate::stats::StatsSnapshot;
pub use crate::tick::{SessionCore, SessionHandles, TickOutcome};
pub use crate::vad::VoiceDetector;
pub use crate::wav::{read_wav, read_wav_file, WavAudio};

#[cfg(test)]
mod tests {
    use super::*;

    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_cross_threads() {
        send_sync::<SessionControl>();
        send::<SpeakerInput>();
        send::<SourceWriter>();
        send::<EventReceiver>();
        send::<UtteranceReceiver>();
        send::<OutputReceiver>();
        send::<OutputPacket>();
        send::<RingSink>();
        send::<SessionEngine>();
        send_sync::<ClockStats>();
        send::<ClockStepper>();
    }
}
