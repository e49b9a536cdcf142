//! Full mode end to end (issue 10; issue 8's "the same tests pass in full
//! mode"): a configuration file → `full_mode::start` → the bot connects to
//! the loopback fake Discord and registers its commands → `/session start`
//! joins voice and runs the in-process worker on a loopback transport that
//! plays a player's generated speech (espeak-ng) → the addressed NPC
//! answers (fake STT/LLM/TTS) → `/session stop` → the transcript is in the
//! SQLite file. Also: command flows (`/npc list`, `/campaign info|load`),
//! the first-start campaign policy across restarts, start-up refusals, the
//! real binary shutting down on SIGTERM, and the slash-command scenarios the
//! gateway-mode tests run (`/entity`, `/campaign`, `/feedback`,
//! `/session recap|voice-recap`), here with the voice recap narrated into a
//! real worker's loopback output.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glyphoxa::config::{Config, LoadedConfig};
use glyphoxa::full_mode::{self, FullMode, FullModeParts};
use glyphoxa_audio::fixtures::spoken;
use glyphoxa_gateway::commands::RecapEngines;
use glyphoxa_gateway::discord::fake::fixtures::DEFAULT_USER_ID;
use glyphoxa_gateway::discord::fake::scenarios::{self, text_of, RecapDoubles, Table as ScenarioTable};
use glyphoxa_gateway::discord::fake::{
    BotFixture, FakeDiscord, FakeState, GuildFixture, InteractionFixture, OptionFixture,
};
use glyphoxa_gateway::ids::SessionId;
use glyphoxa_gateway::ids::{DiscordId, TenantId};
use glyphoxa_gateway::store::{LicenseTier, SessionState, Store, StoreSettings, TenantStore};
use glyphoxa_pipeline::testing::{Scripted, ScriptedLlm, ScriptedStt, ToneTts};
use glyphoxa_proto::v1::StartSessionRequest;
use glyphoxa_proto::ApiError;
use glyphoxa_worker::runtime::Providers;
use glyphoxa_worker::service::TransportFactory;
use glyphoxa_worker::transport::loopback::{LoopbackOutput, LoopbackSpeaker, LoopbackTransport};
use glyphoxa_worker::transport::VoiceTransport;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "full-mode-token.SECRET";
const APP: &str = "810000000000000001";
const BOT: &str = "820000000000000001";
const GUILD: &str = "100000000000000001";
const TEXT: &str = "200000000000000001";
const VOICE: &str = "300000000000000001";
/// A player sitting in the voice channel with the DM.
const PLAYER: &str = "500000000000000002";
const WAIT: Duration = Duration::from_secs(30);

const QUESTION: &str = "Grimble, what do you have on tap?";
const ANSWER: &str = "Ale and mead. Three copper each.";

/// The configured campaign file.
const PORTAL: &str =
    "campaign: { name: \"The Yawning Portal\", system: dnd5e, description: \"A tavern in Waterdeep.\" }
