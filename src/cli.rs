//! The command line: `glyphoxa [--config FILE] [--mode full|gateway|worker] [COMMAND]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Environment, LoadedConfig, Mode};

/// AI-voiced NPCs for tabletop RPGs, living in a Discord voice channel.
#[derive(Debug, Parser)]
#[command(name = "glyphoxa", version, about)]
pub struct Cli {
    /// Configuration file (default: ./glyphoxa.yaml if it exists, otherwise built-in defaults).
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which part of Glyphoxa this process runs.
    #[arg(long, value_enum, default_value_t = Mode::Full, global = true, env = "GLYPHOXA_MODE")]
    pub mode: Mode,
    /// What to do instead of running the mode.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the configuration (and campaign file) and print the effective
    /// configuration with secrets redacted.
    CheckConfig {
        /// Also fail when the selected --mode could not start with this configuration.
        #[arg(long)]
        strict: bool,
    },
}

/// Exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a mode that cannot run (not available, missing requirements).
const EXIT_UNAVAILABLE: u8 = 3;

/// Runs the command line with an explicit environment and output streams.
pub fn run(cli: Cli, env: &Environment, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let loaded = match LoadedConfig::load(cli.config.as_deref(), env) {
        Ok(loaded) => loaded,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Some(Command::CheckConfig { strict }) => check_config(&loaded, cli.mode, strict, out, err),
        None => run_mode(&loaded, cli.mode, err),
    }
}

fn check_config(loaded: &LoadedConfig, mode: Mode, strict: bool, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let campaign = match loaded.config.load_campaign() {
        Ok(campaign) => campaign,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _ = writeln!(
        out,
        "# effective configuration of {mode} mode from {} (secrets redacted)",
        loaded.source()
    );
    let _ = write!(out, "{}", loaded.config.effective(mode).to_redacted_yaml());
    for (kind, entry) in loaded.config.provider_entries() {
        if entry.is_none() {
            let local = kind.names().first().copied().unwrap_or("local");
            let _ = writeln!(
                out,
                "# providers.{}: not configured, using the offline `{local}` engine",
                kind.key()
            );
        }
    }
    let _ = writeln!(
        out,
        "# campaign: {:?} with {} NPCs ({}) and {} entities",
        campaign.campaign.name,
        campaign.npcs.len(),
        campaign
            .npcs
            .iter()
            .map(|npc| npc.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        campaign.entities.len()
    );
    let missing = loaded.config.requirements(mode);
    for item in &missing {
        let _ = writeln!(err, "{}: {mode} mode: {item}", if strict { "error" } else { "note" });
    }
    if strict && !missing.is_empty() {
        return ExitCode::from(EXIT_CONFIG);
    }
    let _ = writeln!(err, "configuration OK");
    ExitCode::SUCCESS
}

fn run_mode(loaded: &LoadedConfig, mode: Mode, err: &mut dyn Write) -> ExitCode {
    let missing = loaded.config.requirements(mode);
    if !missing.is_empty() {
        let _ = writeln!(
            err,
            "error: {mode} mode cannot start with the configuration from {}:",
            loaded.source()
        );
        for item in &missing {
            let _ = writeln!(err, "  {item}");
        }
        return ExitCode::from(EXIT_CONFIG);
    }
    let _ = writeln!(
        err,
        "error: {mode} mode is not available in this build yet; `glyphoxa check-config` works (see README.md for what is ready)"
    );
    ExitCode::from(EXIT_UNAVAILABLE)
}
