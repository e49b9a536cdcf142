//! The gateway protocol on the fake's side: HELLO, IDENTIFY → READY and
//! GUILD_CREATE, heartbeats, RESUME (with replay) or INVALID_SESSION, voice
//! state requests (op 4) → VOICE_STATE_UPDATE / VOICE_SERVER_UPDATE, close
//! codes, and sequenced dispatches routed to the right shard.

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::fixtures::BotFixture;
use super::objects::{self, VoiceStateParts};
use super::records::SentDispatch;
use super::state::{FakeState, Outbound, Session};
use super::FakeDiscordError;

/// Gateway opcodes the fake handles.
mod op {
    pub(super) const DISPATCH: u8 = 0;
    pub(super) const HEARTBEAT: u8 = 1;
    pub(super) const IDENTIFY: u8 = 2;
    pub(super) const PRESENCE_UPDATE: u8 = 3;
    pub(super) const VOICE_STATE_UPDATE: u8 = 4;
    pub(super) const RESUME: u8 = 6;
    pub(super) const REQUEST_GUILD_MEMBERS: u8 = 8;
    pub(super) const INVALID_SESSION: u8 = 9;
    pub(super) const HELLO: u8 = 10;
    pub(super) const HEARTBEAT_ACK: u8 = 11;
    pub(super) const REQUEST_SOUNDBOARD_SOUNDS: u8 = 31;
}

/// Gateway close codes the fake uses.
pub(super) mod close {
    /// A payload that is not JSON with an `op`.
    pub(in super::super) const DECODE_ERROR: u16 = 4002;
    /// An opcode the gateway does not take from clients.
    pub(in super::super) const UNKNOWN_OPCODE: u16 = 4001;
    /// A payload before IDENTIFY that needs a session.
    pub(in super::super) const NOT_AUTHENTICATED: u16 = 4003;
    /// Unknown or revoked token.
    pub(in super::super) const AUTHENTICATION_FAILED: u16 = 4004;
    /// A second IDENTIFY.
    pub(in super::super) const ALREADY_AUTHENTICATED: u16 = 4005;
    /// Bad `shard` in IDENTIFY.
    pub(in super::super) const INVALID_SHARD: u16 = 4010;
}

/// A non-dispatch payload (`s` and `t` null).
fn frame(op: u8, d: Value) -> String {
    json!({ "op": op, "d": d, "s": null, "t": null }).to_string()
}

/// A token as Discord takes it in IDENTIFY, RESUME and `Authorization`:
/// with or without the `Bot ` prefix.
pub(super) fn bare_token(token: &str) -> &str {
    let token = token.trim();
    token.strip_prefix("Bot ").unwrap_or(token).trim()
}

/// The shard a guild belongs to among `count` shards.
fn shard_of(guild_id: &str, count: u64) -> u64 {
    guild_id.parse::<u64>().map_or(0, |id| (id >> 22) % count.max(1))
}

fn reason(code: u16) -> &'static str {
    match code {
        close::UNKNOWN_OPCODE => "Unknown opcode.",
        close::DECODE_ERROR => "Error while decoding payload.",
        close::NOT_AUTHENTICATED => "Not authenticated.",
        close::AUTHENTICATION_FAILED => "Authentication failed.",
        close::ALREADY_AUTHENTICATED => "Already authenticated.",
        close::INVALID_SHARD => "Invalid shard.",
        _ => "Closed by the fake Discord.",
    }
}

impl FakeState {
    /// Registers a new connection and greets it with HELLO.
    pub(super) fn on_connect(&mut self, outbound: mpsc::UnboundedSender<Outbound>) -> u64 {
        let interval = u64::try_from(self.settings.heartbeat_interval.as_millis()).unwrap_or(u64::MAX);
        let hello = frame(
            op::HELLO,
            json!({ "heartbeat_interval": interval, "_trace": ["[\"fake-discord\"]"] }),
        );
        // The receiver is this connection's writer task, alive right now.
        let _ = outbound.send(Outbound::Text(hello));
        self.open_connection(outbound)
    }

    fn send_to(&mut self, connection: u64, text: String) -> bool {
        self.connections
            .get(&connection)
            .and_then(|open| open.outbound.as_ref())
            .is_some_and(|outbound| outbound.send(Outbound::Text(text)).is_ok())
    }

