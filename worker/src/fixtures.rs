//! Requests and a recording gateway for tests and benches (feature
//! `fixtures`).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use glyphoxa_pipeline::campaign::Campaign;
use glyphoxa_proto::{v1, ApiError, GatewayApi, SessionEventStream};

/// A StartSession for `session_id` with the bundled example campaign's NPCs
/// (Grimble, Elara, …), a DM, made-up voice credentials (the loopback
/// transport ignores them) and no knowledge.
pub fn start_request(session_id: &str) -> v1::StartSessionRequest {
    let campaign = Campaign::example();
    v1::StartSessionRequest {
        session_id: session_id.into(),
        tenant_id: "t1".into(),
        campaign_id: "c1".into(),
        guild_id: "100".into(),
        channel_id: "200".into(),
        license_tier: v1::LicenseTier::Shared as i32,
        dm_user_id: "9999".into(),
        npcs: campaign
            .npcs
            .iter()
            .map(|n| v1::NpcDefinition {
                id: String::new(),
                name: n.name.clone(),
                personality: n.personality.clone(),
                voice: None,
                address_only: n.address_only,
                gm_helper: n.gm_helper,
            })
            .collect(),
        knowledge: vec![],
        voice: Some(v1::VoiceCredentials {
            bot_user_id: "5555".into(),
            session_id: "voice".into(),
            token: "token".into(),
            endpoint: "endpoint".into(),
        }),
        campaign_name: campaign.campaign.name,
        campaign_system: campaign.campaign.system,
    }
}

/// A gateway that remembers what workers tell it: reported states,
/// heartbeats (with when they came) and session events.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    /// `(session id, state)` of every ReportState.
    pub states: Mutex<Vec<(String, i32)>>,
    /// `(session id, arrival)` of every heartbeat.
    pub heartbeats: Mutex<Vec<(String, Instant)>>,
    /// Every streamed session event.
    pub events: Mutex<Vec<v1::SessionEvent>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingGateway {
    /// When the heartbeats of `session_id` arrived.
    pub fn heartbeats_of(&self, session_id: &str) -> Vec<Instant> {
        locked(&self.heartbeats)
            .iter()
            .filter(|(id, _)| id == session_id)
            .map(|(_, at)| *at)
            .collect()
    }

    /// All heartbeats so far.
    pub fn heartbeat_count(&self) -> usize {
        locked(&self.heartbeats).len()
    }

    /// The reported states so far.
    pub fn states(&self) -> Vec<(String, i32)> {
        locked(&self.states).clone()
    }

    /// The events so far.
    pub fn events(&self) -> Vec<v1::SessionEvent> {
        locked(&self.events).clone()
    }
}

#[async_trait]
impl GatewayApi for RecordingGateway {
    async fn report_state(&self, request: v1::ReportStateRequest) -> Result<v1::ReportStateResponse, ApiError> {
        locked(&self.states).push((request.session_id, request.state));
        Ok(v1::ReportStateResponse {})
    }

    async fn heartbeat(&self, request: v1::HeartbeatRequest) -> Result<v1::HeartbeatResponse, ApiError> {
        locked(&self.heartbeats).push((request.session_id, Instant::now()));
        Ok(v1::HeartbeatResponse {
            state: v1::SessionState::Active as i32,
        })
    }

    async fn report_events(&self, mut events: SessionEventStream) -> Result<v1::ReportEventsResponse, ApiError> {
        let mut accepted = 0;
        while let Some(Ok(event)) = events.next().await {
            locked(&self.events).push(event);
            accepted += 1;
        }
        Ok(v1::ReportEventsResponse {
            accepted,
            last_sequence: Default::default(),
        })
    }
}
