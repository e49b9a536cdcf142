//! Slash commands (SPEC §2) without Discord types: the interaction and reply
//! models, the [`Router`], the DM [`PermissionChecker`], the
//! [`SessionController`] and the handlers. The serenity adapter in
//! [`crate::discord`] converts Discord's payloads to and from these models;
//! full mode and gateway mode run the very same handlers and differ only in
//! the controller's store and worker client.
//!
//! Flow of one interaction ([`handle`]): route by `command subcommand`
//! (autocomplete by the same key, buttons by custom-id prefix, modals by
//! id) → permission check (before anything else) → handler. Handlers refuse
//! at once (ephemeral, not deferred) and defer before anything slow; any
//! error becomes a clear ephemeral reply, never silence.

pub mod campaign;
pub mod controller;
pub mod dashboard;
pub mod definitions;
pub mod entity;
pub mod feedback;
pub mod interaction;
pub mod npc;
pub mod permissions;
pub mod recap;
pub mod reply;
pub mod responder;
pub mod session;

#[cfg(any(test, feature = "fakes"))]
pub mod testing;

use std::sync::Arc;
use std::time::Instant;

use glyphoxa_pipeline::providers::{LanguageModel, TextToSpeech};

pub use controller::{OrchestratedSessions, SessionController, SessionError, SessionInfo, StopCause, VoiceConnector};
pub use dashboard::{DashboardSource, SessionObserver};
pub use interaction::{Attachment, Interaction, InteractionKind, Invoker, OptionValue};
pub use permissions::{Access, PermissionChecker};
pub use reply::{Button, ButtonStyle, Choice, Embed, InitialResponse, Message, Modal, TextInput};
pub use responder::{RecordingResponder, Reply, ReplyError, Responder, Sent};

use crate::ids::{DiscordId, TenantId};
use crate::store::{Store, StoreError, TenantStore};
use crate::workers::{WorkerClient, WorkerError};

/// Downloads an attachment (campaign files, Foundry exports).
#[async_trait::async_trait]
pub trait AttachmentSource: Send + Sync {
    /// The file's bytes; refuses files over `max_bytes` without reading
    /// them all.
    async fn fetch(&self, attachment: &Attachment, max_bytes: u64) -> Result<Vec<u8>, String>;
}

/// The engines behind `/session recap` and `/session voice-recap`.
#[derive(Clone, Default)]
pub struct RecapEngines {
    /// Summarises the transcript; without it the recap is the transcript.
    pub summarizer: Option<Arc<dyn LanguageModel>>,
    /// Narrates the recap; without it voice recaps are refused.
    pub narrator: Option<Arc<dyn TextToSpeech>>,
    /// The narrator's voice id (provider-specific; empty = its default).
    pub narrator_voice: String,
}

impl std::fmt::Debug for RecapEngines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecapEngines")
            .field("summarizer", &self.summarizer.is_some())
            .field("narrator", &self.narrator.is_some())
            .finish()
    }
}

/// Everything a handler may use, for one tenant's bot.
#[derive(Clone)]
pub struct CommandContext {
    /// The tenant (full mode: the single configured one).
    pub tenant: TenantId,
    /// The store (always used through [`CommandContext::store`]).
    pub(crate) store: Store,
    /// Sessions of the tenant's guilds.
    pub sessions: Arc<dyn SessionController>,
    /// Who sits in which voice channel (the bot's voice-state cache).
    pub voice: Arc<dyn VoiceConnector>,
    /// Worker calls for running sessions.
    pub workers: Arc<dyn WorkerClient>,
    /// The DM role check.
    pub permissions: PermissionChecker,
    /// Recap summariser and narrator.
    pub recaps: RecapEngines,
    /// Attachment downloads.
    pub files: Arc<dyn AttachmentSource>,
    /// Told when `/session start|stop` succeed (the live dashboard); none
    /// by default.
    pub observer: Option<Arc<dyn SessionObserver>>,
}

