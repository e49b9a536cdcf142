//! Between Discord's wire format and the command models: our replies
//! ([`InitialResponse`], [`Message`], [`Modal`], [`Choice`]) become the JSON
//! bodies of Discord's interaction endpoints, and serenity's interaction
//! types become our [`Interaction`].
//!
//! Replies are plain JSON built here rather than serenity's builders, so the
//! command layer's model is the one source of what is sent and tests can
//! compare payloads directly.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use serenity::all::{
    ActionRowComponent, CommandDataOption, CommandDataOptionValue, CommandDataResolved, CommandInteraction,
    ComponentInteraction, InteractionId, Member, ModalInteraction, User,
};

use crate::commands::interaction::{Attachment, Interaction, InteractionKind, Invoker, OptionValue};
use crate::commands::reply::{
    Button, ButtonStyle, Choice, Embed, InitialResponse, Message, Modal, TextInput, MAX_BUTTONS, MAX_CHOICES,
};
use crate::ids::DiscordId;

/// Interaction callback type: respond with a message.
pub const CHANNEL_MESSAGE_WITH_SOURCE: u8 = 4;
/// Interaction callback type: "thinking…", the answer follows as an edit.
pub const DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: u8 = 5;
/// Interaction callback type: replace the message a component is on.
pub const UPDATE_MESSAGE: u8 = 7;
/// Interaction callback type: autocomplete choices.
pub const APPLICATION_COMMAND_AUTOCOMPLETE_RESULT: u8 = 8;
/// Interaction callback type: open a modal.
pub const MODAL: u8 = 9;
/// Message flag: only the invoking user sees it.
pub const EPHEMERAL: u64 = 1 << 6;

/// Characters of an autocomplete choice's name and value.
const MAX_CHOICE_CHARS: usize = 100;
/// Action rows of one message.
const MAX_ACTION_ROWS: usize = 5;
/// Characters of a button label.
const MAX_LABEL_CHARS: usize = 80;
/// Characters of an embed field name.
const MAX_FIELD_NAME_CHARS: usize = 256;
/// Characters of a modal title and of a text input's label.
const MAX_MODAL_TITLE_CHARS: usize = 45;
/// What Discord shows for an empty embed field name or value (which it
/// refuses): a zero-width space.
const BLANK: &str = "\u{200b}";

/// A Discord interaction could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the interaction: {0}")]
pub struct WireError(pub String);

/// The JSON body of `POST /interactions/{id}/{token}/callback` for `response`.
pub fn initial_response_json(response: &InitialResponse) -> Value {
    match response {
        InitialResponse::Message(message) => json!({
            "type": CHANNEL_MESSAGE_WITH_SOURCE,
            "data": message_json(message, true),
        }),
        InitialResponse::Defer { ephemeral } => {
            let flags = if *ephemeral { EPHEMERAL } else { 0 };
            json!({"type": DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, "data": {"flags": flags}})
        }
        // The message keeps its visibility: an update cannot change flags.
        InitialResponse::UpdateMessage(message) => json!({
            "type": UPDATE_MESSAGE,
            "data": message_json(message, false),
        }),
        InitialResponse::Modal(modal) => json!({"type": MODAL, "data": modal_json(modal)}),
        InitialResponse::Choices(choices) => json!({
            "type": APPLICATION_COMMAND_AUTOCOMPLETE_RESULT,
            "data": {"choices": choices_json(choices)},
        }),
    }
}

/// A message as Discord's JSON: content, embeds, buttons in action rows of
/// five and, when `with_flags`, the ephemeral flag (edits cannot change
/// it). Mentions in the text never ping anyone. The caller splits long
/// messages first ([`Message::split`]); nothing is cut here except button
/// labels over Discord's 80 characters.
pub fn message_json(message: &Message, with_flags: bool) -> Value {
    let mut body = Map::new();
    body.insert("content".into(), Value::String(message.content.clone()));
    body.insert(
        "embeds".into(),
        Value::Array(message.embeds.iter().map(embed_json).collect()),
    );
    body.insert("components".into(), Value::Array(button_rows(&message.buttons)));
    body.insert("allowed_mentions".into(), json!({"parse": []}));
    if with_flags {
        let flags = if message.ephemeral { EPHEMERAL } else { 0 };
        body.insert("flags".into(), Value::from(flags));
    }
    Value::Object(body)
}

