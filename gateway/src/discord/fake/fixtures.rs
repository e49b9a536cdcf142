//! What a test tells the fake Discord: the bots it knows ([`BotFixture`]),
//! their guilds ([`GuildFixture`]) and the interactions users make
//! ([`InteractionFixture`]). Plain data with builders; ids are strings, as
//! everywhere in Discord's JSON.

/// A bot application the fake Discord accepts: its token authenticates REST
/// calls and gateway IDENTIFY.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotFixture {
    /// The bot token, without the `Bot ` prefix.
    pub token: String,
    /// The application (client) id.
    pub application_id: String,
    /// The bot user's id.
    pub user_id: String,
    /// The bot user's name.
    pub username: String,
    /// Guilds the bot is in; sent as GUILD_CREATE after READY.
    pub guilds: Vec<GuildFixture>,
}

impl BotFixture {
    /// A bot in no guild yet.
    pub fn new(
        token: impl Into<String>,
        application_id: impl Into<String>,
        user_id: impl Into<String>,
        username: impl Into<String>,
    ) -> Self {
        Self {
            token: token.into(),
            application_id: application_id.into(),
            user_id: user_id.into(),
            username: username.into(),
            guilds: Vec::new(),
        }
    }

    /// Adds a guild the bot is in.
    #[must_use]
    pub fn with_guild(mut self, guild: GuildFixture) -> Self {
        self.guilds.push(guild);
        self
    }
}

/// A guild as the bot sees it when it connects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuildFixture {
    /// Guild id.
    pub id: String,
    /// Guild name.
    pub name: String,
    /// Who sits in which voice channel when the bot connects: `(user_id, channel_id)`.
    /// Voice channels named here are added to the guild's channels.
    pub voice_states: Vec<(String, String)>,
    /// Further channels of the guild (text channels, empty voice channels).
    pub channels: Vec<ChannelFixture>,
    /// Roles of the guild besides `@everyone`.
    pub roles: Vec<RoleFixture>,
}

impl GuildFixture {
    /// A guild with no one in voice and only `@everyone`.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    /// Puts `user_id` in the voice channel `channel_id`.
    #[must_use]
    pub fn with_voice_state(mut self, user_id: impl Into<String>, channel_id: impl Into<String>) -> Self {
        self.voice_states.push((user_id.into(), channel_id.into()));
        self
    }

    /// Adds a channel.
    #[must_use]
    pub fn with_channel(mut self, channel: ChannelFixture) -> Self {
        self.channels.push(channel);
        self
    }

    /// Adds a role.
    #[must_use]
    pub fn with_role(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.roles.push(RoleFixture {
            id: id.into(),
            name: name.into(),
        });
        self
    }
}

/// A channel of a [`GuildFixture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFixture {
    /// Channel id.
    pub id: String,
    /// Channel name.
    pub name: String,
    /// Text or voice.
    pub kind: ChannelKind,
}

impl ChannelFixture {
    /// A text channel.
    pub fn text(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            kind: ChannelKind::Text,
        }
    }

    /// A voice channel.
    pub fn voice(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            kind: ChannelKind::Voice,
        }
    }
}

/// The kinds of guild channel the fake knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// `GUILD_TEXT` (type 0).
    Text,
    /// `GUILD_VOICE` (type 2).
    Voice,
}

impl ChannelKind {
    /// Discord's channel type number.
    pub fn code(self) -> u8 {
        match self {
            Self::Text => 0,
            Self::Voice => 2,
        }
    }
}

/// A role of a [`GuildFixture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFixture {
    /// Role id.
    pub id: String,
    /// Role name.
    pub name: String,
}

/// The user id an [`InteractionFixture`] comes from unless told otherwise.
pub const DEFAULT_USER_ID: &str = "500000000000000001";

/// The channel id an [`InteractionFixture`] comes from unless told otherwise.
pub const DEFAULT_CHANNEL_ID: &str = "600000000000000001";

