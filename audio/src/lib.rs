//! The realtime audio core of a Glyphoxa voice session.
//!
//! One dedicated OS thread per session runs a 20 ms tick: it segments each
//! speaker's audio with a VAD, mixes the NPCs' speech and hands one output
//! frame to the voice transport. Nothing on that thread allocates, blocks or
//! logs. This crate knows nothing of Discord, gRPC or async runtimes.