    /// Closes `connection` with `code`; its session stays resumable.
    pub(super) fn close_with(&mut self, connection: u64, code: u16) {
        if let Some(outbound) = self
            .connections
            .get(&connection)
            .and_then(|open| open.outbound.as_ref())
        {
            let _ = outbound.send(Outbound::Close(code, reason(code).to_owned()));
        }
        self.close_connection(connection);
    }

    /// Handles a binary frame: the fake speaks JSON text only.
    pub(super) fn on_gateway_binary(&mut self, connection: u64) {
        self.record_op(connection, None, json!("<binary frame>"));
        self.close_with(connection, close::DECODE_ERROR);
    }

    /// Handles one text payload from a bot.
    pub(super) fn on_gateway_text(&mut self, connection: u64, text: &str) {
        let payload: Option<Value> = serde_json::from_str(text).ok();
        let opcode = payload
            .as_ref()
            .and_then(|payload| payload.get("op"))
            .and_then(Value::as_u64)
            .and_then(|code| u8::try_from(code).ok());
        let d = match (&payload, opcode) {
            (Some(payload), Some(_)) => payload.get("d").cloned().unwrap_or(Value::Null),
            _ => Value::String(text.to_owned()),
        };
        self.record_op(connection, opcode, d.clone());
        let identified = self
            .connections
            .get(&connection)
            .is_some_and(|open| open.session_id.is_some());
        match opcode {
            None => self.close_with(connection, close::DECODE_ERROR),
            Some(op::HEARTBEAT) => {
                self.send_to(connection, frame(op::HEARTBEAT_ACK, Value::Null));
            }
            Some(op::IDENTIFY) => self.identify(connection, &d),
            Some(op::RESUME) => self.resume(connection, &d),
            Some(op::PRESENCE_UPDATE | op::VOICE_STATE_UPDATE | op::REQUEST_GUILD_MEMBERS)
            | Some(op::REQUEST_SOUNDBOARD_SOUNDS)
                if !identified =>
            {
                self.close_with(connection, close::NOT_AUTHENTICATED);
            }
            Some(op::VOICE_STATE_UPDATE) => self.voice_state_request(connection, &d),
            // Recorded; the fake has no presences, member lists or sounds to send.
            Some(op::PRESENCE_UPDATE | op::REQUEST_GUILD_MEMBERS | op::REQUEST_SOUNDBOARD_SOUNDS) => {}
            Some(_) => self.close_with(connection, close::UNKNOWN_OPCODE),
        }
    }

    fn identify(&mut self, connection: u64, d: &Value) {
        let token = bare_token(d.get("token").and_then(Value::as_str).unwrap_or_default()).to_owned();
        let Some(open) = self.connections.get_mut(&connection) else {
            return;
        };
        if open.session_id.is_some() {
            self.close_with(connection, close::ALREADY_AUTHENTICATED);
            return;
        }
        open.token = Some(token.clone());
        let Some(bot) = self.bot(&token).cloned() else {
            self.close_with(connection, close::AUTHENTICATION_FAILED);
            return;
        };
        let shard = match d.get("shard") {
            None | Some(Value::Null) => Some([0, 1]),
            Some(value) => serde_json::from_value::<[u64; 2]>(value.clone()).ok(),
        };
        let Some(shard) = shard.filter(|[id, count]| id < count) else {
            self.close_with(connection, close::INVALID_SHARD);
            return;
        };
        let session_id = format!("{:0>32}", self.next_id());
        self.sessions.insert(
            session_id.clone(),
            Session {
                token: token.clone(),
                shard,
                seq: 0,
                connection: Some(connection),
            },
        );
        if let Some(open) = self.connections.get_mut(&connection) {
            open.session_id = Some(session_id.clone());
        }
        let guilds: Vec<_> = bot
            .guilds
            .iter()
            .filter(|guild| shard_of(&guild.id, shard[1]) == shard[0])
            .cloned()
            .collect();
        let guild_ids: Vec<&str> = guilds.iter().map(|guild| guild.id.as_str()).collect();
        let ready = objects::ready(&bot, &session_id, shard, &guild_ids, &self.settings.gateway_url);
        self.send_dispatch_on(&session_id, "READY", ready);
        let joined_at = Self::now();
        for guild in &guilds {
            let voice = self.voice_states.get(&guild.id).cloned().unwrap_or_default();
            let create = objects::guild_create(&bot, guild, &voice, &joined_at);
            self.send_dispatch_on(&session_id, "GUILD_CREATE", create);
        }
    }