/// An interaction a user makes; [`super::FakeDiscord::send_interaction`]
/// turns it into a real INTERACTION_CREATE.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionFixture {
    /// What kind of interaction, with its data.
    pub kind: InteractionKind,
    /// The guild it happens in; `None` is a DM with the bot.
    pub guild_id: Option<String>,
    /// The channel it happens in.
    pub channel_id: String,
    /// The user making it.
    pub user_id: String,
    /// The user's name.
    pub username: String,
    /// The member's role ids (guild interactions only).
    pub roles: Vec<String>,
    /// The user's locale, e.g. `en-US`.
    pub locale: String,
}

impl InteractionFixture {
    fn of(kind: InteractionKind) -> Self {
        Self {
            kind,
            guild_id: None,
            channel_id: DEFAULT_CHANNEL_ID.to_owned(),
            user_id: DEFAULT_USER_ID.to_owned(),
            username: "player".to_owned(),
            roles: Vec::new(),
            locale: "en-US".to_owned(),
        }
    }

    /// A slash command (`type` 2) named `name` with `options` (use
    /// [`OptionFixture::subcommand`] for `/session start`-style commands).
    pub fn command(name: impl Into<String>, options: Vec<OptionFixture>) -> Self {
        Self::of(InteractionKind::Command {
            name: name.into(),
            options,
        })
    }

    /// An autocomplete request (`type` 4): like [`Self::command`], with one
    /// option made by [`OptionFixture::focused`].
    pub fn autocomplete(name: impl Into<String>, options: Vec<OptionFixture>) -> Self {
        Self::of(InteractionKind::Autocomplete {
            name: name.into(),
            options,
        })
    }

    /// A button press (`type` 3, component type 2).
    pub fn button(custom_id: impl Into<String>) -> Self {
        Self::of(InteractionKind::Component {
            custom_id: custom_id.into(),
            component_type: 2,
            values: Vec::new(),
            message_id: None,
        })
    }

    /// A string-select choice (`type` 3, component type 3).
    pub fn select(custom_id: impl Into<String>, values: Vec<String>) -> Self {
        Self::of(InteractionKind::Component {
            custom_id: custom_id.into(),
            component_type: 3,
            values,
            message_id: None,
        })
    }

    /// A modal submission (`type` 5): `fields` are `(custom_id, value)` of its text inputs.
    pub fn modal_submit(custom_id: impl Into<String>, fields: Vec<(String, String)>) -> Self {
        Self::of(InteractionKind::ModalSubmit {
            custom_id: custom_id.into(),
            fields,
        })
    }

    /// Happens in `guild_id`, channel `channel_id`.
    #[must_use]
    pub fn in_guild(mut self, guild_id: impl Into<String>, channel_id: impl Into<String>) -> Self {
        self.guild_id = Some(guild_id.into());
        self.channel_id = channel_id.into();
        self
    }

    /// Made by user `user_id` called `username`.
    #[must_use]
    pub fn by_user(mut self, user_id: impl Into<String>, username: impl Into<String>) -> Self {
        self.user_id = user_id.into();
        self.username = username.into();
        self
    }

    /// The member holds these roles.
    #[must_use]
    pub fn with_roles(mut self, roles: Vec<String>) -> Self {
        self.roles = roles;
        self
    }

    /// For a component interaction: the message the component is on (a
    /// message the bot sent, by id). Without it a bot message is made up.
    #[must_use]
    pub fn on_message(mut self, id: impl Into<String>) -> Self {
        if let InteractionKind::Component { message_id, .. } = &mut self.kind {
            *message_id = Some(id.into());
        }
        self
    }
}

