//! A whole session on the loopback transport: generated speech in, the real
//! audio engine and NPC brain, fake providers, NPC audio out.

use std::sync::Arc;
use std::time::Duration;

use glyphoxa_audio::fixtures::spoken;
use glyphoxa_audio::EngineSettings;
use glyphoxa_pipeline::campaign::Campaign;
use glyphoxa_pipeline::knowledge::Knowledge;
use glyphoxa_pipeline::orchestrator::{SessionEvent, SessionSettings};
use glyphoxa_pipeline::roster::{NpcId, Roster};
use glyphoxa_pipeline::testing::{Scripted, ScriptedLlm, ScriptedStt, ToneTts};
use glyphoxa_pipeline::timing::TurnOutcome;
use glyphoxa_pipeline::transcript::MemoryTranscript;
use glyphoxa_worker::runtime::{Providers, SessionRuntime, SessionSpec};
use glyphoxa_worker::transport::loopback::{LoopbackSpeaker, LoopbackTransport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_asks_and_the_addressed_npc_answers_through_the_engine() {
    let campaign = Campaign::example();
    let stt = Arc::new(ScriptedStt::new(
        vec![Scripted::Answer("Grimble, what do you have on tap?".into())],
        Duration::from_millis(50),
    ));
    let llm = Arc::new(ScriptedLlm::new(
        vec![Scripted::Answer("Ale and mead. Three copper each.".into())],
        Duration::from_millis(80),
        Duration::from_millis(10),
    ));
    let tts = Arc::new(ToneTts::new(Duration::from_millis(30), 40));
    let transcript = Arc::new(MemoryTranscript::default());
    let transport = LoopbackTransport::new(
        vec![LoopbackSpeaker {
            id: 1001,
            samples: spoken("Grimble, what do you have on tap?", 300, 3500),
        }],
        None,
    );
    let output = transport.output();
    let mut brain = SessionSettings::new("rt-1", campaign.campaign.clone());
    brain.dm_user_id = Some("9999".into());
    let (runtime, mut events) = SessionRuntime::start(
        SessionSpec {
            brain,
            engine: EngineSettings::default(),
            roster: Roster::from_definitions(&campaign.npcs),
            knowledge: Knowledge::from_entities(&campaign.entities),
            transcript: transcript.clone(),
            phase: Duration::ZERO,
        },
        Providers {
            stt: stt.clone(),
            llm: llm.clone(),
            tts,
        },
        Box::new(transport),
    )
    .await
    .unwrap();

    // Wait for the turn (the clip is about 2.5 s, plus hangover and the reply).
    let turn = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.recv().await {
                Some(SessionEvent::Turn(turn)) => break turn,
                Some(_) => {}
                None => panic!("the session ended without a turn"),
            }
        }
    })
    .await
    .expect("a turn within 15 s");
    assert_eq!(turn.outcome, TurnOutcome::Spoke, "{turn:?}");
    assert_eq!(turn.npc, Some(NpcId::from_name("Grimble")));
    assert_eq!(turn.speaker_id, "1001");
    assert_eq!(turn.reply_heard, "Ale and mead. Three copper each.");
    let latencies = turn.timings.latencies();
    let vad = latencies.vad_ms.unwrap();
    assert!((250.0..=600.0).contains(&vad), "VAD end-of-speech delay {vad} ms");
    assert!(
        latencies.first_frame_ms.unwrap() <= 45.0,
        "first frame {:?} ms after TTS audio",
        latencies.first_frame_ms
    );
    // The utterance audio reached STT: about the clip's length (pre-roll included).
    let (_, samples) = stt.requests()[0].clone();
    assert!(samples > 16_000, "{samples} samples");

    let transport = runtime.stop().await.unwrap();
    assert_eq!(transport.name(), "loopback");
    let output = output.lock().unwrap().clone();
    assert!(output.audible_frames >= 50, "{} audible frames", output.audible_frames);
    assert!(
        output.rms() > 50.0,
        "the NPC is audible in the output (rms {})",
        output.rms()
    );
    let lines = transcript.entries();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1].text, "Ale and mead. Three copper each.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_server_move_reaches_the_transport_of_a_running_session() {
    let campaign = Campaign::example();
    let transport = LoopbackTransport::new(Vec::new(), None);
    let output = transport.output();
    let (runtime, _events) = SessionRuntime::start(
        SessionSpec {
            brain: SessionSettings::new("rt-move", campaign.campaign.clone()),
            engine: EngineSettings::default(),
            roster: Roster::from_definitions(&campaign.npcs),
            knowledge: Knowledge::from_entities(&campaign.entities),
            transcript: Arc::new(MemoryTranscript::default()),
            phase: Duration::ZERO,
        },
        Providers {
            stt: Arc::new(ScriptedStt::new(vec![], Duration::ZERO)),
            llm: Arc::new(ScriptedLlm::new(vec![], Duration::ZERO, Duration::ZERO)),
            tts: Arc::new(ToneTts::new(Duration::ZERO, 10)),
        },
        Box::new(transport),
    )
    .await
    .unwrap();
    runtime
        .update_voice_server("token-2", "eu-west42.discord.media:443", "")
        .await
        .unwrap();
    runtime
        .update_voice_server("token-3", "us-east7.discord.media:443", "voice-session-2")
        .await
        .unwrap();
    assert_eq!(
        output.lock().unwrap().voice_server_moves,
        ["eu-west42.discord.media:443", "us-east7.discord.media:443"]
    );
    runtime.stop().await.unwrap();
}
