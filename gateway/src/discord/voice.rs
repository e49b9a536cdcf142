//! The bot's voice side ([`VoiceLink`]): who sits in which voice channel
//! (a cache fed by GUILD_CREATE and VOICE_STATE_UPDATE), joining a channel
//! with gateway opcode 4 and capturing the credentials the worker needs
//! (the bot's voice session id from its own VOICE_STATE_UPDATE, token and
//! endpoint from VOICE_SERVER_UPDATE), and leaving (opcode 4 without a
//! channel).
//!
//! Later events that matter to a running session come back as
//! [`VoiceEvent`]s for the bot to act on: a new voice server (forwarded to
//! the worker) or the bot removed from the channel by someone else (the
//! session ends).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use glyphoxa_proto::v1::VoiceCredentials;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::commands::controller::VoiceConnector;
use crate::ids::DiscordId;

/// How long a join waits for Discord's two voice events by default.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends raw gateway payloads on the bot's shard.
pub trait GatewaySender: Send + Sync {
    /// Queues `payload` (a full `{"op": …, "d": …}` object) for the gateway.
    fn send(&self, payload: Value) -> Result<(), String>;
}

/// [`GatewaySender`] over serenity's shard messenger.
#[derive(Debug, Clone)]
pub struct ShardSender(pub serenity::all::ShardMessenger);

impl GatewaySender for ShardSender {
    fn send(&self, payload: Value) -> Result<(), String> {
        self.0
            .websocket_message(tungstenite_0_21::Message::Text(payload.to_string()));
        Ok(())
    }
}

/// Something about a running session's voice connection the bot must act
/// on.
#[derive(Clone, PartialEq, Eq)]
pub enum VoiceEvent {
    /// Discord moved the guild's voice connection to another server: tell
    /// the worker (`UpdateVoiceServer`).
    ServerMoved {
        /// The guild.
        guild: DiscordId,
        /// The new voice token (secret: never logged).
        token: String,
        /// The new endpoint, `host:port`.
        endpoint: String,
        /// The bot's current voice session id.
        voice_session_id: String,
    },
    /// The bot was removed from the guild's voice channel without being
    /// asked to leave: end the session.
    Removed {
        /// The guild.
        guild: DiscordId,
    },
}

impl std::fmt::Debug for VoiceEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServerMoved { guild, endpoint, .. } => f
                .debug_struct("ServerMoved")
                .field("guild", guild)
                .field("endpoint", endpoint)
                .field("token", &"<redacted>")
                .finish(),
            Self::Removed { guild } => f.debug_struct("Removed").field("guild", guild).finish(),
        }
    }
}

struct PendingJoin {
    channel: DiscordId,
    session_id: Option<String>,
    server: Option<(String, String)>,
    done: Option<oneshot::Sender<VoiceCredentials>>,
}

struct Connected {
    channel: DiscordId,
    session_id: String,
}

#[derive(Default)]
struct Inner {
    sender: Option<Arc<dyn GatewaySender>>,
    bot_user: Option<DiscordId>,
    /// guild → user → voice channel.
    members: HashMap<DiscordId, HashMap<DiscordId, DiscordId>>,
    joins: HashMap<DiscordId, PendingJoin>,
    connected: HashMap<DiscordId, Connected>,
    leaving: HashSet<DiscordId>,
}

/// One bot's voice-state cache and voice connector.
pub struct VoiceLink {
    join_timeout: Duration,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for VoiceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceLink")
            .field("join_timeout", &self.join_timeout)
            .finish()
    }
}

fn op4(guild: &DiscordId, channel: Option<&DiscordId>) -> Value {
    json!({"op": 4, "d": {
        "guild_id": guild.as_str(),
        "channel_id": channel.map(DiscordId::as_str),
        "self_mute": false,
        "self_deaf": false,
    }})
}

