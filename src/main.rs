//! `glyphoxa`: AI-voiced NPCs for tabletop RPGs in a Discord voice channel.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = glyphoxa::cli::Cli::parse();
    let env = std::env::vars().collect();
    // Unlocked handles: the logger writes to stderr from other threads while
    // a mode runs, so this thread must not hold stderr's lock meanwhile.
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    glyphoxa::cli::run(cli, &env, &mut stdout, &mut stderr)
}
