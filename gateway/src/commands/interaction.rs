//! What a user did: the interaction model the handlers see (no Discord
//! library types). The serenity adapter builds these from Discord's
//! payloads; tests build them directly.

use std::collections::BTreeMap;

use crate::ids::DiscordId;

/// The user who invoked an interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoker {
    /// Their Discord user id.
    pub user_id: DiscordId,
    /// Their display name (nick, global name or username).
    pub name: String,
    /// Their roles in the guild (empty outside a guild).
    pub roles: Vec<DiscordId>,
}

/// A file attached to a command option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Discord's attachment id.
    pub id: String,
    /// The file name as uploaded.
    pub filename: String,
    /// Its size in bytes as Discord reports it.
    pub size: u64,
    /// Where to download it.
    pub url: String,
}

/// The value of one command option.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// A string option.
    String(String),
    /// An integer option.
    Integer(i64),
    /// A number option.
    Number(f64),
    /// A boolean option.
    Boolean(bool),
    /// An attachment option, resolved.
    Attachment(Attachment),
    /// A user, channel, role or mentionable option (its id).
    Id(DiscordId),
}

/// What kind of interaction it is, with what it carries.
#[derive(Debug, Clone, PartialEq)]
pub enum InteractionKind {
    /// A slash command was run.
    Command,
    /// The user is typing an option with autocomplete.
    Autocomplete {
        /// The option being typed.
        focused: String,
        /// What has been typed so far.
        partial: String,
    },
    /// A button (or other component) was pressed.
    Component {
        /// The component's custom id.
        custom_id: String,
    },
    /// A modal was submitted.
    ModalSubmit {
        /// The modal's custom id.
        custom_id: String,
        /// The text inputs by custom id.
        fields: BTreeMap<String, String>,
    },
}

/// One interaction: a command, an autocomplete request, a button press or a
/// modal submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    /// What happened.
    pub kind: InteractionKind,
    /// The command's name (`session`); for components and modals, the name
    /// of the command whose message or modal it was, if known.
    pub command: String,
    /// The subcommand (`start`), if any.
    pub subcommand: Option<String>,
    /// The options given, by name (subcommand options flattened).
    pub options: BTreeMap<String, OptionValue>,
    /// The guild, when run in one.
    pub guild_id: Option<DiscordId>,
    /// The channel it was run in.
    pub channel_id: Option<DiscordId>,
    /// Who ran it.
    pub invoker: Invoker,
}

impl Interaction {
    /// A slash command.
    pub fn command(command: &str, subcommand: Option<&str>, invoker: Invoker) -> Self {
        Self {
            kind: InteractionKind::Command,
            command: command.to_string(),
            subcommand: subcommand.map(str::to_string),
            options: BTreeMap::new(),
            guild_id: None,
            channel_id: None,
            invoker,
        }
    }

    /// An autocomplete request on `focused` with `partial` typed.
    pub fn autocomplete(
        command: &str,
        subcommand: Option<&str>,
        focused: &str,
        partial: &str,
        invoker: Invoker,
    ) -> Self {
        let mut interaction = Self::command(command, subcommand, invoker);
        interaction.kind = InteractionKind::Autocomplete {
            focused: focused.to_string(),
            partial: partial.to_string(),
        };
        interaction
            .options
            .insert(focused.to_string(), OptionValue::String(partial.to_string()));
        interaction
    }

    /// A button press on `custom_id`.
    pub fn component(custom_id: &str, invoker: Invoker) -> Self {
        let mut interaction = Self::command("", None, invoker);
        interaction.kind = InteractionKind::Component {
            custom_id: custom_id.to_string(),
        };
        interaction
    }

    /// A modal submission.
    pub fn modal_submit(custom_id: &str, fields: BTreeMap<String, String>, invoker: Invoker) -> Self {
        let mut interaction = Self::command("", None, invoker);
        interaction.kind = InteractionKind::ModalSubmit {
            custom_id: custom_id.to_string(),
            fields,
        };
        interaction
    }

    /// In `guild`, channel `channel`.
    pub fn in_guild(mut self, guild: DiscordId, channel: DiscordId) -> Self {
        self.guild_id = Some(guild);
        self.channel_id = Some(channel);
        self
    }

    /// With option `name` = `value`.
    pub fn with_option(mut self, name: &str, value: OptionValue) -> Self {
        self.options.insert(name.to_string(), value);
        self
    }

    /// The routing key: `command subcommand` or `command`.
    pub fn key(&self) -> String {
        match &self.subcommand {
            Some(sub) => format!("{} {sub}", self.command),
            None => self.command.clone(),
        }
    }

    /// A string option, trimmed; `None` when absent or blank.
    pub fn string(&self, name: &str) -> Option<&str> {
        match self.options.get(name) {
            Some(OptionValue::String(text)) => Some(text.trim()).filter(|t| !t.is_empty()),
            _ => None,
        }
    }

    /// An attachment option.
    pub fn attachment(&self, name: &str) -> Option<&Attachment> {
        match self.options.get(name) {
            Some(OptionValue::Attachment(file)) => Some(file),
            _ => None,
        }
    }

    /// A modal field, trimmed (empty when absent). Fields are matched by a
    /// custom id equal to `name` or containing it, so ids like
    /// `entity_name` work.
    pub fn field(&self, name: &str) -> &str {
        let InteractionKind::ModalSubmit { fields, .. } = &self.kind else {
            return "";
        };
        fields
            .get(name)
            .or_else(|| fields.iter().find(|(id, _)| id.contains(name)).map(|(_, v)| v))
            .map_or("", |v| v.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone() -> Invoker {
        Invoker {
            user_id: DiscordId::parse("42").unwrap(),
            name: "Ada".into(),
            roles: vec![],
        }
    }

    #[test]
    fn keys_and_options() {
        let i = Interaction::command("npc", Some("mute"), someone())
            .with_option("name", OptionValue::String("  Grimble ".into()))
            .with_option("blank", OptionValue::String("   ".into()));
        assert_eq!(i.key(), "npc mute");
        assert_eq!(i.string("name"), Some("Grimble"));
        assert_eq!(i.string("blank"), None);
        assert_eq!(i.string("missing"), None);
        assert_eq!(Interaction::command("feedback", None, someone()).key(), "feedback");
    }

    #[test]
    fn autocomplete_carries_the_partial_text_as_the_option() {
        let i = Interaction::autocomplete("npc", Some("mute"), "name", "gri", someone());
        assert_eq!(i.string("name"), Some("gri"));
        assert!(matches!(i.kind, InteractionKind::Autocomplete { ref focused, .. } if focused == "name"));
    }

    #[test]
    fn modal_fields_match_by_contained_id() {
        let fields = BTreeMap::from([
            ("entity_name".to_string(), " Phandalin ".to_string()),
            ("type".to_string(), "location".to_string()),
        ]);
        let i = Interaction::modal_submit("entity:add", fields, someone());
        assert_eq!(i.field("name"), "Phandalin");
        assert_eq!(i.field("type"), "location");
        assert_eq!(i.field("tags"), "");
        assert_eq!(Interaction::command("x", None, someone()).field("name"), "");
    }
}