impl std::fmt::Debug for CommandContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandContext")
            .field("tenant", &self.tenant)
            .field("permissions", &self.permissions)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl CommandContext {
    /// A context for `tenant`.
    pub fn new(
        tenant: TenantId,
        store: Store,
        sessions: Arc<dyn SessionController>,
        voice: Arc<dyn VoiceConnector>,
        workers: Arc<dyn WorkerClient>,
        files: Arc<dyn AttachmentSource>,
    ) -> Self {
        Self {
            tenant,
            store,
            sessions,
            voice,
            workers,
            permissions: PermissionChecker::default(),
            recaps: RecapEngines::default(),
            files,
            observer: None,
        }
    }

    /// With the DM role check.
    pub fn with_permissions(mut self, permissions: PermissionChecker) -> Self {
        self.permissions = permissions;
        self
    }

    /// With recap engines.
    pub fn with_recaps(mut self, recaps: RecapEngines) -> Self {
        self.recaps = recaps;
        self
    }

    /// With a session observer (the live dashboard).
    pub fn with_observer(mut self, observer: Arc<dyn SessionObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Tells the observer, if any, that `session` started from a command
    /// in `channel`.
    pub(crate) fn observe_started(&self, session: &SessionInfo, channel: Option<&DiscordId>) {
        if let Some(observer) = &self.observer {
            observer.started(session, channel);
        }
    }

    /// Tells the observer, if any, that `session` ended.
    pub(crate) fn observe_stopped(&self, session: &SessionInfo) {
        if let Some(observer) = &self.observer {
            observer.stopped(session);
        }
    }

    /// The tenant's store: every query is scoped to this tenant.
    pub fn store(&self) -> TenantStore {
        self.store.tenant(&self.tenant)
    }

    /// Unix ms now, by the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.store.clock().now_ms()
    }
}

/// Why a command did not do what was asked; every variant's message is for
/// the user.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Refused before doing anything (bad input, no session, wrong place).
    #[error("{0}")]
    Refused(String),
    /// Tried and failed.
    #[error("{0}")]
    Failed(String),
    /// The reply itself could not be sent.
    #[error(transparent)]
    Reply(#[from] ReplyError),
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid { .. } | StoreError::NotFound(_) | StoreError::Conflict(_) => {
                CommandError::Refused(error.to_string())
            }
            other => {
                tracing::error!(error = %other, "a command's store access failed");
                CommandError::Failed(format!("The campaign database failed, try again: {other}"))
            }
        }
    }
}

impl From<WorkerError> for CommandError {
    fn from(error: WorkerError) -> Self {
        if error.is_not_found() {
            return CommandError::Refused(
                "The voice worker no longer runs this session; stop it with `/session stop` and start a new one."
                    .into(),
            );
        }
        tracing::warn!(%error, "a command's worker call failed");
        CommandError::Failed(format!("Voice service unavailable, try again in a moment. ({error})"))
    }
}

impl From<SessionError> for CommandError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::AlreadyActive(_) | SessionError::NoActiveSession => CommandError::Refused(error.to_string()),
            SessionError::Orchestrator(crate::orchestrator::OrchestratorError::Refused(_)) => {
                CommandError::Refused(error.to_string())
            }
            other => CommandError::Failed(other.to_string()),
        }
    }
}

/// What a handler returns.
pub type CommandResult = Result<(), CommandError>;

/// Every handler the router can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `/session start`.
    SessionStart,
    /// `/session stop`.
    SessionStop,
    /// `/session recap`.
    SessionRecap,
    /// `/session voice-recap`.
    SessionVoiceRecap,
    /// `/npc list`.
    NpcList,
    /// `/npc mute`.
    NpcMute,
    /// `/npc unmute`.
    NpcUnmute,
    /// `/npc speak`.
    NpcSpeak,
    /// `/npc muteall`.
    NpcMuteAll,
    /// `/npc unmuteall`.
    NpcUnmuteAll,
    /// `/entity add` (opens the modal).
    EntityAdd,
    /// The `/entity add` modal submitted.
    EntityAddSubmit,
    /// `/entity list`.
    EntityList,
    /// `/entity remove` (asks to confirm).
    EntityRemove,
    /// The remove confirmation's Confirm button.
    EntityRemoveConfirm,
    /// The remove confirmation's Cancel button.
    EntityRemoveCancel,
    /// `/entity import`.
    EntityImport,
    /// `/campaign info`.
    CampaignInfo,
    /// `/campaign load`.
    CampaignLoad,
    /// `/campaign switch`.
    CampaignSwitch,
    /// `/feedback` (opens the modal).
    Feedback,
    /// The `/feedback` modal submitted.
    FeedbackSubmit,
}

