//! Discord API v10 objects as JSON (users, members, roles, channels,
//! guilds, voice states, READY, application info), with every field
//! serenity 0.12's models require.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::fixtures::{BotFixture, ChannelFixture, GuildFixture};

/// Permissions the fake grants everyone (all permissions of the v10 API).
pub(super) const ALL_PERMISSIONS: &str = "2251799813685247";

/// Attachment size limit reported in interactions (25 MiB, Discord's default).
pub(super) const ATTACHMENT_SIZE_LIMIT: u64 = 26_214_400;

/// A user object.
pub(super) fn user(id: &str, username: &str, bot: bool) -> Value {
    json!({
        "id": id,
        "username": username,
        "discriminator": "0",
        "global_name": if bot { Value::Null } else { json!(username) },
        "avatar": null,
        "bot": bot,
        "banner": null,
        "accent_color": null,
        "public_flags": 0,
        "flags": 0,
        "avatar_decoration_data": null,
    })
}

/// The bot's own user object (`/users/@me`, READY).
pub(super) fn current_user(bot: &BotFixture) -> Value {
    let mut me = user(&bot.user_id, &bot.username, true);
    if let Some(fields) = me.as_object_mut() {
        fields.insert("verified".to_owned(), json!(true));
        fields.insert("mfa_enabled".to_owned(), json!(false));
        fields.insert("email".to_owned(), Value::Null);
        fields.insert("locale".to_owned(), json!("en-US"));
        fields.insert("premium_type".to_owned(), json!(0));
    }
    me
}

/// A guild member object around `user`.
pub(super) fn member(user: Value, roles: &[String], joined_at: &str) -> Value {
    json!({
        "user": user,
        "nick": null,
        "avatar": null,
        "banner": null,
        "roles": roles,
        "joined_at": joined_at,
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
        "unusual_dm_activity_until": null,
    })
}

/// A role object.
pub(super) fn role(id: &str, name: &str, position: usize, permissions: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "color": 0,
        "colors": { "primary_color": 0, "secondary_color": null, "tertiary_color": null },
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": position,
        "permissions": permissions,
        "managed": false,
        "mentionable": false,
        "flags": 0,
    })
}

/// A guild channel object (as in GUILD_CREATE: without `guild_id`).
pub(super) fn channel(fixture: &ChannelFixture, position: usize) -> Value {
    let mut object = json!({
        "id": fixture.id,
        "type": fixture.kind.code(),
        "name": fixture.name,
        "position": position,
        "permission_overwrites": [],
        "parent_id": null,
        "nsfw": false,
        "flags": 0,
    });
    if let Some(fields) = object.as_object_mut() {
        match fixture.kind {
            super::fixtures::ChannelKind::Text => {
                fields.insert("topic".to_owned(), Value::Null);
                fields.insert("last_message_id".to_owned(), Value::Null);
                fields.insert("rate_limit_per_user".to_owned(), json!(0));
            }
            super::fixtures::ChannelKind::Voice => {
                fields.insert("bitrate".to_owned(), json!(64000));
                fields.insert("user_limit".to_owned(), json!(0));
                fields.insert("rtc_region".to_owned(), Value::Null);
                fields.insert("last_message_id".to_owned(), Value::Null);
                fields.insert("rate_limit_per_user".to_owned(), json!(0));
            }
        }
    }
    object
}

/// A voice state object. `guild_id` is left out inside GUILD_CREATE.
pub(super) struct VoiceStateParts<'a> {
    pub(super) guild_id: Option<&'a str>,
    pub(super) user_id: &'a str,
    pub(super) channel_id: Option<&'a str>,
    pub(super) session_id: &'a str,
    pub(super) member: Option<Value>,
}

/// A voice state object.
pub(super) fn voice_state(parts: VoiceStateParts<'_>) -> Value {
    let mut object = json!({
        "channel_id": parts.channel_id,
        "user_id": parts.user_id,
        "session_id": parts.session_id,
        "deaf": false,
        "mute": false,
        "self_deaf": false,
        "self_mute": false,
        "self_stream": false,
        "self_video": false,
        "suppress": false,
        "request_to_speak_timestamp": null,
    });
    if let Some(fields) = object.as_object_mut() {
        if let Some(guild_id) = parts.guild_id {
            fields.insert("guild_id".to_owned(), json!(guild_id));
        }
        if let Some(member) = parts.member {
            fields.insert("member".to_owned(), member);
        }
    }
    object
}