    fn resume(&mut self, connection: u64, d: &Value) {
        let token = bare_token(d.get("token").and_then(Value::as_str).unwrap_or_default()).to_owned();
        let session_id = d
            .get("session_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
        if let Some(open) = self.connections.get_mut(&connection) {
            open.token = Some(token.clone());
        }
        let resumable = self.bot(&token).is_some()
            && self
                .sessions
                .get(&session_id)
                .is_some_and(|session| session.token == token);
        if !resumable {
            self.send_to(connection, frame(op::INVALID_SESSION, json!(false)));
            return;
        }
        if let Some(session) = self.sessions.get_mut(&session_id) {
            session.connection = Some(connection);
        }
        if let Some(open) = self.connections.get_mut(&connection) {
            open.session_id = Some(session_id.clone());
        }
        let missed: Vec<String> = self
            .dispatches
            .iter()
            .filter(|sent| sent.session_id == session_id && sent.seq > seq)
            .map(|sent| dispatch_frame(sent.seq, &sent.event, &sent.data))
            .collect();
        for text in missed {
            self.send_to(connection, text);
        }
        self.send_dispatch_on(&session_id, "RESUMED", json!({ "_trace": ["[\"fake-discord\"]"] }));
    }

    /// Op 4 from a bot: joins, moves or leaves voice and tells the guild.
    fn voice_state_request(&mut self, connection: u64, d: &Value) {
        let Some(guild_id) = d.get("guild_id").and_then(Value::as_str).map(str::to_owned) else {
            self.close_with(connection, close::DECODE_ERROR);
            return;
        };
        let channel_id = d.get("channel_id").and_then(Value::as_str).map(str::to_owned);
        let Some(session_id) = self
            .connections
            .get(&connection)
            .and_then(|open| open.session_id.clone())
        else {
            return;
        };
        let Some(bot) = self
            .sessions
            .get(&session_id)
            .and_then(|session| self.bot(&session.token))
            .cloned()
        else {
            return;
        };
        if !bot.guilds.iter().any(|guild| guild.id == guild_id) || self.auto_voice_off.contains(&guild_id) {
            return;
        }
        self.set_voice(
            &guild_id,
            &bot.user_id,
            channel_id.as_deref(),
            Some((&bot, &session_id)),
        );
        if channel_id.is_some() {
            let token = format!("{:x}", self.next_id().parse::<u64>().unwrap_or_default());
            let server = json!({
                "token": token,
                "guild_id": guild_id,
                "endpoint": self.settings.voice_endpoint,
            });
            self.send_dispatch_on(&session_id, "VOICE_SERVER_UPDATE", server);
        }
    }

    /// Moves `user_id` to `channel_id` (or out of voice) in `guild_id` and
    /// sends VOICE_STATE_UPDATE to every connected bot of the guild. `own`
    /// is the bot itself when it asked, with the session the update must go to.
    pub(super) fn set_voice(
        &mut self,
        guild_id: &str,
        user_id: &str,
        channel_id: Option<&str>,
        own: Option<(&BotFixture, &str)>,
    ) {
        let states = self.voice_states.entry(guild_id.to_owned()).or_default();
        match channel_id {
            Some(channel) => {
                states.insert(user_id.to_owned(), channel.to_owned());
            }
            None => {
                states.remove(user_id);
            }
        }
        // A bot moved by the test looks like itself: its name and its gateway session.
        let bot_user = own.map(|(bot, _)| bot.clone()).or_else(|| {
            self.bots
                .values()
                .find(|entry| entry.fixture.user_id == user_id)
                .map(|entry| entry.fixture.clone())
        });
        let session = match own {
            Some((_, session)) => session.to_owned(),
            None => bot_user
                .as_ref()
                .and_then(|bot| self.live_sessions(&bot.token).into_iter().next())
                .map_or_else(|| objects::user_voice_session(user_id), |(session, _)| session),
        };
        let username = bot_user
            .as_ref()
            .map_or_else(|| format!("user-{user_id}"), |bot| bot.username.clone());
        let member = objects::member(objects::user(user_id, &username, bot_user.is_some()), &[], &Self::now());
        let state = objects::voice_state(VoiceStateParts {
            guild_id: Some(guild_id),
            user_id,
            channel_id,
            session_id: &session,
            member: Some(member),
        });
        let tokens: Vec<String> = self
            .bots
            .iter()
            .filter(|(_, entry)| !entry.revoked && entry.fixture.guilds.iter().any(|guild| guild.id == guild_id))
            .map(|(token, _)| token.clone())
            .collect();
        for token in tokens {
            let own_session = own.filter(|(bot, _)| bot.token == token).map(|(_, session)| session);
            match own_session {
                Some(session) => {
                    self.send_dispatch_on(session, "VOICE_STATE_UPDATE", state.clone());
                }
                // Bots that are not connected simply miss it, as on Discord.
                None => {
                    let _ = self.dispatch(&token, "VOICE_STATE_UPDATE", state.clone());
                }
            }
        }
    }

    /// Sends a dispatch on a session (recorded; delivered if its connection is open).
    fn send_dispatch_on(&mut self, session_id: &str, event: &str, data: Value) -> bool {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return false;
        };
        session.seq += 1;
        let seq = session.seq;
        let connection = session.connection;
        let text = dispatch_frame(seq, event, &data);
        self.dispatches.push(SentDispatch {
            session_id: session_id.to_owned(),
            seq,
            event: event.to_owned(),
            data,
        });
        connection.is_some_and(|connection| self.send_to(connection, text))
    }

