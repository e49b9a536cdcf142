//! `glyphoxa`: AI-voiced NPCs for tabletop RPGs in a Discord voice channel.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = glyphoxa::cli::Cli::parse();
    let env = std::env::vars().collect();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    glyphoxa::cli::run(cli, &env, &mut stdout, &mut stderr)
}
