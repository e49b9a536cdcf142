//! [`GatewayBot`]: one tenant's Discord bot as the gateway runs it — its
//! REST client, command router, DM-role check, guild list and voice link —
//! and the serenity event handler that feeds it ([`BotEvents`]).
//!
//! On READY the bot registers [`command_set`] by bulk overwrite in each
//! configured guild (or, with none configured, in every guild it is in, also
//! those that arrive later by GUILD_CREATE). Each interaction is converted to
//! the command model and handled in a task of its own, so the shard never
//! waits for a handler; handlers keep Discord's 3 s deadline by deferring
//! anything slow.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use glyphoxa_proto::v1::UpdateVoiceServerRequest;
use serde_json::Value;
use serenity::all::{
    ConnectionStage, Context, EventHandler, Guild, GuildId, Http, Interaction as WireInteraction, Ready,
    ShardStageUpdateEvent, UnavailableGuild, VoiceServerUpdateEvent, VoiceState,
};

use super::responder::{describe, HttpResponder};
use super::voice::{ShardSender, VoiceEvent, VoiceLink};
use super::wire;
use crate::bots::{BotState, BotStatus};
use crate::commands::definitions::command_set;
use crate::commands::{handle, CommandContext, PermissionChecker, Router, StopCause};
use crate::ids::{DiscordId, TenantId};

/// A bot's status, shared by the bot (which sees Discord's events) and its
/// manager (which sees connection attempts).
#[derive(Debug)]
pub struct StatusCell(Mutex<BotStatus>);

impl Default for StatusCell {
    fn default() -> Self {
        Self(Mutex::new(BotStatus {
            state: BotState::Connecting,
            message: None,
            guild_count: 0,
        }))
    }
}

impl StatusCell {
    fn lock(&self) -> MutexGuard<'_, BotStatus> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current status.
    pub fn get(&self) -> BotStatus {
        self.lock().clone()
    }

    /// Sets state and message (the guild count stays).
    pub fn set(&self, state: BotState, message: Option<String>) {
        let mut status = self.lock();
        status.state = state;
        status.message = message;
    }

    /// Sets the state unless the bot is in error (only a new connection
    /// attempt clears that, through [`StatusCell::set`]).
    fn follow(&self, state: BotState, message: Option<String>) {
        let mut status = self.lock();
        if status.state != BotState::Error {
            status.state = state;
            status.message = message;
        }
    }

    fn set_guild_count(&self, count: usize) {
        self.lock().guild_count = u32::try_from(count).unwrap_or(u32::MAX);
    }
}

#[derive(Debug, Default)]
struct Guilds {
    /// Guilds the tenant configured (empty = every guild of the bot).
    configured: Vec<DiscordId>,
    /// Guilds the bot is in, per READY and GUILD_CREATE/DELETE.
    present: BTreeSet<DiscordId>,
    /// Guilds where the command set is registered.
    registered: BTreeSet<DiscordId>,
    /// Guilds where registering failed, with why.
    failed: BTreeMap<DiscordId, String>,
}

impl Guilds {
    /// Where the commands belong.
    fn targets(&self) -> Vec<DiscordId> {
        if self.configured.is_empty() {
            self.present.iter().cloned().collect()
        } else {
            self.configured.clone()
        }
    }
}

/// One tenant's bot: REST client, router, DM-role check, guilds and voice.
pub struct GatewayBot {
    tenant: TenantId,
    http: Arc<Http>,
    voice: Arc<VoiceLink>,
    router: Router,
    context: Mutex<CommandContext>,
    guilds: Mutex<Guilds>,
    status: Arc<StatusCell>,
    /// One registration pass at a time, so passes never interleave their
    /// PUTs for one guild.
    registering: tokio::sync::Mutex<()>,
    /// Whether READY ever arrived.
    ready: AtomicBool,
}

impl std::fmt::Debug for GatewayBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBot").field("tenant", &self.tenant).finish()
    }
}

fn guild_id(id: &DiscordId) -> Result<GuildId, String> {
    id.as_str()
        .parse::<GuildId>()
        .map_err(|_| format!("{id} is not a usable guild id"))
}

