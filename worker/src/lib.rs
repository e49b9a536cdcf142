//! The Glyphoxa voice worker: one realtime session runtime per voice session,
//! voice transports (Discord, loopback) and the `SessionWorkerService`.
