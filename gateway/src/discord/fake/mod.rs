//! A loopback fake Discord for tests: Discord's API v10 JSON over HTTP and
//! the real gateway protocol over a WebSocket, so that a serenity 0.12 bot
//! runs against it unchanged:
//!
//! ```text
//! let fake = FakeDiscord::start().await?;
//! fake.add_bot(BotFixture::new("token", "app-id", "bot-user-id", "Glyphoxa").with_guild(...));
//! let http = HttpBuilder::new("token").proxy(fake.url()).ratelimiter_disabled(true).build();
//! // the client gets the gateway URL (`ws://127.0.0.1:…/gateway`) from `GET /api/v10/gateway`
//! ```
//!
//! The test then plays Discord: [`FakeDiscord::send_interaction`] sends a real
//! INTERACTION_CREATE, and everything the bot does is recorded —
//! [`FakeDiscord::requests`], [`FakeDiscord::registered_commands`],
//! [`FakeDiscord::interaction_replies`], [`FakeDiscord::channel_messages`],
//! [`FakeDiscord::gateway_ops`] — and can be awaited with
//! [`FakeDiscord::wait_until`]. Discord's limits (2000 characters, 10 embeds,
//! 6000 embed characters, 25 choices, one callback per interaction) are
//! enforced with Discord's error answers.
//!
//! Modules: [`fixtures`] (inputs) and [`records`] (what was seen);
//! `state` (the world behind one mutex), `http` + `routes` + `multipart`
//! (REST), `gateway_ws` + `sessions` (gateway), `commands`, `interactions`,
//! `messages`, `limits`, `objects` (Discord JSON), `api_error`; [`scenarios`]
//! (slash-command flows shared by the gateway-mode and full-mode tests).

mod api_error;
mod commands;
pub mod fixtures;
mod gateway_ws;
mod http;
mod interactions;
mod limits;
mod messages;
mod multipart;
mod objects;
pub mod records;
mod routes;
pub mod scenarios;
mod sessions;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use fixtures::{
    BotFixture, ChannelFixture, ChannelKind, GuildFixture, InteractionFixture, InteractionKind, OptionFixture,
    OptionValue, RoleFixture,
};
pub use records::{
    GatewayOp, InteractionReply, RecordedRequest, ReplyKind, SentDispatch, SentInteraction, UploadedFile,
};
pub use state::FakeState;

use state::{Settings, Shared};

/// Discord's default heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(41_250);

/// Errors of the fake's test controls.
#[derive(Debug, thiserror::Error)]
pub enum FakeDiscordError {
    /// No loopback port could be bound.
    #[error("the fake Discord could not listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// The token was never given to [`FakeDiscord::add_bot`] (or was revoked).
    #[error("no bot with token {token:?} is registered with the fake Discord (call add_bot first)")]
    UnknownBot {
        /// The token asked for.
        token: String,
    },
    /// The interaction names a guild the bot is not in.
    #[error("the bot with token {token:?} is not in guild {guild_id} (add it to the bot's GuildFixtures)")]
    NotInGuild {
        /// The bot's token.
        token: String,
        /// The guild asked for.
        guild_id: String,
    },
    /// The bot has no open gateway session to send to.
    #[error("the bot with token {token:?} has no open gateway session (not identified yet, or disconnected)")]
    NotConnected {
        /// The bot's token.
        token: String,
    },
    /// [`FakeDiscord::wait_until`] gave up.
    #[error("condition not met within {waited:?}; the fake Discord saw:\n{summary}")]
    Timeout {
        /// How long it waited.
        waited: Duration,
        /// What the fake saw, for the test log.
        summary: String,
    },
}

/// Settings of a [`FakeDiscord`].
#[derive(Debug, Clone)]
pub struct FakeDiscordConfig {
    /// `heartbeat_interval` sent in HELLO (Discord: 41.25 s; tests may shorten it).
    pub heartbeat_interval: Duration,
    /// `endpoint` of VOICE_SERVER_UPDATE. The default is a closed loopback
    /// port, so a voice client that tries it fails fast and stays local.
    pub voice_endpoint: String,
}

impl Default for FakeDiscordConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            voice_endpoint: "127.0.0.1:9".to_owned(),
        }
    }
}

