//! Slash-command scenarios shared by the end-to-end tests of both modes:
//! gateway mode (tenants made through the admin API, sessions on a fake
//! worker) and full mode (one bot from the configuration, the in-process
//! worker on a loopback transport). Each scenario plays a DM and players
//! through the fake Discord and asserts on the payloads the bot sent and on
//! the tenant's store; a [`Table`] says where it plays.
//!
//! Scenarios do not assume an empty store: full mode starts with its
//! configured campaign, so assertions are relative to what was there before
//! (the table's campaign must not use the names the scenarios add).
//!
//! Modules: [`knowledge`] (`/entity add|list|remove|import`,
//! `/campaign info|load|switch`), [`feedback`] (`/feedback`) and [`recap`]
//! (`/session recap|voice-recap`).

pub mod feedback;
pub mod knowledge;
pub mod recap;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{FakeDiscord, FakeState, InteractionFixture, InteractionReply, OptionFixture};
use crate::commands::definitions::command_set;
use crate::ids::{DiscordId, SessionId};
use crate::store::TenantStore;

pub use feedback::feedback_modal_and_average;
pub use knowledge::{campaign_info_load_and_switch, entity_add_list_and_remove, entity_import_yaml_and_foundry};
pub use recap::{session_recap_and_voice_recap, RecapDoubles};

/// How long a scenario waits for anything.
pub const WAIT: Duration = Duration::from_secs(30);

/// A player of the scenarios: a member without any role.
pub const PLAYER_ID: &str = "500000000000000002";

/// Where a scenario plays: one bot in one guild, used from one text channel
/// by the fake's default user, the DM, who sits in a voice channel.
#[async_trait]
pub trait Table: Send + Sync {
    /// The fake Discord the bot is connected to.
    fn discord(&self) -> &FakeDiscord;
    /// The bot's token (the fake sends interactions to the bot by token).
    fn token(&self) -> &str;
    /// The guild the commands are used in.
    fn guild(&self) -> &str;
    /// The text channel the commands are used in.
    fn channel(&self) -> &str;
    /// The DM role the tenant requires, if it has one (the DM holds it).
    fn dm_role(&self) -> Option<&str>;
    /// The tenant's store.
    fn store(&self) -> TenantStore;
    /// Moves the store's clock on by `by` if the table controls it; says
    /// whether it did.
    fn advance_clock(&self, by: Duration) -> bool;
    /// Waits until `count` narrations (voice recaps) have been played into
    /// `session`'s voice channel, one after the other, and returns how long
    /// each one sounded. Implementations check that it is narration (the
    /// narrator priority) where the worker lets them.
    async fn narrations(&self, session: &SessionId, count: usize) -> Vec<Duration>;
}

impl dyn Table + '_ {
    /// `/name sub` with `options`, used by the DM (with the DM role, if any)
    /// in the table's channel.
    pub fn command(&self, name: &str, sub: Option<&str>, options: Vec<OptionFixture>) -> InteractionFixture {
        let options = match sub {
            Some(sub) => vec![OptionFixture::subcommand(sub, options)],
            None => options,
        };
        self.here(InteractionFixture::command(name, options))
    }

    /// An autocomplete of `/name sub` with the focused option `option` typed so far.
    pub fn autocomplete(&self, name: &str, sub: &str, option: &str, typed: &str) -> InteractionFixture {
        let options = vec![OptionFixture::subcommand(
            sub,
            vec![OptionFixture::focused(option, typed)],
        )];
        self.here(InteractionFixture::autocomplete(name, options))
    }

    /// A modal submission with `fields` `(custom id, value)`.
    pub fn submit(&self, custom_id: &str, fields: &[(&str, &str)]) -> InteractionFixture {
        let fields = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.here(InteractionFixture::modal_submit(custom_id, fields))
    }

    /// `interaction` placed in the table's guild and channel, by the DM.
    pub fn here(&self, interaction: InteractionFixture) -> InteractionFixture {
        let interaction = interaction.in_guild(self.guild(), self.channel());
        match self.dm_role() {
            Some(role) => interaction.with_roles(vec![role.to_string()]),
            None => interaction,
        }
    }

    /// Sends `interaction` and waits until the bot sent `count` replies to it.
    pub async fn replies(&self, interaction: InteractionFixture, count: usize) -> Vec<InteractionReply> {
        replies(self.discord(), self.token(), interaction, count).await
    }

    /// The bodies of [`Self::replies`].
    pub async fn bodies(&self, interaction: InteractionFixture, count: usize) -> Vec<Value> {
        self.replies(interaction, count)
            .await
            .into_iter()
            .map(|reply| reply.body)
            .collect()
    }

    /// The first reply's body.
    pub async fn first(&self, interaction: InteractionFixture) -> Value {
        self.bodies(interaction, 1).await.remove(0)
    }

    /// All reply text ([`text_of`]) once `count` replies came.
    pub async fn text(&self, interaction: InteractionFixture, count: usize) -> String {
        self.bodies(interaction, count)
            .await
            .iter()
            .map(text_of)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The live session in the table's guild.
    pub async fn live_session(&self) -> SessionId {
        let guild = DiscordId::parse(self.guild()).expect("a numeric guild id");
        self.store()
            .live_session_in_guild(&guild)
            .await
            .expect("the store answers")
            .expect("a live session in the guild")
            .id
    }

    /// The sorted names of the entities of the active campaign.
    pub async fn entity_names(&self) -> Vec<String> {
        let store = self.store();
        let Some(campaign) = store.active_campaign().await.expect("the store answers") else {
            return Vec::new();
        };
        let mut names: Vec<String> = store
            .entities(&campaign.id, None, 10_000)
            .await
            .expect("the store answers")
            .into_iter()
            .map(|e| e.entity.name)
            .collect();
        names.sort();
        names
    }
}

