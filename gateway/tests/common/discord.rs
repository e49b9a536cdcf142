//! The shared world of the end-to-end Discord tests (`discord_bot.rs`,
//! `discord_commands.rs`): serenity bots managed by `SerenityBots`, driven
//! through the admin API, talking to the loopback fake Discord; sessions on
//! the in-memory fake worker; and helpers to send interactions and read the
//! replies the fake recorded.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use glyphoxa_gateway::admin::{self, AdminSettings, AdminState};
use glyphoxa_gateway::bots::BotManager;
use glyphoxa_gateway::commands::RecapEngines;
use glyphoxa_gateway::discord::fake::fixtures::DEFAULT_USER_ID;
use glyphoxa_gateway::discord::fake::{
    BotFixture, FakeDiscord, FakeState, GuildFixture, InteractionFixture, InteractionReply, OptionFixture,
};
use glyphoxa_gateway::discord::{Backoff, DiscordSettings, HttpAttachments, SerenityBots};
use glyphoxa_gateway::orchestrator::{Orchestrator, OrchestratorSettings};
use glyphoxa_gateway::workers::fake::FakeWorker;
use glyphoxa_gateway::workers::{InProcessWorkerClient, WorkerClient};
use serde_json::{json, Value};

use glyphoxa_gateway::discord::fake::scenarios;
pub use glyphoxa_gateway::discord::fake::scenarios::text_of;
use tower::ServiceExt as _;

use super::TestDb;

/// The admin API key of every world.
pub const KEY: &str = "discord-test-admin-key";
/// How long a test waits for anything.
pub const WAIT: Duration = Duration::from_secs(20);

/// Bot A: token, application id, user id.
pub const TOKEN_A: &str = "bot-token-a.SECRET";
pub const APP_A: &str = "710000000000000001";
pub const BOT_A: &str = "720000000000000001";
/// Bot B: token, application id, user id.
pub const TOKEN_B: &str = "bot-token-b.SECRET";
pub const APP_B: &str = "710000000000000002";
pub const BOT_B: &str = "720000000000000002";
/// A token the fake Discord does not know (rejected).
pub const BAD_TOKEN: &str = "rejected-token.SECRET";

/// Guilds both bots are in.
pub const G1: &str = "100000000000000001";
pub const G2: &str = "100000000000000002";
/// A guild no bot is in.
pub const G3: &str = "100000000000000003";
/// The text channel commands are run in.
pub const TEXT: &str = "200000000000000001";
/// The voice channel the default user sits in (in G1 and G2).
pub const VOICE: &str = "300000000000000001";
/// The DM role of tenants that have one.
pub const DM_ROLE: &str = "400000000000000001";
/// A member of G1 who is not in any voice channel.
pub const PLAYER: &str = "500000000000000002";

/// The fake Discord, the admin API, the fake worker and the bots.
pub struct World {
    /// The loopback fake Discord.
    pub fake: FakeDiscord,
    /// The admin API (tenants are created through it).
    pub admin: Router,
    /// The in-memory worker behind every session.
    pub worker: Arc<FakeWorker>,
    /// The tenants' bots.
    pub bots: Arc<SerenityBots>,
    /// The orchestrator behind the bots and the admin API.
    pub orchestrator: Arc<Orchestrator>,
}

/// How a [`World`] is built.
pub struct WorldOptions {
    /// How long a voice join waits for Discord's voice events.
    pub join_timeout: Duration,
    /// The recap summariser and narrator.
    pub recaps: RecapEngines,
    /// Changes to the bots' Discord settings (API origin and backoff are
    /// set already).
    pub discord: Box<dyn FnOnce(DiscordSettings) -> DiscordSettings>,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            join_timeout: Duration::from_secs(5),
            recaps: RecapEngines::default(),
            discord: Box::new(|settings| settings),
        }
    }
}

/// A guild where the default user sits in [`VOICE`].
pub fn guild(id: &str, name: &str) -> GuildFixture {
    GuildFixture::new(id, name).with_voice_state(DEFAULT_USER_ID, VOICE)
}

/// Bot A in G1 and G2.
pub fn bot_a() -> BotFixture {
    BotFixture::new(TOKEN_A, APP_A, BOT_A, "Glyphoxa A")
        .with_guild(guild(G1, "Tavern"))
        .with_guild(guild(G2, "Dungeon"))
}

/// Bot B in G1 and G2.
pub fn bot_b() -> BotFixture {
    BotFixture::new(TOKEN_B, APP_B, BOT_B, "Glyphoxa B")
        .with_guild(guild(G1, "Tavern"))
        .with_guild(guild(G2, "Dungeon"))
}

/// A world with the default options.
pub async fn world(db: &TestDb) -> World {
    world_from(db, WorldOptions::default()).await
}

