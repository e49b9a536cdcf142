//! Glyphoxa's async voice pipeline: speech and language providers, NPC
//! agents, address detection, the per-session orchestrator and campaigns.

pub mod campaign;
pub mod providers;
pub mod yaml;
