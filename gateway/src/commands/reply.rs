//! What the bot answers: the reply model (messages, embeds, buttons, modals,
//! autocomplete choices) and the splitting of long replies at Discord's
//! limits (SPEC §2: never silently cut).

/// Characters of message content Discord accepts.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Characters of one embed's description.
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
/// Embeds in one message.
pub const MAX_EMBEDS: usize = 10;
/// Characters of all embeds of one message together.
pub const MAX_EMBED_TOTAL_CHARS: usize = 6000;
/// Characters of an embed title.
pub const MAX_TITLE_CHARS: usize = 256;
/// Characters of an embed field's value.
pub const MAX_FIELD_VALUE_CHARS: usize = 1024;
/// Fields of one embed.
pub const MAX_FIELDS: usize = 25;
/// Autocomplete choices and select options.
pub const MAX_CHOICES: usize = 25;
/// Buttons in one action row.
pub const MAX_BUTTONS: usize = 5;

/// One field of an embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedField {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Shown side by side with its neighbours.
    pub inline: bool,
}

/// A rich embed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Embed {
    /// Title.
    pub title: String,
    /// Description (long text goes here).
    pub description: String,
    /// Fields.
    pub fields: Vec<EmbedField>,
    /// Footer text.
    pub footer: Option<String>,
    /// Colour (0xRRGGBB).
    pub color: Option<u32>,
}

impl Embed {
    /// An embed titled `title`.
    pub fn titled(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// With `description`.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// With a field.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>, inline: bool) -> Self {
        self.fields.push(EmbedField {
            name: name.into(),
            value: value.into(),
            inline,
        });
        self
    }

    /// With a footer.
    pub fn footer(mut self, footer: impl Into<String>) -> Self {
        self.footer = Some(footer.into());
        self
    }

    /// Characters Discord counts towards the 6000 per message.
    pub fn chars(&self) -> usize {
        self.title.chars().count()
            + self.description.chars().count()
            + self.footer.as_deref().map_or(0, |f| f.chars().count())
            + self
                .fields
                .iter()
                .map(|f| f.name.chars().count() + f.value.chars().count())
                .sum::<usize>()
    }
}

/// How a button looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonStyle {
    /// Blurple.
    Primary,
    /// Grey.
    Secondary,
    /// Green.
    Success,
    /// Red.
    Danger,
}

/// A button that sends a component interaction with its custom id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    /// What the component interaction carries back.
    pub custom_id: String,
    /// Its label.
    pub label: String,
    /// Its look.
    pub style: ButtonStyle,
}

impl Button {
    /// A button.
    pub fn new(custom_id: impl Into<String>, label: impl Into<String>, style: ButtonStyle) -> Self {
        Self {
            custom_id: custom_id.into(),
            label: label.into(),
            style,
        }
    }
}

/// A message: content, embeds and one row of buttons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Plain text.
    pub content: String,
    /// Embeds.
    pub embeds: Vec<Embed>,
    /// Buttons (one action row).
    pub buttons: Vec<Button>,
    /// Only the invoking user sees it.
    pub ephemeral: bool,
}

impl Message {
    /// Ephemeral text (the default for replies, SPEC §2).
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            ephemeral: true,
            ..Self::default()
        }
    }

    /// An ephemeral message with one embed.
    pub fn embed(embed: Embed) -> Self {
        Self {
            embeds: vec![embed],
            ephemeral: true,
            ..Self::default()
        }
    }

    /// Visible to the whole channel.
    pub fn public(mut self) -> Self {
        self.ephemeral = false;
        self
    }

    /// With buttons.
    pub fn with_buttons(mut self, buttons: Vec<Button>) -> Self {
        self.buttons = buttons;
        self
    }

    /// Splits the message so every part fits Discord's limits: content
    /// over 2000 characters across several messages, an embed description
    /// over 4096 across several embeds (titled "(continued)"), more than 10
    /// embeds or 6000 embed characters across several messages. Nothing is
    /// cut; buttons go with the last part.
    pub fn split(self) -> Vec<Message> {
        let Message {
            content,
            embeds,
            buttons,
            ephemeral,
        } = self;
        let mut parts: Vec<Message> = split_text(&content, MAX_CONTENT_CHARS)
            .into_iter()
            .map(|content| Message {
                content,
                ephemeral,
                ..Message::default()
            })
            .collect();
        let embeds: Vec<Embed> = embeds.into_iter().flat_map(split_embed).collect();
        for embed in embeds {
            let fits = parts.last().is_some_and(|last| {
                last.embeds.len() < MAX_EMBEDS
                    && last.embeds.iter().map(Embed::chars).sum::<usize>() + embed.chars() <= MAX_EMBED_TOTAL_CHARS
            });
            if !fits {
                parts.push(Message {
                    ephemeral,
                    ..Message::default()
                });
            }
            if let Some(last) = parts.last_mut() {
                last.embeds.push(embed);
            }
        }
        if parts.is_empty() {
            parts.push(Message {
                ephemeral,
                ..Message::default()
            });
        }
        if let Some(last) = parts.last_mut() {
            last.buttons = buttons;
        }
        parts
    }
}

