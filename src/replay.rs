//! `glyphoxa replay`: a session offline from WAV files (see
//! [`glyphoxa_worker::replay`]), with the configured providers and campaign.
//! Deterministic by default (virtual time that stands still while a
//! provider answers); `--realtime` plays the input against the wall clock.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use glyphoxa_pipeline::knowledge::Knowledge;
use glyphoxa_pipeline::orchestrator::SessionSettings;
use glyphoxa_pipeline::roster::Roster;
use glyphoxa_worker::replay::{replay, Pacing, ReplaySpec};
use glyphoxa_worker::transport::loopback::LoopbackSpeaker;

use crate::config::Config;

/// The files of one replay.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// Speaker recordings, one per speaker.
    pub inputs: Vec<PathBuf>,
    /// Where the NPC audio goes.
    pub out: Option<PathBuf>,
    /// Where the JSON report goes.
    pub report: Option<PathBuf>,
    /// Which input is the DM.
    pub dm: Option<PathBuf>,
    /// Play the input in real time instead of on the deterministic virtual clock.
    pub realtime: bool,
}

/// Runs the replay, prints the table to `out` and progress to `err`.
pub async fn run(
    config: &Config,
    request: ReplayRequest,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let campaign = config.load_campaign()?;
    let providers = crate::worker_mode::providers(config)?;
    let mut speakers = Vec::new();
    let mut dm_id = None;
    for (i, path) in request.inputs.iter().enumerate() {
        let id = 1001 + i as u64;
        let speaker = LoopbackSpeaker::from_wav(id, path).with_context(|| format!("input {}", path.display()))?;
        let name = path
            .file_stem()
            .map_or_else(|| format!("speaker{}", i + 1), |s| s.to_string_lossy().into_owned());
        if request.dm.as_ref() == Some(path) {
            dm_id = Some(id.to_string());
        }
        speakers.push((name, speaker));
    }
    if let (Some(dm), None) = (&request.dm, &dm_id) {
        anyhow::bail!("--dm {} is not one of the inputs", dm.display());
    }
    // Local engines load in the background; wait for them here so the first
    // turn's latencies measure the pipeline, not the model load.
    providers.stt.ready().await.context("speech to text")?;
    providers.llm.ready().await.context("language model")?;
    let mut brain = SessionSettings::new("replay", campaign.campaign.clone());
    brain.dm_user_id = dm_id;
    brain.barge_in_confirm = config
        .audio
        .barge_in
        .enabled
        .then(|| Duration::from_millis(u64::from(config.audio.barge_in.confirm_ms.get())));
    brain.coalesce = Duration::from_millis(u64::from(config.audio.barge_in.coalesce_ms.get()));
    let engine = glyphoxa_audio::EngineSettings {
        vad: config.audio.vad.to_settings(),
        ..glyphoxa_audio::EngineSettings::default()
    };
    let spec = ReplaySpec {
        speakers,
        brain,
        engine,
        roster: Roster::from_definitions(&campaign.npcs),
        knowledge: Knowledge::from_entities(&campaign.entities),
        drain_timeout: Duration::from_secs(60),
        pacing: if request.realtime {
            Pacing::Realtime
        } else {
            Pacing::Virtual
        },
    };
    let _ = writeln!(
        err,
        "replaying {} input(s) against {:?} {}",
        request.inputs.len(),
        campaign.campaign.name,
        if request.realtime {
            "in real time"
        } else {
            "on a virtual clock (deterministic; provider time is measured and added to the latencies)"
        }
    );
    let report = replay(spec, providers, |heard, total| {
        eprintln!("  {:.1} s / {:.1} s", heard as f64 / 1000.0, total as f64 / 1000.0);
    })
    .await
    .context("the replay session failed")?;
    write!(out, "{}", report.table())?;
    if let Some(path) = &request.out {
        report
            .output
            .write_wav(path)
            .with_context(|| format!("writing {}", path.display()))?;
        let _ = writeln!(err, "NPC audio written to {}", path.display());
    }
    if let Some(path) = &request.report {
        std::fs::write(path, report.to_json()).with_context(|| format!("writing {}", path.display()))?;
        let _ = writeln!(err, "report written to {}", path.display());
    }
    Ok(())
}
