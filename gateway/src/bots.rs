//! Tenant bots as the admin API sees them: a [`BotManager`] is told to
//! connect, update or disconnect a tenant's Discord bot and answers with its
//! status. Every command returns at once; the work happens in the
//! background, so the API answers 201/204 even when Discord is unreachable,
//! and one tenant's failure never affects another.
//!
//! The Discord integration implements this trait over serenity;
//! [`RecordingBotManager`] records commands and state for builds and tests
//! without it.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::crypto::BotToken;
use crate::ids::{DiscordId, TenantId};

/// What a bot needs to connect: never logged (the token is redacted in
/// `Debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotSpec {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The bot token.
    pub token: BotToken,
    /// Guilds to register commands in (empty = every guild of the bot).
    pub guild_ids: Vec<DiscordId>,
    /// Role required for DM commands.
    pub dm_role_id: Option<DiscordId>,
}

/// Connection state of a tenant's bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BotState {
    /// Connected to Discord, commands registered.
    Connected,
    /// Connecting (or reconnecting with backoff).
    Connecting,
    /// Not connected (no token, or disconnected).
    Disconnected,
    /// Failed (bad token, Discord refused); see the message.
    Error,
}

impl BotState {
    /// Every state, in the order metrics and reports list them.
    pub const ALL: [BotState; 4] = [
        BotState::Connected,
        BotState::Connecting,
        BotState::Disconnected,
        BotState::Error,
    ];

    /// The state's name in the admin API and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BotState::Connected => "connected",
            BotState::Connecting => "connecting",
            BotState::Disconnected => "disconnected",
            BotState::Error => "error",
        }
    }
}

/// How many of a gateway's bots are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotCounts {
    /// Connected, commands registered.
    pub connected: usize,
    /// Connecting or reconnecting.
    pub connecting: usize,
    /// Not connected.
    pub disconnected: usize,
    /// Failed (e.g. a rejected token).
    pub error: usize,
    /// The tenants whose bot failed, sorted.
    pub failed_tenants: Vec<TenantId>,
}

impl BotCounts {
    /// Counts `statuses`.
    pub fn of(statuses: &[(TenantId, BotStatus)]) -> Self {
        let mut counts = Self::default();
        for (tenant, status) in statuses {
            match status.state {
                BotState::Connected => counts.connected += 1,
                BotState::Connecting => counts.connecting += 1,
                BotState::Disconnected => counts.disconnected += 1,
                BotState::Error => {
                    counts.error += 1;
                    counts.failed_tenants.push(tenant.clone());
                }
            }
        }
        counts.failed_tenants.sort();
        counts
    }

    /// How many bots are in `state`.
    pub fn count(&self, state: BotState) -> usize {
        match state {
            BotState::Connected => self.connected,
            BotState::Connecting => self.connecting,
            BotState::Disconnected => self.disconnected,
            BotState::Error => self.error,
        }
    }

    /// All bots.
    pub fn total(&self) -> usize {
        self.connected + self.connecting + self.disconnected + self.error
    }

    /// Sets the `glyphoxa_bots{state}` gauges (every state, zeros included).
    pub fn publish(&self) {
        for state in BotState::ALL {
            metrics::gauge!("glyphoxa_bots", "state" => state.as_str()).set(self.count(state) as f64);
        }
    }
}

/// Publishes the bot-state gauges of `bots` every `interval` until `stop`
/// completes (the gateway and full mode run this in the background).
pub async fn publish_bot_states(
    bots: std::sync::Arc<dyn BotManager>,
    interval: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => BotCounts::of(&bots.statuses()).publish(),
        }
    }
}

/// A bot's status as the admin API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BotStatus {
    /// Connection state.
    pub state: BotState,
    /// Why it is in that state (errors), if known. Never contains the token.
    pub message: Option<String>,
    /// Guilds the bot is in.
    pub guild_count: u32,
}

impl BotStatus {
    /// A disconnected bot with `message`.
    pub fn disconnected(message: impl Into<String>) -> Self {
        Self {
            state: BotState::Disconnected,
            message: Some(message.into()),
            guild_count: 0,
        }
    }
}

/// Connects, updates and disconnects tenant bots in the background.
pub trait BotManager: Send + Sync {
    /// Connects the tenant's bot, replacing a running one (token changed),
    /// and registers its commands. Returns at once.
    fn connect(&self, spec: BotSpec);

    /// The bot's guilds or DM role changed: re-register its commands without
    /// reconnecting. Returns at once.
    fn update(&self, spec: BotSpec);

    /// Disconnects the bot and unregisters its commands (tenant deleted or
    /// token removed). Returns at once.
    fn disconnect(&self, tenant_id: &TenantId);

    /// The bot's current status.
    fn status(&self, tenant_id: &TenantId) -> BotStatus;

    /// The status of every tenant's bot (readiness and metrics).
    fn statuses(&self) -> Vec<(TenantId, BotStatus)>;
}