fn discord_id(id: impl std::fmt::Display) -> Option<DiscordId> {
    DiscordId::parse(&id.to_string()).ok()
}

impl GatewayBot {
    /// A bot for `context.tenant` calling Discord through `http`, joining
    /// voice through `voice` (the same link `context` uses), registering its
    /// commands in `guild_ids` (empty: every guild it is in) and reporting
    /// into `status`.
    pub fn new(
        http: Arc<Http>,
        context: CommandContext,
        voice: Arc<VoiceLink>,
        guild_ids: Vec<DiscordId>,
        status: Arc<StatusCell>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tenant: context.tenant.clone(),
            http,
            voice,
            router: Router::standard(),
            context: Mutex::new(context),
            guilds: Mutex::new(Guilds {
                configured: guild_ids,
                ..Guilds::default()
            }),
            status,
            registering: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
        })
    }

    fn guilds(&self) -> MutexGuard<'_, Guilds> {
        self.guilds.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The handlers' context as it is now.
    pub fn context(&self) -> CommandContext {
        self.context
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The bot's voice link (voice-state cache and connector).
    pub fn voice(&self) -> &Arc<VoiceLink> {
        &self.voice
    }

    /// The bot's REST client.
    pub fn http(&self) -> &Arc<Http> {
        &self.http
    }

    /// Whether the bot got READY from Discord at least once.
    pub fn was_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Guilds where the command set is registered now.
    pub fn registered_guilds(&self) -> Vec<DiscordId> {
        self.guilds().registered.iter().cloned().collect()
    }

    /// New guilds or DM role: the role applies to the next interaction; the
    /// commands are registered where they now belong and removed from
    /// guilds that are no longer configured. No reconnect.
    pub async fn update(&self, guild_ids: Vec<DiscordId>, dm_role: Option<DiscordId>) {
        {
            let mut context = self.context.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            context.permissions = PermissionChecker::new(dm_role);
        }
        self.guilds().configured = guild_ids;
        self.register_all().await;
    }

    /// Registers the command set (bulk overwrite) in every guild it belongs
    /// to, and removes it from guilds it no longer belongs to. Needs the
    /// application id (known after READY); does nothing before.
    pub async fn register_all(&self) {
        let _one_pass = self.registering.lock().await;
        if self.http.application_id().is_none() {
            return;
        }
        let (targets, stale) = {
            let guilds = self.guilds();
            let targets = guilds.targets();
            let stale: Vec<DiscordId> = guilds
                .registered
                .iter()
                .filter(|g| !targets.contains(g))
                .cloned()
                .collect();
            (targets, stale)
        };
        let commands = Value::Array(command_set());
        for guild in &targets {
            self.put_commands(guild, &commands).await;
        }
        let empty = Value::Array(Vec::new());
        for guild in &stale {
            if self.put_commands(guild, &empty).await {
                self.guilds().registered.remove(guild);
            }
        }
        self.report_failures();
    }

    /// Registers the command set in one guild unless it is there already.
    async fn register_guild(&self, guild: &DiscordId) {
        let _one_pass = self.registering.lock().await;
        if self.http.application_id().is_none() || self.guilds().registered.contains(guild) {
            return;
        }
        self.put_commands(guild, &Value::Array(command_set())).await;
        self.report_failures();
    }

    /// Removes the command set from every guild it was (or may have been)
    /// registered in: the tenant is deleted.
    pub async fn unregister_all(&self) {
        let _one_pass = self.registering.lock().await;
        if self.http.application_id().is_none() {
            // Not ready yet: ask which application this is.
            match self.http.get_current_application_info().await {
                Ok(application) => self.http.set_application_id(application.id),
                Err(error) => {
                    tracing::warn!(tenant = %self.tenant, error = %describe(&error), "cannot unregister the slash commands");
                    return;
                }
            }
        }
        let guilds: BTreeSet<DiscordId> = {
            let guilds = self.guilds();
            guilds
                .registered
                .iter()
                .chain(guilds.targets().iter())
                .cloned()
                .collect()
        };
        let empty = Value::Array(Vec::new());
        for guild in &guilds {
            if self.put_commands(guild, &empty).await {
                self.guilds().registered.remove(guild);
            }
        }
    }

    /// One bulk overwrite; `true` when Discord took it.
    async fn put_commands(&self, guild: &DiscordId, commands: &Value) -> bool {
        let registering = commands.as_array().is_some_and(|c| !c.is_empty());
        let result = match guild_id(guild) {
            Ok(id) => self
                .http
                .create_guild_commands(id, commands)
                .await
                .map(|_| ())
                .map_err(|e| describe(&e)),
            Err(error) => Err(error),
        };
        let mut guilds = self.guilds();
        match result {
            Ok(()) => {
                guilds.failed.remove(guild);
                if registering {
                    guilds.registered.insert(guild.clone());
                    tracing::info!(tenant = %self.tenant, %guild, "slash commands registered");
                } else {
                    tracing::info!(tenant = %self.tenant, %guild, "slash commands removed");
                }
                true
            }
            Err(error) => {
                let what = if registering { "registering" } else { "removing" };
                tracing::warn!(tenant = %self.tenant, %guild, %error, "{what} slash commands failed");
                guilds.failed.insert(guild.clone(), error);
                false
            }
        }
    }

    /// A connected bot whose commands failed somewhere says where.
    fn report_failures(&self) {
        let message = {
            let guilds = self.guilds();
            if guilds.failed.is_empty() {
                None
            } else {
                let list: Vec<String> = guilds.failed.iter().map(|(g, e)| format!("guild {g}: {e}")).collect();
                Some(format!("commands not registered in {}", list.join("; ")))
            }
        };
        let current = self.status.get();
        if current.state == BotState::Connected {
            self.status.set(BotState::Connected, message);
        }
    }

    fn update_guild_count(&self) {
        let count = self.guilds().present.len();
        self.status.set_guild_count(count);
    }

    /// Handles one converted interaction to the end (in its own task).
    async fn interact(self: Arc<Self>, interaction: crate::commands::Interaction, target: wire::ReplyTarget) {
        let context = self.context();
        let responder = Arc::new(HttpResponder::new(Arc::clone(&self.http), target));
        if let Err(error) = handle(&context, &self.router, &interaction, responder).await {
            tracing::warn!(tenant = %self.tenant, command = %interaction.key(), %error, "an interaction went unanswered");
        }
    }

    /// Acts on what the voice link reports: a new voice server goes to the
    /// worker; a bot removed from voice ends the session.
    async fn on_voice_event(&self, event: VoiceEvent) {
        let context = self.context();
        match event {
            VoiceEvent::ServerMoved {
                guild,
                token,
                endpoint,
                voice_session_id,
            } => {
                let session = match context.sessions.info(&guild).await {
                    Ok(Some(session)) => session,
                    Ok(None) => return,
                    Err(error) => {
                        tracing::warn!(tenant = %self.tenant, %guild, %error, "cannot look up the session for a voice server update");
                        return;
                    }
                };
                let Some(worker) = session.worker.as_deref() else {
                    return;
                };
                let request = UpdateVoiceServerRequest {
                    session_id: session.id.to_string(),
                    token,
                    endpoint: endpoint.clone(),
                    voice_session_id,
                };
                match context.workers.update_voice_server(worker, request).await {
                    Ok(()) => {
                        tracing::info!(tenant = %self.tenant, session_id = %session.id, %endpoint, "voice server moved; worker told")
                    }
                    Err(error) => {
                        tracing::warn!(tenant = %self.tenant, session_id = %session.id, %error, "cannot forward a voice server update")
                    }
                }
            }
            VoiceEvent::Removed { guild } => {
                match context.sessions.info(&guild).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(error) => {
                        tracing::warn!(tenant = %self.tenant, %guild, %error, "cannot look up the session of a bot removed from voice");
                        return;
                    }
                }
                match context.sessions.stop(&guild, StopCause::RemovedFromVoice).await {
                    Ok(session) => {
                        context.observe_stopped(&session);
                        tracing::info!(
                            tenant = %self.tenant, %guild, session_id = %session.id,
                            "the bot was removed from the voice channel; session ended"
                        )
                    }
                    Err(error) => tracing::warn!(
                        tenant = %self.tenant, %guild, %error,
                        "the bot was removed from the voice channel but its session could not be ended"
                    ),
                }
            }
        }
    }
}

