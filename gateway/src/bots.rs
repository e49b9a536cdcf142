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
}