/// The session id the fake gives a user's voice state (the bot's real one
/// comes from its gateway session).
pub(super) fn user_voice_session(user_id: &str) -> String {
    format!("voice-session-{user_id}")
}

/// The channels of a guild: its fixtures, plus a voice channel for each
/// channel named only in voice states.
fn guild_channels(guild: &GuildFixture, voice: &BTreeMap<String, String>) -> Vec<ChannelFixture> {
    let mut channels = guild.channels.clone();
    let named = guild
        .voice_states
        .iter()
        .map(|(_, channel)| channel)
        .chain(voice.values());
    for channel_id in named {
        if !channels.iter().any(|known| &known.id == channel_id) {
            channels.push(ChannelFixture::voice(channel_id.clone(), format!("voice-{channel_id}")));
        }
    }
    channels
}

/// The GUILD_CREATE payload of `guild` for `bot`, with current voice states.
pub(super) fn guild_create(
    bot: &BotFixture,
    guild: &GuildFixture,
    voice: &BTreeMap<String, String>,
    joined_at: &str,
) -> Value {
    let mut roles = vec![role(&guild.id, "@everyone", 0, ALL_PERMISSIONS)];
    roles.extend(
        guild
            .roles
            .iter()
            .enumerate()
            .map(|(index, fixture)| role(&fixture.id, &fixture.name, index + 1, ALL_PERMISSIONS)),
    );
    let mut members = vec![member(user(&bot.user_id, &bot.username, true), &[], joined_at)];
    let mut voice_states = Vec::new();
    for (user_id, channel_id) in voice {
        let session = user_voice_session(user_id);
        voice_states.push(voice_state(VoiceStateParts {
            guild_id: None,
            user_id,
            channel_id: Some(channel_id),
            session_id: &session,
            member: None,
        }));
        if user_id != &bot.user_id {
            members.push(member(user(user_id, &format!("user-{user_id}"), false), &[], joined_at));
        }
    }
    let channels: Vec<Value> = guild_channels(guild, voice)
        .iter()
        .enumerate()
        .map(|(position, fixture)| channel(fixture, position))
        .collect();
    // Two halves: one `json!` with every field exceeds the macro recursion limit.
    let mut object = json!({
        "id": guild.id,
        "name": guild.name,
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": bot.user_id,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": roles,
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": null,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500_000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw_level": 0,
        "nsfw": false,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null,
        "incidents_data": null,
    });
    let extra = json!({
        "joined_at": joined_at,
        "large": false,
        "unavailable": false,
        "lazy": true,
        "member_count": members.len(),
        "voice_states": voice_states,
        "members": members,
        "channels": channels,
        "threads": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    });
    if let (Some(fields), Value::Object(extra)) = (object.as_object_mut(), extra) {
        fields.extend(extra);
    }
    object
}

/// The READY payload.
pub(super) fn ready(
    bot: &BotFixture,
    session_id: &str,
    shard: [u64; 2],
    guild_ids: &[&str],
    resume_url: &str,
) -> Value {
    let guilds: Vec<Value> = guild_ids
        .iter()
        .map(|id| json!({ "id": id, "unavailable": true }))
        .collect();
    json!({
        "v": 10,
        "user": current_user(bot),
        "guilds": guilds,
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": resume_url,
        "shard": shard,
        "application": { "id": bot.application_id, "flags": 0 },
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": ["fake"],
        "user_settings": {},
        "_trace": ["[\"fake-discord\"]"],
    })
}

/// `/oauth2/applications/@me` and `/applications/@me`.
pub(super) fn application_info(bot: &BotFixture) -> Value {
    json!({
        "id": bot.application_id,
        "name": bot.username,
        "icon": null,
        "description": "",
        "summary": "",
        "type": null,
        "hook": true,
        "bot_public": false,
        "bot_require_code_grant": false,
        "verify_key": format!("{:0>64}", bot.application_id),
        "owner": null,
        "team": null,
        "flags": 0,
        "bot": current_user(bot),
        "rpc_origins": [],
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "role_connections_verification_url": null,
        "tags": [],
        "approximate_guild_count": bot.guilds.len(),
    })
}

/// `/gateway/bot`.
pub(super) fn gateway_bot(url: &str) -> Value {
    json!({
        "url": url,
        "shards": 1,
        "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1 },
    })
}