/// One embed as Discord's JSON; empty parts are left out.
pub fn embed_json(embed: &Embed) -> Value {
    let mut body = Map::new();
    if !embed.title.is_empty() {
        body.insert("title".into(), Value::String(embed.title.clone()));
    }
    if !embed.description.is_empty() {
        body.insert("description".into(), Value::String(embed.description.clone()));
    }
    if !embed.fields.is_empty() {
        let fields = embed
            .fields
            .iter()
            .map(|field| {
                json!({
                    "name": non_blank(&cut(&field.name, MAX_FIELD_NAME_CHARS)),
                    "value": non_blank(&field.value),
                    "inline": field.inline,
                })
            })
            .collect();
        body.insert("fields".into(), Value::Array(fields));
    }
    if let Some(footer) = embed.footer.as_deref().filter(|f| !f.is_empty()) {
        body.insert("footer".into(), json!({ "text": footer }));
    }
    if let Some(color) = embed.color {
        body.insert("color".into(), Value::from(color));
    }
    Value::Object(body)
}

fn button_style(style: ButtonStyle) -> u8 {
    match style {
        ButtonStyle::Primary => 1,
        ButtonStyle::Secondary => 2,
        ButtonStyle::Success => 3,
        ButtonStyle::Danger => 4,
    }
}

fn button_json(button: &Button) -> Value {
    json!({
        "type": 2,
        "style": button_style(button.style),
        "label": non_blank(&cut(&button.label, MAX_LABEL_CHARS)),
        "custom_id": button.custom_id,
    })
}

/// Buttons in action rows of at most five, at most five rows.
fn button_rows(buttons: &[Button]) -> Vec<Value> {
    buttons
        .chunks(MAX_BUTTONS)
        .take(MAX_ACTION_ROWS)
        .map(|row| json!({"type": 1, "components": row.iter().map(button_json).collect::<Vec<_>>()}))
        .collect()
}

fn text_input_json(input: &TextInput) -> Value {
    let mut body = Map::new();
    body.insert("type".into(), Value::from(4));
    body.insert("custom_id".into(), Value::String(input.custom_id.clone()));
    body.insert("label".into(), Value::String(cut(&input.label, MAX_MODAL_TITLE_CHARS)));
    body.insert("style".into(), Value::from(if input.paragraph { 2 } else { 1 }));
    body.insert("required".into(), Value::Bool(input.required));
    body.insert("max_length".into(), Value::from(input.max_length.clamp(1, 4000)));
    if let Some(placeholder) = &input.placeholder {
        body.insert("placeholder".into(), Value::String(cut(placeholder, 100)));
    }
    Value::Object(body)
}

/// A modal as Discord's JSON: one action row per text input (at most five).
pub fn modal_json(modal: &Modal) -> Value {
    let rows: Vec<Value> = modal
        .inputs
        .iter()
        .take(MAX_ACTION_ROWS)
        .map(|input| json!({"type": 1, "components": [text_input_json(input)]}))
        .collect();
    json!({
        "custom_id": modal.custom_id,
        "title": non_blank(&cut(&modal.title, MAX_MODAL_TITLE_CHARS)),
        "components": rows,
    })
}

/// Autocomplete choices as Discord's JSON: at most 25; names over 100
/// characters are shortened, choices whose value is too long to send are
/// left out (a shortened value would name something else).
pub fn choices_json(choices: &[Choice]) -> Vec<Value> {
    choices
        .iter()
        .filter(|choice| {
            let length = choice.value.chars().count();
            length > 0 && length <= MAX_CHOICE_CHARS
        })
        .take(MAX_CHOICES)
        .map(|choice| json!({"name": non_blank(&cut(&choice.name, MAX_CHOICE_CHARS)), "value": choice.value}))
        .collect()
}

/// `text` shortened to `max` characters, ending in `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

fn non_blank(text: &str) -> String {
    if text.trim().is_empty() {
        BLANK.to_string()
    } else {
        text.to_string()
    }
}

