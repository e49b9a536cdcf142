//! Replays of generated speech with scripted providers: determinism, provider
//! time in the report, virtual time standing still during calls, and the
//! real-time pacing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glyphoxa_audio::EngineSettings;
use glyphoxa_pipeline::campaign::Campaign;
use glyphoxa_pipeline::knowledge::Knowledge;
use glyphoxa_pipeline::orchestrator::SessionSettings;
use glyphoxa_pipeline::providers::{SpeechToText, SttRequest};
use glyphoxa_pipeline::roster::Roster;
use glyphoxa_pipeline::testing::{Scripted, ScriptedLlm, ScriptedStt, ToneTts};
use tokio::time::Instant;

use super::gate::ProviderGate;
use super::{replay, Pacing, ReplayReport, ReplaySpec, ReportTurn, StageTimes};
use crate::runtime::Providers;
use crate::transport::loopback::LoopbackSpeaker;

/// Speech from espeak-ng as 16 kHz mono.
fn spoken(text: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("say.wav");
    let status = std::process::Command::new("espeak-ng")
        .arg("-w")
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng runs (scripts/setup.sh installs it)");
    assert!(status.success());
    LoopbackSpeaker::from_wav(1, &path).unwrap().samples
}

const ANA: &str = "Grimble, what do you have on tap?";
const BRAM: &str = "Elara, a song.";

/// Ana asks Grimble; Bram starts asking Elara 300 ms after Ana's voice
/// ends. Returns the two tracks (same length).
fn scene() -> (Vec<i16>, Vec<i16>) {
    let ms = |ms: usize| ms * 16;
    let ana_line = spoken(ANA);
    let bram_line = spoken(BRAM);
    let mut ana = vec![0; ms(300)];
    ana.extend(&ana_line);
    let mut bram = vec![0; ana.len() + ms(300)];
    bram.extend(&bram_line);
    let length = bram.len() + ms(4_000);
    ana.resize(length, 0);
    bram.resize(length, 0);
    (ana, bram)
}

/// Scripted providers: `stt`, `llm` (first token) and `tts` (first audio) latency.
struct Fakes {
    stt: Arc<ScriptedStt>,
    providers: Providers,
}

fn fakes(stt: Duration, llm: Duration, tts: Duration) -> Fakes {
    let stt_fake = Arc::new(ScriptedStt::new(
        vec![Scripted::Answer(ANA.into()), Scripted::Answer(BRAM.into())],
        stt,
    ));
    Fakes {
        stt: stt_fake.clone(),
        providers: Providers {
            stt: stt_fake,
            llm: Arc::new(ScriptedLlm::new(
                vec![
                    Scripted::Answer("Aye.".into()),
                    Scripted::Answer("Gladly! Gather round.".into()),
                ],
                llm,
                Duration::from_millis(5),
            )),
            tts: Arc::new(ToneTts::new(tts, 30)),
        },
    }
}

fn spec(tracks: &(Vec<i16>, Vec<i16>), pacing: Pacing) -> ReplaySpec {
    let campaign = Campaign::example();
    ReplaySpec {
        speakers: vec![
            (
                "ana".into(),
                LoopbackSpeaker {
                    id: 1001,
                    samples: tracks.0.clone(),
                },
            ),
            (
                "bram".into(),
                LoopbackSpeaker {
                    id: 1002,
                    samples: tracks.1.clone(),
                },
            ),
        ],
        brain: SessionSettings::new("replay-test", campaign.campaign.clone()),
        engine: EngineSettings::default(),
        roster: Roster::from_definitions(&campaign.npcs),
        knowledge: Knowledge::from_entities(&campaign.entities),
        drain_timeout: Duration::from_secs(30),
        pacing,
    }
}

