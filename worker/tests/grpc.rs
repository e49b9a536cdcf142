//! The worker served over real gRPC on loopback: a whole session driven by
//! the SessionWorkerService client, with the loopback transport, fake
//! providers and an in-memory gateway receiving state, heartbeats and events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use glyphoxa_audio::fixtures::spoken;
use glyphoxa_pipeline::testing::{Scripted, ScriptedLlm, ScriptedStt, ToneTts};
use glyphoxa_proto::v1;
use glyphoxa_proto::{ApiError, ClientConfig, GrpcWorkerClient, WorkerApi};
use glyphoxa_worker::fixtures::RecordingGateway;
use glyphoxa_worker::runtime::Providers;
use glyphoxa_worker::service::{TransportFactory, Worker, WorkerSettings};
use glyphoxa_worker::transport::loopback::{LoopbackOutput, LoopbackSpeaker, LoopbackTransport};
use glyphoxa_worker::transport::VoiceTransport;

/// Loopback transports whose player says the scripted line; outputs are kept.
#[derive(Default)]
struct Loopbacks {
    speech: Vec<i16>,
    outputs: Mutex<Vec<Arc<Mutex<LoopbackOutput>>>>,
}

impl TransportFactory for Loopbacks {
    fn create(&self, _request: &v1::StartSessionRequest) -> Result<Box<dyn VoiceTransport>, ApiError> {
        let transport = LoopbackTransport::new(
            vec![LoopbackSpeaker {
                id: 1001,
                samples: self.speech.clone(),
            }],
            None,
        );
        self.outputs.lock().unwrap().push(transport.output());
        Ok(Box::new(transport))
    }
}

