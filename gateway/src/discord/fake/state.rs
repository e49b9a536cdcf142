//! The fake Discord's world: bots, gateway connections and sessions,
//! commands, interactions, messages, files and voice states, plus everything
//! recorded. [`Shared`] guards it with a mutex that is never held across an
//! `.await` and tells waiters about every change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::fixtures::BotFixture;
use super::interactions::InteractionEntry;
use super::records::{GatewayOp, InteractionReply, RecordedRequest, SentDispatch};
use crate::time::{Clock as _, SystemClock};

/// Discord's epoch (2015-01-01) in unix milliseconds, for snowflakes.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// A frame for a gateway connection's writer.
#[derive(Debug)]
pub(super) enum Outbound {
    /// A JSON text frame.
    Text(String),
    /// A close frame with code and reason; the connection ends after it.
    Close(u16, String),
}

/// Settings fixed at start (heartbeat interval may change later).
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// `heartbeat_interval` of HELLO.
    pub(super) heartbeat_interval: Duration,
    /// `endpoint` of VOICE_SERVER_UPDATE.
    pub(super) voice_endpoint: String,
    /// `http://127.0.0.1:port` of the REST API.
    pub(super) rest_origin: String,
    /// `ws://127.0.0.1:port/gateway`.
    pub(super) gateway_url: String,
}

/// A registered bot.
#[derive(Debug, Clone)]
pub(super) struct BotEntry {
    pub(super) fixture: BotFixture,
    pub(super) revoked: bool,
}

/// One WebSocket connection to the gateway.
#[derive(Debug, Default)]
pub(super) struct Connection {
    /// The token it identified or resumed with (valid or not).
    pub(super) token: Option<String>,
    /// The session it carries, once IDENTIFY or RESUME succeeded.
    pub(super) session_id: Option<String>,
    /// Writer of the connection; `None` once closed.
    pub(super) outbound: Option<mpsc::UnboundedSender<Outbound>>,
}

/// A gateway session (survives its connection; RESUME continues it).
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) token: String,
    /// `[shard_id, shard_count]` from IDENTIFY.
    pub(super) shard: [u64; 2],
    /// Last sequence number sent.
    pub(super) seq: u64,
    /// The open connection carrying it.
    pub(super) connection: Option<u64>,
}

/// A file the fake serves under `/attachments/`.
#[derive(Debug, Clone)]
pub(super) struct StoredFile {
    pub(super) content_type: String,
    pub(super) bytes: Vec<u8>,
}

/// Everything the fake Discord knows and recorded. Tests read it through
/// [`super::FakeDiscord::wait_until`] and [`super::FakeDiscord::state`].
#[derive(Debug)]
pub struct FakeState {
    pub(super) settings: Settings,
    pub(super) bots: BTreeMap<String, BotEntry>,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) connections: BTreeMap<u64, Connection>,
    pub(super) ops: Vec<GatewayOp>,
    pub(super) sessions: BTreeMap<String, Session>,
    pub(super) dispatches: Vec<SentDispatch>,
    /// Commands by `(application_id, guild_id)`; `None` = global.
    pub(super) commands: BTreeMap<(String, Option<String>), Vec<Value>>,
    pub(super) interactions: BTreeMap<String, InteractionEntry>,
    /// Current message objects by id.
    pub(super) messages: BTreeMap<String, Value>,
    /// Message ids by channel, oldest first.
    pub(super) channel_messages: BTreeMap<String, Vec<String>>,
    pub(super) files: BTreeMap<String, StoredFile>,
    /// `guild -> user -> voice channel`.
    pub(super) voice_states: BTreeMap<String, BTreeMap<String, String>>,
    pub(super) auto_voice_off: BTreeSet<String>,
    next_connection: u64,
    next_snowflake: u64,
}