fn discord_id(id: impl std::fmt::Display) -> Result<DiscordId, WireError> {
    let text = id.to_string();
    DiscordId::parse(&text).map_err(|e| WireError(e.to_string()))
}

/// The invoker: their id, display name (server nick, global name or user
/// name) and roles.
fn invoker(user: &User, member: Option<&Member>) -> Result<Invoker, WireError> {
    let name = member
        .and_then(|m| m.nick.clone())
        .or_else(|| user.global_name.clone())
        .unwrap_or_else(|| user.name.clone());
    let roles = member
        .map(|m| m.roles.iter().map(discord_id).collect::<Result<Vec<_>, _>>())
        .transpose()?
        .unwrap_or_default();
    Ok(Invoker {
        user_id: discord_id(user.id)?,
        name,
        roles,
    })
}

fn place(
    interaction: &mut Interaction,
    guild: Option<serenity::all::GuildId>,
    channel: serenity::all::ChannelId,
) -> Result<(), WireError> {
    interaction.guild_id = guild.map(discord_id).transpose()?;
    interaction.channel_id = Some(discord_id(channel)?);
    Ok(())
}

/// Command options with subcommands unwrapped: the subcommand's name (a
/// group's as `group sub`) and its options, flattened.
struct Flattened<'a> {
    subcommand: Option<String>,
    options: &'a [CommandDataOption],
}

fn flatten(options: &[CommandDataOption]) -> Flattened<'_> {
    match options.first().map(|o| (&o.name, &o.value)) {
        Some((name, CommandDataOptionValue::SubCommand(inner))) => Flattened {
            subcommand: Some(name.clone()),
            options: inner,
        },
        Some((group, CommandDataOptionValue::SubCommandGroup(subs))) => match subs.first() {
            Some(CommandDataOption {
                name,
                value: CommandDataOptionValue::SubCommand(inner),
                ..
            }) => Flattened {
                subcommand: Some(format!("{group} {name}")),
                options: inner,
            },
            _ => Flattened {
                subcommand: Some(group.clone()),
                options: &[],
            },
        },
        _ => Flattened {
            subcommand: None,
            options,
        },
    }
}

/// One option's value; attachments resolved from `resolved`. `None` for
/// values our model has no use for (unresolvable attachments, unknown
/// types).
fn option_value(value: &CommandDataOptionValue, resolved: &CommandDataResolved) -> Option<OptionValue> {
    Some(match value {
        CommandDataOptionValue::String(text) => OptionValue::String(text.clone()),
        CommandDataOptionValue::Autocomplete { value, .. } => OptionValue::String(value.clone()),
        CommandDataOptionValue::Integer(number) => OptionValue::Integer(*number),
        CommandDataOptionValue::Number(number) => OptionValue::Number(*number),
        CommandDataOptionValue::Boolean(flag) => OptionValue::Boolean(*flag),
        CommandDataOptionValue::Attachment(id) => {
            let file = resolved.attachments.get(id)?;
            OptionValue::Attachment(Attachment {
                id: file.id.to_string(),
                filename: file.filename.clone(),
                size: u64::from(file.size),
                url: file.url.clone(),
            })
        }
        CommandDataOptionValue::User(id) => OptionValue::Id(discord_id(id).ok()?),
        CommandDataOptionValue::Channel(id) => OptionValue::Id(discord_id(id).ok()?),
        CommandDataOptionValue::Role(id) => OptionValue::Id(discord_id(id).ok()?),
        CommandDataOptionValue::Mentionable(id) => OptionValue::Id(discord_id(id).ok()?),
        _ => return None,
    })
}

/// A slash command (`type` 2) or an autocomplete request (`type` 4): the
/// command, its subcommand and options (flattened), the focused option for
/// autocomplete, resolved attachments, and who ran it where.
pub fn from_command(command: &CommandInteraction, autocomplete: bool) -> Result<Interaction, WireError> {
    let who = invoker(&command.user, command.member.as_deref())?;
    let data = &command.data;
    let flattened = flatten(&data.options);
    let mut interaction = Interaction::command(&data.name, flattened.subcommand.as_deref(), who);
    let mut focused = None;
    for option in flattened.options {
        if let CommandDataOptionValue::Autocomplete { value, .. } = &option.value {
            focused = Some((option.name.clone(), value.clone()));
        }
        if let Some(value) = option_value(&option.value, &data.resolved) {
            interaction.options.insert(option.name.clone(), value);
        }
    }
    if autocomplete {
        let (focused, partial) = focused.ok_or_else(|| WireError("an autocomplete without a focused option".into()))?;
        interaction
            .options
            .insert(focused.clone(), OptionValue::String(partial.clone()));
        interaction.kind = InteractionKind::Autocomplete { focused, partial };
    }
    place(&mut interaction, command.guild_id, command.channel_id)?;
    Ok(interaction)
}

