//! `glyphoxa` (full mode, the default): one process for one Discord server.
//!
//! Full mode runs the same parts as gateway mode, wired differently (SPEC §1,
//! §3): one Discord bot from the configuration file (`discord.token`,
//! `discord.guild_id`, `discord.dm_role_id`, `discord.api_url`), the same
//! slash-command handlers over the same orchestrator, the voice worker in
//! this process (called directly, no gRPC), the store at `storage.url`
//! (SQLite by default, PostgreSQL by URL), the session cleanup loop, and
//! `/healthz`, `/readyz` (database and bot) and `/metrics` on
//! `server.metrics_addr`.
//!
//! Everything belongs to one tenant, [`TENANT`], created in the store on
//! first start. Its license tier is `dedicated` (one session per guild): a
//! self-hosted bot serves whichever guilds it is in, each table gets its own
//! session, and the rule that matters to a DM — one session per guild — is
//! enforced for every tier anyway. The bot token goes from the configuration
//! straight to the bot and is never stored, so full mode needs no
//! `GLYPHOXA_SECRET_KEY`.
//!
//! Library entry: [`start`] with [`FullModeParts`] (providers and voice
//! transports, injectable by tests) returns a running [`FullMode`];
//! [`FullMode::shutdown`] stops it. [`run`] is what the binary calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use glyphoxa_gateway::bots::{BotManager, BotSpec, BotState, BotStatus};
use glyphoxa_gateway::commands::RecapEngines;
use glyphoxa_gateway::crypto::BotToken;
use glyphoxa_gateway::discord::attachments::DEFAULT_DOWNLOAD_TIMEOUT;
use glyphoxa_gateway::discord::{DiscordSettings, HttpAttachments, SerenityBots};
use glyphoxa_gateway::gateway_api::{GatewayHandler, LateGatewayApi};
use glyphoxa_gateway::ids::{CampaignId, DiscordId, TenantId};
use glyphoxa_gateway::orchestrator::{Orchestrator, OrchestratorSettings};
use glyphoxa_gateway::store::{
    LicenseTier, NewTenant, Store, StoreError, StoreSettings, StoredCampaign, TenantStore, TenantUpdate,
};
use glyphoxa_gateway::workers::{InProcessWorkerClient, WorkerClient};
use glyphoxa_pipeline::campaign::Campaign;
use glyphoxa_pipeline::providers::espeak::EspeakTts;
use glyphoxa_pipeline::providers::{CallPolicy, NoObserver};
use glyphoxa_proto::GatewayApi;
use glyphoxa_worker::runtime::Providers;
use glyphoxa_worker::service::{TransportFactory, Worker};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, Mode};
use crate::observability::{Check, Readiness};

/// The id of full mode's single tenant.
pub const TENANT: &str = "local";

/// How long [`start`] waits for Discord's first answer about the bot (READY,
/// or a rejected token). A bot still connecting after that keeps retrying in
/// the background; `/readyz` shows it.
const CONNECT_WAIT: Duration = Duration::from_secs(20);

/// How long each step of [`FullMode::shutdown`] may take.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The end reason recorded for sessions a previous process left behind.
const ORPHANED: &str = "full mode restarted: the previous process ended without stopping this session";

/// The parts of full mode that tests replace: the speech and language
/// providers of the in-process worker, its voice transports and the recap
/// engines of the bot.
pub struct FullModeParts {
    /// STT, LLM and TTS shared by every session.
    pub providers: Providers,
    /// Makes each session's voice transport.
    pub transports: Arc<dyn TransportFactory>,
    /// The summariser and narrator of `/session recap` and `voice-recap`.
    pub recaps: RecapEngines,
}

impl std::fmt::Debug for FullModeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullModeParts").finish_non_exhaustive()
    }
}

impl FullModeParts {
    /// The configured providers (`providers:`; absent = the offline engines),
    /// transports (`worker.transport`) and recap engines (the configured
    /// language model and text to speech).
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            providers: crate::worker_mode::providers(config)?,
            transports: crate::worker_mode::transports(config),
            recaps: crate::gateway_mode::recap_engines(config)?,
        })
    }
}