impl FakeState {
    /// An empty world.
    pub(super) fn new(settings: Settings) -> Self {
        let since_epoch = u64::try_from(SystemClock.now_ms() - DISCORD_EPOCH_MS).unwrap_or(0);
        Self {
            settings,
            bots: BTreeMap::new(),
            requests: Vec::new(),
            connections: BTreeMap::new(),
            ops: Vec::new(),
            sessions: BTreeMap::new(),
            dispatches: Vec::new(),
            commands: BTreeMap::new(),
            interactions: BTreeMap::new(),
            messages: BTreeMap::new(),
            channel_messages: BTreeMap::new(),
            files: BTreeMap::new(),
            voice_states: BTreeMap::new(),
            auto_voice_off: BTreeSet::new(),
            next_connection: 0,
            next_snowflake: since_epoch << 22,
        }
    }

    /// A fresh snowflake (timestamp-shaped, unique).
    pub(super) fn next_id(&mut self) -> String {
        self.next_snowflake += 1;
        self.next_snowflake.to_string()
    }

    /// Now as RFC 3339, for timestamps in objects.
    pub(super) fn now() -> String {
        crate::time::rfc3339(SystemClock.now_ms())
    }

    /// Registers (or replaces) a bot; its guilds' voice states join the world.
    pub(super) fn add_bot(&mut self, fixture: BotFixture) {
        for guild in &fixture.guilds {
            let states = self.voice_states.entry(guild.id.clone()).or_default();
            for (user, channel) in &guild.voice_states {
                states.insert(user.clone(), channel.clone());
            }
        }
        self.bots.insert(
            fixture.token.clone(),
            BotEntry {
                fixture,
                revoked: false,
            },
        );
    }

    /// The bot owning `token`, unless unknown or revoked.
    pub(super) fn bot(&self, token: &str) -> Option<&BotFixture> {
        self.bots
            .get(token)
            .filter(|entry| !entry.revoked)
            .map(|entry| &entry.fixture)
    }

    /// Opens a connection record; returns its id.
    pub(super) fn open_connection(&mut self, outbound: mpsc::UnboundedSender<Outbound>) -> u64 {
        self.next_connection += 1;
        let id = self.next_connection;
        self.connections.insert(
            id,
            Connection {
                outbound: Some(outbound),
                ..Connection::default()
            },
        );
        id
    }

    /// Marks a connection closed; its session stays resumable.
    pub(super) fn close_connection(&mut self, id: u64) {
        if let Some(connection) = self.connections.get_mut(&id) {
            connection.outbound = None;
            if let Some(session) = connection
                .session_id
                .as_ref()
                .and_then(|sid| self.sessions.get_mut(sid))
            {
                if session.connection == Some(id) {
                    session.connection = None;
                }
            }
        }
    }

    /// Records a payload a bot sent on connection `id`.
    pub(super) fn record_op(&mut self, id: u64, op: Option<u8>, d: Value) {
        self.ops.push(GatewayOp { connection: id, op, d });
    }

    /// Every REST request so far, oldest first.
    pub fn requests(&self) -> &[RecordedRequest] {
        &self.requests
    }

    /// The guild commands of `application_id` in `guild_id`, as last
    /// registered (with their ids); `None` if never registered.
    pub fn registered_commands(&self, application_id: &str, guild_id: &str) -> Option<&[Value]> {
        self.commands
            .get(&(application_id.to_owned(), Some(guild_id.to_owned())))
            .map(Vec::as_slice)
    }

    /// The global commands of `application_id`; `None` if never registered.
    pub fn global_commands(&self, application_id: &str) -> Option<&[Value]> {
        self.commands.get(&(application_id.to_owned(), None)).map(Vec::as_slice)
    }

    /// The accepted replies to interaction `interaction_id`, in order: the
    /// callback, then edits of the original and follow-ups as they came.
    pub fn interaction_replies(&self, interaction_id: &str) -> &[InteractionReply] {
        self.interactions
            .get(interaction_id)
            .map_or(&[], |entry| entry.replies.as_slice())
    }