/// The interaction types the fake sends.
#[derive(Debug, Clone, PartialEq)]
pub enum InteractionKind {
    /// `APPLICATION_COMMAND` (2).
    Command {
        /// Top-level command name.
        name: String,
        /// Options, subcommands included.
        options: Vec<OptionFixture>,
    },
    /// `MESSAGE_COMPONENT` (3).
    Component {
        /// The component's custom id.
        custom_id: String,
        /// Discord's component type: 2 button, 3 string select, ...
        component_type: u8,
        /// Selected values (selects only).
        values: Vec<String>,
        /// The message the component is on.
        message_id: Option<String>,
    },
    /// `APPLICATION_COMMAND_AUTOCOMPLETE` (4).
    Autocomplete {
        /// Top-level command name.
        name: String,
        /// Options; one of them focused.
        options: Vec<OptionFixture>,
    },
    /// `MODAL_SUBMIT` (5).
    ModalSubmit {
        /// The modal's custom id.
        custom_id: String,
        /// `(custom_id, value)` of each text input.
        fields: Vec<(String, String)>,
    },
}

/// One option of a command interaction (`/npc mute name:Grim` has a subcommand option `mute` holding a string option `name`).
#[derive(Debug, Clone, PartialEq)]
pub struct OptionFixture {
    /// Option name.
    pub name: String,
    /// Its value (or nested options).
    pub value: OptionValue,
}

/// The value of an [`OptionFixture`], by Discord option type.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// `SUB_COMMAND` (1).
    SubCommand(Vec<OptionFixture>),
    /// `SUB_COMMAND_GROUP` (2).
    SubCommandGroup(Vec<OptionFixture>),
    /// `STRING` (3).
    String(String),
    /// `INTEGER` (4).
    Integer(i64),
    /// `BOOLEAN` (5).
    Boolean(bool),
    /// `USER` (6): a user id.
    User(String),
    /// `CHANNEL` (7): a channel id.
    Channel(String),
    /// `ROLE` (8): a role id.
    Role(String),
    /// `NUMBER` (10).
    Number(f64),
    /// `ATTACHMENT` (11): the fake serves `bytes` and puts the attachment,
    /// with its URL, in `data.resolved.attachments`.
    Attachment {
        /// File name, e.g. `campaign.yaml`.
        filename: String,
        /// MIME type, if the client reported one.
        content_type: Option<String>,
        /// File content.
        bytes: Vec<u8>,
    },
    /// The option being typed in an autocomplete request: a `STRING` with `focused: true`.
    Focused(String),
}

impl OptionValue {
    /// Discord's option type number.
    pub fn code(&self) -> u8 {
        match self {
            Self::SubCommand(_) => 1,
            Self::SubCommandGroup(_) => 2,
            Self::String(_) | Self::Focused(_) => 3,
            Self::Integer(_) => 4,
            Self::Boolean(_) => 5,
            Self::User(_) => 6,
            Self::Channel(_) => 7,
            Self::Role(_) => 8,
            Self::Number(_) => 10,
            Self::Attachment { .. } => 11,
        }
    }
}

impl OptionFixture {
    /// An option with any value.
    pub fn new(name: impl Into<String>, value: OptionValue) -> Self {
        Self {
            name: name.into(),
            value,
        }
    }

    /// A subcommand with its options.
    pub fn subcommand(name: impl Into<String>, options: Vec<OptionFixture>) -> Self {
        Self::new(name, OptionValue::SubCommand(options))
    }

    /// A subcommand group with its subcommands.
    pub fn group(name: impl Into<String>, subcommands: Vec<OptionFixture>) -> Self {
        Self::new(name, OptionValue::SubCommandGroup(subcommands))
    }

    /// A string option.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(name, OptionValue::String(value.into()))
    }

    /// An integer option.
    pub fn integer(name: impl Into<String>, value: i64) -> Self {
        Self::new(name, OptionValue::Integer(value))
    }

    /// A boolean option.
    pub fn boolean(name: impl Into<String>, value: bool) -> Self {
        Self::new(name, OptionValue::Boolean(value))
    }

    /// The focused option of an autocomplete request, with what was typed so far.
    pub fn focused(name: impl Into<String>, typed: impl Into<String>) -> Self {
        Self::new(name, OptionValue::Focused(typed.into()))
    }

    /// An attachment option; the fake serves the bytes.
    pub fn attachment(name: impl Into<String>, filename: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self::new(
            name,
            OptionValue::Attachment {
                filename: filename.into(),
                content_type: None,
                bytes: bytes.into(),
            },
        )
    }
}