/// A command given to a [`RecordingBotManager`] (tokens left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotCommand {
    /// `connect`.
    Connect {
        /// The tenant.
        tenant_id: TenantId,
        /// Its guilds.
        guild_ids: Vec<DiscordId>,
        /// Its DM role.
        dm_role_id: Option<DiscordId>,
    },
    /// `update`.
    Update {
        /// The tenant.
        tenant_id: TenantId,
        /// Its guilds.
        guild_ids: Vec<DiscordId>,
        /// Its DM role.
        dm_role_id: Option<DiscordId>,
    },
    /// `disconnect`.
    Disconnect {
        /// The tenant.
        tenant_id: TenantId,
    },
}

#[derive(Default)]
struct Recorded {
    statuses: HashMap<TenantId, BotStatus>,
    commands: Vec<BotCommand>,
}

/// A [`BotManager`] without Discord: records every command and keeps the
/// status it implies (`connecting` after connect, `disconnected` after
/// disconnect) until [`RecordingBotManager::set_status`] says otherwise.
#[derive(Default)]
pub struct RecordingBotManager {
    inner: Mutex<Recorded>,
}

impl std::fmt::Debug for RecordingBotManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordingBotManager")
    }
}

impl RecordingBotManager {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Every command so far, in order.
    pub fn commands(&self) -> Vec<BotCommand> {
        self.lock().commands.clone()
    }

    /// Sets a tenant's status (e.g. what a real connection attempt found).
    pub fn set_status(&self, tenant_id: &TenantId, status: BotStatus) {
        self.lock().statuses.insert(tenant_id.clone(), status);
    }
}

impl BotManager for RecordingBotManager {
    fn connect(&self, spec: BotSpec) {
        let mut inner = self.lock();
        inner.commands.push(BotCommand::Connect {
            tenant_id: spec.tenant_id.clone(),
            guild_ids: spec.guild_ids.clone(),
            dm_role_id: spec.dm_role_id.clone(),
        });
        inner.statuses.insert(
            spec.tenant_id,
            BotStatus {
                state: BotState::Connecting,
                message: None,
                guild_count: u32::try_from(spec.guild_ids.len()).unwrap_or(u32::MAX),
            },
        );
    }

    fn update(&self, spec: BotSpec) {
        let mut inner = self.lock();
        inner.commands.push(BotCommand::Update {
            tenant_id: spec.tenant_id.clone(),
            guild_ids: spec.guild_ids.clone(),
            dm_role_id: spec.dm_role_id.clone(),
        });
        if let Some(status) = inner.statuses.get_mut(&spec.tenant_id) {
            status.guild_count = u32::try_from(spec.guild_ids.len()).unwrap_or(u32::MAX);
        }
    }

    fn disconnect(&self, tenant_id: &TenantId) {
        let mut inner = self.lock();
        inner.commands.push(BotCommand::Disconnect {
            tenant_id: tenant_id.clone(),
        });
        inner.statuses.remove(tenant_id);
    }

    fn status(&self, tenant_id: &TenantId) -> BotStatus {
        self.lock()
            .statuses
            .get(tenant_id)
            .cloned()
            .unwrap_or_else(|| BotStatus::disconnected("not connected"))
    }

    fn statuses(&self) -> Vec<(TenantId, BotStatus)> {
        self.lock()
            .statuses
            .iter()
            .map(|(tenant, status)| (tenant.clone(), status.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).expect("a tenant id")
    }

    fn status(state: BotState) -> BotStatus {
        BotStatus {
            state,
            message: None,
            guild_count: 1,
        }
    }

    #[test]
    fn counts_bots_by_state_and_names_the_failed_tenants() {
        let statuses = vec![
            (tenant("zeta"), status(BotState::Error)),
            (tenant("acme"), status(BotState::Connected)),
            (tenant("bravo"), status(BotState::Connecting)),
            (tenant("alpha"), status(BotState::Error)),
        ];
        let counts = BotCounts::of(&statuses);
        assert_eq!(
            (counts.connected, counts.connecting, counts.disconnected, counts.error),
            (1, 1, 0, 2)
        );
        assert_eq!(counts.total(), 4);
        assert_eq!(counts.failed_tenants, [tenant("alpha"), tenant("zeta")]);
        assert_eq!(BotCounts::of(&[]), BotCounts::default());
    }

    #[test]
    fn publishes_a_gauge_per_state_including_zeros() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let counts = BotCounts::of(&[
            (tenant("acme"), status(BotState::Connected)),
            (tenant("bravo"), status(BotState::Connected)),
        ]);
        metrics::with_local_recorder(&recorder, || counts.publish());
        let gauges: HashMap<String, f64> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == "glyphoxa_bots")
            .filter_map(|(key, _, _, value)| {
                let state = key.key().labels().find(|l| l.key() == "state")?.value().to_string();
                match value {
                    DebugValue::Gauge(v) => Some((state, v.into_inner())),
                    _ => None,
                }
            })
            .collect();
        assert_eq!(gauges.len(), 4, "{gauges:?}");
        assert_eq!(gauges["connected"], 2.0);
        assert_eq!(gauges["error"], 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_publisher_follows_the_bots_until_stopped() {
        let bots = Arc::new(RecordingBotManager::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let publisher = tokio::spawn(publish_bot_states(
            Arc::clone(&bots) as Arc<dyn BotManager>,
            Duration::from_secs(5),
            async move {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert!(!publisher.is_finished(), "publishes until told to stop");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(1), publisher)
            .await
            .expect("stops at once")
            .expect("no panic");
    }
}
