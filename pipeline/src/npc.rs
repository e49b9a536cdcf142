//! An NPC agent: its persona, what it has said, and the prompt for its next reply.
//!
//! The system prompt holds *this* NPC's persona only — other NPCs appear by
//! name, never with their personality — plus the campaign knowledge that
//! matters now and the recent shared transcript (what other NPCs and the
//! players said). The NPC's own exchanges follow as chat history. Only what
//! was actually heard is committed to that history (deliver-then-commit).

use std::collections::VecDeque;

use crate::campaign::{CampaignInfo, Entity, NpcDefinition};
use crate::providers::{ChatMessage, Role};
use crate::roster::NpcId;

/// How many of its own exchanges an NPC remembers verbatim.
const HISTORY_EXCHANGES: usize = 8;
/// How many recent transcript lines go into the prompt.
const RECENT_LINES: usize = 12;
/// Longest description of one entity in the prompt, in characters.
const ENTITY_CHARS: usize = 400;

/// One line of the shared recent transcript, as the prompt shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentLine {
    /// Who said it (display name).
    pub speaker: String,
    /// Set when an NPC said it.
    pub npc: Option<NpcId>,
    /// What was said (heard).
    pub text: String,
}

/// One remembered exchange: what was said to the NPC and what it said back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exchange {
    prompt: String,
    reply: String,
}

/// One NPC of a session.
#[derive(Debug, Clone)]
pub struct NpcAgent {
    /// Its id.
    pub id: NpcId,
    /// Persona and voice.
    pub definition: NpcDefinition,
    history: VecDeque<Exchange>,
}

/// What the prompt is built from besides the NPC itself.
#[derive(Debug, Clone, Copy)]
pub struct PromptContext<'a> {
    /// The campaign.
    pub campaign: &'a CampaignInfo,
    /// The other NPCs' names.
    pub others: &'a [&'a str],
    /// Relevant knowledge, most relevant first.
    pub knowledge: &'a [&'a Entity],
    /// Recent shared transcript, oldest first.
    pub recent: &'a [RecentLine],
    /// Sentences the reply may have at most.
    pub max_sentences: usize,
}

impl NpcAgent {
    /// An agent with an empty history.
    pub fn new(id: NpcId, definition: NpcDefinition) -> Self {
        Self {
            id,
            definition,
            history: VecDeque::new(),
        }
    }

    /// The system prompt for this NPC.
    pub fn system_prompt(&self, context: &PromptContext<'_>) -> String {
        let npc = &self.definition;
        let campaign = context.campaign;
        let mut prompt = String::with_capacity(2048);
        let setting = if campaign.system.is_empty() {
            format!("the tabletop roleplaying campaign \"{}\"", campaign.name)
        } else {
            format!("the {} campaign \"{}\"", campaign.system, campaign.name)
        };
        if npc.gm_helper {
            prompt.push_str(&format!(
                "You are {}, the narrator and rules helper of {setting}. Describe scenes vividly and answer rules questions briefly. Never decide what the players' characters do or feel.\n",
                npc.name
            ));
        } else {
            prompt.push_str(&format!(
                "You are {}, a character in {setting}. Stay in character at all times.\n",
                npc.name
            ));
        }
        prompt.push_str(&format!("Who you are: {}\n", npc.personality.trim()));
        if !campaign.description.is_empty() {
            prompt.push_str(&format!("The setting: {}\n", campaign.description.trim()));
        }
        prompt.push_str(&format!(
            "You are speaking aloud in a voice chat. Answer in at most {} short sentences of plain speech, in the first person, in the language you are spoken to. No stage directions, no actions in asterisks, no name labels, no lists, no emoji. Do not invent facts about the world beyond what you know; if you do not know, say so in character.\n",
            context.max_sentences.max(1)
        ));
        if !context.others.is_empty() {
            prompt.push_str(&format!(
                "Others present who can speak: {}.\n",
                context.others.join(", ")
            ));
        }
        if !context.knowledge.is_empty() {
            prompt.push_str("What you know:\n");
            for entity in context.knowledge {
                let description: String = entity.description.chars().take(ENTITY_CHARS).collect();
                prompt.push_str(&format!("- {} ({})", entity.name, entity.kind));
                if !description.is_empty() {
                    prompt.push_str(&format!(": {description}"));
                }
                for relationship in &entity.relationships {
                    prompt.push_str(&format!(
                        " [{} {}]",
                        relationship.kind.replace('_', " "),
                        relationship.target
                    ));
                }
                prompt.push('\n');
            }
        }
        let recent: Vec<&RecentLine> = context.recent.iter().rev().take(RECENT_LINES).collect();
        if !recent.is_empty() {
            prompt.push_str("Recently said at the table:\n");
            for line in recent.into_iter().rev() {
                let speaker = if line.npc.as_ref() == Some(&self.id) {
                    "You"
                } else {
                    line.speaker.as_str()
                };
                prompt.push_str(&format!("{speaker}: {}\n", line.text));
            }
        }
        prompt
    }