/// A running fake Discord on two loopback ports (REST and gateway).
/// Dropping it stops both servers and closes every gateway connection.
#[derive(Debug)]
pub struct FakeDiscord {
    shared: Arc<Shared>,
    rest: SocketAddr,
    gateway: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeDiscord {
    /// Starts a fake Discord with default settings on `127.0.0.1`.
    pub async fn start() -> Result<Self, FakeDiscordError> {
        Self::start_with(FakeDiscordConfig::default()).await
    }

    /// Starts a fake Discord with `config` on `127.0.0.1`.
    pub async fn start_with(config: FakeDiscordConfig) -> Result<Self, FakeDiscordError> {
        let rest_listener = TcpListener::bind("127.0.0.1:0").await.map_err(FakeDiscordError::Bind)?;
        let gateway_listener = TcpListener::bind("127.0.0.1:0").await.map_err(FakeDiscordError::Bind)?;
        let rest = rest_listener.local_addr().map_err(FakeDiscordError::Bind)?;
        let gateway = gateway_listener.local_addr().map_err(FakeDiscordError::Bind)?;
        let settings = Settings {
            heartbeat_interval: config.heartbeat_interval,
            voice_endpoint: config.voice_endpoint,
            rest_origin: format!("http://{rest}"),
            gateway_url: format!("ws://{gateway}/gateway"),
        };
        let shared = Arc::new(Shared::new(FakeState::new(settings)));
        let router = http::router(Arc::clone(&shared));
        let rest_task = tokio::spawn(async move {
            if let Err(error) = axum::serve(rest_listener, router).await {
                tracing::warn!(%error, "fake Discord REST server stopped");
            }
        });
        let gateway_task = tokio::spawn(gateway_ws::serve(gateway_listener, Arc::clone(&shared)));
        Ok(Self {
            shared,
            rest,
            gateway,
            tasks: vec![rest_task, gateway_task],
        })
    }

    /// The REST origin, `http://127.0.0.1:port`: what replaces
    /// `https://discord.com` (serenity's `HttpBuilder::proxy`).
    pub fn url(&self) -> String {
        format!("http://{}", self.rest)
    }

    /// The gateway URL, `ws://127.0.0.1:port/gateway` (also returned by
    /// `GET /api/v10/gateway`). It has a path so that clients appending
    /// `?v=10` (serenity) or `/?v=10` both form a valid request; the gateway
    /// port accepts any path and query.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}/gateway", self.gateway)
    }

    // ----- setting up the world -----

    /// Registers a bot (a second call with the same token replaces it and
    /// makes a revoked token valid again). Its guilds' voice states are set.
    pub fn add_bot(&self, bot: BotFixture) {
        self.shared.write(|state| state.add_bot(bot));
    }

    /// Revokes `token`: REST answers 401 from now on and open gateway
    /// connections are closed with 4004, as when a token is reset.
    pub fn revoke_token(&self, token: &str) {
        self.shared.write(|state| {
            if let Some(entry) = state.bots.get_mut(token) {
                entry.revoked = true;
            }
            state.close_all(token, sessions::close::AUTHENTICATION_FAILED);
        });
    }

    /// Whether op 4 (join/leave voice) in `guild_id` is answered with voice
    /// events (default) or left unanswered, as when Discord's voice is down.
    pub fn set_auto_voice(&self, guild_id: &str, enabled: bool) {
        self.shared.write(|state| {
            if enabled {
                state.auto_voice_off.remove(guild_id);
            } else {
                state.auto_voice_off.insert(guild_id.to_owned());
            }
        });
    }

