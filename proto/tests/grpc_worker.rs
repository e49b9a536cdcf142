//! End to end over real gRPC on 127.0.0.1: the server adapter around the
//! in-memory `WorkerApi`, called through `GrpcWorkerClient`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{stream, StreamExt};
use glyphoxa_proto::v1::session_worker_service_client::SessionWorkerServiceClient;
use glyphoxa_proto::v1::*;
use glyphoxa_proto::{ApiError, ClientConfig, GrpcWorkerClient, PcmStream, WorkerApi};
use tonic::Code;

async fn setup(memory: MemoryWorker) -> (Arc<MemoryWorker>, TestServer, GrpcWorkerClient) {
    let memory = Arc::new(memory);
    let server = spawn_worker(memory.clone()).await;
    let client = GrpcWorkerClient::connect(&server.address, ClientConfig::default())
        .await
        .expect("connect");
    (memory, server, client)
}

fn session(id: &str) -> String {
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_rpc_over_grpc() {
    let (memory, _server, client) = setup(MemoryWorker::new(4)).await;
    let worker: Arc<dyn WorkerApi> = Arc::new(client);
    let s1 = session("s-1");

    // StartSession: the whole request crosses the wire intact.
    let request = start_session_request(&s1);
    let started = worker.start_session(request.clone()).await.unwrap();
    assert_eq!(started.worker_id, "memory-worker");
    let status = started.session.unwrap();
    assert_eq!(status.session_id, s1);
    assert_eq!(status.state, SessionState::Active as i32);
    assert_eq!(status.guild_id, "222222222222222222");
    assert_eq!(memory.sessions.lock().unwrap()[&s1].request, request);

    // GetStatus: all sessions, then one.
    worker.start_session(start_session_request("s-2")).await.unwrap();
    let all = worker.get_status(GetStatusRequest::default()).await.unwrap();
    let load = all.load.unwrap();
    assert_eq!((load.active_sessions, load.capacity), (2, 4));
    let ids: Vec<&str> = all.sessions.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, ["s-1", "s-2"]);
    let one = worker
        .get_status(GetStatusRequest {
            session_id: Some(s1.clone()),
        })
        .await
        .unwrap();
    assert_eq!(one.sessions.len(), 1);
    assert_eq!(one.sessions[0].session_id, s1);

    // UpdateVoiceServer.
    worker
        .update_voice_server(UpdateVoiceServerRequest {
            session_id: s1.clone(),
            token: "token-2".into(),
            endpoint: "eu-west42.discord.media:443".into(),
            voice_session_id: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        memory.sessions.lock().unwrap()[&s1].voice,
        ("token-2".to_string(), "eu-west42.discord.media:443".to_string())
    );

    // UpdateKnowledge: one replaced, one added, one removed.
    let updated = worker
        .update_knowledge(UpdateKnowledgeRequest {
            session_id: s1.clone(),
            upserted: vec![
                entity("e-phandalin", "Phandalin (renamed)"),
                entity("e-cragmaw", "Cragmaw Castle"),
            ],
            removed_entity_ids: vec!["e-phandalin".into()],
        })
        .await
        .unwrap();
    assert_eq!(updated.entity_count, 1);
    assert_eq!(
        memory.sessions.lock().unwrap()[&s1]
            .knowledge
            .keys()
            .collect::<Vec<_>>(),
        ["e-cragmaw"]
    );

    // ListNPCs.
    let listed = worker
        .list_npcs(ListNpcsRequest { session_id: s1.clone() })
        .await
        .unwrap();
    let names: Vec<(&str, bool)> = listed.npcs.iter().map(|n| (n.name.as_str(), n.muted)).collect();
    assert_eq!(names, [("Grimble", false), ("Sildar Hallwinter", false)]);

    // MuteNPC / UnmuteNPC, case-insensitive.
    let muted = worker
        .mute_npc(MuteNpcRequest {
            session_id: s1.clone(),
            name: "grimble".into(),
        })
        .await
        .unwrap();
    assert_eq!(muted.npc.as_ref().unwrap().name, "Grimble");
    assert!(muted.npc.unwrap().muted);
    assert!(muted.changed);
    let again = worker
        .mute_npc(MuteNpcRequest {
            session_id: s1.clone(),
            name: "GRIMBLE".into(),
        })
        .await
        .unwrap();
    assert!(!again.changed);
    let unmuted = worker
        .unmute_npc(UnmuteNpcRequest {
            session_id: s1.clone(),
            name: "Grimble".into(),
        })
        .await
        .unwrap();
    assert!(!unmuted.npc.unwrap().muted);
    assert!(unmuted.changed);

    // SpeakNPC.
    let spoke = worker
        .speak_npc(SpeakNpcRequest {
            session_id: s1.clone(),
            name: "sildar hallwinter".into(),
            text: "Well met, travellers.".into(),
        })
        .await
        .unwrap();
    assert_eq!(spoke.npc.unwrap().id, "sildar");
    assert_eq!(spoke.turn_id, "puppet-1");
    assert_eq!(
        memory.sessions.lock().unwrap()[&s1].spoken,
        [("sildar".to_string(), "Well met, travellers.".to_string())]
    );

    // MuteAllNPCs / UnmuteAllNPCs count only the NPCs that changed.
    worker
        .mute_npc(MuteNpcRequest {
            session_id: s1.clone(),
            name: "Grimble".into(),
        })
        .await
        .unwrap();
    let all_muted = worker
        .mute_all_npcs(MuteAllNpcsRequest { session_id: s1.clone() })
        .await
        .unwrap();
    assert_eq!(all_muted.changed, 1);
    let all_unmuted = worker
        .unmute_all_npcs(UnmuteAllNpcsRequest { session_id: s1.clone() })
        .await
        .unwrap();
    assert_eq!(all_unmuted.changed, 2);

    // PlayAudio: header then several chunks, seen in order by the server.
    let chunks: Vec<Vec<u8>> = (0..6).map(|i| pcm_chunk(i, 480 + i as usize)).collect();
    let pcm: PcmStream = Box::pin(stream::iter(chunks.clone().into_iter().map(Ok)));
    let played = worker.play_audio(play_audio_header(&s1), pcm).await.unwrap();
    let frames: usize = chunks.iter().map(|c| c.len() / 4).sum();
    assert_eq!(played.played_ms, (frames * 1000 / 24_000) as u64);
    assert!(!played.interrupted);
    {
        let log = memory.played.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, play_audio_header(&s1));
        assert_eq!(log[0].1, chunks);
    }

    // StopSession, then NOT_FOUND for the second stop.
    let stopped = worker
        .stop_session(StopSessionRequest {
            session_id: s1.clone(),
            reason: "/session stop".into(),
        })
        .await
        .unwrap();
    let final_status = stopped.session.unwrap();
    assert_eq!(final_status.state, SessionState::Ended as i32);
    assert!(final_status.ended_at_unix_ms > 0);
    let twice = worker
        .stop_session(StopSessionRequest {
            session_id: s1.clone(),
            reason: "/session stop".into(),
        })
        .await;
    assert_eq!(twice, Err(ApiError::not_found("no session \"s-1\"")));
}

