//! The traits used in-process (as full mode does): an in-memory
//! implementation behind `Arc<dyn WorkerApi>` / `Arc<dyn GatewayApi>`.

mod common;

use std::sync::Arc;

use common::*;
use futures_util::stream;
use glyphoxa_proto::v1::*;
use glyphoxa_proto::{ApiError, GatewayApi, PcmStream, SessionEventStream, WorkerApi};

#[tokio::test]
async fn worker_api_as_trait_object() {
    let memory = Arc::new(MemoryWorker::new(1));
    let worker: Arc<dyn WorkerApi> = memory.clone();

    let started = worker.start_session(start_session_request("s-1")).await.unwrap();
    assert_eq!(started.session.unwrap().state, SessionState::Active as i32);
    // Full: a second session is refused.
    let full = worker.start_session(start_session_request("s-2")).await;
    assert!(matches!(full, Err(ApiError::ResourceExhausted(_))), "{full:?}");

    let muted = worker
        .mute_npc(MuteNpcRequest {
            session_id: "s-1".into(),
            name: "GRIMBLE".into(),
        })
        .await
        .unwrap();
    assert_eq!(muted.npc.unwrap().name, "Grimble");
    assert!(muted.changed);
    let all = worker
        .mute_all_npcs(MuteAllNpcsRequest {
            session_id: "s-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(all.changed, 1, "only Sildar was still unmuted");

    let pcm: PcmStream = Box::pin(stream::iter(vec![Ok(pcm_chunk(1, 240)), Ok(pcm_chunk(2, 240))]));
    let played = worker.play_audio(play_audio_header("s-1"), pcm).await.unwrap();
    assert_eq!(played.played_ms, 20, "480 frames at 24 kHz");

    let stopped = worker
        .stop_session(StopSessionRequest {
            session_id: "s-1".into(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    assert_eq!(stopped.session.unwrap().state, SessionState::Ended as i32);
    let again = worker
        .stop_session(StopSessionRequest {
            session_id: "s-1".into(),
            reason: "test".into(),
        })
        .await;
    assert!(matches!(again, Err(ApiError::NotFound(_))), "{again:?}");
    assert_eq!(memory.played.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn gateway_api_as_trait_object() {
    let memory = Arc::new(MemoryGateway::with_sessions(&["s-1"]));
    let gateway: Arc<dyn GatewayApi> = memory.clone();

    gateway
        .report_state(ReportStateRequest {
            session_id: "s-1".into(),
            state: SessionState::Active as i32,
            error: String::new(),
            worker_id: "w".into(),
            changed_at_unix_ms: 1,
        })
        .await
        .unwrap();
    let beat = gateway
        .heartbeat(HeartbeatRequest {
            session_id: "s-1".into(),
            worker_id: "w".into(),
            sent_at_unix_ms: 2,
        })
        .await
        .unwrap();
    assert_eq!(beat.state, SessionState::Active as i32);

    let mut events = session_events("s-1");
    events.insert(1, events[0].clone()); // a resent duplicate
    let stream: SessionEventStream = Box::pin(stream::iter(events.into_iter().map(Ok)));
    let ack = gateway.report_events(stream).await.unwrap();
    assert_eq!(ack.accepted, 3);
    assert_eq!(ack.last_sequence.get("s-1"), Some(&3));
    let sequences: Vec<u64> = memory.events.lock().unwrap().iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2, 3]);
}