/// One embed per 4096 characters of description; fields beyond 25, and
/// field values beyond 1024 characters, become description text of
/// continuation embeds so nothing is lost.
fn split_embed(embed: Embed) -> Vec<Embed> {
    let Embed {
        title,
        description,
        fields,
        footer,
        color,
    } = embed;
    let mut kept = Vec::new();
    let mut overflow = String::new();
    for field in fields {
        if kept.len() < MAX_FIELDS && field.value.chars().count() <= MAX_FIELD_VALUE_CHARS {
            kept.push(field);
        } else {
            overflow.push_str(&format!("\n**{}**\n{}", field.name, field.value));
        }
    }
    let text = if overflow.is_empty() {
        description
    } else {
        format!("{description}{overflow}")
    };
    // Leave room in each embed for its title and footer within 6000.
    let mut pieces = split_text(&text, MAX_DESCRIPTION_CHARS);
    if pieces.is_empty() {
        pieces.push(String::new());
    }
    let count = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(index, description)| Embed {
            title: if index == 0 {
                truncate_title(&title)
            } else {
                truncate_title(&format!("{title} (continued)"))
            },
            description,
            fields: if index == 0 {
                std::mem::take(&mut kept)
            } else {
                Vec::new()
            },
            footer: if index + 1 == count { footer.clone() } else { None },
            color,
        })
        .collect()
}

fn truncate_title(title: &str) -> String {
    if title.chars().count() <= MAX_TITLE_CHARS {
        return title.to_string();
    }
    let mut cut: String = title.chars().take(MAX_TITLE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Splits `text` into pieces of at most `limit` characters, at a line break
/// where possible, else at a space, else inside a word. Empty text gives no
/// pieces; the pieces joined give the text back except for the break
/// characters split at.
pub fn split_text(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut pieces = Vec::new();
    let mut rest = text.trim_end();
    while !rest.is_empty() {
        if rest.chars().count() <= limit {
            pieces.push(rest.to_string());
            break;
        }
        let hard = rest.char_indices().nth(limit).map_or(rest.len(), |(at, _)| at);
        let window = &rest[..hard];
        let (end, skip) = match window.rfind('\n').filter(|&at| at > 0) {
            Some(at) => (at, 1),
            None => match window.rfind(' ').filter(|&at| at > 0) {
                Some(at) => (at, 1),
                None => (hard, 0),
            },
        };
        pieces.push(rest[..end].to_string());
        rest = &rest[end + skip..];
    }
    pieces
}

/// One autocomplete choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Shown to the user.
    pub name: String,
    /// Put into the option.
    pub value: String,
}

impl Choice {
    /// A choice whose name is its value.
    pub fn same(value: impl Into<String>) -> Self {
        let value = value.into();
        Self {
            name: value.clone(),
            value,
        }
    }
}

/// One text input of a modal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextInput {
    /// Its custom id (the field name in the submission).
    pub custom_id: String,
    /// Its label.
    pub label: String,
    /// Paragraph (multi-line) rather than one line.
    pub paragraph: bool,
    /// Must be filled in.
    pub required: bool,
    /// Longest accepted text.
    pub max_length: u16,
    /// Grey hint text.
    pub placeholder: Option<String>,
}

impl TextInput {
    /// A one-line input.
    pub fn short(custom_id: &str, label: &str, max_length: u16, required: bool) -> Self {
        Self {
            custom_id: custom_id.to_string(),
            label: label.to_string(),
            paragraph: false,
            required,
            max_length,
            placeholder: None,
        }
    }

    /// A multi-line input.
    pub fn paragraph(custom_id: &str, label: &str, max_length: u16, required: bool) -> Self {
        Self {
            paragraph: true,
            ..Self::short(custom_id, label, max_length, required)
        }
    }

    /// With a placeholder.
    pub fn placeholder(mut self, text: &str) -> Self {
        self.placeholder = Some(text.to_string());
        self
    }
}

/// A modal dialog (at most five inputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modal {
    /// What the submission carries back.
    pub custom_id: String,
    /// Its title.
    pub title: String,
    /// Its inputs.
    pub inputs: Vec<TextInput>,
}