impl VoiceLink {
    /// A link whose joins give up after `join_timeout`.
    pub fn new(join_timeout: Duration) -> Self {
        Self {
            join_timeout,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bot (re)connected: payloads go out through `sender`; the bot's
    /// user id tells its own voice states apart.
    pub fn on_ready(&self, sender: Arc<dyn GatewaySender>, bot_user: DiscordId) {
        let mut inner = self.lock();
        inner.sender = Some(sender);
        inner.bot_user = Some(bot_user);
    }

    /// The bot's user id, once connected.
    pub fn bot_user(&self) -> Option<DiscordId> {
        self.lock().bot_user.clone()
    }

    /// A guild became available: its voice states replace what the cache
    /// knew of it (`(user, channel)` pairs).
    pub fn on_guild(&self, guild: &DiscordId, states: impl IntoIterator<Item = (DiscordId, DiscordId)>) {
        let members: HashMap<DiscordId, DiscordId> = states.into_iter().collect();
        self.lock().members.insert(guild.clone(), members);
    }

    /// The bot left a guild (or it became unavailable).
    pub fn forget_guild(&self, guild: &DiscordId) {
        let mut inner = self.lock();
        inner.members.remove(guild);
    }

    /// A VOICE_STATE_UPDATE: `user` is now in `channel` (`None`: left
    /// voice). For the bot's own state this completes a join, confirms a
    /// leave or reports the bot removed.
    pub fn on_voice_state(
        &self,
        guild: &DiscordId,
        user: &DiscordId,
        channel: Option<&DiscordId>,
        session_id: &str,
    ) -> Option<VoiceEvent> {
        let mut inner = self.lock();
        let members = inner.members.entry(guild.clone()).or_default();
        match channel {
            Some(channel) => members.insert(user.clone(), channel.clone()),
            None => members.remove(user),
        };
        if inner.bot_user.as_ref() != Some(user) {
            return None;
        }
        if let Some(pending) = inner.joins.get_mut(guild) {
            if channel == Some(&pending.channel) {
                pending.session_id = Some(session_id.to_string());
                complete(&mut inner, guild);
            }
            return None;
        }
        match channel {
            None => {
                let asked = inner.leaving.remove(guild);
                let was_connected = inner.connected.remove(guild).is_some();
                (was_connected && !asked).then(|| VoiceEvent::Removed { guild: guild.clone() })
            }
            Some(channel) => {
                // Moved to another channel (by a moderator): the session goes on.
                if let Some(connected) = inner.connected.get_mut(guild) {
                    connected.channel = channel.clone();
                    connected.session_id = session_id.to_string();
                }
                None
            }
        }
    }

    /// A VOICE_SERVER_UPDATE for `guild`. Completes a join, or, for a live
    /// connection, asks for the worker to be told. An update without an
    /// endpoint (the server is being reallocated) is ignored: another
    /// follows.
    pub fn on_voice_server(&self, guild: &DiscordId, token: &str, endpoint: Option<&str>) -> Option<VoiceEvent> {
        let endpoint = endpoint.map(str::trim).filter(|e| !e.is_empty())?;
        let endpoint = endpoint.trim_start_matches("wss://").to_string();
        let mut inner = self.lock();
        if let Some(pending) = inner.joins.get_mut(guild) {
            pending.server = Some((token.to_string(), endpoint));
            complete(&mut inner, guild);
            return None;
        }
        let connected = inner.connected.get(guild)?;
        Some(VoiceEvent::ServerMoved {
            guild: guild.clone(),
            token: token.to_string(),
            endpoint,
            voice_session_id: connected.session_id.clone(),
        })
    }

    /// The voice channel the bot itself is in within `guild`, per its
    /// connections.
    pub fn bot_channel(&self, guild: &DiscordId) -> Option<DiscordId> {
        self.lock().connected.get(guild).map(|c| c.channel.clone())
    }

    fn send(&self, payload: Value) -> Result<(), String> {
        let sender = self
            .lock()
            .sender
            .clone()
            .ok_or_else(|| "the bot is not connected to Discord".to_string())?;
        sender.send(payload)
    }
}

/// Hands the credentials to the waiting join once both events arrived.
fn complete(inner: &mut Inner, guild: &DiscordId) {
    let ready = inner
        .joins
        .get(guild)
        .is_some_and(|p| p.session_id.is_some() && p.server.is_some());
    if !ready {
        return;
    }
    let Some(mut pending) = inner.joins.remove(guild) else {
        return;
    };
    let bot_user_id = inner.bot_user.as_ref().map(|id| id.to_string()).unwrap_or_default();
    let (Some(session_id), Some((token, endpoint))) = (pending.session_id.take(), pending.server.take()) else {
        return;
    };
    inner.connected.insert(
        guild.clone(),
        Connected {
            channel: pending.channel.clone(),
            session_id: session_id.clone(),
        },
    );
    if let Some(done) = pending.done.take() {
        let _ = done.send(VoiceCredentials {
            bot_user_id,
            session_id,
            token,
            endpoint,
        });
    }
}

#[async_trait]
impl VoiceConnector for VoiceLink {
    fn channel_of(&self, guild: &DiscordId, user: &DiscordId) -> Option<DiscordId> {
        self.lock().members.get(guild).and_then(|m| m.get(user)).cloned()
    }

    fn in_voice(&self, guild: &DiscordId) -> bool {
        let inner = self.lock();
        let seated = inner
            .bot_user
            .as_ref()
            .is_some_and(|bot| inner.members.get(guild).is_some_and(|m| m.contains_key(bot)));
        seated || inner.connected.contains_key(guild) || inner.joins.contains_key(guild)
    }

    async fn join(&self, guild: &DiscordId, channel: &DiscordId) -> Result<VoiceCredentials, String> {
        let (done, credentials) = oneshot::channel();
        {
            let mut inner = self.lock();
            if inner.bot_user.is_none() {
                return Err("the bot is not connected to Discord yet; try again in a moment".into());
            }
            inner.leaving.remove(guild);
            inner.connected.remove(guild);
            inner.joins.insert(
                guild.clone(),
                PendingJoin {
                    channel: channel.clone(),
                    session_id: None,
                    server: None,
                    done: Some(done),
                },
            );
        }
        if let Err(error) = self.send(op4(guild, Some(channel))) {
            self.lock().joins.remove(guild);
            return Err(error);
        }
        tracing::debug!(%guild, %channel, "joining voice");
        match tokio::time::timeout(self.join_timeout, credentials).await {
            Ok(Ok(credentials)) => Ok(credentials),
            outcome => {
                self.lock().joins.remove(guild);
                self.leave(guild).await;
                Err(match outcome {
                    Err(_) => format!(
                        "Discord did not hand over the voice connection within {} s",
                        self.join_timeout.as_secs_f32()
                    ),
                    Ok(_) => "the join was replaced by another one".into(),
                })
            }
        }
    }

    async fn leave(&self, guild: &DiscordId) {
        {
            let mut inner = self.lock();
            inner.joins.remove(guild);
            inner.connected.remove(guild);
            inner.leaving.insert(guild.clone());
            // Out of the channel from now on, as far as `in_voice` knows
            // (Discord's VOICE_STATE_UPDATE confirms it later).
            if let Some(bot) = inner.bot_user.clone() {
                if let Some(members) = inner.members.get_mut(guild) {
                    members.remove(&bot);
                }
            }
        }
        if let Err(error) = self.send(op4(guild, None)) {
            tracing::warn!(%guild, %error, "cannot leave the voice channel");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Value>>);

    impl GatewaySender for Recorder {
        fn send(&self, payload: Value) -> Result<(), String> {
            self.0.lock().unwrap().push(payload);
            Ok(())
        }
    }

    fn id(text: &str) -> DiscordId {
        DiscordId::parse(text).unwrap()
    }

    fn link() -> (Arc<VoiceLink>, Arc<Recorder>) {
        let link = Arc::new(VoiceLink::new(Duration::from_millis(300)));
        let sent = Arc::new(Recorder::default());
        link.on_ready(sent.clone(), id("999"));
        (link, sent)
    }

    #[test]
    fn the_cache_follows_guild_creates_and_voice_states() {
        let (link, _) = link();
        link.on_guild(&id("1"), [(id("10"), id("300"))]);
        assert_eq!(link.channel_of(&id("1"), &id("10")), Some(id("300")));
        assert_eq!(link.on_voice_state(&id("1"), &id("11"), Some(&id("301")), "s"), None);
        assert_eq!(link.channel_of(&id("1"), &id("11")), Some(id("301")));
        link.on_voice_state(&id("1"), &id("10"), None, "s");
        assert_eq!(link.channel_of(&id("1"), &id("10")), None);
        assert_eq!(link.channel_of(&id("2"), &id("11")), None);
        link.forget_guild(&id("1"));
        assert_eq!(link.channel_of(&id("1"), &id("11")), None);
    }

    #[tokio::test]
    async fn in_voice_follows_the_bots_own_seat_and_a_leave_counts_at_once() {
        let (link, sent) = link();
        // Seated before this connection (GUILD_CREATE lists the bot's state).
        link.on_guild(&id("1"), [(id("999"), id("300")), (id("10"), id("300"))]);
        assert!(link.in_voice(&id("1")));
        assert!(!link.in_voice(&id("2")));
        link.leave(&id("1")).await;
        assert!(!link.in_voice(&id("1")), "left, before Discord confirms");
        assert_eq!(sent.0.lock().unwrap().len(), 1);
        assert_eq!(link.channel_of(&id("1"), &id("10")), Some(id("300")), "others stay");
        // Seated again by Discord (e.g. a join).
        link.on_voice_state(&id("1"), &id("999"), Some(&id("301")), "s");
        assert!(link.in_voice(&id("1")));
    }

    #[tokio::test]
    async fn join_sends_op4_and_waits_for_both_events_in_any_order() {
        let (link, sent) = link();
        let joining = {
            let link = link.clone();
            tokio::spawn(async move { link.join(&id("1"), &id("300")).await })
        };
        while sent.0.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            sent.0.lock().unwrap()[0],
            json!({"op": 4, "d": {"guild_id": "1", "channel_id": "300", "self_mute": false, "self_deaf": false}})
        );
        // Server first (no endpoint yet: ignored), then the state.
        assert_eq!(link.on_voice_server(&id("1"), "t0", None), None);
        assert_eq!(link.on_voice_server(&id("1"), "tok", Some("voice.example:443")), None);
        // Someone else's state does not complete it.
        link.on_voice_state(&id("1"), &id("10"), Some(&id("300")), "other");
        link.on_voice_state(&id("1"), &id("999"), Some(&id("300")), "voice-session");
        let credentials = joining.await.unwrap().unwrap();
        assert_eq!(credentials.bot_user_id, "999");
        assert_eq!(credentials.session_id, "voice-session");
        assert_eq!(credentials.token, "tok");
        assert_eq!(credentials.endpoint, "voice.example:443");
        assert_eq!(link.bot_channel(&id("1")), Some(id("300")));

        // A later server update is for the worker.
        let event = link.on_voice_server(&id("1"), "tok2", Some("other.example:443"));
        assert_eq!(
            event,
            Some(VoiceEvent::ServerMoved {
                guild: id("1"),
                token: "tok2".into(),
                endpoint: "other.example:443".into(),
                voice_session_id: "voice-session".into(),
            })
        );
        assert!(!format!("{event:?}").contains("tok2"));
    }

    #[tokio::test]
    async fn a_join_times_out_and_leaves_again() {
        let (link, sent) = link();
        let error = link.join(&id("1"), &id("300")).await.unwrap_err();
        assert!(error.contains("within 0.3 s"), "{error}");
        let sent = sent.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1]["d"]["channel_id"], Value::Null);
    }