/// A button (or other component) press (`type` 3).
pub fn from_component(component: &ComponentInteraction) -> Result<Interaction, WireError> {
    let who = invoker(&component.user, component.member.as_ref())?;
    let mut interaction = Interaction::component(&component.data.custom_id, who);
    place(&mut interaction, component.guild_id, component.channel_id)?;
    Ok(interaction)
}

/// A modal submission (`type` 5) with its text inputs by custom id.
pub fn from_modal(modal: &ModalInteraction) -> Result<Interaction, WireError> {
    let who = invoker(&modal.user, modal.member.as_ref())?;
    let mut fields = BTreeMap::new();
    for row in &modal.data.components {
        for component in &row.components {
            if let ActionRowComponent::InputText(input) = component {
                fields.insert(input.custom_id.clone(), input.value.clone().unwrap_or_default());
            }
        }
    }
    let mut interaction = Interaction::modal_submit(&modal.data.custom_id, fields, who);
    place(&mut interaction, modal.guild_id, modal.channel_id)?;
    Ok(interaction)
}

/// Where to send the replies to one interaction.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    /// The interaction's id.
    pub id: InteractionId,
    /// Its token (secret for 15 minutes: never logged).
    pub token: String,
}

impl std::fmt::Debug for ReplyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTarget")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// An interaction as the bot handles it: our model and where to reply.
/// `None` for kinds the bot does not answer (pings).
pub fn incoming(interaction: &serenity::all::Interaction) -> Option<Result<(Interaction, ReplyTarget), WireError>> {
    use serenity::all::Interaction as Wire;
    let (converted, id, token) = match interaction {
        Wire::Command(command) => (from_command(command, false), command.id, &command.token),
        Wire::Autocomplete(command) => (from_command(command, true), command.id, &command.token),
        Wire::Component(component) => (from_component(component), component.id, &component.token),
        Wire::Modal(modal) => (from_modal(modal), modal.id, &modal.token),
        _ => return None,
    };
    Some(converted.map(|ours| {
        (
            ours,
            ReplyTarget {
                id,
                token: token.clone(),
            },
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Value {
        json!({"id": "500", "username": "ada", "global_name": "Ada L.", "discriminator": "0", "avatar": null})
    }

    fn base(kind: u8, data: Value) -> Value {
        json!({
            "id": "900", "application_id": "800", "type": kind, "token": "tok-secret", "version": 1,
            "guild_id": "100", "channel_id": "200", "locale": "en-US", "entitlements": [],
            "authorizing_integration_owners": {}, "attachment_size_limit": 10485760,
            "member": {"user": user(), "nick": "Dana the DM", "roles": ["7", "8"], "joined_at": "2024-01-01T00:00:00Z",
                       "deaf": false, "mute": false, "flags": 0},
            "data": data,
        })
    }

    fn wire(value: Value) -> serenity::all::Interaction {
        serde_json::from_value(value).expect("serenity reads the payload")
    }

    fn convert(value: Value) -> Interaction {
        let (ours, target) = incoming(&wire(value)).expect("answered").expect("converted");
        assert_eq!(target.id.get(), 900);
        assert_eq!(target.token, "tok-secret");
        assert!(!format!("{target:?}").contains("tok-secret"));
        ours
    }

    #[test]
    fn a_subcommand_with_options_and_a_resolved_attachment() {
        let ours = convert(base(
            2,
            json!({
                "id": "1", "name": "entity", "type": 1,
                "options": [{"type": 1, "name": "import", "options": [
                    {"type": 11, "name": "file", "value": "55"},
                    {"type": 3, "name": "note", "value": "hi"},
                    {"type": 4, "name": "count", "value": 3},
                ]}],
                "resolved": {"attachments": {"55": {
                    "id": "55", "filename": "camp.yaml", "size": 1234, "url": "http://127.0.0.1:9/attachments/55/camp.yaml",
                    "proxy_url": "http://127.0.0.1:9/p/55"}}},
            }),
        ));
        assert_eq!(ours.kind, InteractionKind::Command);
        assert_eq!(ours.key(), "entity import");
        assert_eq!(ours.string("note"), Some("hi"));
        assert_eq!(ours.options.get("count"), Some(&OptionValue::Integer(3)));
        let file = ours.attachment("file").expect("attachment");
        assert_eq!(file.filename, "camp.yaml");
        assert_eq!(file.size, 1234);
        assert!(file.url.ends_with("/attachments/55/camp.yaml"));
        assert_eq!(ours.guild_id.as_ref().map(DiscordId::as_str), Some("100"));
        assert_eq!(ours.channel_id.as_ref().map(DiscordId::as_str), Some("200"));
        assert_eq!(ours.invoker.user_id.as_str(), "500");
        assert_eq!(ours.invoker.name, "Dana the DM");
        let roles: Vec<&str> = ours.invoker.roles.iter().map(DiscordId::as_str).collect();
        assert_eq!(roles, vec!["7", "8"]);
    }

    #[test]
    fn a_command_without_subcommand_outside_a_guild() {
        let mut payload = base(2, json!({"id": "1", "name": "feedback", "type": 1}));
        let object = payload.as_object_mut().expect("object");
        object.remove("guild_id");
        object.remove("member");
        object.insert("user".into(), user());
        let ours = convert(payload);
        assert_eq!(ours.key(), "feedback");
        assert_eq!(ours.guild_id, None);
        assert_eq!(ours.invoker.name, "Ada L.");
        assert!(ours.invoker.roles.is_empty());
    }

    #[test]
    fn autocomplete_names_the_focused_option_and_keeps_the_others() {
        let ours = convert(base(
            4,
            json!({"id": "1", "name": "npc", "type": 1, "options": [{"type": 1, "name": "speak", "options": [
                {"type": 3, "name": "name", "value": "gri", "focused": true},
                {"type": 3, "name": "text", "value": "Hello"},
            ]}]}),
        ));
        assert_eq!(
            ours.kind,
            InteractionKind::Autocomplete {
                focused: "name".into(),
                partial: "gri".into()
            }
        );
        assert_eq!(ours.key(), "npc speak");
        assert_eq!(ours.string("name"), Some("gri"));
        assert_eq!(ours.string("text"), Some("Hello"));
    }

    #[test]
    fn subcommand_groups_join_their_names() {
        let ours = convert(base(
            2,
            json!({"id": "1", "name": "admin", "type": 1, "options": [{"type": 2, "name": "bots", "options": [
                {"type": 1, "name": "list", "options": []}]}]}),
        ));
        assert_eq!(ours.key(), "admin bots list");
    }

    #[test]
    fn buttons_and_modals() {
        let mut button = base(
            3,
            json!({"custom_id": "entity:remove:confirm:abc", "component_type": 2}),
        );
        button.as_object_mut().expect("object").insert(
            "message".into(),
            json!({"id": "77", "channel_id": "200", "author": user(), "content": "", "timestamp": "2024-01-01T00:00:00Z",
                   "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [],
                   "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0}),
        );
        let ours = convert(button);
        assert_eq!(
            ours.kind,
            InteractionKind::Component {
                custom_id: "entity:remove:confirm:abc".into()
            }
        );
        assert_eq!(ours.guild_id.as_ref().map(DiscordId::as_str), Some("100"));

        let ours = convert(base(
            5,
            json!({"custom_id": "entity:add", "components": [
                {"type": 1, "components": [{"type": 4, "custom_id": "entity_name", "value": "Phandalin"}]},
                {"type": 1, "components": [{"type": 4, "custom_id": "entity_type", "value": "location"}]},
            ]}),
        ));
        assert_eq!(ours.field("name"), "Phandalin");
        assert_eq!(ours.field("type"), "location");
        assert!(matches!(ours.kind, InteractionKind::ModalSubmit { ref custom_id, .. } if custom_id == "entity:add"));
    }

    #[test]
    fn pings_are_not_answered() {
        let ping = wire(json!({"id": "900", "application_id": "800", "type": 1, "token": "t", "version": 1}));
        assert!(incoming(&ping).is_none());
    }

    #[test]
    fn messages_and_defers_become_callbacks() {
        let message = Message::text("hello <@&1>");
        let body = initial_response_json(&InitialResponse::Message(message));
        assert_eq!(body["type"], 4);
        assert_eq!(body["data"]["content"], "hello <@&1>");
        assert_eq!(body["data"]["flags"], 64);
        assert_eq!(body["data"]["allowed_mentions"], json!({"parse": []}));

        let public = initial_response_json(&InitialResponse::Message(Message::text("hi").public()));
        assert_eq!(public["data"]["flags"], 0);

        assert_eq!(
            initial_response_json(&InitialResponse::Defer { ephemeral: true }),
            json!({"type": 5, "data": {"flags": 64}})
        );
        let update = initial_response_json(&InitialResponse::UpdateMessage(Message::text("done")));
        assert_eq!(update["type"], 7);
        assert!(update["data"].get("flags").is_none());
    }

    #[test]
    fn embeds_fields_footers_and_buttons() {
        let mut embed = Embed::titled("NPCs")
            .description("")
            .field("🔊 Grimble", "`npc-1`", true)
            .field("", "", false)
            .footer("2 NPCs");
        embed.color = Some(0x2e_cc_71);
        let buttons: Vec<Button> = (0..7)
            .map(|i| Button::new(format!("b{i}"), format!("Button {i}"), ButtonStyle::Danger))
            .collect();
        let body = message_json(&Message::embed(embed).with_buttons(buttons), true);
        let embed = &body["embeds"][0];
        assert_eq!(embed["title"], "NPCs");
        assert!(embed.get("description").is_none());
        assert_eq!(
            embed["fields"][0],
            json!({"name": "🔊 Grimble", "value": "`npc-1`", "inline": true})
        );
        assert_eq!(embed["fields"][1]["name"], BLANK);
        assert_eq!(embed["footer"]["text"], "2 NPCs");
        assert_eq!(embed["color"], 0x2e_cc_71);
        let rows = body["components"].as_array().expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["components"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            rows[1]["components"][1],
            json!({"type": 2, "style": 4, "label": "Button 6", "custom_id": "b6"})
        );
    }

    #[test]
    fn modals_have_one_row_per_input() {
        let modal = Modal {
            custom_id: "entity:add".into(),
            title: "Add an entity".into(),
            inputs: vec![
                TextInput::short("entity_name", "Name", 100, true),
                TextInput::paragraph("entity_description", "Description", 2000, false).placeholder("Who or what"),
            ],
        };
        let body = initial_response_json(&InitialResponse::Modal(modal));
        assert_eq!(body["type"], 9);
        assert_eq!(body["data"]["custom_id"], "entity:add");
        let rows = body["data"]["components"].as_array().expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0]["components"][0],
            json!({"type": 4, "custom_id": "entity_name", "label": "Name", "style": 1, "required": true, "max_length": 100})
        );
        assert_eq!(rows[1]["components"][0]["style"], 2);
        assert_eq!(rows[1]["components"][0]["placeholder"], "Who or what");
    }

    #[test]
    fn choices_are_capped_and_never_renamed_into_other_values() {
        let mut choices: Vec<Choice> = (0..30).map(|i| Choice::same(format!("npc {i}"))).collect();
        choices.insert(
            0,
            Choice {
                name: "n".repeat(150),
                value: "long-name".into(),
            },
        );
        choices.insert(1, Choice::same("v".repeat(101)));
        let body = initial_response_json(&InitialResponse::Choices(choices));
        assert_eq!(body["type"], 8);
        let sent = body["data"]["choices"].as_array().expect("choices");
        assert_eq!(sent.len(), MAX_CHOICES);
        assert_eq!(sent[0]["name"].as_str().map(|n| n.chars().count()), Some(100));
        assert_eq!(sent[0]["value"], "long-name");
        assert_eq!(sent[1]["value"], "npc 0");
    }
}