    /// The open sessions of `token`.
    fn live_sessions(&self, token: &str) -> Vec<(String, [u64; 2])> {
        self.sessions
            .iter()
            .filter(|(_, session)| session.token == token && session.connection.is_some())
            .map(|(id, session)| (id.clone(), session.shard))
            .collect()
    }

    /// Sends a dispatch to the bot's session on the shard of `data.guild_id`
    /// (shard 0 without a guild); returns its sequence number.
    pub(super) fn dispatch(&mut self, token: &str, event: &str, data: Value) -> Result<u64, FakeDiscordError> {
        let not_connected = || FakeDiscordError::NotConnected {
            token: token.to_owned(),
        };
        let sessions = self.live_sessions(token);
        let wanted = |count: u64| {
            data.get("guild_id")
                .and_then(Value::as_str)
                .map_or(0, |guild| shard_of(guild, count))
        };
        let target = sessions
            .iter()
            .find(|(_, [id, count])| *id == wanted(*count))
            .or_else(|| sessions.first())
            .map(|(id, _)| id.clone())
            .ok_or_else(not_connected)?;
        if !self.send_dispatch_on(&target, event, data) {
            return Err(not_connected());
        }
        Ok(self.sessions.get(&target).map_or(0, |session| session.seq))
    }

    /// Sends a non-dispatch payload to every open connection of `token`.
    pub(super) fn send_op(&mut self, token: &str, opcode: u8, d: Value) -> Result<(), FakeDiscordError> {
        let text = frame(opcode, d);
        let connections: Vec<u64> = self.live_connections(token);
        let mut delivered = false;
        for connection in connections {
            delivered |= self.send_to(connection, text.clone());
        }
        delivered.then_some(()).ok_or_else(|| FakeDiscordError::NotConnected {
            token: token.to_owned(),
        })
    }

    fn live_connections(&self, token: &str) -> Vec<u64> {
        self.connections
            .iter()
            .filter(|(_, open)| open.outbound.is_some() && open.token.as_deref() == Some(token))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Closes every open connection of `token` with `code`; returns how many.
    pub(super) fn close_all(&mut self, token: &str, code: u16) -> usize {
        let connections = self.live_connections(token);
        for connection in &connections {
            self.close_with(*connection, code);
        }
        connections.len()
    }
}

/// A dispatch payload.
fn dispatch_frame(seq: u64, event: &str, data: &Value) -> String {
    json!({ "op": op::DISPATCH, "s": seq, "t": event, "d": data }).to_string()
}