/// Why full mode could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum FullModeError {
    /// The configuration or this machine cannot run full mode: no bot token,
    /// a rejected token, an unreachable database, espeak-ng missing, a bad
    /// campaign file or listen address. The binary exits with code 2.
    #[error("{0:#}")]
    Config(anyhow::Error),
    /// Something else failed. The binary exits with code 3.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl FullModeError {
    /// Whether the fix is in the configuration or on the machine (exit code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_))
    }
}

fn config_error(error: impl Into<anyhow::Error>) -> FullModeError {
    FullModeError::Config(error.into())
}

/// A running full mode: see [`start`].
pub struct FullMode {
    tenant: TenantId,
    orchestrator: Arc<Orchestrator>,
    worker: Arc<Worker>,
    bots: Arc<SerenityBots>,
    metrics_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl std::fmt::Debug for FullMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullMode")
            .field("tenant", &self.tenant)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

/// Resolves once `stop` says so (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Runs full mode until SIGTERM or Ctrl-C, then shuts it down gracefully:
/// the entry point of `glyphoxa` without `--mode`.
pub async fn run(config: Config) -> Result<(), FullModeError> {
    let parts = FullModeParts::from_config(&config).map_err(config_error)?;
    let mode = start(&config, parts).await?;
    crate::worker_mode::shutdown_signal().await;
    mode.shutdown().await.map_err(FullModeError::Failed)
}

/// Starts full mode: checks what it needs (bot token, espeak-ng when the
/// text to speech is espeak, the campaign file), opens and migrates the
/// store, makes sure [`TENANT`] exists with the configured guild and DM
/// role, ends sessions a previous process left behind, loads the configured
/// campaign on first start (see [`seed_campaign`]), serves health and
/// metrics, connects the bot and waits for Discord's first answer.
pub async fn start(config: &Config, parts: FullModeParts) -> Result<FullMode, FullModeError> {
    let missing = config.requirements(Mode::Full);
    if !missing.is_empty() {
        return Err(config_error(anyhow::anyhow!(
            "full mode cannot start:\n  {}",
            missing.join("\n  ")
        )));
    }
    let campaign = config
        .load_campaign()
        .context("the campaign file (campaign:)")
        .map_err(config_error)?;
    check_espeak(config).await?;
    let FullModeParts {
        providers,
        transports,
        recaps,
    } = parts;
    let tenant = TenantId::parse(TENANT).map_err(|e| FullModeError::Failed(e.into()))?;
    let guild_ids: Vec<DiscordId> = match &config.discord.guild_id {
        Some(guild) => vec![DiscordId::parse(guild.as_str())
            .context("discord.guild_id")
            .map_err(config_error)?],
        None => Vec::new(),
    };
    let dm_role_id = match &config.discord.dm_role_id {
        Some(role) => Some(
            DiscordId::parse(role.as_str())
                .context("discord.dm_role_id")
                .map_err(config_error)?,
        ),
        None => None,
    };
    tracing::info!(
        tenant = %tenant,
        guild = ?config.discord.guild_id.as_ref().map(|g| g.as_str()),
        dm_role = ?config.discord.dm_role_id.as_ref().map(|r| r.as_str()),
        database = %config.storage.url.redacted(),
        discord = config.discord.api_url.as_ref().map_or("https://discord.com", |u| u.as_str()),
        "full mode starting"
    );
    crate::observability::recorder().map_err(FullModeError::Failed)?;

    let mut store_settings = StoreSettings::new(config.storage.url.expose());
    store_settings.max_connections = config.storage.max_connections.get();
    let store = Store::connect(&store_settings)
        .await
        .map_err(|error| database_error(&error))?;

    // The worker reports to the orchestrator, which places sessions on the
    // worker: the worker gets a GatewayApi that is bound once the
    // orchestrator exists.
    let reports = Arc::new(LateGatewayApi::new());
    let worker = Worker::new(
        crate::worker_mode::worker_settings(config),
        providers,
        transports,
        Some(Arc::clone(&reports) as Arc<dyn GatewayApi>),
    );
    let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(worker.clone()));
    let orchestrator = Arc::new(Orchestrator::new(
        store.clone(),
        workers,
        OrchestratorSettings::default(),
    ));
    reports.bind(Arc::new(GatewayHandler::new(Arc::clone(&orchestrator))));