    /// The bodies of [`Self::interaction_replies`].
    pub fn interaction_responses(&self, interaction_id: &str) -> Vec<Value> {
        self.interaction_replies(interaction_id)
            .iter()
            .map(|reply| reply.body.clone())
            .collect()
    }

    /// The id of the original response message of an interaction, once it exists.
    pub fn original_message_id(&self, interaction_id: &str) -> Option<&str> {
        self.interactions
            .get(interaction_id)
            .and_then(|entry| entry.original.as_deref())
    }

    /// Current (edited) message objects posted in `channel_id` through
    /// `POST /channels/{id}/messages`, oldest first; deleted ones left out.
    pub fn channel_messages(&self, channel_id: &str) -> Vec<&Value> {
        self.channel_messages
            .get(channel_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.messages.get(id))
            .collect()
    }

    /// Any current message by id (channel message, interaction response or follow-up).
    pub fn message(&self, message_id: &str) -> Option<&Value> {
        self.messages.get(message_id)
    }

    /// Every gateway payload sent on connections that identified or
    /// resumed with `token` (valid or not), oldest first.
    pub fn gateway_ops(&self, token: &str) -> Vec<&GatewayOp> {
        self.ops
            .iter()
            .filter(|op| {
                self.connections
                    .get(&op.connection)
                    .is_some_and(|connection| connection.token.as_deref() == Some(token))
            })
            .collect()
    }

    /// Every dispatch sent to sessions of `token`, oldest first.
    pub fn dispatches(&self, token: &str) -> Vec<&SentDispatch> {
        self.dispatches
            .iter()
            .filter(|sent| {
                self.sessions
                    .get(&sent.session_id)
                    .is_some_and(|session| session.token == token)
            })
            .collect()
    }

    /// Whether the bot has a gateway session on an open connection.
    pub fn connected(&self, token: &str) -> bool {
        self.sessions
            .values()
            .any(|session| session.token == token && session.connection.is_some())
    }

    /// The voice channel `user_id` is in within `guild_id`, bots included.
    pub fn voice_channel(&self, guild_id: &str, user_id: &str) -> Option<&str> {
        self.voice_states
            .get(guild_id)
            .and_then(|users| users.get(user_id))
            .map(String::as_str)
    }

    /// A few lines on what happened, for timeout errors.
    pub fn summary(&self) -> String {
        let mut text = format!("{} REST request(s)", self.requests.len());
        let recent = self.requests.len().saturating_sub(8);
        for request in &self.requests[recent..] {
            let _ = write!(text, "\n  {} {} -> {}", request.method, request.path, request.status);
        }
        for (token, entry) in &self.bots {
            let ops = self.gateway_ops(token).len();
            let sent = self.dispatches(token).len();
            let _ = write!(
                text,
                "\nbot {} (app {}): connected={}, {ops} op(s) received, {sent} dispatch(es) sent{}",
                entry.fixture.username,
                entry.fixture.application_id,
                self.connected(token),
                if entry.revoked { ", token revoked" } else { "" },
            );
        }
        text
    }
}

/// [`FakeState`] behind a mutex, with change notification for waiters.
#[derive(Debug)]
pub(super) struct Shared {
    state: Mutex<FakeState>,
    changed: watch::Sender<u64>,
}

impl Shared {
    /// Wraps `state`.
    pub(super) fn new(state: FakeState) -> Self {
        Self {
            state: Mutex::new(state),
            changed: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the state.
    pub(super) fn read<R>(&self, f: impl FnOnce(&FakeState) -> R) -> R {
        f(&self.lock())
    }

    /// Changes the state and wakes waiters.
    pub(super) fn write<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        let result = f(&mut self.lock());
        self.changed.send_modify(|version| *version = version.wrapping_add(1));
        result
    }

    /// A receiver that sees every change after it was made.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
