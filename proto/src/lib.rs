//! Glyphoxa's gRPC contract between gateways and workers.