/// A world whose voice joins time out after `join_timeout`.
pub async fn world_with(db: &TestDb, join_timeout: Duration) -> World {
    world_from(
        db,
        WorldOptions {
            join_timeout,
            ..WorldOptions::default()
        },
    )
    .await
}

/// A world built with `options`; no tenant exists yet.
pub async fn world_from(db: &TestDb, options: WorldOptions) -> World {
    let fake = FakeDiscord::start().await.expect("fake Discord");
    fake.add_bot(bot_a());
    fake.add_bot(bot_b());
    let worker = Arc::new(FakeWorker::new("w1", 8));
    let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(worker.clone()));
    let orchestrator = Arc::new(Orchestrator::new(
        db.store.clone(),
        workers,
        OrchestratorSettings::default(),
    ));
    let settings = (options.discord)(DiscordSettings {
        join_timeout: options.join_timeout,
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
        ..DiscordSettings::default().with_api_url(fake.url())
    });
    let files = Arc::new(HttpAttachments::new(Duration::from_secs(5)).expect("downloader"));
    let bots = Arc::new(SerenityBots::new(settings, orchestrator.clone(), files, options.recaps).expect("bots"));
    let sessions = Arc::clone(&orchestrator);
    let mut admin_settings = AdminSettings::new(KEY);
    admin_settings.secret_key = Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let state = AdminState::new(&admin_settings, orchestrator, bots.clone() as Arc<dyn BotManager>).expect("admin");
    World {
        fake,
        admin: admin::router(state),
        worker,
        bots,
        orchestrator: sessions,
    }
}

impl World {
    /// Calls the admin API (`/api/v1{path}`) with the admin key.
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let response = self
            .admin
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("answer");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    /// Creates a `shared` tenant with a bot token, guilds and maybe a DM role.
    pub async fn create_tenant(&self, id: &str, token: &str, guilds: &[&str], dm_role: Option<&str>) {
        let mut body = json!({"id": id, "license_tier": "shared", "bot_token": token, "guild_ids": guilds});
        if let Some(role) = dm_role {
            body["dm_role_id"] = json!(role);
        }
        let (status, answer) = self.api(Method::POST, "/tenants", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    /// Polls the bot-status endpoint until `state` (or fails with the last answer).
    pub async fn bot_status(&self, tenant: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, answer) = self.api(Method::GET, &format!("/tenants/{tenant}/bot"), None).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            if answer["state"] == state {
                return answer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "bot of {tenant} never became {state}: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn wait(&self, what: &str, condition: impl FnMut(&FakeState) -> bool) {
        scenarios::wait(&self.fake, what, condition).await;
    }

    /// Waits until `app` has the full command set in `guild`.
    pub async fn wait_registered(&self, app: &str, guild: &str) {
        scenarios::wait_registered(&self.fake, app, guild).await;
    }

    /// Sends an interaction and waits until it has `replies` replies.
    pub async fn replies(&self, token: &str, interaction: InteractionFixture, replies: usize) -> Vec<InteractionReply> {
        scenarios::replies(&self.fake, token, interaction, replies).await
    }

    /// The bodies of [`World::replies`].
    pub async fn interact(&self, token: &str, interaction: InteractionFixture, replies: usize) -> Vec<Value> {
        self.replies(token, interaction, replies)
            .await
            .into_iter()
            .map(|reply| reply.body)
            .collect()
    }

    /// Sends a command in G1 and returns all reply text once `replies` came.
    pub async fn text(&self, token: &str, interaction: InteractionFixture, replies: usize) -> String {
        self.interact(token, interaction, replies)
            .await
            .iter()
            .map(text_of)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A command `/name sub` with options, by the default user in G1.
pub fn command(name: &str, sub: Option<&str>, options: Vec<OptionFixture>) -> InteractionFixture {
    let options = match sub {
        Some(sub) => vec![OptionFixture::subcommand(sub, options)],
        None => options,
    };
    InteractionFixture::command(name, options).in_guild(G1, TEXT)
}

/// Op 4 payloads the bot of `token` sent: `(guild, channel)`.
pub fn voice_ops(world: &World, token: &str) -> Vec<(String, Option<String>)> {
    world
        .fake
        .gateway_ops(token)
        .iter()
        .filter(|op| op.op == Some(4))
        .map(|op| {
            (
                op.d["guild_id"].as_str().unwrap_or_default().to_string(),
                op.d["channel_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// How many IDENTIFYs (op 2) the bot of `token` sent.
pub fn identifies(world: &World, token: &str) -> usize {
    world
        .fake
        .gateway_ops(token)
        .iter()
        .filter(|op| op.op == Some(2))
        .count()
}

/// `PUT …/guilds/{guild}/commands` bodies of `app`, in order.
pub fn command_puts(world: &World, app: &str, guild: &str) -> Vec<Value> {
    let path = format!("/api/v10/applications/{app}/guilds/{guild}/commands");
    world
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path == path)
        .filter_map(|r| r.body)
        .collect()
}