npcs:
  - { name: Grimble, personality: \"A grumpy dwarven innkeeper.\" }
  - { name: Elara, personality: \"A cheerful half-elf bard.\" }
entities:
  - { name: Phandalin, type: location, description: \"A frontier town.\" }
";

/// The voice channel as the in-process worker hears it: each session gets a
/// loopback transport on which the player says `speech`; what the NPCs say
/// is collected.
#[derive(Default)]
struct Channel {
    speech: Vec<i16>,
    outputs: Mutex<Vec<Arc<Mutex<LoopbackOutput>>>>,
    requests: Mutex<Vec<StartSessionRequest>>,
}

impl Channel {
    fn with_speech(speech: Vec<i16>) -> Arc<Self> {
        Arc::new(Self {
            speech,
            ..Self::default()
        })
    }

    fn requests(&self) -> Vec<StartSessionRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Audible 20 ms frames the NPCs sent into the channel so far.
    fn audible_frames(&self) -> u64 {
        self.outputs
            .lock()
            .unwrap()
            .iter()
            .map(|output| output.lock().unwrap().audible_frames)
            .sum()
    }
}

impl TransportFactory for Channel {
    fn create(&self, request: &StartSessionRequest) -> Result<Box<dyn VoiceTransport>, ApiError> {
        let speaker = LoopbackSpeaker {
            id: PLAYER.parse().expect("a numeric user id"),
            samples: self.speech.clone(),
        };
        let transport = LoopbackTransport::new(vec![speaker], None);
        self.outputs.lock().unwrap().push(transport.output());
        self.requests.lock().unwrap().push(request.clone());
        Ok(Box::new(transport))
    }
}

/// Fast, deterministic providers: the player's question is heard, the NPC
/// answers with [`ANSWER`] in a tone voice.
fn parts(channel: &Arc<Channel>) -> FullModeParts {
    FullModeParts {
        providers: Providers {
            stt: Arc::new(ScriptedStt::new(
                vec![Scripted::Answer(QUESTION.into())],
                Duration::from_millis(50),
            )),
            llm: Arc::new(ScriptedLlm::new(
                vec![Scripted::Answer(ANSWER.into())],
                Duration::from_millis(80),
                Duration::from_millis(10),
            )),
            tts: Arc::new(ToneTts::new(Duration::from_millis(30), 40)),
        },
        transports: Arc::clone(channel) as Arc<dyn TransportFactory>,
        recaps: RecapEngines::default(),
    }
}

fn bot() -> BotFixture {
    BotFixture::new(TOKEN, APP, BOT, "Glyphoxa").with_guild(
        GuildFixture::new(GUILD, "Tavern")
            .with_voice_state(DEFAULT_USER_ID, VOICE)
            .with_voice_state(PLAYER, VOICE),
    )
}

/// A DM's game table: a folder with the configuration, the campaign file
/// and the SQLite database, and the fake Discord the bot talks to.
struct Table {
    dir: tempfile::TempDir,
    fake: FakeDiscord,
}

impl Table {
    async fn new() -> Self {
        let fake = FakeDiscord::start().await.expect("fake Discord");
        fake.add_bot(bot());
        let dir = tempfile::tempdir().expect("temporary folder");
        std::fs::write(dir.path().join("campaign.yaml"), PORTAL).expect("campaign file");
        Self { dir, fake }
    }

    fn database_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("glyphoxa.db").display())
    }

    /// The configuration file's text; `extra` is appended (more sections).
    fn yaml(&self, token: &str, extra: &str) -> String {
        format!(
            "discord:\n  token: \"{token}\"\n  guild_id: \"{GUILD}\"\n  api_url: \"{}\"\ncampaign: campaign.yaml\nstorage:\n  url: \"{}\"\n{extra}",
            self.fake.url(),
            self.database_url()
        )
    }

    /// Writes `glyphoxa.yaml` and loads it as the binary would.
    fn config(&self, yaml: &str) -> Config {
        let path = self.dir.path().join("glyphoxa.yaml");
        std::fs::write(&path, yaml).expect("configuration file");
        LoadedConfig::load(Some(&path), &HashMap::new())
            .expect("a valid configuration")
            .config
    }

    /// The standard configuration: the fake's bot token, health and metrics
    /// on a free loopback port.
    fn standard(&self) -> Config {
        self.config(&self.yaml(TOKEN, "server:\n  metrics_addr: \"127.0.0.1:0\"\n"))
    }

    /// Full mode up, its commands registered in the guild.
    async fn start(&self, channel: &Arc<Channel>) -> FullMode {
        let mode = full_mode::start(&self.standard(), parts(channel))
            .await
            .expect("full mode starts");
        scenarios::wait_registered(&self.fake, APP, GUILD).await;
        mode
    }

    /// A separate connection to the SQLite file full mode writes.
    async fn store(&self) -> Store {
        Store::connect(&StoreSettings::new(self.database_url()))
            .await
            .expect("the database opens")
    }

    async fn wait(&self, what: &str, condition: impl FnMut(&FakeState) -> bool) {
        scenarios::wait(&self.fake, what, condition).await;
    }

    /// Sends `/name sub` with `options` in the guild's text channel by the
    /// DM and returns the text of its replies once `until` holds for it.
    async fn command(&self, name: &str, sub: &str, options: Vec<OptionFixture>, until: &str) -> String {
        let interaction =
            InteractionFixture::command(name, vec![OptionFixture::subcommand(sub, options)]).in_guild(GUILD, TEXT);
        let sent = self
            .fake
            .send_interaction(TOKEN, interaction)
            .expect("interaction sent");
        let id = sent.id.clone();
        self.wait(&format!("/{name} {sub} answered with {until:?}"), |s| {
            replies_text(s.interaction_responses(&id).iter()).contains(until)
        })
        .await;
        replies_text(self.fake.interaction_responses(&id).iter())
    }
}

/// The text of replies ([`text_of`] of each).
fn replies_text<'a>(bodies: impl Iterator<Item = &'a Value>) -> String {
    bodies.map(text_of).collect::<Vec<_>>().join("\n")
}