    #[tokio::test]
    async fn without_a_connection_join_fails_at_once() {
        let link = VoiceLink::new(Duration::from_secs(5));
        let error = link.join(&id("1"), &id("300")).await.unwrap_err();
        assert!(error.contains("not connected"), "{error}");
    }

    #[tokio::test]
    async fn asked_leaves_are_quiet_and_removals_are_reported() {
        let (link, _) = link();
        let joining = {
            let link = link.clone();
            tokio::spawn(async move { link.join(&id("1"), &id("300")).await })
        };
        tokio::task::yield_now().await;
        while link.lock().joins.is_empty() {
            tokio::task::yield_now().await;
        }
        link.on_voice_state(&id("1"), &id("999"), Some(&id("300")), "vs");
        link.on_voice_server(&id("1"), "tok", Some("v:1"));
        joining.await.unwrap().unwrap();

        // Moved by a moderator: no event, the channel follows.
        assert_eq!(link.on_voice_state(&id("1"), &id("999"), Some(&id("301")), "vs2"), None);
        assert_eq!(link.bot_channel(&id("1")), Some(id("301")));
        // Disconnected by someone else: the session must end.
        assert_eq!(
            link.on_voice_state(&id("1"), &id("999"), None, "vs2"),
            Some(VoiceEvent::Removed { guild: id("1") })
        );
        // After our own leave, the same event is just the confirmation.
        link.leave(&id("1")).await;
        assert_eq!(link.on_voice_state(&id("1"), &id("999"), None, "vs2"), None);
        // Not connected at all: nothing to report.
        assert_eq!(link.on_voice_state(&id("2"), &id("999"), None, "x"), None);
    }
}