#[tokio::test]
async fn not_found_travels_as_not_found() {
    let (_memory, server, client) = setup(MemoryWorker::new(1)).await;
    let result = client
        .list_npcs(ListNpcsRequest {
            session_id: "nope".into(),
        })
        .await;
    assert_eq!(result, Err(ApiError::not_found("no session \"nope\"")));

    // On the wire it is the NOT_FOUND status code.
    let mut raw = SessionWorkerServiceClient::connect(format!("http://{}", server.address))
        .await
        .unwrap();
    let status = raw
        .list_np_cs(ListNpcsRequest {
            session_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no session \"nope\"");

    // Unknown NPC of a known session too.
    client.start_session(start_session_request("s-1")).await.unwrap();
    let result = client
        .mute_npc(MuteNpcRequest {
            session_id: "s-1".into(),
            name: "Bob".into(),
        })
        .await;
    assert_eq!(result, Err(ApiError::not_found("no NPC named \"Bob\"")));
}

#[tokio::test]
async fn invalid_argument_travels_as_invalid_argument() {
    let (_memory, server, client) = setup(MemoryWorker::new(1)).await;
    client.start_session(start_session_request("s-1")).await.unwrap();
    let result = client
        .speak_npc(SpeakNpcRequest {
            session_id: "s-1".into(),
            name: "Grimble".into(),
            text: "   ".into(),
        })
        .await;
    assert_eq!(result, Err(ApiError::invalid_argument("text is empty")));

    let mut raw = SessionWorkerServiceClient::connect(format!("http://{}", server.address))
        .await
        .unwrap();
    let status = raw
        .speak_npc(SpeakNpcRequest {
            session_id: "s-1".into(),
            name: "Grimble".into(),
            text: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "text is empty");
}

#[tokio::test]
async fn full_worker_is_resource_exhausted_and_muted_npc_failed_precondition() {
    let (_memory, _server, client) = setup(MemoryWorker::new(1)).await;
    client.start_session(start_session_request("s-1")).await.unwrap();
    let full = client.start_session(start_session_request("s-2")).await;
    assert_eq!(full, Err(ApiError::resource_exhausted("worker full (1/1)")));
    assert!(full.unwrap_err().is_retryable());

    client
        .mute_npc(MuteNpcRequest {
            session_id: "s-1".into(),
            name: "Grimble".into(),
        })
        .await
        .unwrap();
    let muted = client
        .speak_npc(SpeakNpcRequest {
            session_id: "s-1".into(),
            name: "Grimble".into(),
            text: "hello".into(),
        })
        .await;
    assert_eq!(muted, Err(ApiError::failed_precondition("Grimble is muted")));
}

#[tokio::test]
async fn slow_worker_yields_deadline_exceeded() {
    let mut memory = MemoryWorker::new(1);
    memory.delay = Duration::from_secs(3);
    let memory = Arc::new(memory);
    let server = spawn_worker(memory.clone()).await;
    let client = GrpcWorkerClient::connect(&server.address, ClientConfig::with_deadline(Duration::from_millis(200)))
        .await
        .unwrap();

    let started = Instant::now();
    let result = client.get_status(GetStatusRequest::default()).await;
    let elapsed = started.elapsed();
    assert!(matches!(result, Err(ApiError::DeadlineExceeded(_))), "{result:?}");
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // Streams have their own deadline.
    let client = GrpcWorkerClient::connect(
        &server.address,
        ClientConfig {
            stream_deadline: Duration::from_millis(200),
            ..ClientConfig::default()
        },
    )
    .await
    .unwrap();
    let pcm: PcmStream = Box::pin(stream::iter(vec![Ok(pcm_chunk(1, 480))]));
    let result = client.play_audio(play_audio_header("s-1"), pcm).await;
    assert!(matches!(result, Err(ApiError::DeadlineExceeded(_))), "{result:?}");
}

#[tokio::test]
async fn the_server_enforces_the_sent_deadline() {
    // A raw client that sets grpc-timeout but does not enforce it itself:
    // the server adapter's side must cut the call off.
    let mut memory = MemoryWorker::new(1);
    memory.delay = Duration::from_secs(3);
    let server = spawn_worker(Arc::new(memory)).await;
    let mut raw = SessionWorkerServiceClient::connect(format!("http://{}", server.address))
        .await
        .unwrap();
    let mut request = tonic::Request::new(GetStatusRequest::default());
    request.set_timeout(Duration::from_millis(150));
    let started = Instant::now();
    let status = raw.get_status(request).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(ApiError::from(status), ApiError::DeadlineExceeded(_)));
}

#[tokio::test]
async fn play_audio_source_error_aborts_the_stream() {
    let (memory, _server, client) = setup(MemoryWorker::new(1)).await;
    client.start_session(start_session_request("s-1")).await.unwrap();
    let pcm: PcmStream = Box::pin(stream::iter(vec![
        Ok(pcm_chunk(1, 480)),
        Ok(pcm_chunk(2, 480)),
        Err(ApiError::unavailable("TTS provider hung up")),
        Ok(pcm_chunk(3, 480)),
    ]));
    let result = client.play_audio(play_audio_header("s-1"), pcm).await;
    assert_eq!(result, Err(ApiError::unavailable("TTS provider hung up")));

    // The worker saw the two chunks, then a CANCELLED abort naming the cause,
    // and never the chunk after the error.
    let played = memory.played.lock().unwrap();
    assert_eq!(played[0].1, [pcm_chunk(1, 480), pcm_chunk(2, 480)]);
    let errors = memory.play_errors.lock().unwrap();
    match &errors[..] {
        [ApiError::Cancelled(message)] => {
            assert!(message.contains("TTS provider hung up"), "{message}")
        }
        other => panic!("expected one Cancelled, got {other:?}"),
    }
}

#[tokio::test]
async fn play_audio_must_start_with_a_header() {
    let (_memory, server, _client) = setup(MemoryWorker::new(1)).await;
    let mut raw = SessionWorkerServiceClient::connect(format!("http://{}", server.address))
        .await
        .unwrap();
    let chunk_first = stream::iter(vec![PlayAudioRequest {
        payload: Some(play_audio_request::Payload::Pcm(pcm_chunk(1, 10))),
    }]);
    let status = raw.play_audio(chunk_first).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let empty = stream::iter(Vec::<PlayAudioRequest>::new());
    let status = raw.play_audio(empty).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_audio_has_back_pressure() {
    // The worker stalls after the first chunk; the sender must stall too
    // instead of the whole stream being buffered.
    const CHUNKS: usize = 400;
    const FRAMES: usize = 8 * 1024; // 32 KiB per chunk, 12.5 MiB in total
    let mut memory = MemoryWorker::new(1);
    memory.stall_after_first_chunk = Duration::from_millis(700);
    let (memory, _server, client) = setup(memory).await;
    client.start_session(start_session_request("s-1")).await.unwrap();

    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    let pcm: PcmStream = Box::pin(stream::iter(0..CHUNKS).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(pcm_chunk((i % 200) as u8, FRAMES))
    }));
    let call = tokio::spawn(async move { client.play_audio(play_audio_header("s-1"), pcm).await });

    tokio::time::sleep(Duration::from_millis(400)).await;
    let during_stall = produced.load(Ordering::SeqCst);
    assert!(during_stall >= 1, "nothing was sent");
    assert!(
        during_stall < CHUNKS / 2,
        "{during_stall} of {CHUNKS} chunks pulled while the worker was stalled"
    );

    let played = call.await.unwrap().unwrap();
    assert_eq!(produced.load(Ordering::SeqCst), CHUNKS);
    assert_eq!(played.played_ms, (CHUNKS * FRAMES * 1000 / 24_000) as u64);
    let log = memory.played.lock().unwrap();
    assert_eq!(log[0].1.len(), CHUNKS);
    for (i, chunk) in log[0].1.iter().enumerate() {
        assert_eq!(chunk[..8], pcm_chunk((i % 200) as u8, 2)[..8], "chunk {i}");
    }
}