/// Where an interaction goes and who may send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The handler.
    pub action: Action,
    /// Who may use it.
    pub access: Access,
}

/// Custom-id prefix of the entity-removal Confirm button (`…:<entity id>`).
pub const ENTITY_REMOVE_CONFIRM: &str = "entity:remove:confirm:";
/// Custom-id prefix of the entity-removal Cancel button.
pub const ENTITY_REMOVE_CANCEL: &str = "entity:remove:cancel";
/// Custom id of the `/entity add` modal.
pub const ENTITY_ADD_MODAL: &str = "entity:add";
/// Custom-id prefix of the `/feedback` modal (`…:<session id>`).
pub const FEEDBACK_MODAL: &str = "feedback:";

/// Dispatch table: commands by `command subcommand`, components by custom-id
/// prefix, modals by custom-id prefix.
#[derive(Debug, Clone)]
pub struct Router {
    commands: Vec<(&'static str, Route)>,
    components: Vec<(&'static str, Route)>,
    modals: Vec<(&'static str, Route)>,
}

impl Default for Router {
    fn default() -> Self {
        Self::standard()
    }
}

impl Router {
    /// Every command of SPEC §2.
    pub fn standard() -> Self {
        use Access::{Anyone, Dm};
        use Action::*;
        let route = |action, access| Route { action, access };
        Self {
            commands: vec![
                ("session start", route(SessionStart, Dm)),
                ("session stop", route(SessionStop, Dm)),
                ("session recap", route(SessionRecap, Dm)),
                ("session voice-recap", route(SessionVoiceRecap, Dm)),
                ("npc list", route(NpcList, Dm)),
                ("npc mute", route(NpcMute, Dm)),
                ("npc unmute", route(NpcUnmute, Dm)),
                ("npc speak", route(NpcSpeak, Dm)),
                ("npc muteall", route(NpcMuteAll, Dm)),
                ("npc unmuteall", route(NpcUnmuteAll, Dm)),
                ("entity add", route(EntityAdd, Dm)),
                ("entity list", route(EntityList, Dm)),
                ("entity remove", route(EntityRemove, Dm)),
                ("entity import", route(EntityImport, Dm)),
                ("campaign info", route(CampaignInfo, Dm)),
                ("campaign load", route(CampaignLoad, Dm)),
                ("campaign switch", route(CampaignSwitch, Dm)),
                ("feedback", route(Feedback, Anyone)),
            ],
            components: vec![
                (ENTITY_REMOVE_CONFIRM, route(EntityRemoveConfirm, Dm)),
                (ENTITY_REMOVE_CANCEL, route(EntityRemoveCancel, Dm)),
            ],
            modals: vec![
                (ENTITY_ADD_MODAL, route(EntityAddSubmit, Dm)),
                (FEEDBACK_MODAL, route(FeedbackSubmit, Anyone)),
            ],
        }
    }

    /// Where `interaction` goes, if anywhere.
    pub fn route(&self, interaction: &Interaction) -> Option<Route> {
        match &interaction.kind {
            InteractionKind::Command | InteractionKind::Autocomplete { .. } => {
                let key = interaction.key();
                self.commands.iter().find(|(k, _)| *k == key).map(|(_, r)| *r)
            }
            InteractionKind::Component { custom_id } => self
                .components
                .iter()
                .find(|(prefix, _)| custom_id.starts_with(prefix))
                .map(|(_, r)| *r),
            InteractionKind::ModalSubmit { custom_id, .. } => self
                .modals
                .iter()
                .find(|(prefix, _)| custom_id.starts_with(prefix))
                .map(|(_, r)| *r),
        }
    }
}

/// Handles one interaction completely: routes it, checks permission, runs
/// the handler and turns any error into a reply. Returns an error only when
/// no reply could be sent at all.
pub async fn handle(
    ctx: &CommandContext,
    router: &Router,
    interaction: &Interaction,
    responder: Arc<dyn Responder>,
) -> Result<(), ReplyError> {
    let started = Instant::now();
    let mut reply = Reply::new(responder);
    let key = interaction.key();
    let Some(route) = router.route(interaction) else {
        if matches!(interaction.kind, InteractionKind::Autocomplete { .. }) {
            return reply.choices(Vec::new()).await;
        }
        tracing::info!(tenant = %ctx.tenant, command = %key, "unknown interaction");
        return reply
            .send(Message::text(
                "I don't know that command or button any more. Try the slash command again.",
            ))
            .await;
    };
    let autocomplete = matches!(interaction.kind, InteractionKind::Autocomplete { .. });
    let result = match ctx.permissions.check(interaction, route.access) {
        Err(_) if autocomplete => reply.choices(Vec::new()).await.map_err(CommandError::from),
        Err(refusal) => Err(CommandError::Refused(refusal)),
        Ok(()) if autocomplete => autocomplete_for(ctx, route.action, interaction, &mut reply).await,
        Ok(()) => run(ctx, route.action, interaction, &mut reply).await,
    };
    let outcome = match &result {
        Ok(()) => "ok",
        Err(CommandError::Refused(_)) => "refused",
        Err(CommandError::Failed(_)) => "failed",
        Err(CommandError::Reply(_)) => "reply_failed",
    };
    metrics::histogram!("glyphoxa_command_seconds", "command" => route_name(route.action), "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    let error = match result {
        Ok(()) => return Ok(()),
        Err(CommandError::Reply(error)) => {
            tracing::warn!(tenant = %ctx.tenant, command = %key, %error, "cannot reply to an interaction");
            return Err(error);
        }
        Err(error) => error,
    };
    if autocomplete {
        return Ok(());
    }
    let text = match error {
        CommandError::Failed(text) => {
            tracing::warn!(tenant = %ctx.tenant, command = %key, error = %text, "command failed");
            format!("⚠️ {text}")
        }
        other => other.to_string(),
    };
    reply.send(Message::text(text)).await
}

async fn run(ctx: &CommandContext, action: Action, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    use Action::*;
    match action {
        SessionStart => session::start(ctx, interaction, reply).await,
        SessionStop => session::stop(ctx, interaction, reply).await,
        SessionRecap => recap::recap(ctx, interaction, reply).await,
        SessionVoiceRecap => recap::voice_recap(ctx, interaction, reply).await,
        NpcList => npc::list(ctx, interaction, reply).await,
        NpcMute => npc::mute(ctx, interaction, reply, true).await,
        NpcUnmute => npc::mute(ctx, interaction, reply, false).await,
        NpcSpeak => npc::speak(ctx, interaction, reply).await,
        NpcMuteAll => npc::mute_all(ctx, interaction, reply, true).await,
        NpcUnmuteAll => npc::mute_all(ctx, interaction, reply, false).await,
        EntityAdd => entity::add(ctx, interaction, reply).await,
        EntityAddSubmit => entity::add_submit(ctx, interaction, reply).await,
        EntityList => entity::list(ctx, interaction, reply).await,
        EntityRemove => entity::remove(ctx, interaction, reply).await,
        EntityRemoveConfirm => entity::remove_confirm(ctx, interaction, reply).await,
        EntityRemoveCancel => entity::remove_cancel(ctx, interaction, reply).await,
        EntityImport => entity::import(ctx, interaction, reply).await,
        CampaignInfo => campaign::info(ctx, interaction, reply).await,
        CampaignLoad => campaign::load(ctx, interaction, reply).await,
        CampaignSwitch => campaign::switch(ctx, interaction, reply).await,
        Feedback => feedback::open(ctx, interaction, reply).await,
        FeedbackSubmit => feedback::submit(ctx, interaction, reply).await,
    }
}

async fn autocomplete_for(
    ctx: &CommandContext,
    action: Action,
    interaction: &Interaction,
    reply: &mut Reply,
) -> CommandResult {
    let choices = match action {
        Action::NpcMute | Action::NpcUnmute | Action::NpcSpeak => npc::complete(ctx, interaction).await,
        Action::EntityRemove => entity::complete(ctx, interaction).await,
        Action::CampaignSwitch => campaign::complete(ctx, interaction).await,
        Action::SessionRecap | Action::SessionVoiceRecap => recap::complete(ctx, interaction).await,
        _ => Vec::new(),
    };
    reply.choices(choices).await?;
    Ok(())
}

/// The metric label of an action.
fn route_name(action: Action) -> &'static str {
    use Action::*;
    match action {
        SessionStart => "session start",
        SessionStop => "session stop",
        SessionRecap => "session recap",
        SessionVoiceRecap => "session voice-recap",
        NpcList => "npc list",
        NpcMute => "npc mute",
        NpcUnmute => "npc unmute",
        NpcSpeak => "npc speak",
        NpcMuteAll => "npc muteall",
        NpcUnmuteAll => "npc unmuteall",
        EntityAdd | EntityAddSubmit => "entity add",
        EntityList => "entity list",
        EntityRemove | EntityRemoveConfirm | EntityRemoveCancel => "entity remove",
        EntityImport => "entity import",
        CampaignInfo => "campaign info",
        CampaignLoad => "campaign load",
        CampaignSwitch => "campaign switch",
        Feedback | FeedbackSubmit => "feedback",
    }
}

/// The guild of an interaction, or the refusal for commands used outside
/// one.
pub(crate) fn guild_of(interaction: &Interaction) -> Result<&DiscordId, CommandError> {
    interaction
        .guild_id
        .as_ref()
        .ok_or_else(|| CommandError::Refused("This command only works in a server.".into()))
}

/// The guild's live session, or the SPEC's "No active session…" refusal.
pub(crate) async fn live_session(ctx: &CommandContext, interaction: &Interaction) -> Result<SessionInfo, CommandError> {
    let guild = guild_of(interaction)?;
    ctx.sessions
        .info(guild)
        .await?
        .ok_or_else(|| CommandError::Refused(SessionError::NoActiveSession.to_string()))
}

/// What has been typed into `option` when it is the autocomplete's focused
/// option (`None` for other interactions or options).
pub(crate) fn focused_text<'a>(interaction: &'a Interaction, option: &str) -> Option<&'a str> {
    match &interaction.kind {
        InteractionKind::Autocomplete { focused, partial } if focused == option => Some(partial.trim()),
        _ => None,
    }
}