    /// The chat messages for replying to `speaker`'s `utterance`.
    pub fn messages(&self, context: &PromptContext<'_>, speaker: &str, utterance: &str) -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(2 + self.history.len() * 2);
        messages.push(ChatMessage::new(Role::System, self.system_prompt(context)));
        for exchange in &self.history {
            messages.push(ChatMessage::new(Role::User, exchange.prompt.clone()));
            messages.push(ChatMessage::new(Role::Assistant, exchange.reply.clone()));
        }
        messages.push(ChatMessage::new(Role::User, format!("{speaker}: {}", utterance.trim())));
        messages
    }

    /// The system prompt and history without a new utterance: what a
    /// prompt cache can read before the NPC is spoken to.
    pub fn known_messages(&self, context: &PromptContext<'_>) -> Vec<ChatMessage> {
        let mut messages = self.messages(context, "", "");
        messages.pop();
        messages
    }

    /// Remembers an exchange with the reply as heard; a cut reply ends in a
    /// dash, as interrupted speech is written. Nothing heard, nothing
    /// remembered: a note in the NPC's own lines would be imitated by small
    /// models instead of speech.
    pub fn commit(&mut self, speaker: &str, utterance: &str, heard: &str, cut: bool) {
        let heard = heard.trim();
        let reply = match (heard.is_empty(), cut) {
            (true, _) => return,
            (false, true) => format!("{heard}—"),
            (false, false) => heard.to_string(),
        };
        self.history.push_back(Exchange {
            prompt: format!("{speaker}: {}", utterance.trim()),
            reply,
        });
        while self.history.len() > HISTORY_EXCHANGES {
            self.history.pop_front();
        }
    }

    /// How many exchanges are remembered.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::Campaign;

    fn agents() -> (Campaign, NpcAgent) {
        let campaign = Campaign::example();
        let grimble = campaign.npc("Grimble").unwrap().clone();
        (campaign, NpcAgent::new(NpcId::from_name("Grimble"), grimble))
    }

    #[test]
    fn prompt_has_own_persona_but_only_names_of_others() {
        let (campaign, grimble) = agents();
        let elara = campaign.npc("Elara").unwrap();
        let knowledge: Vec<&Entity> = campaign.entities.iter().take(2).collect();
        let recent = vec![
            RecentLine {
                speaker: "Elara".into(),
                npc: Some(NpcId::from_name("Elara")),
                text: "A song for the innkeeper!".into(),
            },
            RecentLine {
                speaker: "Grimble".into(),
                npc: Some(NpcId::from_name("Grimble")),
                text: "No singing.".into(),
            },
        ];
        let context = PromptContext {
            campaign: &campaign.campaign,
            others: &["Elara", "Chronicler"],
            knowledge: &knowledge,
            recent: &recent,
            max_sentences: 3,
        };
        let prompt = grimble.system_prompt(&context);
        assert!(prompt.contains("You are Grimble"));
        assert!(prompt.contains("grumpy dwarven innkeeper"));
        assert!(prompt.contains("Others present who can speak: Elara, Chronicler."));
        assert!(
            !prompt.contains(&elara.personality[..30]),
            "another NPC's personality leaked"
        );
        assert!(prompt.contains("- Phandalin (location)"));
        assert!(prompt.contains("Elara: A song for the innkeeper!"));
        assert!(prompt.contains("You: No singing."));
        assert!(prompt.contains("at most 3 short sentences"));
    }

    #[test]
    fn history_holds_what_was_heard_and_marks_cuts() {
        let (campaign, mut grimble) = agents();
        grimble.commit("Bob", "An ale!", "Three copper.", false);
        grimble.commit("Bob", "Tell me about the mine", "The mine? Well, it", true);
        grimble.commit("Bob", "hello?", "", false);
        grimble.commit("Bob", "wait, what?", "", true);
        assert_eq!(grimble.history_len(), 2, "nothing heard, nothing committed");
        let context = PromptContext {
            campaign: &campaign.campaign,
            others: &[],
            knowledge: &[],
            recent: &[],
            max_sentences: 2,
        };
        let messages = grimble.messages(&context, "Alice", "What's that noise?");
        assert_eq!(messages.len(), 6);
        assert_eq!(messages[1].content, "Bob: An ale!");
        assert_eq!(messages[2].content, "Three copper.");
        assert_eq!(messages[4].content, "The mine? Well, it—");
        assert_eq!(messages[5].content, "Alice: What's that noise?");
        for _ in 0..20 {
            grimble.commit("Bob", "again", "again", false);
        }
        assert_eq!(grimble.history_len(), HISTORY_EXCHANGES);
    }

    #[test]
    fn narrator_prompt_differs() {
        let campaign = Campaign::example();
        let chronicler = NpcAgent::new(
            NpcId::from_name("Chronicler"),
            campaign.npc("Chronicler").unwrap().clone(),
        );
        let context = PromptContext {
            campaign: &campaign.campaign,
            others: &[],
            knowledge: &[],
            recent: &[],
            max_sentences: 3,
        };
        assert!(chronicler.system_prompt(&context).contains("narrator and rules helper"));
    }
}
