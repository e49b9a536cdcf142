//! [`SerenityBots`]: the gateway's [`BotManager`] over serenity — one
//! supervisor task per tenant that connects its bot, reconnects with
//! exponential backoff and jitter, applies updates without reconnecting and
//! disconnects (unregistering the commands when the tenant is deleted).
//!
//! A supervisor owns everything of its tenant's bot, so one tenant's bad
//! token, Discord errors or slow calls never touch another tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng as _;
use serenity::all::{ClientBuilder, GatewayError, GatewayIntents, Http, HttpBuilder};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::bot::{BotEvents, GatewayBot, StatusCell};
use super::dashboard::SessionDashboards;
use super::responder::{describe, status_of};
use super::voice::VoiceLink;
use super::DiscordSettings;
use crate::bots::{BotManager, BotSpec, BotState, BotStatus};
use crate::commands::{
    AttachmentSource, CommandContext, DashboardSource, OrchestratedSessions, PermissionChecker, RecapEngines,
    SessionController, SessionObserver, VoiceConnector,
};
use crate::crypto::BotToken;
use crate::ids::{DiscordId, TenantId};
use crate::orchestrator::{Orchestrator, SessionEnded};

/// What a tenant's supervisor is told.
enum Control {
    /// New guilds or DM role.
    Update {
        guild_ids: Vec<DiscordId>,
        dm_role_id: Option<DiscordId>,
    },
    /// Leave the voice channels of these guilds (opcode 4 without a
    /// channel), then answer `done`.
    LeaveVoice {
        guilds: Vec<DiscordId>,
        done: oneshot::Sender<()>,
    },
    /// Stop; remove the commands first when `unregister`.
    Disconnect { unregister: bool },
}

struct TenantBot {
    status: Arc<StatusCell>,
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

/// Everything every bot shares.
struct Shared {
    settings: DiscordSettings,
    orchestrator: Arc<Orchestrator>,
    files: Arc<dyn AttachmentSource>,
    recaps: RecapEngines,
    client: reqwest::Client,
}

/// The gateway's tenant bots over serenity.
pub struct SerenityBots {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    bots: Mutex<HashMap<TenantId, TenantBot>>,
}

impl std::fmt::Debug for SerenityBots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerenityBots")
            .field("api_url", &self.shared.settings.api_url)
            .finish()
    }
}

/// The gateway intents the bots need: guilds (GUILD_CREATE) and voice
/// states (who sits where, the bot's own voice session). Interactions come
/// without an intent.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS | GatewayIntents::GUILD_VOICE_STATES
}

/// A serenity HTTP client for `token` going to `api_url` (when set) instead
/// of `https://discord.com`, over the shared `client`. With a custom origin
/// the rate limiter is left to it (a proxy or a fake Discord).
pub fn http_client(token: &BotToken, api_url: Option<&str>, client: reqwest::Client) -> Http {
    let mut builder = HttpBuilder::new(token.expose()).client(client);
    if let Some(origin) = api_url {
        builder = builder.proxy(origin.trim_end_matches('/')).ratelimiter_disabled(true);
    }
    builder.build()
}

