//! A test bench for the command handlers (unit tests, end-to-end tests and
//! the handler bench): a tenant on a fresh SQLite file, the in-memory
//! [`FakeWorker`] behind the in-process client, a fake voice connection and
//! in-memory attachments. Built with the `fakes` feature.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use glyphoxa_proto::v1::VoiceCredentials;

use super::controller::{OrchestratedSessions, VoiceConnector};
use super::interaction::{Attachment, Interaction, Invoker};
use super::responder::{RecordingResponder, Sent};
use super::{handle, AttachmentSource, CommandContext, Router};
use crate::ids::{DiscordId, TenantId};
use crate::orchestrator::{Orchestrator, OrchestratorSettings};
use crate::store::{LicenseTier, NewTenant, Store, StoreSettings};
use crate::time::{Clock, ManualClock};
use crate::workers::fake::FakeWorker;
use crate::workers::{InProcessWorkerClient, WorkerClient};

/// 2025-03-10T12:00:00Z.
pub const T0: i64 = 1_741_608_000_000;
/// The bench's guild.
pub const GUILD: &str = "100";
/// The text channel commands are run in.
pub const TEXT_CHANNEL: &str = "200";
/// The voice channel the DM sits in.
pub const VOICE_CHANNEL: &str = "300";
/// The DM's user id.
pub const DM: &str = "1";
/// A player's user id.
pub const PLAYER: &str = "2";

/// A Discord id from a literal.
pub fn id(text: &str) -> DiscordId {
    DiscordId::parse(text).expect("valid id")
}

/// A [`VoiceConnector`] that joins instantly (or fails when told to).
#[derive(Default)]
pub struct FakeVoice {
    channels: Mutex<HashMap<(DiscordId, DiscordId), DiscordId>>,
    joined: Mutex<HashMap<DiscordId, DiscordId>>,
    fail_join: Mutex<Option<String>>,
    log: Mutex<Vec<String>>,
}

impl FakeVoice {
    /// Puts `user` in voice `channel` of `guild`.
    pub fn sit(&self, guild: &str, user: &str, channel: &str) {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((id(guild), id(user)), id(channel));
    }
    /// Makes joins fail with `reason` (`None`: succeed again).
    pub fn fail_joins(&self, reason: Option<&str>) {
        *self.fail_join.lock().unwrap_or_else(PoisonError::into_inner) = reason.map(str::to_string);
    }
    /// The channel the bot is in per guild.
    pub fn joined(&self, guild: &str) -> Option<DiscordId> {
        self.joined
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id(guild))
            .cloned()
    }
    /// Every join and leave, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl VoiceConnector for FakeVoice {
    fn channel_of(&self, guild: &DiscordId, user: &DiscordId) -> Option<DiscordId> {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(guild.clone(), user.clone()))
            .cloned()
    }
    async fn join(&self, guild: &DiscordId, channel: &DiscordId) -> Result<VoiceCredentials, String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("join {guild} {channel}"));
        if let Some(reason) = self.fail_join.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Err(reason);
        }
        self.joined
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(guild.clone(), channel.clone());
        Ok(VoiceCredentials {
            bot_user_id: "999".into(),
            session_id: format!("voice-{guild}"),
            token: "voice-token".into(),
            endpoint: "voice.example:443".into(),
        })
    }
    async fn leave(&self, guild: &DiscordId) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("leave {guild}"));
        self.joined.lock().unwrap_or_else(PoisonError::into_inner).remove(guild);
    }
    fn in_voice(&self, guild: &DiscordId) -> bool {
        self.joined
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(guild)
    }
}

/// Attachments served from memory by URL.
#[derive(Default)]
pub struct MemoryFiles {
    files: Mutex<HashMap<String, Vec<u8>>>,
}