/// The serenity event handler of a [`GatewayBot`].
#[derive(Debug, Clone)]
pub struct BotEvents(pub Arc<GatewayBot>);

#[async_trait]
impl EventHandler for BotEvents {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let bot = &self.0;
        bot.ready.store(true, Ordering::Relaxed);
        ctx.http.set_application_id(ready.application.id);
        bot.http.set_application_id(ready.application.id);
        if let Some(user) = discord_id(ready.user.id) {
            bot.voice.on_ready(Arc::new(ShardSender(ctx.shard.clone())), user);
        }
        {
            let mut guilds = bot.guilds();
            guilds.present = ready.guilds.iter().filter_map(|g| discord_id(g.id)).collect();
        }
        bot.update_guild_count();
        bot.status.follow(BotState::Connected, None);
        tracing::info!(tenant = %bot.tenant, bot = %ready.user.name, guilds = ready.guilds.len(), "bot connected");
        bot.register_all().await;
    }

    async fn guild_create(&self, _ctx: Context, guild: Guild, _is_new: Option<bool>) {
        let bot = &self.0;
        let Some(id) = discord_id(guild.id) else {
            return;
        };
        let states = guild.voice_states.values().filter_map(|state| {
            let channel = state.channel_id.and_then(discord_id)?;
            Some((discord_id(state.user_id)?, channel))
        });
        bot.voice.on_guild(&id, states.collect::<Vec<_>>());
        let fresh = bot.guilds().present.insert(id.clone());
        if fresh {
            bot.update_guild_count();
        }
        let wanted = bot.guilds().configured.is_empty();
        if wanted {
            bot.register_guild(&id).await;
        }
    }

    async fn guild_delete(&self, _ctx: Context, incomplete: UnavailableGuild, _full: Option<Guild>) {
        let bot = &self.0;
        let Some(id) = discord_id(incomplete.id) else {
            return;
        };
        bot.voice.forget_guild(&id);
        if !incomplete.unavailable {
            let mut guilds = bot.guilds();
            guilds.present.remove(&id);
            guilds.registered.remove(&id);
        }
        bot.update_guild_count();
    }

    async fn voice_state_update(&self, _ctx: Context, _old: Option<VoiceState>, new: VoiceState) {
        let bot = &self.0;
        let (Some(guild), Some(user)) = (new.guild_id.and_then(discord_id), discord_id(new.user_id)) else {
            return;
        };
        let channel = new.channel_id.and_then(discord_id);
        if let Some(event) = bot
            .voice
            .on_voice_state(&guild, &user, channel.as_ref(), &new.session_id)
        {
            bot.on_voice_event(event).await;
        }
    }

    async fn voice_server_update(&self, _ctx: Context, event: VoiceServerUpdateEvent) {
        let bot = &self.0;
        let Some(guild) = event.guild_id.and_then(discord_id) else {
            return;
        };
        if let Some(event) = bot
            .voice
            .on_voice_server(&guild, &event.token, event.endpoint.as_deref())
        {
            bot.on_voice_event(event).await;
        }
    }

    async fn interaction_create(&self, _ctx: Context, interaction: WireInteraction) {
        let bot = &self.0;
        match wire::incoming(&interaction) {
            None => {}
            Some(Ok((interaction, target))) => {
                tokio::spawn(Arc::clone(bot).interact(interaction, target));
            }
            Some(Err(error)) => tracing::warn!(tenant = %bot.tenant, %error, "an interaction could not be read"),
        }
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        let bot = &self.0;
        match event.new {
            ConnectionStage::Connected => bot.status.follow(BotState::Connected, None),
            stage => {
                tracing::info!(tenant = %bot.tenant, ?stage, "bot gateway connection changed");
                let message = format!("gateway connection: {stage:?}").to_lowercase();
                bot.status.follow(BotState::Connecting, Some(message));
            }
        }
    }
}
