//! Requests for tests and benches (feature `fixtures`).

use glyphoxa_pipeline::campaign::Campaign;
use glyphoxa_proto::v1;

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