/// `value` if it contains `partial` (case-insensitive); used by
/// autocompletes.
pub(crate) fn matches_partial(value: &str, partial: &str) -> bool {
    partial.is_empty() || value.to_lowercase().contains(&partial.trim().to_lowercase())
}

/// A duration as "1 h 02 min" / "3 min 05 s" / "12 s".
pub(crate) fn human_duration(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anyone() -> Invoker {
        Invoker {
            user_id: DiscordId::parse("7").unwrap(),
            name: "Ada".into(),
            roles: vec![],
        }
    }

    #[test]
    fn every_command_component_and_modal_routes() {
        let router = Router::standard();
        let route = |i: Interaction| router.route(&i).map(|r| r.action);
        assert_eq!(
            route(Interaction::command("session", Some("start"), anyone())),
            Some(Action::SessionStart)
        );
        assert_eq!(
            route(Interaction::command("feedback", None, anyone())),
            Some(Action::Feedback)
        );
        assert_eq!(
            route(Interaction::autocomplete("npc", Some("mute"), "name", "g", anyone())),
            Some(Action::NpcMute)
        );
        assert_eq!(
            route(Interaction::component("entity:remove:confirm:abc", anyone())),
            Some(Action::EntityRemoveConfirm)
        );
        assert_eq!(
            route(Interaction::modal_submit("feedback:s1", Default::default(), anyone())),
            Some(Action::FeedbackSubmit)
        );
        assert_eq!(route(Interaction::command("session", Some("dance"), anyone())), None);
        assert_eq!(route(Interaction::component("nope", anyone())), None);
        // Every definition has a route and every route a definition.
        for key in definitions::command_keys() {
            assert!(
                router.commands.iter().any(|(k, _)| *k == key),
                "{key} is registered but not routed"
            );
        }
        assert_eq!(router.commands.len(), definitions::command_keys().len());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(12_400), "12 s");
        assert_eq!(human_duration(185_000), "3 min 05 s");
        assert_eq!(human_duration(3_725_000), "1 h 02 min");
        assert_eq!(human_duration(-5), "0 s");
    }
}