#[tokio::test]
async fn unreachable_worker_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);

    let lazy = GrpcWorkerClient::connect_lazy(&address, ClientConfig::default()).unwrap();
    let result = lazy.get_status(GetStatusRequest::default()).await;
    assert!(matches!(result, Err(ApiError::Unavailable(_))), "{result:?}");
    assert!(result.unwrap_err().is_retryable());

    let eager = GrpcWorkerClient::connect(&address, ClientConfig::default()).await;
    assert!(matches!(eager, Err(ApiError::Unavailable(_))), "{eager:?}");

    let bad = GrpcWorkerClient::connect_lazy("not a uri at all", ClientConfig::default());
    assert!(matches!(bad, Err(ApiError::InvalidArgument(_))), "{bad:?}");
}

#[tokio::test]
async fn a_panicking_audio_source_fails_the_call_instead_of_hanging() {
    let (memory, _server, client) = setup(MemoryWorker::new(1)).await;
    client.start_session(start_session_request("s-1")).await.unwrap();
    let pcm: PcmStream = Box::pin(stream::iter(0..3).map(|i| {
        if i == 1 {
            panic!("deliberate test panic in an audio source");
        }
        Ok(pcm_chunk(i, 480))
    }));
    let result = tokio::time::timeout(Duration::from_secs(5), client.play_audio(play_audio_header("s-1"), pcm))
        .await
        .expect("the call must not hang");
    assert!(matches!(result, Err(ApiError::Internal(_))), "{result:?}");
    assert_eq!(memory.played.lock().unwrap()[0].1, [pcm_chunk(0, 480)]);
}
