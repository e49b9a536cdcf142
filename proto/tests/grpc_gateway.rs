//! End to end over real gRPC on 127.0.0.1: the server adapter around the
//! in-memory `GatewayApi`, called through `GrpcGatewayClient`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::stream;
use glyphoxa_proto::v1::session_gateway_service_client::SessionGatewayServiceClient;
use glyphoxa_proto::v1::*;
use glyphoxa_proto::{ApiError, ClientConfig, GatewayApi, GrpcGatewayClient, SessionEventStream};
use tonic::Code;

async fn setup(memory: MemoryGateway) -> (Arc<MemoryGateway>, TestServer, GrpcGatewayClient) {
    let memory = Arc::new(memory);
    let server = spawn_gateway(memory.clone()).await;
    let client = GrpcGatewayClient::connect(&server.address, ClientConfig::default())
        .await
        .expect("connect");
    (memory, server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_rpc_over_grpc() {
    let (memory, _server, client) = setup(MemoryGateway::with_sessions(&["s-1", "s-2"])).await;
    let gateway: Arc<dyn GatewayApi> = Arc::new(client);

    // ReportState.
    let report = ReportStateRequest {
        session_id: "s-1".into(),
        state: SessionState::Active as i32,
        error: String::new(),
        worker_id: "worker-a".into(),
        changed_at_unix_ms: 1_760_000_000_000,
    };
    gateway.report_state(report.clone()).await.unwrap();
    assert_eq!(*memory.states.lock().unwrap(), [report]);
    assert_eq!(memory.sessions.lock().unwrap()["s-1"], SessionState::Active);

    // Heartbeat answers with the gateway's view of the session.
    let beat = HeartbeatRequest {
        session_id: "s-1".into(),
        worker_id: "worker-a".into(),
        sent_at_unix_ms: 1_760_000_010_000,
    };
    let answer = gateway.heartbeat(beat.clone()).await.unwrap();
    assert_eq!(answer.state, SessionState::Active as i32);
    let pending = gateway
        .heartbeat(HeartbeatRequest {
            session_id: "s-2".into(),
            ..beat.clone()
        })
        .await
        .unwrap();
    assert_eq!(pending.state, SessionState::Pending as i32);
    assert_eq!(memory.heartbeats.lock().unwrap()[0], beat);

    // ReportEvents: several events of two sessions, one resent duplicate.
    let mut events = session_events("s-1");
    let mut other = session_events("s-2");
    other.truncate(2);
    events.extend(other);
    events.push(session_events("s-1")[2].clone()); // duplicate of sequence 3
    let expected: Vec<SessionEvent> = events[..5].to_vec();
    let stream: SessionEventStream = Box::pin(stream::iter(events.into_iter().map(Ok)));
    let ack = gateway.report_events(stream).await.unwrap();
    assert_eq!(ack.accepted, 5);
    assert_eq!(ack.last_sequence.get("s-1"), Some(&3));
    assert_eq!(ack.last_sequence.get("s-2"), Some(&2));
    assert_eq!(*memory.events.lock().unwrap(), expected);
}

#[tokio::test]
async fn not_found_and_invalid_argument_travel_as_such() {
    let (_memory, server, client) = setup(MemoryGateway::with_sessions(&["s-1"])).await;
    let unknown = client
        .heartbeat(HeartbeatRequest {
            session_id: "ghost".into(),
            worker_id: "worker-a".into(),
            sent_at_unix_ms: 1,
        })
        .await;
    assert_eq!(unknown, Err(ApiError::not_found("no session \"ghost\"")));

    let invalid = client
        .report_state(ReportStateRequest {
            session_id: "s-1".into(),
            state: SessionState::Unspecified as i32,
            ..Default::default()
        })
        .await;
    assert_eq!(invalid, Err(ApiError::invalid_argument("state is unspecified")));

    let mut raw = SessionGatewayServiceClient::connect(format!("http://{}", server.address))
        .await
        .unwrap();
    let status = raw
        .heartbeat(HeartbeatRequest {
            session_id: "ghost".into(),
            worker_id: "worker-a".into(),
            sent_at_unix_ms: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = raw
        .heartbeat(HeartbeatRequest {
            session_id: "s-1".into(),
            worker_id: String::new(),
            sent_at_unix_ms: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "worker_id is empty");
}

#[tokio::test]
async fn slow_gateway_yields_deadline_exceeded() {
    let memory = MemoryGateway {
        delay: Duration::from_secs(3),
        ..MemoryGateway::with_sessions(&["s-1"])
    };
    let server = spawn_gateway(Arc::new(memory)).await;
    let client = GrpcGatewayClient::connect(&server.address, ClientConfig::with_deadline(Duration::from_millis(200)))
        .await
        .unwrap();
    let started = Instant::now();
    let result = client
        .heartbeat(HeartbeatRequest {
            session_id: "s-1".into(),
            worker_id: "worker-a".into(),
            sent_at_unix_ms: 1,
        })
        .await;
    assert!(matches!(result, Err(ApiError::DeadlineExceeded(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn event_source_error_ends_the_stream_and_reaches_the_caller() {
    let (memory, _server, client) = setup(MemoryGateway::with_sessions(&["s-1"])).await;
    let events = session_events("s-1");
    let stream: SessionEventStream = Box::pin(stream::iter(vec![
        Ok(events[0].clone()),
        Ok(events[1].clone()),
        Err(ApiError::internal("event channel closed")),
        Ok(events[2].clone()),
    ]));
    let result = client.report_events(stream).await;
    assert_eq!(result, Err(ApiError::internal("event channel closed")));
    // What was sent before the error is persisted; nothing after it.
    let sequences: Vec<u64> = memory.events.lock().unwrap().iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2]);
}