/// Waits until `condition` holds for the fake's state; fails the test,
/// saying `what`, after [`WAIT`].
pub async fn wait(fake: &FakeDiscord, what: &str, condition: impl FnMut(&FakeState) -> bool) {
    if let Err(error) = fake.wait_until(condition, WAIT).await {
        panic!("{what}: {error}");
    }
}

/// Sends `interaction` to the bot of `token` and waits until the bot sent
/// `count` replies to it.
pub async fn replies(
    fake: &FakeDiscord,
    token: &str,
    interaction: InteractionFixture,
    count: usize,
) -> Vec<InteractionReply> {
    let sent = fake
        .send_interaction(token, interaction)
        .expect("the fake Discord sends the interaction");
    let id = sent.id.clone();
    if let Err(error) = fake
        .wait_until(|s| s.interaction_replies(&id).len() >= count, WAIT)
        .await
    {
        panic!(
            "{count} replies to interaction {id}: {error}; got {:?}",
            fake.interaction_replies(&id)
        );
    }
    fake.interaction_replies(&id)
}

/// The sorted names of a command set.
pub fn command_names(commands: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = commands
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Waits until application `app` has registered the whole command set in
/// `guild`.
pub async fn wait_registered(fake: &FakeDiscord, app: &str, guild: &str) {
    let expected = command_names(&command_set());
    wait(fake, &format!("the commands of {app} in {guild}"), |s| {
        s.registered_commands(app, guild)
            .is_some_and(|c| command_names(c) == expected)
    })
    .await;
}

/// `before` with `added`, sorted.
pub fn with_names(before: &[String], added: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = before
        .iter()
        .cloned()
        .chain(added.iter().map(|n| n.to_string()))
        .collect();
    names.sort();
    names
}

/// "1 entity" / "3 entities".
pub fn counted(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// The text of a callback body or a message body: content, embed titles,
/// descriptions, fields and footers, autocomplete choices.
pub fn text_of(body: &Value) -> String {
    let message = body.get("data").filter(|_| body.get("type").is_some()).unwrap_or(body);
    let mut text = message["content"].as_str().unwrap_or_default().to_string();
    for embed in message["embeds"].as_array().into_iter().flatten() {
        for key in ["title", "description"] {
            if let Some(part) = embed[key].as_str() {
                text.push('\n');
                text.push_str(part);
            }
        }
        for field in embed["fields"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "\n{}: {}",
                field["name"].as_str().unwrap_or_default(),
                field["value"].as_str().unwrap_or_default()
            ));
        }
        if let Some(footer) = embed["footer"]["text"].as_str() {
            text.push('\n');
            text.push_str(footer);
        }
    }
    if let Some(choices) = message["choices"].as_array() {
        for choice in choices {
            text.push_str(&format!("\n{}", choice["name"].as_str().unwrap_or_default()));
        }
    }
    text
}

/// The `(custom_id, label)` pairs of the components in the action rows of
/// `message["components"]`.
fn row_components(message: &Value) -> Vec<(String, String)> {
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|component| {
            (
                component["custom_id"].as_str().unwrap_or_default().to_string(),
                component["label"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The text inputs of a modal callback: `(custom_id, label)`.
pub fn modal_inputs(callback: &Value) -> Vec<(String, String)> {
    row_components(&callback["data"])
}

/// The buttons of a message body (or a callback's message): `(custom_id, label)`.
pub fn buttons(body: &Value) -> Vec<(String, String)> {
    let message = body.get("data").filter(|_| body.get("type").is_some()).unwrap_or(body);
    row_components(message)
}
