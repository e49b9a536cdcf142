//! prost encode → decode round trip of every message of `glyphoxa.v1`,
//! filled with non-default values (oneofs, maps, enums, optionals included).

mod common;

use std::collections::HashMap;
use std::fmt::Debug;

use common::*;
use glyphoxa_proto::v1::*;
use prost::Message;

/// Encodes `message`, decodes it back and checks it is unchanged. Also checks
/// that the message is not the default one (so every fixture really carries
/// data) unless `allow_empty`, and that a length-delimited encoding
/// round-trips too.
fn round_trip<M>(message: M, allow_empty: bool)
where
    M: Message + Default + PartialEq + Debug,
{
    if !allow_empty {
        assert_ne!(message, M::default(), "fixture must not be empty");
    }
    let bytes = message.encode_to_vec();
    assert_eq!(bytes.len(), message.encoded_len());
    if !allow_empty {
        assert!(!bytes.is_empty());
    }
    let decoded = M::decode(bytes.as_slice()).expect("decode");
    assert_eq!(decoded, message);

    let delimited = message.encode_length_delimited_to_vec();
    let decoded = M::decode_length_delimited(delimited.as_slice()).expect("decode delimited");
    assert_eq!(decoded, message);
}

#[test]
fn common_messages_round_trip() {
    round_trip(voice_profile(), false);
    round_trip(npc("grimble", "Grimble"), false);
    round_trip(
        Relationship {
            target: "e-tresendar".into(),
            r#type: "located_in".into(),
        },
        false,
    );
    round_trip(entity("e-phandalin", "Phandalin"), false);
    round_trip(npc_status(), false);
}

#[test]
fn worker_messages_round_trip() {
    round_trip(voice_credentials(), false);
    round_trip(start_session_request("s-1"), false);
    round_trip(
        StartSessionResponse {
            session: Some(session_status("s-1")),
            worker_id: "worker-a".into(),
        },
        false,
    );
    round_trip(
        StopSessionRequest {
            session_id: "s-1".into(),
            reason: "/session stop".into(),
        },
        false,
    );
    round_trip(
        StopSessionResponse {
            session: Some(SessionStatus {
                state: SessionState::Ended as i32,
                ..session_status("s-1")
            }),
        },
        false,
    );
    round_trip(session_status("s-1"), false);
    round_trip(
        GetStatusRequest {
            session_id: Some("s-1".into()),
        },
        false,
    );
    round_trip(
        WorkerLoad {
            active_sessions: 3,
            capacity: 8,
            draining: true,
        },
        false,
    );
    round_trip(
        GetStatusResponse {
            worker_id: "worker-a".into(),
            sessions: vec![session_status("s-1"), session_status("s-2")],
            load: Some(WorkerLoad {
                active_sessions: 2,
                capacity: 8,
                draining: false,
            }),
            version: "0.1.0".into(),
        },
        false,
    );
    round_trip(
        UpdateVoiceServerRequest {
            session_id: "s-1".into(),
            token: "new-token".into(),
            endpoint: "eu-west42.discord.media:443".into(),
            voice_session_id: "voice-session-def".into(),
        },
        false,
    );
    round_trip(UpdateVoiceServerResponse {}, true);
    round_trip(
        UpdateKnowledgeRequest {
            session_id: "s-1".into(),
            upserted: vec![entity("e-1", "Phandalin"), entity("e-2", "Cragmaw Castle")],
            removed_entity_ids: vec!["e-9".into(), "e-10".into()],
        },
        false,
    );
    round_trip(UpdateKnowledgeResponse { entity_count: 42 }, false);
    round_trip(
        ListNpcsRequest {
            session_id: "s-1".into(),
        },
        false,
    );
    round_trip(
        ListNpcsResponse {
            npcs: vec![
                npc_status(),
                NpcStatus {
                    id: "sildar".into(),
                    name: "Sildar Hallwinter".into(),
                    muted: false,
                },
            ],
        },
        false,
    );
    round_trip(
        MuteNpcRequest {
            session_id: "s-1".into(),
            name: "grimble".into(),
        },
        false,
    );
    round_trip(
        MuteNpcResponse {
            npc: Some(npc_status()),
            changed: true,
        },
        false,
    );
    round_trip(
        UnmuteNpcRequest {
            session_id: "s-1".into(),
            name: "GRIMBLE".into(),
        },
        false,
    );
    round_trip(
        UnmuteNpcResponse {
            npc: Some(npc_status()),
            changed: true,
        },
        false,
    );
    round_trip(
        SpeakNpcRequest {
            session_id: "s-1".into(),
            name: "Grimble".into(),
            text: "Welcome to the Stonehill Inn!".into(),
        },
        false,
    );
    round_trip(
        SpeakNpcResponse {
            npc: Some(npc_status()),
            turn_id: "puppet-3".into(),
        },
        false,
    );
    round_trip(
        MuteAllNpcsRequest {
            session_id: "s-1".into(),
        },
        false,
    );
    round_trip(MuteAllNpcsResponse { changed: 3 }, false);
    round_trip(
        UnmuteAllNpcsRequest {
            session_id: "s-1".into(),
        },
        false,
    );
    round_trip(UnmuteAllNpcsResponse { changed: 2 }, false);
    round_trip(play_audio_header("s-1"), false);
    round_trip(
        PlayAudioRequest {
            payload: Some(play_audio_request::Payload::Header(play_audio_header("s-1"))),
        },
        false,
    );
    round_trip(
        PlayAudioRequest {
            payload: Some(play_audio_request::Payload::Pcm(pcm_chunk(7, 480))),
        },
        false,
    );
    round_trip(
        PlayAudioRequest {
            payload: Some(play_audio_request::Payload::Abort("tts failed".into())),
        },
        false,
    );
    round_trip(
        PlayAudioResponse {
            played_ms: 61_250,
            interrupted: true,
        },
        false,
    );
}