impl SerenityBots {
    /// A manager starting sessions through `orchestrator`, downloading
    /// attachments with `files` and making recaps with `recaps`. Must be
    /// created inside a tokio runtime (its bots run there).
    pub fn new(
        settings: DiscordSettings,
        orchestrator: Arc<Orchestrator>,
        files: Arc<dyn AttachmentSource>,
        recaps: RecapEngines,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .build()
            .map_err(|e| format!("cannot build the Discord HTTP client: {e}"))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the Discord bots must be started inside the tokio runtime".to_string())?;
        Ok(Self {
            shared: Arc::new(Shared {
                settings,
                orchestrator,
                files,
                recaps,
                client,
            }),
            runtime,
            bots: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, TenantBot>> {
        self.bots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tenants with a bot (connected or trying).
    pub fn tenants(&self) -> Vec<TenantId> {
        self.lock().keys().cloned().collect()
    }

    /// Disconnects every bot (commands stay registered: the gateway is
    /// only restarting) and waits up to `grace` for them to close.
    pub async fn shutdown(&self, grace: Duration) {
        let bots: Vec<TenantBot> = self.lock().drain().map(|(_, bot)| bot).collect();
        for bot in &bots {
            let _ = bot.control.send(Control::Disconnect { unregister: false });
        }
        let all = futures_util::future::join_all(bots.into_iter().map(|bot| bot.task));
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("some Discord bots did not close within the shutdown grace period");
        }
    }

    /// Makes the tenant's bot leave the voice channels of `guilds` and waits
    /// until the requests are sent (a bot that is not connected is in no
    /// channel: nothing to do). Full mode calls this when it shuts down.
    pub async fn leave_voice(&self, tenant_id: &TenantId, guilds: Vec<DiscordId>) {
        let (done, sent) = oneshot::channel();
        let queued = self
            .lock()
            .get(tenant_id)
            .is_some_and(|bot| bot.control.send(Control::LeaveVoice { guilds, done }).is_ok());
        if queued {
            let _ = sent.await;
        }
    }
}

impl BotManager for SerenityBots {
    fn connect(&self, spec: BotSpec) {
        let status = Arc::new(StatusCell::default());
        let (control, commands) = mpsc::unbounded_channel();
        let tenant = spec.tenant_id.clone();
        let shared = &self.shared;
        let dashboards = Arc::new(SessionDashboards::new(
            tenant.clone(),
            Arc::new(http_client(
                &spec.token,
                shared.settings.api_url.as_deref(),
                shared.client.clone(),
            )),
            DashboardSource::new(
                shared.orchestrator.store().tenant(&tenant),
                Arc::clone(shared.orchestrator.workers()),
            ),
            &shared.settings,
        ));
        let supervisor = Supervisor {
            shared: Arc::clone(&self.shared),
            spec,
            status: Arc::clone(&status),
            commands,
            failures: 0,
            dashboards,
        };
        let task = self.runtime.spawn(supervisor.run());
        let old = self.lock().insert(tenant.clone(), TenantBot { status, control, task });
        if let Some(old) = old {
            tracing::info!(tenant = %tenant, "bot token changed: replacing the bot");
            let _ = old.control.send(Control::Disconnect { unregister: false });
        }
    }

    fn update(&self, spec: BotSpec) {
        let bots = self.lock();
        match bots.get(&spec.tenant_id) {
            Some(bot) => {
                let _ = bot.control.send(Control::Update {
                    guild_ids: spec.guild_ids,
                    dm_role_id: spec.dm_role_id,
                });
            }
            None => {
                drop(bots);
                self.connect(spec);
            }
        }
    }

    fn disconnect(&self, tenant_id: &TenantId) {
        if let Some(bot) = self.lock().remove(tenant_id) {
            let _ = bot.control.send(Control::Disconnect { unregister: true });
        }
    }

    fn status(&self, tenant_id: &TenantId) -> BotStatus {
        self.lock()
            .get(tenant_id)
            .map(|bot| bot.status.get())
            .unwrap_or_else(|| BotStatus::disconnected("not connected"))
    }

    fn statuses(&self) -> Vec<(TenantId, BotStatus)> {
        self.lock()
            .iter()
            .map(|(tenant, bot)| (tenant.clone(), bot.status.get()))
            .collect()
    }
}

/// A session of the bot's tenant ended: if it ended without `/session
/// stop` (worker, cleanup, admin API) and the bot is still in that guild's
/// voice channel, the bot leaves.
async fn leave_after_end(sessions: &OrchestratedSessions, ended: &SessionEnded) {
    match sessions.leave_if_ended(&ended.guild_id).await {
        Ok(true) => tracing::info!(
            tenant = %ended.tenant_id, guild = %ended.guild_id, session_id = %ended.session_id,
            reason = %ended.reason, "the session ended; the bot left the voice channel"
        ),
        Ok(false) => {}
        Err(error) => tracing::warn!(
            tenant = %ended.tenant_id, guild = %ended.guild_id, %error,
            "a session ended but the bot could not check whether to leave voice"
        ),
    }
}

/// Why a connection attempt ended.
enum Attempt {
    /// Told to stop.
    Stopped,
    /// Discord refused the token: wait for a new one.
    Rejected(String),
    /// Something else failed: try again after a pause.
    Failed(String),
}

/// One tenant's bot, from connecting to disconnecting.
struct Supervisor {
    shared: Arc<Shared>,
    spec: BotSpec,
    status: Arc<StatusCell>,
    commands: mpsc::UnboundedReceiver<Control>,
    /// Failed attempts in a row since the bot was last ready.
    failures: u32,
    /// The live session dashboards; they outlive reconnects and are
    /// finalised when the supervisor ends.
    dashboards: Arc<SessionDashboards>,
}

/// How long a stopping bot waits for its dashboards' final edits.
const DASHBOARD_GRACE: Duration = Duration::from_secs(5);

impl Supervisor {
    async fn run(mut self) {
        let tenant = self.spec.tenant_id.clone();
        loop {
            self.status.set(BotState::Connecting, None);
            match self.attempt().await {
                Attempt::Stopped => break,
                Attempt::Rejected(message) => {
                    tracing::warn!(%tenant, reason = %message, "bot token rejected; waiting for a new one");
                    self.status.set(BotState::Error, Some(message));
                    self.idle().await;
                    break;
                }
                Attempt::Failed(message) => {
                    let pause = self.shared.settings.backoff.delay(self.failures);
                    self.failures = self.failures.saturating_add(1);
                    tracing::warn!(%tenant, reason = %message, retry_in = ?pause, "bot connection failed");
                    self.status.set(
                        BotState::Connecting,
                        Some(format!("{message}; retrying in {} s", pause.as_secs().max(1))),
                    );
                    if !self.pause(pause).await {
                        break;
                    }
                }
            }
        }
        self.dashboards.shutdown(DASHBOARD_GRACE).await;
        self.status.set(BotState::Disconnected, Some("disconnected".into()));
        tracing::info!(%tenant, "bot disconnected");
    }

    /// Applies updates until told to stop (a rejected token: nothing to
    /// connect with).
    async fn idle(&mut self) {
        while let Some(command) = self.commands.recv().await {
            match command {
                Control::Update { guild_ids, dm_role_id } => {
                    self.spec.guild_ids = guild_ids;
                    self.spec.dm_role_id = dm_role_id;
                }
                // Not connected: in no voice channel.
                Control::LeaveVoice { .. } => {}
                Control::Disconnect { .. } => return,
            }
        }
    }

    /// Waits `pause` while applying updates; `false` when told to stop.
    async fn pause(&mut self, pause: Duration) -> bool {
        let sleep = tokio::time::sleep(pause);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                command = self.commands.recv() => match command {
                    Some(Control::Update { guild_ids, dm_role_id }) => {
                        self.spec.guild_ids = guild_ids;
                        self.spec.dm_role_id = dm_role_id;
                    }
                    Some(Control::LeaveVoice { .. }) => {}
                    Some(Control::Disconnect { .. }) | None => return false,
                },
            }
        }
    }

    fn http(&self) -> Http {
        http_client(
            &self.spec.token,
            self.shared.settings.api_url.as_deref(),
            self.shared.client.clone(),
        )
    }

    /// One connection: checks the token, finds the gateway, runs the client
    /// until it ends or the supervisor is told to stop.
    async fn attempt(&mut self) -> Attempt {
        let http = Arc::new(self.http());
        // The token first, over REST: a clear answer for a bad one.
        if let Err(error) = http.get_current_user().await {
            return match status_of(&error) {
                Some(401) => Attempt::Rejected("Discord rejected the bot token (401 Unauthorized)".into()),
                _ => Attempt::Failed(describe(&error)),
            };
        }
        let gateway = match http.get_gateway().await {
            Ok(gateway) => gateway.url,
            Err(error) => return Attempt::Failed(format!("cannot get the gateway address: {}", describe(&error))),
        };
        let shared = &self.shared;
        let voice = Arc::new(VoiceLink::new(shared.settings.join_timeout));
        let tenant = self.spec.tenant_id.clone();
        let sessions = Arc::new(OrchestratedSessions::new(
            tenant.clone(),
            Arc::clone(&shared.orchestrator),
            voice.clone(),
        ));
        let mut ended = shared.orchestrator.ended_sessions();
        let context = CommandContext::new(
            tenant.clone(),
            shared.orchestrator.store().clone(),
            Arc::clone(&sessions) as Arc<dyn SessionController>,
            voice.clone(),
            Arc::clone(shared.orchestrator.workers()),
            Arc::clone(&shared.files),
        )
        .with_permissions(PermissionChecker::new(self.spec.dm_role_id.clone()))
        .with_recaps(shared.recaps.clone())
        .with_observer(Arc::clone(&self.dashboards) as Arc<dyn SessionObserver>);
        let bot = GatewayBot::new(
            Arc::clone(&http),
            context,
            voice,
            self.spec.guild_ids.clone(),
            Arc::clone(&self.status),
        );
        let client = ClientBuilder::new_with_http(self.http(), intents())
            .event_handler_arc(Arc::new(BotEvents(Arc::clone(&bot))));
        let mut client = match client.await {
            Ok(client) => client,
            Err(error) => return Attempt::Failed(format!("cannot create the Discord client: {error}")),
        };
        *client.ws_url.lock().await = gateway;
        let shards = Arc::clone(&client.shard_manager);
        let mut running = tokio::spawn(async move { client.start().await });
        loop {
            tokio::select! {
                ended = &mut running => {
                    if bot.was_ready() {
                        // It ran: the next failure starts the backoff over.
                        self.failures = 0;
                    }
                    return match ended {
                        Ok(Err(serenity::Error::Gateway(GatewayError::InvalidAuthentication))) => {
                            shards.shutdown_all().await;
                            Attempt::Rejected("Discord rejected the bot token (gateway close 4004)".into())
                        }
                        Ok(Err(error)) => {
                            shards.shutdown_all().await;
                            Attempt::Failed(format!("the gateway connection ended: {error}"))
                        }
                        Ok(Ok(())) => Attempt::Failed("the gateway connection ended".into()),
                        Err(join) => Attempt::Failed(format!("the bot's client task failed: {join}")),
                    };
                }
                announced = ended.recv() => match announced {
                    Ok(session) if session.tenant_id == tenant => {
                        leave_after_end(&sessions, &session).await;
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    // The orchestrator outlives every bot; never busy-loop if not.
                    Err(broadcast::error::RecvError::Closed) => ended = broadcast::channel(1).1,
                },
                command = self.commands.recv() => match command {
                    Some(Control::Update { guild_ids, dm_role_id }) => {
                        self.spec.guild_ids = guild_ids.clone();
                        self.spec.dm_role_id = dm_role_id.clone();
                        bot.update(guild_ids, dm_role_id).await;
                    }
                    Some(Control::LeaveVoice { guilds, done }) => {
                        // Not twice: a session's end may have made it leave already.
                        for guild in guilds.iter().filter(|guild| bot.voice().in_voice(guild)) {
                            bot.voice().leave(guild).await;
                        }
                        let _ = done.send(());
                    }
                    Some(Control::Disconnect { unregister }) => {
                        if unregister {
                            bot.unregister_all().await;
                        }
                        shards.shutdown_all().await;
                        if tokio::time::timeout(Duration::from_secs(5), &mut running).await.is_err() {
                            running.abort();
                        }
                        return Attempt::Stopped;
                    }
                    None => {
                        shards.shutdown_all().await;
                        running.abort();
                        return Attempt::Stopped;
                    }
                },
            }
        }
    }
}

/// Exponential backoff with jitter for reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first pause.
    pub initial: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The pause after `failures` failures in a row: `initial · 2^failures`
    /// capped at `max`, then a random 50–100 % of that so many bots
    /// failing together do not retry together.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.min(20));
        let full = self.initial.saturating_mul(factor).min(self.max);
        let jitter = rand::rng().random_range(0.5..=1.0);
        full.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for _ in 0..50 {
            let first = backoff.delay(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let fourth = backoff.delay(3);
            assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(800));
            assert!(backoff.delay(30) <= Duration::from_secs(2));
            assert!(backoff.delay(30) >= Duration::from_secs(1));
        }
    }
}