/// `GET path` on the health listener: status code and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("health listener");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("answer read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

fn local() -> TenantId {
    TenantId::parse(full_mode::TENANT).expect("tenant id")
}

fn guild() -> DiscordId {
    DiscordId::parse(GUILD).expect("guild id")
}

/// Polls `condition` every 50 ms for up to [`WAIT`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_runs_end_to_end_and_its_transcript_is_stored() {
    let table = Table::new().await;
    let channel = Channel::with_speech(spoken(QUESTION, 300, 4000));
    let mode = table.start(&channel).await;
    assert_eq!(mode.tenant(), &local());

    // Ready: the database answers and the bot is connected.
    let (status, body) = http_get(mode.metrics_addr(), "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"bot\"") && body.contains("\"database\""), "{body}");

    // /session start: voice join, the in-process worker runs the session.
    let started = table.command("session", "start", vec![], "Session started").await;
    assert!(started.contains("The Yawning Portal"), "{started}");
    assert!(started.contains(&format!("<#{VOICE}>")), "{started}");
    assert_eq!(table.fake.voice_channel(GUILD, BOT).as_deref(), Some(VOICE));
    let requests = channel.requests();
    assert_eq!(requests.len(), 1, "one session on the worker");
    let voice = requests[0]
        .voice
        .clone()
        .expect("voice credentials handed to the worker");
    assert_eq!(voice.bot_user_id, BOT);
    assert!(!voice.token.is_empty() && !voice.endpoint.is_empty(), "{voice:?}");
    let npcs: Vec<&str> = requests[0].npcs.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(npcs, ["Grimble", "Elara"], "the configured campaign's NPCs");

    // The player asks Grimble; Grimble answers into the channel, and his
    // finished line reaches the SQLite file while the session runs.
    eventually("Grimble's answer in the voice channel", || {
        channel.audible_frames() >= 25
    })
    .await;
    let listed = table.command("npc", "list", vec![], "Grimble").await;
    assert!(listed.contains("Elara"), "{listed}");
    let store = table.store().await;
    let tenant = store.tenant(&local());
    let session = tenant
        .live_session_in_guild(&guild())
        .await
        .expect("sessions readable")
        .expect("a live session");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let lines = tenant.transcript(&session.id, 100).await.expect("transcript readable");
        if lines.iter().any(|entry| entry.line.npc_id.is_some()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no NPC line stored: {lines:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // /session stop: ended, the bot leaves voice.
    let stopped = table.command("session", "stop", vec![], "Session ended").await;
    assert!(stopped.contains(session.id.as_str()), "{stopped}");
    table
        .wait("the bot left voice", |s| s.voice_channel(GUILD, BOT).is_none())
        .await;

    // The session and its transcript are in the SQLite file.
    let session = tenant
        .session(&session.id)
        .await
        .expect("sessions readable")
        .expect("the session is stored");
    assert_eq!(session.state, SessionState::Ended);
    assert_eq!(session.license_tier, LicenseTier::Dedicated);
    let transcript = tenant.transcript(&session.id, 100).await.expect("transcript readable");
    assert!(
        transcript
            .iter()
            .any(|entry| entry.line.npc_id.is_none() && entry.line.text.contains("on tap")),
        "the player's line: {transcript:#?}"
    );
    assert!(
        transcript
            .iter()
            .any(|entry| entry.line.npc_id.is_some() && entry.line.text.contains("Ale and mead")),
        "Grimble's line: {transcript:#?}"
    );
    store.close().await;

    // The operator's view of it on /metrics.
    let (status, metrics) = http_get(mode.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "glyphoxa_turn_stage_seconds_bucket{stage=\"total\",outcome=\"spoke\"",
        "glyphoxa_turns_total{outcome=\"spoke\"}",
        "glyphoxa_active_sessions",
        "glyphoxa_provider_errors_total{stage=\"llm\",provider=\"scripted\"}",
        "glyphoxa_tick_overruns_total",
        "glyphoxa_worker_rpc_seconds_bucket{method=\"StartSession\",code=\"OK\"",
        // (gauges are per process; other tests in this one publish too)
        "glyphoxa_bots{state=\"connected\"}",
        "glyphoxa_command_seconds",
    ] {
        assert!(metrics.contains(series), "{series} missing in:\n{metrics}");
    }

    mode.shutdown().await.expect("clean shutdown");
    table.wait("the bot disconnected", |s| !s.connected(TOKEN)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_database_is_gone() {
    let table = Table::new().await;
    let channel = Channel::with_speech(Vec::new());
    let mode = table.start(&channel).await;
    let (status, body) = http_get(mode.metrics_addr(), "/readyz").await;
    assert_eq!(status, 200, "{body}");

    // The database connections are gone: not ready, the database named.
    mode.orchestrator().store().close().await;
    let (status, body) = http_get(mode.metrics_addr(), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let checks: Value = serde_json::from_str(&body).expect("JSON checks");
    let database = checks["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|check| check["name"] == "database")
        .expect("a database check");
    assert_eq!(database["ready"], false, "{body}");
    let bot = checks["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|check| check["name"] == "bot")
        .expect("a bot check");
    assert_eq!(bot["ready"], true, "the bot is still connected: {body}");
    // Still alive (liveness is not readiness), and it still shuts down.
    assert_eq!(http_get(mode.metrics_addr(), "/healthz").await.0, 200);
    let _ = mode.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_campaign_is_loaded_on_first_start_only() {
    let table = Table::new().await;
    let channel = Channel::with_speech(Vec::new());

    // First start: the configured campaign is imported and active.
    let mode = table.start(&channel).await;
    let info = table.command("campaign", "info", vec![], "Campaigns").await;
    assert!(info.contains("The Yawning Portal (active)"), "{info}");
    assert!(info.contains("Voiced NPCs: 2") && info.contains("1 location"), "{info}");
    let none = table.command("npc", "list", vec![], "No active session").await;
    assert!(!none.contains("Grimble"), "{none}");

    // The DM changes it and loads another campaign through Discord.
    let changed = "campaign: { name: The Yawning Portal }\nnpcs:\n  - { name: Durnan, personality: \"The owner.\" }\n";
    let file = OptionFixture::attachment("file", "portal.yaml", changed.as_bytes().to_vec());
    let updated = table.command("campaign", "load", vec![file], "Updated campaign").await;
    assert!(updated.contains("The Yawning Portal"), "{updated}");
    let lost_mine = "campaign: { name: Lost Mine }\nnpcs:\n  - { name: Sildar, personality: \"A loyal knight.\" }\n";
    let file = OptionFixture::attachment("file", "lost-mine.yaml", lost_mine.as_bytes().to_vec());
    table.command("campaign", "load", vec![file], "Loaded campaign").await;
    mode.shutdown().await.expect("clean shutdown");

    // A restart keeps what the DM did: no re-import, no switch back.
    let mode = table.start(&channel).await;
    let info = table.command("campaign", "info", vec![], "Campaigns").await;
    assert!(info.contains("Lost Mine (active)"), "{info}");
    let store = table.store().await;
    let tenant = store.tenant(&local());
    let portal = tenant
        .campaign_by_name("The Yawning Portal")
        .await
        .expect("readable")
        .expect("kept");
    let roster: Vec<String> = tenant
        .npcs(&portal.id)
        .await
        .expect("readable")
        .into_iter()
        .map(|n| n.npc.name)
        .collect();
    assert_eq!(roster, ["Durnan"], "the DM's roster, not the file's");
    let stored = tenant.get().await.expect("readable").expect("the tenant exists");
    assert_eq!(stored.license_tier, LicenseTier::Dedicated);
    assert_eq!(stored.guild_ids, vec![guild()]);
    assert!(!stored.has_bot_token, "full mode never stores the token");
    store.close().await;
    mode.shutdown().await.expect("clean shutdown");

    // The configuration names another campaign: it is loaded and made active.
    std::fs::write(
        table.dir.path().join("campaign.yaml"),
        "campaign: { name: Tomb of Annihilation }\nnpcs:\n  - { name: Syndra, personality: \"A dying noble.\" }\n",
    )
    .expect("campaign file");
    let mode = table.start(&channel).await;
    let info = table.command("campaign", "info", vec![], "Campaigns").await;
    assert!(info.contains("Tomb of Annihilation (active)"), "{info}");
    assert!(
        info.contains("Lost Mine") && info.contains("The Yawning Portal"),
        "{info}"
    );
    mode.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refuses_clearly() {
    let table = Table::new().await;
    let channel = Channel::with_speech(Vec::new());
    let refusal = |config: Config| {
        let parts = parts(&channel);
        async move {
            match full_mode::start(&config, parts).await {
                Ok(_) => panic!("full mode started"),
                Err(error) => {
                    assert!(error.is_config(), "a configuration problem: {error}");
                    error.to_string()
                }
            }
        }
    };

    let message = refusal(table.config(&table.yaml("", ""))).await;
    assert!(message.contains("discord.token"), "{message}");

    let broken = table.yaml(TOKEN, "").replace(
        &table.database_url(),
        &format!(
            "sqlite://{}",
            table.dir.path().join("missing/folder/glyphoxa.db").display()
        ),
    );
    let message = refusal(table.config(&broken)).await;
    assert!(message.contains("storage.url"), "{message}");

    let no_espeak = table.yaml(
        TOKEN,
        "providers:\n  tts: { name: espeak, options: { program: /nonexistent/espeak-ng } }\n",
    );
    let message = refusal(table.config(&no_espeak)).await;
    assert!(
        message.contains("espeak-ng") && message.contains("install"),
        "{message}"
    );

    // A token Discord does not know: refused, and the token is never shown.
    let message =
        refusal(table.config(&table.yaml("unknown-token.SECRET", "server:\n  metrics_addr: \"127.0.0.1:0\"\n"))).await;
    assert!(
        message.contains("rejected") && message.contains("discord.token"),
        "{message}"
    );
    assert!(!message.contains("SECRET"), "{message}");
}

/// A free loopback port (bound and released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The running binary; killed if the test fails before it exited.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs the binary with `config`; its log goes to `log` (a file, so a full
/// pipe never blocks it).
fn glyphoxa(dir: &Path, config: &Path, log: &Path) -> Running {
    let log = std::fs::File::create(log).expect("log file");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_glyphoxa"));
    command
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(log);
    for (key, _) in std::env::vars() {
        if key.starts_with("GLYPHOXA_") || key.starts_with("DISCORD_") {
            command.env_remove(key);
        }
    }
    Running(command.spawn().expect("glyphoxa starts"))
}

/// Waits for `child` to exit (killing it and failing after [`WAIT`]).
async fn exited(child: &mut Running, log: &Path) -> std::process::ExitStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.0.try_wait().expect("child status") {
            return status;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("still running: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_until_sigterm_then_stops_sessions_and_leaves_voice() {
    let table = Table::new().await;
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let extra = format!(
        "server:\n  metrics_addr: \"{metrics}\"\nworker: {{ transport: loopback, id: full-mode-binary }}\nproviders:\n  stt: {{ name: openai, base_url: \"http://127.0.0.1:9/v1\" }}\n  llm: {{ name: openai, base_url: \"http://127.0.0.1:9/v1\" }}\n"
    );
    let path: PathBuf = table.dir.path().join("glyphoxa.yaml");
    std::fs::write(&path, table.yaml(TOKEN, &extra)).expect("configuration file");
    // No `--mode`: full mode is the default.
    let log = table.dir.path().join("glyphoxa.log");
    let mut child = glyphoxa(table.dir.path(), &path, &log);
    table
        .wait("the binary's bot registered its commands", |s| {
            s.registered_commands(APP, GUILD).is_some_and(|c| !c.is_empty())
        })
        .await;
    let mut ready = (0, String::new());
    for _ in 0..100 {
        ready = http_get(metrics, "/readyz").await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready.0, 200, "{}", ready.1);
    table.command("session", "start", vec![], "Session started").await;

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = exited(&mut child, &log).await;
    let stderr = std::fs::read_to_string(&log).expect("the log");
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(!stderr.contains(TOKEN), "the token is never logged");
    assert!(stderr.contains("full mode stopped"), "{stderr}");

    // The session was ended, the bot left voice and closed its connection.
    let store = table.store().await;
    let session = store
        .tenant(&local())
        .latest_session(Some(&guild()), false)
        .await
        .expect("readable")
        .expect("the session is stored");
    assert_eq!(session.state, SessionState::Ended);
    store.close().await;
    table
        .wait("the bot left voice and disconnected", |s| {
            s.voice_channel(GUILD, BOT).is_none() && !s.connected(TOKEN)
        })
        .await;
    let leaves = table
        .fake
        .gateway_ops(TOKEN)
        .iter()
        .filter(|op| op.op == Some(4) && op.d["channel_id"].is_null())
        .count();
    assert_eq!(leaves, 1, "one opcode 4 leaving the channel");
}

// ---- the shared slash-command scenarios in full mode ----

/// The configured campaign of the scenario tables: names the scenarios
/// never add.
const CITADEL: &str = "campaign: { name: \"The Sunless Citadel\", system: dnd5e }
npcs:
  - { name: Meepo, personality: \"A kobold who lost his dragon.\" }
entities:
  - { name: Oakhurst, type: location, description: \"A farming village.\" }
";

/// The DM role of the scenario table that has one.
const DM_ROLE: &str = "400000000000000001";

/// Full mode at a table, as the shared scenarios see it: the bot from the
/// configuration, the in-process worker on loopback transports, the SQLite
/// store; narrations are measured in the worker's real output.
struct Scene {
    table: Table,
    mode: FullMode,
    channel: Arc<Channel>,
    dm_role: Option<&'static str>,
    /// Per session: audible frames accounted for, and the narrations heard.
    heard: Mutex<HashMap<String, (u64, Vec<Duration>)>>,
}

impl Scene {
    /// Full mode with the Sunless Citadel campaign, maybe a DM role, and
    /// `recaps` as the bot's recap engines.
    async fn start(dm_role: Option<&'static str>, recaps: RecapEngines) -> Self {
        let table = Table::new().await;
        std::fs::write(table.dir.path().join("campaign.yaml"), CITADEL).expect("campaign file");
        let mut yaml = table.yaml(TOKEN, "server:\n  metrics_addr: \"127.0.0.1:0\"\n");
        if let Some(role) = dm_role {
            yaml = yaml.replacen("discord:\n", &format!("discord:\n  dm_role_id: \"{role}\"\n"), 1);
        }
        let config = table.config(&yaml);
        let channel = Channel::with_speech(Vec::new());
        let mut parts = parts(&channel);
        parts.recaps = recaps;
        let mode = full_mode::start(&config, parts).await.expect("full mode starts");
        scenarios::wait_registered(&table.fake, APP, GUILD).await;
        Self {
            table,
            mode,
            channel,
            dm_role,
            heard: Mutex::default(),
        }
    }

    /// Audible frames so far in `session`'s voice channel.
    fn audible(&self, session: &SessionId) -> u64 {
        let requests = self.channel.requests();
        let index = requests
            .iter()
            .position(|request| request.session_id == session.as_str())
            .unwrap_or_else(|| panic!("no transport for {session}"));
        let output = Arc::clone(&self.channel.outputs.lock().unwrap()[index]);
        let frames = output.lock().unwrap().audible_frames;
        frames
    }

    async fn shutdown(self) {
        self.mode.shutdown().await.expect("clean shutdown");
    }
}

#[async_trait::async_trait]
impl ScenarioTable for Scene {
    fn discord(&self) -> &FakeDiscord {
        &self.table.fake
    }

    fn token(&self) -> &str {
        TOKEN
    }

    fn guild(&self) -> &str {
        GUILD
    }

    fn channel(&self) -> &str {
        TEXT
    }

    fn dm_role(&self) -> Option<&str> {
        self.dm_role
    }

    fn store(&self) -> TenantStore {
        self.mode.orchestrator().store().tenant(self.mode.tenant())
    }

    fn advance_clock(&self, _by: Duration) -> bool {
        false
    }

    /// Each narration is a run of audible frames in the session's loopback
    /// output, over once no frame was added for 300 ms.
    async fn narrations(&self, session: &SessionId, count: usize) -> Vec<Duration> {
        loop {
            let (accounted, heard) = self
                .heard
                .lock()
                .unwrap()
                .get(session.as_str())
                .cloned()
                .unwrap_or_default();
            if heard.len() >= count {
                return heard;
            }
            eventually("narration in the voice channel", || self.audible(session) > accounted).await;
            let mut last = self.audible(session);
            let mut quiet_since = tokio::time::Instant::now();
            let deadline = quiet_since + WAIT;
            while quiet_since.elapsed() < Duration::from_millis(300) {
                assert!(tokio::time::Instant::now() < deadline, "the narration never ends");
                tokio::time::sleep(Duration::from_millis(20)).await;
                let now = self.audible(session);
                if now != last {
                    last = now;
                    quiet_since = tokio::time::Instant::now();
                }
            }
            let mut all = self.heard.lock().unwrap();
            let entry = all.entry(session.as_str().to_string()).or_default();
            entry.1.push(Duration::from_millis((last - accounted) * 20));
            entry.0 = last;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_entity_add_list_and_remove() {
    let scene = Scene::start(None, RecapEngines::default()).await;
    scenarios::entity_add_list_and_remove(&scene).await;
    // Full mode adds to its configured campaign.
    let active = scene.store().active_campaign().await.unwrap().expect("active");
    assert_eq!(active.info.name, "The Sunless Citadel");
    scene.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_entity_import_yaml_and_foundry() {
    let scene = Scene::start(None, RecapEngines::default()).await;
    scenarios::entity_import_yaml_and_foundry(&scene).await;
    scene.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_campaign_info_load_and_switch() {
    let scene = Scene::start(None, RecapEngines::default()).await;
    scenarios::campaign_info_load_and_switch(&scene).await;
    scene.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_feedback_modal_and_average() {
    let scene = Scene::start(Some(DM_ROLE), RecapEngines::default()).await;
    scenarios::feedback_modal_and_average(&scene).await;
    scene.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_session_recap_and_voice_recap() {
    let doubles = RecapDoubles::default();
    let scene = Scene::start(None, doubles.engines()).await;
    scenarios::session_recap_and_voice_recap(&scene, &doubles).await;
    scene.shutdown().await;
}