#[test]
fn gateway_messages_round_trip() {
    round_trip(
        ReportStateRequest {
            session_id: "s-1".into(),
            state: SessionState::Ended as i32,
            error: "voice connection lost".into(),
            worker_id: "worker-a".into(),
            changed_at_unix_ms: 1_760_000_500_000,
        },
        false,
    );
    round_trip(ReportStateResponse {}, true);
    round_trip(
        HeartbeatRequest {
            session_id: "s-1".into(),
            worker_id: "worker-a".into(),
            sent_at_unix_ms: 1_760_000_010_000,
        },
        false,
    );
    round_trip(
        HeartbeatResponse {
            state: SessionState::Active as i32,
        },
        false,
    );
    for event in session_events("s-1") {
        round_trip(event, false);
    }
    round_trip(transcript_line(), false);
    round_trip(stage_latencies(), false);
    round_trip(turn_result(), false);
    round_trip(npc_state_change(), false);
    round_trip(
        ReportEventsResponse {
            accepted: 3,
            last_sequence: HashMap::from([("s-1".to_string(), 3), ("s-2".to_string(), 17)]),
        },
        false,
    );
}

#[test]
fn oneof_variants_decode_to_the_right_variant() {
    let bytes = PlayAudioRequest {
        payload: Some(play_audio_request::Payload::Pcm(vec![1, 0, 2, 0])),
    }
    .encode_to_vec();
    match PlayAudioRequest::decode(bytes.as_slice()).unwrap().payload {
        Some(play_audio_request::Payload::Pcm(pcm)) => assert_eq!(pcm, vec![1, 0, 2, 0]),
        other => panic!("expected pcm, got {other:?}"),
    }

    let kinds: Vec<&str> = session_events("s-1")
        .into_iter()
        .map(|e| {
            let decoded = SessionEvent::decode(e.encode_to_vec().as_slice()).unwrap();
            match decoded.event {
                Some(session_event::Event::Transcript(_)) => "transcript",
                Some(session_event::Event::Turn(_)) => "turn",
                Some(session_event::Event::NpcState(_)) => "npc_state",
                None => "none",
            }
        })
        .collect();
    assert_eq!(kinds, ["transcript", "turn", "npc_state"]);
}

#[test]
fn absent_stage_latencies_stay_absent() {
    let partial = StageLatencies {
        vad_end_of_speech_ms: Some(0.0),
        stt_final_ms: Some(350.0),
        ..Default::default()
    };
    let decoded = StageLatencies::decode(partial.encode_to_vec().as_slice()).unwrap();
    // A stage reached at 0 ms is distinguishable from a stage never reached.
    assert_eq!(decoded.vad_end_of_speech_ms, Some(0.0));
    assert_eq!(decoded.llm_first_token_ms, None);
    assert_eq!(decoded, partial);
}

#[test]
fn enums_have_the_contract_names() {
    assert_eq!(LicenseTier::Dedicated.as_str_name(), "LICENSE_TIER_DEDICATED");
    assert_eq!(SessionState::Pending as i32, 1);
    assert_eq!(SessionState::Active as i32, 2);
    assert_eq!(SessionState::Ended as i32, 3);
    let entity_types: Vec<&str> = [
        EntityType::Npc,
        EntityType::Location,
        EntityType::Item,
        EntityType::Faction,
        EntityType::Quest,
        EntityType::Lore,
    ]
    .iter()
    .map(|t| t.as_str_name())
    .collect();
    assert_eq!(
        entity_types,
        [
            "ENTITY_TYPE_NPC",
            "ENTITY_TYPE_LOCATION",
            "ENTITY_TYPE_ITEM",
            "ENTITY_TYPE_FACTION",
            "ENTITY_TYPE_QUEST",
            "ENTITY_TYPE_LORE"
        ]
    );
    assert!(AudioPriority::Narrator as i32 > AudioPriority::Npc as i32);
    assert!(AudioPriority::Npc as i32 > AudioPriority::Ambience as i32);
    assert_eq!(
        TurnOutcome::from_str_name("TURN_OUTCOME_NO_TARGET"),
        Some(TurnOutcome::NoTarget)
    );
    assert_eq!(TurnOutcome::Yielded.as_str_name(), "TURN_OUTCOME_YIELDED");
    // An unknown enum value from a newer peer survives decoding as its number.
    let future = Entity {
        r#type: 99,
        ..entity("e-1", "x")
    };
    let decoded = Entity::decode(future.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded.r#type, 99);
    assert!(EntityType::try_from(decoded.r#type).is_err());
}
