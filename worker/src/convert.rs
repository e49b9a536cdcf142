//! Conversions between the gRPC contract's messages and the pipeline's types.

use std::time::{SystemTime, UNIX_EPOCH};

use glyphoxa_pipeline::campaign::{Entity, EntityKind, NpcDefinition, Relationship, VoiceSpec};
use glyphoxa_pipeline::knowledge::{derived_id, KnownEntity};
use glyphoxa_pipeline::orchestrator::{NpcStatus, SessionEvent};
use glyphoxa_pipeline::roster::{Npc, NpcId};
use glyphoxa_pipeline::timing::{TurnOutcome, TurnResult};
use glyphoxa_pipeline::transcript::{EntryKind, TranscriptEntry};
use glyphoxa_proto::v1;
use glyphoxa_proto::ApiError;

/// Unix milliseconds of a wall-clock time.
pub fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// An NPC of a StartSession request; its id is kept (or derived from the name).
pub fn npc(definition: &v1::NpcDefinition) -> Result<Npc, ApiError> {
    let name = definition.name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid_argument("every NPC needs a name"));
    }
    if definition.personality.trim().is_empty() {
        return Err(ApiError::invalid_argument(format!("NPC {name:?} has no personality")));
    }
    let voice = definition
        .voice
        .as_ref()
        .map_or_else(VoiceSpec::default, |v| VoiceSpec {
            provider: Some(v.provider.clone()).filter(|p| !p.is_empty()),
            voice_id: Some(v.voice_id.clone()).filter(|id| !id.is_empty()),
            speed: if v.speed > 0.0 { v.speed.clamp(0.25, 4.0) } else { 1.0 },
            pitch: v.pitch.clamp(-100.0, 100.0).round() as i32,
        });
    let id = if definition.id.trim().is_empty() {
        NpcId::from_name(name)
    } else {
        NpcId(definition.id.trim().to_string())
    };
    Ok(Npc {
        id,
        definition: NpcDefinition {
            name: name.to_string(),
            personality: definition.personality.trim().to_string(),
            voice,
            address_only: definition.address_only,
            gm_helper: definition.gm_helper,
        },
        muted: false,
    })
}

fn entity_kind(kind: i32) -> Result<EntityKind, ApiError> {
    match v1::EntityType::try_from(kind) {
        Ok(v1::EntityType::Npc) => Ok(EntityKind::Npc),
        Ok(v1::EntityType::Location) => Ok(EntityKind::Location),
        Ok(v1::EntityType::Item) => Ok(EntityKind::Item),
        Ok(v1::EntityType::Faction) => Ok(EntityKind::Faction),
        Ok(v1::EntityType::Quest) => Ok(EntityKind::Quest),
        Ok(v1::EntityType::Lore) => Ok(EntityKind::Lore),
        _ => Err(ApiError::invalid_argument(format!("unknown entity type {kind}"))),
    }
}

/// A campaign entity of the contract as session knowledge.
pub fn entity(entity: &v1::Entity) -> Result<KnownEntity, ApiError> {
    let name = entity.name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid_argument("an entity has no name"));
    }
    let converted = Entity {
        name: name.to_string(),
        kind: entity_kind(entity.r#type)?,
        description: entity.description.clone(),
        tags: entity.tags.clone(),
        properties: entity.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        relationships: entity
            .relationships
            .iter()
            .map(|r| Relationship {
                target: r.target.clone(),
                kind: r.r#type.clone(),
            })
            .collect(),
    };
    let id = if entity.id.trim().is_empty() {
        derived_id(&converted)
    } else {
        entity.id.trim().to_string()
    };
    Ok(KnownEntity { id, entity: converted })
}

/// An NPC's status in the contract's terms.
pub fn npc_status(status: &NpcStatus) -> v1::NpcStatus {
    v1::NpcStatus {
        id: status.id.to_string(),
        name: status.name.clone(),
        muted: status.muted,
    }
}

fn outcome(outcome: TurnOutcome) -> v1::TurnOutcome {
    match outcome {
        TurnOutcome::Spoke => v1::TurnOutcome::Spoke,
        TurnOutcome::Cut => v1::TurnOutcome::Cut,
        TurnOutcome::Failed => v1::TurnOutcome::Failed,
        TurnOutcome::Yielded => v1::TurnOutcome::Yielded,
        TurnOutcome::NoTarget => v1::TurnOutcome::NoTarget,
    }
}

fn transcript_line(entry: &TranscriptEntry) -> v1::TranscriptLine {
    v1::TranscriptLine {
        speaker_id: entry.speaker_id.clone(),
        speaker_name: entry.speaker_name.clone(),
        npc_id: entry.npc_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        text: entry.text.clone(),
        start_unix_ms: unix_ms(entry.started_at),
        end_unix_ms: unix_ms(entry.ended_at),
        outcome: match entry.kind {
            EntryKind::Utterance => v1::TurnOutcome::Unspecified,
            EntryKind::Spoke => v1::TurnOutcome::Spoke,
            EntryKind::Cut => v1::TurnOutcome::Cut,
        } as i32,
        turn_id: String::new(),
        puppet: false,
    }
}

