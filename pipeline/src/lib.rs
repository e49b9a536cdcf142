//! Glyphoxa's async voice pipeline: speech and language providers, NPC
//! agents, address detection, the per-session orchestrator and campaigns.

pub mod address;
pub mod campaign;
pub mod knowledge;
pub mod metrics;
pub mod npc;
pub mod orchestrator;
pub mod playback;
pub mod providers;
pub mod recap;
pub mod roster;
pub mod splitter;
#[cfg(feature = "fakes")]
pub mod testing;
pub mod timing;
pub mod transcript;
pub mod turn;
pub mod voice_command;
pub mod yaml;