    /// Changes the heartbeat interval announced to connections from now on.
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        self.shared.write(|state| state.settings.heartbeat_interval = interval);
    }

    /// Serves `bytes` at `/attachments/{name}` and returns the URL.
    pub fn serve_attachment(&self, name: &str, bytes: impl Into<Vec<u8>>) -> String {
        let bytes = bytes.into();
        self.shared
            .write(|state| state.serve_file(name, "application/octet-stream", bytes))
    }

    // ----- playing Discord -----

    /// Sends `interaction` to the bot of `token` as INTERACTION_CREATE;
    /// returns its id (for [`Self::interaction_replies`]) and token.
    pub fn send_interaction(
        &self,
        token: &str,
        interaction: InteractionFixture,
    ) -> Result<SentInteraction, FakeDiscordError> {
        self.shared.write(|state| state.send_interaction(token, &interaction))
    }

    /// Sends a raw dispatch (op 0) named `event` to the bot of `token`, on
    /// the shard of `data.guild_id`; returns its sequence number.
    pub fn send_dispatch(&self, token: &str, event: &str, data: Value) -> Result<u64, FakeDiscordError> {
        self.shared.write(|state| state.dispatch(token, event, data))
    }

    /// Sends a raw non-dispatch payload (e.g. op 7 RECONNECT, op 9 INVALID_SESSION)
    /// to every open connection of `token`.
    pub fn send_gateway_op(&self, token: &str, op: u8, d: Value) -> Result<(), FakeDiscordError> {
        self.shared.write(|state| state.send_op(token, op, d))
    }

    /// Closes the bot's open gateway connections with close `code` (its
    /// sessions stay resumable); returns how many were closed.
    pub fn close_gateway(&self, token: &str, code: u16) -> usize {
        self.shared.write(|state| state.close_all(token, code))
    }

    /// Moves `user_id` into `channel_id` (or out of voice with `None`) in
    /// `guild_id`, sending VOICE_STATE_UPDATE to the guild's connected bots.
    /// A bot's own user id is moved with its gateway session id (a kick).
    pub fn set_voice_state(&self, guild_id: &str, user_id: &str, channel_id: Option<&str>) {
        self.shared
            .write(|state| state.set_voice(guild_id, user_id, channel_id, None));
    }

    // ----- reading what happened -----

    /// Reads the whole state at once (see [`FakeState`]'s methods).
    pub fn state<R>(&self, read: impl FnOnce(&FakeState) -> R) -> R {
        self.shared.read(read)
    }

    /// Every REST request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state(|state| state.requests().to_vec())
    }

    /// The guild commands of an application as last registered; `None` if never.
    pub fn registered_commands(&self, application_id: &str, guild_id: &str) -> Option<Vec<Value>> {
        self.state(|state| {
            state
                .registered_commands(application_id, guild_id)
                .map(<[Value]>::to_vec)
        })
    }

    /// The bodies of the accepted replies to an interaction: the callback,
    /// then edits of the original and follow-ups, in order.
    pub fn interaction_responses(&self, interaction_id: &str) -> Vec<Value> {
        self.state(|state| state.interaction_responses(interaction_id))
    }

    /// The accepted replies to an interaction with their kind, files and timing.
    pub fn interaction_replies(&self, interaction_id: &str) -> Vec<InteractionReply> {
        self.state(|state| state.interaction_replies(interaction_id).to_vec())
    }

    /// The messages posted in a channel through `POST /channels/{id}/messages`,
    /// as they are now (edits applied), oldest first.
    pub fn channel_messages(&self, channel_id: &str) -> Vec<Value> {
        self.state(|state| state.channel_messages(channel_id).into_iter().cloned().collect())
    }

    /// Any message as it is now, by id.
    pub fn message(&self, message_id: &str) -> Option<Value> {
        self.state(|state| state.message(message_id).cloned())
    }

    /// Every gateway payload the bot of `token` sent, oldest first.
    pub fn gateway_ops(&self, token: &str) -> Vec<GatewayOp> {
        self.state(|state| state.gateway_ops(token).into_iter().cloned().collect())
    }

    /// Every dispatch sent to the bot of `token`, oldest first.
    pub fn dispatches(&self, token: &str) -> Vec<SentDispatch> {
        self.state(|state| state.dispatches(token).into_iter().cloned().collect())
    }

    /// Whether the bot of `token` has a gateway session on an open connection.
    pub fn connected(&self, token: &str) -> bool {
        self.state(|state| state.connected(token))
    }

    /// The voice channel of `user_id` in `guild_id`, bots included.
    pub fn voice_channel(&self, guild_id: &str, user_id: &str) -> Option<String> {
        self.state(|state| state.voice_channel(guild_id, user_id).map(str::to_owned))
    }

    /// Waits until `condition` holds for the state (checked now and after
    /// every change), or fails after `timeout` with a summary of what the
    /// fake saw.
    pub async fn wait_until(
        &self,
        mut condition: impl FnMut(&FakeState) -> bool,
        timeout: Duration,
    ) -> Result<(), FakeDiscordError> {
        let mut changes = self.shared.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if self.shared.read(&mut condition) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(FakeDiscordError::Timeout {
                        waited: timeout,
                        summary: self.shared.read(FakeState::summary),
                    })
                }
            }
        }
    }
}