/// The example campaign's NPCs but the Chronicler (two NPCs answer here).
fn start_request(session_id: &str) -> v1::StartSessionRequest {
    let mut request = glyphoxa_worker::fixtures::start_request(session_id);
    request.npcs.retain(|n| n.name != "Chronicler");
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_grpc() {
    let loopbacks = Arc::new(Loopbacks {
        speech: spoken("Grimble, what do you have on tap?", 300, 2500),
        ..Loopbacks::default()
    });
    let gateway = Arc::new(RecordingGateway::default());
    let providers = Providers {
        stt: Arc::new(ScriptedStt::new(
            vec![Scripted::Answer("Grimble, what do you have on tap?".into())],
            Duration::from_millis(40),
        )),
        llm: Arc::new(ScriptedLlm::new(
            vec![Scripted::Answer("Ale, friend. Three copper.".into())],
            Duration::from_millis(60),
            Duration::from_millis(5),
        )),
        tts: Arc::new(ToneTts::new(Duration::from_millis(20), 40)),
    };
    let mut settings = WorkerSettings::new("worker-test");
    settings.heartbeat = Duration::from_millis(200);
    settings.capacity = 1;
    let worker = Worker::new(settings, providers, loopbacks.clone(), Some(gateway.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(glyphoxa_proto::server::serve_worker(worker.clone(), listener, async {
        let _ = stop_rx.await;
    }));
    let client = GrpcWorkerClient::connect(&address, ClientConfig::with_deadline(Duration::from_secs(5)))
        .await
        .unwrap();

    // Unknown sessions are NOT_FOUND; bad starts are INVALID_ARGUMENT.
    let err = client
        .list_npcs(v1::ListNpcsRequest {
            session_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound(_)), "{err}");
    let mut bad = start_request("s-bad");
    bad.npcs.clear();
    assert!(matches!(
        client.start_session(bad).await,
        Err(ApiError::InvalidArgument(_))
    ));

    let started = client.start_session(start_request("s-1")).await.unwrap();
    assert_eq!(started.worker_id, "worker-test");
    assert_eq!(started.session.unwrap().state, v1::SessionState::Active as i32);
    // Idempotent start; a second session does not fit.
    assert!(client.start_session(start_request("s-1")).await.is_ok());
    assert!(matches!(
        client.start_session(start_request("s-2")).await,
        Err(ApiError::ResourceExhausted(_))
    ));
    let status = client
        .get_status(v1::GetStatusRequest { session_id: None })
        .await
        .unwrap();
    assert_eq!(status.load.unwrap().active_sessions, 1);

    // The player's question reaches Grimble, whose answer is heard.
    let turn = wait_for(&gateway, |e| {
        matches!(&e.event, Some(v1::session_event::Event::Turn(_)))
    })
    .await;
    let Some(v1::session_event::Event::Turn(turn)) = turn.event else {
        unreachable!()
    };
    assert_eq!(turn.outcome, v1::TurnOutcome::Spoke as i32, "{turn:?}");
    assert_eq!(turn.npc_name, "Grimble");
    assert!(turn.played_ms >= 200, "the answer's played audio: {turn:?}");
    let latencies = turn.latencies.unwrap();
    let stages = [
        latencies.vad_end_of_speech_ms,
        latencies.stt_final_ms,
        latencies.llm_first_token_ms,
        latencies.first_sentence_ms,
        latencies.tts_first_audio_ms,
        latencies.first_frame_out_ms,
    ];
    assert!(stages.iter().all(Option::is_some), "{latencies:?}");
    assert!(
        stages.windows(2).all(|w| w[0] <= w[1]),
        "cumulative from speech end: {latencies:?}"
    );
    assert!(latencies.vad_end_of_speech_ms.unwrap() > 0.0);
    sleep_ms(1500).await;
    let output = loopbacks.outputs.lock().unwrap()[0].clone();
    let heard_before_controls = output.lock().unwrap().audible_frames;
    assert!(
        heard_before_controls > 30,
        "Grimble's reply is in the output ({heard_before_controls} audible frames)"
    );

    // NPC controls behave as the slash commands say.
    let npcs = client
        .list_npcs(v1::ListNpcsRequest {
            session_id: "s-1".into(),
        })
        .await
        .unwrap()
        .npcs;
    assert_eq!(
        npcs.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["Grimble", "Elara"]
    );
    let muted = client
        .mute_npc(v1::MuteNpcRequest {
            session_id: "s-1".into(),
            name: "grimble".into(),
        })
        .await
        .unwrap();
    assert!(muted.changed && muted.npc.unwrap().muted);
    let again = client
        .mute_npc(v1::MuteNpcRequest {
            session_id: "s-1".into(),
            name: "Grimble".into(),
        })
        .await
        .unwrap();
    assert!(!again.changed);
    let unknown = client
        .mute_npc(v1::MuteNpcRequest {
            session_id: "s-1".into(),
            name: "Nobody".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(unknown, ApiError::NotFound(_)));
    let refused = client
        .speak_npc(v1::SpeakNpcRequest {
            session_id: "s-1".into(),
            name: "Grimble".into(),
            text: "Hello".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ApiError::FailedPrecondition(_)),
        "a muted NPC cannot be puppeted: {refused}"
    );
    let all = client
        .mute_all_npcs(v1::MuteAllNpcsRequest {
            session_id: "s-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(all.changed, 1);
    let all = client
        .unmute_all_npcs(v1::UnmuteAllNpcsRequest {
            session_id: "s-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(all.changed, 2);
    let unmuted = client
        .unmute_npc(v1::UnmuteNpcRequest {
            session_id: "s-1".into(),
            name: "Grimble".into(),
        })
        .await
        .unwrap();
    assert!(!unmuted.changed);
    let spoken = client
        .speak_npc(v1::SpeakNpcRequest {
            session_id: "s-1".into(),
            name: "Elara".into(),
            text: "Welcome, travellers!".into(),
        })
        .await
        .unwrap();
    assert_eq!(spoken.npc.unwrap().name, "Elara");
    let line = wait_for(
        &gateway,
        |e| matches!(&e.event, Some(v1::session_event::Event::Transcript(t)) if t.text == "Welcome, travellers!"),
    )
    .await;
    assert!(line.sequence > 0);

    // PlayAudio: a narrator tone, audible in the output.
    let before = output.lock().unwrap().audible_frames;
    let tone: Vec<u8> = (0..24_000)
        .flat_map(|i: i32| ((((i % 48) - 24) * 500) as i16).to_le_bytes())
        .collect();
    let chunks: Vec<Result<Vec<u8>, ApiError>> = tone.chunks(4801).map(|c| Ok(c.to_vec())).collect();
    let played = client
        .play_audio(
            v1::PlayAudioHeader {
                session_id: "s-1".into(),
                sample_rate: 24_000,
                channels: 1,
                priority: v1::AudioPriority::Narrator as i32,
                label: "recap".into(),
            },
            Box::pin(futures_util::stream::iter(chunks)),
        )
        .await
        .unwrap();
    assert!(
        (900..=1100).contains(&played.played_ms),
        "played {} ms of 1000",
        played.played_ms
    );
    assert!(!played.interrupted);
    assert!(output.lock().unwrap().audible_frames >= before + 45);
    let bad_audio = client
        .play_audio(
            v1::PlayAudioHeader {
                session_id: "s-1".into(),
                sample_rate: 24_000,
                channels: 7,
                priority: v1::AudioPriority::Narrator as i32,
                label: "bad".into(),
            },
            Box::pin(futures_util::stream::empty()),
        )
        .await
        .unwrap_err();
    assert!(matches!(bad_audio, ApiError::InvalidArgument(_)));

    // Heartbeats flow while the session runs and stop when it ends.
    assert!(gateway.heartbeat_count() > 0);
    let stopped = client
        .stop_session(v1::StopSessionRequest {
            session_id: "s-1".into(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    assert_eq!(stopped.session.unwrap().state, v1::SessionState::Ended as i32);
    let beats = gateway.heartbeat_count();
    sleep_ms(600).await;
    assert_eq!(gateway.heartbeat_count(), beats, "no heartbeats after the end");
    assert_eq!(
        gateway.states(),
        [
            ("s-1".to_string(), v1::SessionState::Active as i32),
            ("s-1".to_string(), v1::SessionState::Ended as i32)
        ]
    );
    let again = client
        .stop_session(v1::StopSessionRequest {
            session_id: "s-1".into(),
            reason: "twice".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(again, ApiError::NotFound(_)), "a stopped session is gone");
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

async fn wait_for(gateway: &RecordingGateway, wanted: impl Fn(&v1::SessionEvent) -> bool) -> v1::SessionEvent {
    for _ in 0..300 {
        if let Some(event) = gateway.events().into_iter().find(|e| wanted(e)) {
            return event;
        }
        sleep_ms(50).await;
    }
    panic!("the event never arrived; got {:?}", gateway.events());
}
