//! The Glyphoxa voice worker: one realtime session runtime per voice
//! session, voice transports (Discord, loopback) and the `SessionWorkerService`.

pub mod convert;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod metrics;
pub mod playback;
pub mod replay;
pub mod runtime;
pub mod service;
pub mod transport;