/// The first answer to an interaction (Discord wants it within 3 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialResponse {
    /// A message.
    Message(Message),
    /// "Thinking…": the real answer follows as an edit of the original.
    Defer {
        /// Whether the eventual answer is ephemeral.
        ephemeral: bool,
    },
    /// Replace the message whose button was pressed.
    UpdateMessage(Message),
    /// Open a modal.
    Modal(Modal),
    /// Autocomplete choices (at most 25).
    Choices(Vec<Choice>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_piece_and_empty_text_none() {
        assert_eq!(split_text("hello", 10), vec!["hello"]);
        assert!(split_text("", 10).is_empty());
        assert!(split_text("  \n", 10).is_empty());
    }

    #[test]
    fn text_splits_at_lines_then_spaces_then_anywhere() {
        assert_eq!(split_text("aaa\nbbb\nccc", 8), vec!["aaa\nbbb", "ccc"]);
        assert_eq!(split_text("aaa bbb ccc", 8), vec!["aaa bbb", "ccc"]);
        assert_eq!(split_text("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        // Multi-byte characters are counted, never cut in half.
        assert_eq!(split_text("ééééé", 2), vec!["éé", "éé", "é"]);
    }

    #[test]
    fn nothing_is_lost_when_splitting_long_text() {
        let words: Vec<String> = (0..1500).map(|i| format!("word{i}")).collect();
        let text = words.join(" ");
        let pieces = split_text(&text, MAX_CONTENT_CHARS);
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.chars().count() <= MAX_CONTENT_CHARS));
        assert_eq!(pieces.join(" "), text);
    }

    #[test]
    fn long_content_becomes_several_messages_with_buttons_last() {
        let message =
            Message::text("x ".repeat(3000)).with_buttons(vec![Button::new("ok", "OK", ButtonStyle::Primary)]);
        let parts = message.split();
        assert_eq!(parts.len(), 3);
        assert!(parts
            .iter()
            .all(|p| p.ephemeral && p.content.chars().count() <= MAX_CONTENT_CHARS));
        assert!(parts[..2].iter().all(|p| p.buttons.is_empty()));
        assert_eq!(parts[2].buttons.len(), 1);
    }

    #[test]
    fn long_embeds_continue_and_respect_the_message_totals() {
        let text: String = (0..3000).map(|i| format!("line {i}\n")).collect(); // ~26k chars
        let parts = Message::embed(
            Embed::titled("Session Recap")
                .description(text.clone())
                .footer("42 lines"),
        )
        .split();
        let embeds: Vec<&Embed> = parts.iter().flat_map(|p| p.embeds.iter()).collect();
        assert!(embeds.len() >= 7, "{}", embeds.len());
        assert_eq!(embeds[0].title, "Session Recap");
        assert_eq!(embeds[1].title, "Session Recap (continued)");
        assert!(embeds
            .iter()
            .all(|e| e.description.chars().count() <= MAX_DESCRIPTION_CHARS));
        assert_eq!(embeds.last().unwrap().footer.as_deref(), Some("42 lines"));
        assert!(embeds[..embeds.len() - 1].iter().all(|e| e.footer.is_none()));
        for part in &parts {
            assert!(part.embeds.len() <= MAX_EMBEDS);
            assert!(part.embeds.iter().map(Embed::chars).sum::<usize>() <= MAX_EMBED_TOTAL_CHARS);
        }
        let joined: Vec<&str> = embeds.iter().map(|e| e.description.as_str()).collect();
        assert_eq!(joined.join("\n"), text.trim_end());
    }

    #[test]
    fn surplus_fields_move_into_the_description() {
        let mut embed = Embed::titled("NPCs");
        for i in 0..30 {
            embed = embed.field(format!("npc {i}"), "id", true);
        }
        embed = embed.field("long", "v".repeat(2000), false);
        let parts = Message::embed(embed).split();
        let first = &parts[0].embeds[0];
        assert_eq!(first.fields.len(), MAX_FIELDS);
        let all: String = parts
            .iter()
            .flat_map(|p| &p.embeds)
            .map(|e| e.description.clone())
            .collect();
        assert!(all.contains("**npc 29**"));
        assert!(all.contains(&"v".repeat(100)));
    }

    #[test]
    fn an_empty_message_stays_one_message() {
        assert_eq!(Message::text("").split().len(), 1);
    }

    #[test]
    fn an_embed_without_description_is_kept() {
        let parts = Message::embed(Embed::titled("Started").field("Session", "`s1`", false)).split();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].embeds.len(), 1);
        assert_eq!(parts[0].embeds[0].fields.len(), 1);
    }
}