/// What must not change between runs: who said what when, who answered
/// what, how it ended (everything but the measured latencies).
fn outcome(report: &ReplayReport) -> Vec<ReportTurn> {
    report
        .turns
        .iter()
        .map(|turn| ReportTurn {
            stages: StageTimes::default(),
            ..turn.clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_replays_are_identical_however_slow_the_providers() {
    let tracks = scene();
    let fast = fakes(Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let fast_report = replay(spec(&tracks, Pacing::Virtual), fast.providers.clone(), |_, _| {})
        .await
        .unwrap();
    // Slow enough that in real time Bram's question would be transcribed
    // while Grimble is still thinking (Grimble would yield the floor): in
    // the virtual replay the calls take no virtual time, so nothing changes.
    let (stt, llm, tts) = (
        Duration::from_millis(300),
        Duration::from_millis(1_200),
        Duration::from_millis(150),
    );
    let slow = fakes(stt, llm, tts);
    let slow_report = replay(spec(&tracks, Pacing::Virtual), slow.providers.clone(), |_, _| {})
        .await
        .unwrap();
    let again = fakes(stt, llm, tts);
    let again_report = replay(spec(&tracks, Pacing::Virtual), again.providers.clone(), |_, _| {})
        .await
        .unwrap();

    let turns = outcome(&fast_report);
    assert_eq!(turns.len(), 2, "{}", fast_report.table());
    assert_eq!((turns[0].speaker.as_str(), turns[0].transcript.as_str()), ("ana", ANA));
    assert_eq!(turns[0].npc.as_deref(), Some("Grimble"));
    assert_eq!((turns[0].reply.as_str(), turns[0].outcome.as_str()), ("Aye.", "spoke"));
    assert_eq!(
        (turns[1].speaker.as_str(), turns[1].npc.as_deref()),
        ("bram", Some("Elara"))
    );
    assert_eq!(turns[1].outcome, "spoke", "{}", fast_report.table());
    for report in [&slow_report, &again_report] {
        assert_eq!(outcome(report), turns, "{}\n{}", fast_report.table(), report.table());
        assert_eq!(report.summary.output_ms, fast_report.summary.output_ms);
        assert_eq!(report.summary.audible_frames, fast_report.summary.audible_frames);
        assert!(
            report.output.samples == fast_report.output.samples,
            "the NPC audio differs"
        );
        assert_eq!(report.summary.input_ms, fast_report.summary.input_ms);
    }
    // STT requests went out in speech order, with the same audio each time.
    let sizes = |fakes: &Fakes| fakes.stt.requests().iter().map(|(_, n)| *n).collect::<Vec<_>>();
    assert_eq!(sizes(&fast).len(), 2);
    assert_eq!(sizes(&slow), sizes(&fast));
    assert_eq!(sizes(&again), sizes(&fast));

    // The providers' time is in the report, on top of the virtual time.
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for turn in &slow_report.turns {
        let s = &turn.stages;
        let (vad, stt_at) = (s.vad_end_ms.unwrap(), s.stt_final_ms.unwrap());
        let (token, sentence) = (s.llm_first_token_ms.unwrap(), s.first_sentence_ms.unwrap());
        let (audio, frame) = (s.tts_first_audio_ms.unwrap(), s.first_frame_ms.unwrap());
        assert!(stt_at - vad >= ms(stt), "{turn:?}");
        assert!(token - stt_at >= ms(llm), "{turn:?}");
        assert!(sentence >= token && audio - sentence >= ms(tts), "{turn:?}");
        assert!(frame >= audio, "{turn:?}");
    }
    // The input positions are the same whatever the providers did.
    assert_eq!(
        slow_report.turns[1].speech_end_at_ms,
        fast_report.turns[1].speech_end_at_ms
    );
}

#[test]
fn virtual_time_stands_still_while_a_provider_call_is_in_flight() {
    let providers = tokio::runtime::Runtime::new().unwrap();
    let handle = providers.handle().clone();
    let stt = Arc::new(ScriptedStt::new(
        vec![Scripted::Answer("slow".into())],
        Duration::from_millis(300),
    ));
    let inner: Arc<dyn SpeechToText> = stt.clone();
    let replay = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    replay.block_on(async move {
        let gate = ProviderGate::new(&handle, tokio::runtime::Handle::current());
        let gated = gate
            .wrap(Providers {
                stt: inner,
                llm: Arc::new(ScriptedLlm::new(vec![], Duration::ZERO, Duration::ZERO)),
                tts: Arc::new(ToneTts::new(Duration::ZERO, 10)),
            })
            .stt;
        // A timer 10 ms of virtual time away.
        let rang = Arc::new(AtomicBool::new(false));
        let bell = rang.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            bell.store(true, Ordering::SeqCst);
        });
        let before = Instant::now();
        let wall = std::time::Instant::now();
        let session = gated.open(SttRequest::default()).await.unwrap();
        let transcript = session.transcribe(&[0; 3200]).await.unwrap();
        assert_eq!(transcript.text, "slow");
        assert!(
            wall.elapsed() >= Duration::from_millis(300),
            "the call really took its time"
        );
        assert_eq!(Instant::now(), before, "no virtual time passed during the call");
        assert!(!rang.load(Ordering::SeqCst), "no timer fired during the call");
        assert_eq!(gate.in_flight(), 0);
        // Without a call in flight, time moves on as soon as there is nothing to do.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(rang.load(Ordering::SeqCst));
    });
    assert_eq!(stt.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_pacing_still_answers() {
    let mut line = vec![0; 300 * 16];
    line.extend(spoken(ANA));
    line.extend(vec![0; 2_500 * 16]);
    let mut spec = spec(&(line.clone(), line), Pacing::Realtime);
    spec.speakers.truncate(1);
    let fakes = fakes(
        Duration::from_millis(20),
        Duration::from_millis(20),
        Duration::from_millis(20),
    );
    let mut calls = 0;
    let report = replay(spec, fakes.providers, |_, _| calls += 1).await.unwrap();
    assert_eq!(report.turns.len(), 1, "{}", report.table());
    let turn = &report.turns[0];
    assert_eq!((turn.npc.as_deref(), turn.outcome.as_str()), (Some("Grimble"), "spoke"));
    assert_eq!(turn.reply, "Aye.");
    assert!(report.summary.audible_frames > 0);
    assert!(calls >= 1, "progress is reported");
}
