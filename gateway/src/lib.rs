//! The Glyphoxa control plane (gateway mode; full mode uses the same parts
//! with SQLite and an in-process worker).
//!
//! - [`store`]: sqlx stores over SQLite or PostgreSQL, every query scoped to
//!   a tenant through [`store::TenantStore`]; [`migrate`] applies the
//!   embedded migrations (`glyphoxa migrate`).
//! - [`orchestrator`]: session rules (SPEC §3), worker dispatch, heartbeats
//!   and the cleanup loop.
//! - [`workers`]: [`workers::WorkerClient`], in-process or over gRPC with
//!   deadlines, circuit breakers and placement.
//! - [`gateway_api`]: the gateway's `GatewayApi` (worker reports).
//! - [`admin`]: the admin REST API; [`bots`]: the tenant-bot interface it
//!   drives.
//! - [`commands`]: the slash-command model, router, permission check and
//!   handlers (no Discord types); [`discord`]: the bots that carry them.
//! - [`server`]: [`run`], the entry point of `glyphoxa --mode gateway`.

#![warn(missing_docs)]

pub mod admin;
pub mod bots;
pub mod commands;
pub mod crypto;
pub mod discord;
pub mod gateway_api;
pub mod ids;
pub mod orchestrator;
pub mod server;
pub mod store;
pub mod time;
pub mod workers;

pub use server::{run, run_with_bots, Gateway, GatewayError, GatewaySettings};
pub use store::migrate;
