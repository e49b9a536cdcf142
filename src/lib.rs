//! The `glyphoxa` binary's library: configuration and the command line.
//!
//! The binary wires the workspace crates together; everything a mode needs
//! is built from a [`config::Config`].

pub mod cli;
pub mod config;
pub mod demo;
pub mod full_mode;
pub mod gateway_mode;
pub mod logging;
pub mod models;
pub mod observability;
pub mod replay;
pub mod worker_mode;