    let prepared = prepare_store(&store, &tenant, &guild_ids, dm_role_id.as_ref(), &campaign, config).await;
    if let Err(error) = prepared {
        store.close().await;
        return Err(FullModeError::Failed(error));
    }
    let ended = orchestrator.stop_all(&tenant, ORPHANED).await;
    match ended {
        Ok(sessions) if !sessions.is_empty() => {
            tracing::warn!(
                count = sessions.len(),
                "ended sessions the previous process left behind"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot end sessions the previous process left behind"),
    }

    let discord = DiscordSettings {
        api_url: config.discord.api_url.as_ref().map(ToString::to_string),
        dashboard_channel_id: config
            .discord
            .dashboard_channel_id
            .as_ref()
            .map(|c| c.as_str().to_string()),
        ..DiscordSettings::default()
    };
    let files = HttpAttachments::new(DEFAULT_DOWNLOAD_TIMEOUT)
        .map_err(|e| FullModeError::Failed(anyhow::anyhow!("attachment downloads: {e}")))?;
    let bots = Arc::new(
        SerenityBots::new(discord, Arc::clone(&orchestrator), Arc::new(files), recaps)
            .map_err(|e| FullModeError::Failed(anyhow::anyhow!("the Discord bot: {e}")))?,
    );

    let (stop, stop_rx) = watch::channel(false);
    let observed = crate::observability::serve(
        config.metrics_addr(Mode::Full).0,
        readiness(store.clone(), Arc::clone(&bots), tenant.clone()),
        stopped(stop_rx.clone()),
    )
    .await;
    let (metrics_addr, observability) = match observed {
        Ok(served) => served,
        Err(error) => {
            store.close().await;
            return Err(config_error(error));
        }
    };
    let states = glyphoxa_gateway::bots::publish_bot_states(
        Arc::clone(&bots) as Arc<dyn BotManager>,
        glyphoxa_gateway::server::BOT_METRICS_INTERVAL,
        stopped(stop_rx.clone()),
    );
    let cleanup = Arc::clone(&orchestrator).run_cleanup(stopped(stop_rx));
    let mode = FullMode {
        tenant: tenant.clone(),
        orchestrator,
        worker,
        bots,
        metrics_addr,
        stop,
        tasks: vec![
            ("health and metrics listener", observability),
            ("session cleanup loop", tokio::spawn(cleanup)),
            ("bot state metrics", tokio::spawn(states)),
        ],
    };

    mode.bots.connect(BotSpec {
        tenant_id: tenant,
        token: BotToken::new(config.discord.token.expose()),
        guild_ids,
        dm_role_id,
    });
    let status = mode.wait_for_discord(CONNECT_WAIT).await;
    match status.state {
        BotState::Connected => {
            tracing::info!(guilds = status.guild_count, "full mode ready: the bot is connected");
        }
        BotState::Error => {
            let why = status.message.unwrap_or_else(|| "Discord refused the bot".into());
            if let Err(error) = mode.shutdown().await {
                tracing::warn!(error = %format!("{error:#}"), "shutting down after a refused bot token failed");
            }
            return Err(config_error(anyhow::anyhow!(
                "{why}: check discord.token (the bot token from the Discord developer portal, Bot → Reset Token)"
            )));
        }
        BotState::Connecting | BotState::Disconnected => tracing::warn!(
            reason = status.message.as_deref().unwrap_or("no answer yet"),
            "the bot is not connected to Discord yet; it keeps trying (see /readyz)"
        ),
    }
    Ok(mode)
}

/// A database that cannot be opened: what to check.
fn database_error(error: &StoreError) -> FullModeError {
    config_error(anyhow::anyhow!(
        "{error}\n  check storage.url (or GLYPHOXA_DATABASE_URL): a sqlite://FILE in a writable folder, or a reachable postgres://USER@HOST/DATABASE"
    ))
}

/// Checks that espeak-ng runs when the configured text to speech is espeak
/// (the NPCs' voices and the voice-recap narrator).
async fn check_espeak(config: &Config) -> Result<(), FullModeError> {
    let tts = config.providers.tts.as_ref();
    if tts.is_some_and(|tts| tts.name != "espeak") {
        return Ok(());
    }
    let program = tts
        .and_then(|tts| tts.options.get("program"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("espeak-ng");
    let espeak = EspeakTts::new(program, "en-us", CallPolicy::default(), Arc::new(NoObserver));
    match espeak.check().await {
        Ok(version) => {
            tracing::debug!(%version, "espeak-ng found");
            Ok(())
        }
        Err(error) => Err(config_error(anyhow::anyhow!(
            "text to speech (providers.tts: espeak, the default): {error}"
        ))),
    }
}

/// Creates or updates the tenant and loads the configured campaign on first
/// start.
async fn prepare_store(
    store: &Store,
    tenant: &TenantId,
    guild_ids: &[DiscordId],
    dm_role_id: Option<&DiscordId>,
    campaign: &Campaign,
    config: &Config,
) -> anyhow::Result<()> {
    ensure_tenant(store, tenant, guild_ids, dm_role_id)
        .await
        .with_context(|| format!("creating the tenant {tenant:?} in the store"))?;
    let source = config.campaign.as_deref().map_or_else(
        || "the bundled example campaign".to_string(),
        |p| p.display().to_string(),
    );
    let tenant_store = store.tenant(tenant);
    match seed_campaign(&tenant_store, campaign)
        .await
        .with_context(|| format!("loading the campaign from {source}"))?
    {
        Seeded::Imported(stored) => tracing::info!(
            campaign = %stored.info.name, id = %stored.id, npcs = campaign.npcs.len(),
            entities = campaign.entities.len(), from = %source, "campaign loaded and made active"
        ),
        Seeded::Kept(stored) => tracing::info!(
            campaign = %stored.info.name, id = %stored.id, from = %source,
            "campaign already in the store: kept as it is (reload the file with /campaign load)"
        ),
    }
    Ok(())
}

/// Makes sure the tenant exists, `dedicated`, with the configured guild and
/// DM role (the configuration wins over what the store had).
async fn ensure_tenant(
    store: &Store,
    tenant: &TenantId,
    guild_ids: &[DiscordId],
    dm_role_id: Option<&DiscordId>,
) -> Result<(), StoreError> {
    let update = TenantUpdate {
        license_tier: Some(LicenseTier::Dedicated),
        guild_ids: Some(guild_ids.to_vec()),
        dm_role_id: Some(dm_role_id.cloned()),
        ..TenantUpdate::default()
    };
    if store.tenant(tenant).update(&update).await?.is_some() {
        return Ok(());
    }
    let mut new = NewTenant::new(tenant.clone(), LicenseTier::Dedicated);
    new.guild_ids = guild_ids.to_vec();
    new.dm_role_id = dm_role_id.cloned();
    store.create_tenant(&new).await?;
    tracing::info!(tenant = %tenant, "tenant created (first start)");
    Ok(())
}

/// What [`seed_campaign`] did.
#[derive(Debug)]
enum Seeded {
    /// The campaign was new: imported and made active.
    Imported(StoredCampaign),
    /// A campaign of that name was in the store already: left alone.
    Kept(StoredCampaign),
}

/// Loads the configured campaign into the store on first start.
///
/// The store is the source of truth once the DM uses it: `/entity add`,
/// `/entity import`, `/campaign load` and `/campaign switch` change what is
/// stored, and a restart must not undo that. So the configured campaign is
/// imported (NPCs, entities) and made active only when the tenant has no
/// campaign of that name (ignoring case) yet — on first start, or when the
/// configuration names a different campaign than before. A campaign of that
/// name already stored is kept exactly as it is, and so is the active
/// campaign; to reload an edited campaign file, use `/campaign load` with it.
async fn seed_campaign(store: &TenantStore, campaign: &Campaign) -> Result<Seeded, StoreError> {
    if let Some(existing) = store.campaign_by_name(&campaign.campaign.name).await? {
        return Ok(Seeded::Kept(existing));
    }
    let id = free_campaign_id(store, &campaign.campaign.name).await?;
    let import = store.import_campaign(&id, campaign).await?;
    store.set_active_campaign(Some(&import.campaign.id)).await?;
    Ok(Seeded::Imported(import.campaign))
}

/// An id made from `name` (`Lost Mine` → `lost-mine`) that no campaign of
/// the tenant uses yet (`lost-mine-2`, …; a random one as the last resort).
async fn free_campaign_id(store: &TenantStore, name: &str) -> Result<CampaignId, StoreError> {
    let base = CampaignId::from_name(name);
    if store.campaign(&base).await?.is_none() {
        return Ok(base);
    }
    for suffix in 2..100 {
        let Ok(candidate) = CampaignId::parse(&format!("{base}-{suffix}")) else {
            break;
        };
        if store.campaign(&candidate).await?.is_none() {
            return Ok(candidate);
        }
    }
    Ok(CampaignId::from_name(""))
}

/// Full mode is ready when its database answers and its bot is connected.
fn readiness(store: Store, bots: Arc<SerenityBots>, tenant: TenantId) -> Readiness {
    Arc::new(move || {
        let (store, bots, tenant) = (store.clone(), Arc::clone(&bots), tenant.clone());
        Box::pin(async move {
            let database = match store.ping().await {
                Ok(()) => Check::ready("database", format!("{:?} answers", store.backend())),
                Err(error) => Check::failing("database", error.to_string()),
            };
            let status = bots.status(&tenant);
            let detail = match &status.message {
                Some(message) => format!("{:?}: {message}", status.state),
                None => format!("{:?} ({} guilds)", status.state, status.guild_count),
            };
            let bot = if status.state == BotState::Connected {
                Check::ready("bot", detail)
            } else {
                Check::failing("bot", detail)
            };
            vec![database, bot]
        })
    })
}

impl FullMode {
    /// The tenant everything belongs to ([`TENANT`]).
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The orchestrator (its store holds sessions, campaigns, transcripts).
    pub fn orchestrator(&self) -> &Arc<Orchestrator> {
        &self.orchestrator
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The bot's connection state (never contains the token).
    pub fn bot_status(&self) -> BotStatus {
        self.bots.status(&self.tenant)
    }

    /// Waits until Discord answered about the bot (connected or refused) or
    /// `limit` passed; returns the status then.
    async fn wait_for_discord(&self, limit: Duration) -> BotStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.bot_status();
            let answered = matches!(status.state, BotState::Connected | BotState::Error);
            if answered || tokio::time::Instant::now() >= deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops gracefully: ends every live session (the worker stops it and
    /// its transcript is stored), leaves their voice channels, closes the
    /// bot (its commands stay registered), stops the cleanup loop and the
    /// health listener, and closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        const REASON: &str = "Glyphoxa is shutting down";
        let tenant_store = self.orchestrator.store().tenant(&self.tenant);
        let guilds: Vec<DiscordId> = match tenant_store.live_sessions().await {
            Ok(sessions) => sessions.into_iter().map(|session| session.guild_id).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list the live sessions to stop");
                Vec::new()
            }
        };
        let mut result = Ok(());
        match tokio::time::timeout(SHUTDOWN_GRACE, self.orchestrator.stop_all(&self.tenant, REASON)).await {
            Ok(Ok(sessions)) => {
                if !sessions.is_empty() {
                    tracing::info!(count = sessions.len(), "sessions stopped");
                }
            }
            Ok(Err(error)) => {
                result = Err(anyhow::Error::new(error).context("stopping the live sessions"));
            }
            Err(_) => {
                result = Err(anyhow::anyhow!(
                    "stopping the live sessions took longer than {SHUTDOWN_GRACE:?}"
                ));
            }
        }
        if !guilds.is_empty()
            && tokio::time::timeout(SHUTDOWN_GRACE, self.bots.leave_voice(&self.tenant, guilds))
                .await
                .is_err()
        {
            tracing::warn!("leaving the voice channels took too long");
        }
        self.bots.shutdown(SHUTDOWN_GRACE).await;
        let leftovers = self.worker.stop_all(REASON).await;
        if leftovers > 0 {
            tracing::warn!(count = leftovers, "stopped worker sessions the store did not know");
        }
        let _ = self.stop.send(true);
        for (what, task) in self.tasks {
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                tracing::warn!(what, "did not stop within the shutdown grace period");
            }
        }
        self.orchestrator.store().close().await;
        tracing::info!("full mode stopped");
        result
    }
}