impl MemoryFiles {
    /// Serves `bytes` as `filename`; returns the attachment to pass.
    pub fn serve(&self, filename: &str, bytes: &[u8]) -> Attachment {
        let url = format!("memory://{filename}");
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url.clone(), bytes.to_vec());
        Attachment {
            id: format!("att-{filename}"),
            filename: filename.to_string(),
            size: bytes.len() as u64,
            url,
        }
    }
}

#[async_trait]
impl AttachmentSource for MemoryFiles {
    async fn fetch(&self, attachment: &Attachment, max_bytes: u64) -> Result<Vec<u8>, String> {
        let bytes = self
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&attachment.url)
            .cloned()
            .ok_or_else(|| format!("{} not found", attachment.url))?;
        if bytes.len() as u64 > max_bytes {
            return Err(format!("the file is larger than {max_bytes} bytes"));
        }
        Ok(bytes)
    }
}

/// One tenant's commands over SQLite and the fake worker.
pub struct Bench {
    /// The tenant's command context.
    pub ctx: CommandContext,
    /// The standard router.
    pub router: Router,
    /// The store.
    pub store: Store,
    /// The store's clock.
    pub clock: Arc<ManualClock>,
    /// The in-memory worker.
    pub worker: Arc<FakeWorker>,
    /// The fake voice side.
    pub voice: Arc<FakeVoice>,
    /// Attachments.
    pub files: Arc<MemoryFiles>,
    _dir: tempfile::TempDir,
}

impl Bench {
    /// Tenant `acme` (shared tier) with the DM sitting in the voice channel.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("commands.db").display());
        let clock = Arc::new(ManualClock::new(T0));
        let store = Store::connect(&StoreSettings::new(&url))
            .await
            .expect("open sqlite")
            .with_clock(clock.clone() as Arc<dyn Clock>);
        let tenant = TenantId::parse("acme").expect("tenant id");
        store
            .create_tenant(&NewTenant::new(tenant.clone(), LicenseTier::Shared))
            .await
            .expect("tenant");
        let worker = Arc::new(FakeWorker::new("w1", 8));
        let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(worker.clone()));
        let orchestrator = Arc::new(Orchestrator::new(
            store.clone(),
            workers.clone(),
            OrchestratorSettings::default(),
        ));
        let voice = Arc::new(FakeVoice::default());
        voice.sit(GUILD, DM, VOICE_CHANNEL);
        let sessions = Arc::new(OrchestratedSessions::new(tenant.clone(), orchestrator, voice.clone()));
        let files = Arc::new(MemoryFiles::default());
        let ctx = CommandContext::new(tenant, store.clone(), sessions, voice.clone(), workers, files.clone());
        Self {
            ctx,
            router: Router::standard(),
            store,
            clock,
            worker,
            voice,
            files,
            _dir: dir,
        }
    }

    /// Runs one interaction; returns what was sent.
    pub async fn run(&self, interaction: Interaction) -> Vec<Sent> {
        let recorder = RecordingResponder::new();
        handle(&self.ctx, &self.router, &interaction, recorder.clone())
            .await
            .expect("the reply is sent");
        recorder.sent()
    }

    /// Runs one interaction; returns all text sent, joined.
    pub async fn text(&self, interaction: Interaction) -> String {
        self.run(interaction)
            .await
            .iter()
            .map(Sent::text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Starts a session in the bench's guild (panics on failure).
    pub async fn start_session(&self) {
        let sent = self.text(command("session", Some("start"))).await;
        assert!(sent.contains("Session started"), "{sent}");
    }
}

/// The DM (no roles).
pub fn dm() -> Invoker {
    Invoker {
        user_id: id(DM),
        name: "Dana the DM".into(),
        roles: vec![],
    }
}

/// A player.
pub fn player() -> Invoker {
    Invoker {
        user_id: id(PLAYER),
        name: "Pip".into(),
        roles: vec![],
    }
}

/// A command run by the DM in the bench's guild and text channel.
pub fn command(name: &str, subcommand: Option<&str>) -> Interaction {
    Interaction::command(name, subcommand, dm()).in_guild(id(GUILD), id(TEXT_CHANNEL))
}