fn turn_result(turn: &TurnResult, npc_name: &str, speech_end_unix_ms: i64) -> v1::TurnResult {
    // The contract counts every stage from the moment the voice stopped.
    let t = &turn.timings;
    let since_speech_end = |at: Option<tokio::time::Instant>| match (t.speech_end.or(t.vad_end), at) {
        (Some(from), Some(to)) => Some(to.saturating_duration_since(from).as_secs_f64() * 1000.0),
        _ => None,
    };
    v1::TurnResult {
        turn_id: turn.turn_id.to_string(),
        npc_id: turn.npc.as_ref().map(ToString::to_string).unwrap_or_default(),
        npc_name: npc_name.to_string(),
        outcome: outcome(turn.outcome) as i32,
        latencies: Some(v1::StageLatencies {
            vad_end_of_speech_ms: since_speech_end(t.vad_end),
            stt_final_ms: since_speech_end(t.stt_final),
            llm_first_token_ms: since_speech_end(t.llm_first_token),
            first_sentence_ms: since_speech_end(t.first_sentence),
            tts_first_audio_ms: since_speech_end(t.tts_first_audio),
            first_frame_out_ms: since_speech_end(t.first_frame),
        }),
        speech_end_unix_ms,
        speaker_id: turn.speaker_id.clone(),
        error: turn.error.clone().unwrap_or_default(),
        played_ms: turn.played_ms.max(0.0).round() as u64,
    }
}

/// A brain event as the contract's `SessionEvent`; `names` resolves NPC names.
pub fn session_event(
    session_id: &str,
    sequence: u64,
    event: &SessionEvent,
    npc_name: impl Fn(&NpcId) -> String,
) -> v1::SessionEvent {
    let now = unix_ms(SystemTime::now());
    let payload = match event {
        SessionEvent::Transcript(entry) => v1::session_event::Event::Transcript(transcript_line(entry)),
        SessionEvent::Turn(turn) => {
            let name = turn.npc.as_ref().map(&npc_name).unwrap_or_default();
            // Monotonic instants have no wall-clock meaning; place speech end relative to now.
            let speech_end = turn
                .timings
                .speech_end
                .map(|at| now - tokio::time::Instant::now().saturating_duration_since(at).as_millis() as i64)
                .unwrap_or(0);
            v1::session_event::Event::Turn(turn_result(turn, &name, speech_end))
        }
        SessionEvent::NpcState(status) => v1::session_event::Event::NpcState(v1::NpcStateChange {
            npc_id: status.id.to_string(),
            npc_name: status.name.clone(),
            muted: status.muted,
        }),
    };
    v1::SessionEvent {
        session_id: session_id.to_string(),
        sequence,
        at_unix_ms: now,
        event: Some(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npcs_need_name_and_personality_and_keep_ids() {
        let mut definition = v1::NpcDefinition {
            id: "npc-7".into(),
            name: " Grimble ".into(),
            personality: "grumpy".into(),
            voice: Some(v1::VoiceProfile {
                provider: "espeak".into(),
                voice_id: "en-us+m3".into(),
                speed: 9.0,
                pitch: -20.4,
            }),
            address_only: true,
            gm_helper: false,
        };
        let converted = npc(&definition).unwrap();
        assert_eq!(converted.id, NpcId("npc-7".into()));
        assert_eq!(converted.definition.name, "Grimble");
        assert_eq!(converted.definition.voice.speed, 4.0);
        assert_eq!(converted.definition.voice.pitch, -20);
        assert!(converted.definition.address_only);
        definition.personality.clear();
        assert!(matches!(npc(&definition), Err(ApiError::InvalidArgument(_))));
        definition.name.clear();
        assert!(matches!(npc(&definition), Err(ApiError::InvalidArgument(_))));
    }

    #[test]
    fn entities_convert_and_reject_unknown_types() {
        let mut e = v1::Entity {
            id: String::new(),
            name: "Phandalin".into(),
            r#type: v1::EntityType::Location as i32,
            description: "a town".into(),
            tags: vec!["town".into()],
            properties: [("size".to_string(), "small".to_string())].into(),
            relationships: vec![v1::Relationship {
                target: "Redbrands".into(),
                r#type: "plagued_by".into(),
            }],
        };
        let known = entity(&e).unwrap();
        assert_eq!(known.id, "location:phandalin");
        assert_eq!(known.entity.relationships[0].kind, "plagued_by");
        e.r#type = 99;
        assert!(entity(&e).is_err());
        e.r#type = 0;
        assert!(entity(&e).is_err());
    }
}
