//! The DM's spoken commands (SPEC §7): "mute Grimble", "Grimble, be quiet",
//! "unmute Grimble", "everyone stop", "everyone continue", "Grimble, say
//! Welcome to my inn". Only the DM's speech is parsed; a command is carried
//! out and never forwarded to an NPC.

use crate::address::AddressBook;
use crate::roster::NpcId;

/// A DM voice command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceCommand {
    /// Mute one NPC (cuts its speech).
    Mute(NpcId),
    /// Unmute one NPC.
    Unmute(NpcId),
    /// Mute every NPC.
    MuteAll,
    /// Unmute every NPC.
    UnmuteAll,
    /// The NPC says exactly this text (no language model).
    Speak(NpcId, String),
}

fn normalize(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' || c == '-' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

const EVERYONE: &[&str] = &["everyone", "everybody", "all", "all of you", "alle"];
const STOP: &[&str] = &["stop", "be quiet", "quiet", "silence", "hush", "shut up"];
const CONTINUE: &[&str] = &["continue", "go on", "carry on", "resume", "weiter"];
const QUIET: &[&str] = &[
    "be quiet",
    "quiet",
    "shut up",
    "hush",
    "silence",
    "stop talking",
    "sei still",
];

/// Parses a DM utterance; `None` if it is not a command (then it is ordinary speech).
pub fn parse(text: &str, names: &AddressBook) -> Option<VoiceCommand> {
    let normalized = normalize(text);
    if normalized.is_empty() {
        return None;
    }
    for everyone in EVERYONE {
        if let Some(rest) = normalized.strip_prefix(everyone).map(str::trim) {
            if STOP.contains(&rest) {
                return Some(VoiceCommand::MuteAll);
            }
            if CONTINUE.contains(&rest) {
                return Some(VoiceCommand::UnmuteAll);
            }
        }
    }
    if let Some(rest) = normalized.strip_prefix("unmute ") {
        return names.resolve(rest).map(VoiceCommand::Unmute);
    }
    if let Some(rest) = normalized.strip_prefix("mute ") {
        return names.resolve(rest).map(VoiceCommand::Mute);
    }
    // "<npc>, be quiet" / "<npc> say <text>": the name comes first.
    for quiet in QUIET {
        if let Some(name) = normalized.strip_suffix(quiet).map(str::trim) {
            if !name.is_empty() && name.split_whitespace().count() <= 3 {
                if let Some(id) = names.resolve(name) {
                    return Some(VoiceCommand::Mute(id));
                }
            }
        }
    }
    speak(text, names)
}

/// "<npc>, say <text>": keeps the original wording and punctuation of the text.
fn speak(text: &str, names: &AddressBook) -> Option<VoiceCommand> {
    let lower = text.to_lowercase();
    let mut search_from = 0;
    while let Some(found) = lower[search_from..].find("say") {
        let at = search_from + found;
        search_from = at + 3;
        let before_ok = at == 0 || !lower[..at].chars().next_back().is_some_and(char::is_alphanumeric);
        let after_ok = !lower[at + 3..].chars().next().is_some_and(char::is_alphanumeric);
        if !(before_ok && after_ok) {
            continue;
        }
        let name = &text[..at];
        if name.trim().is_empty() || normalize(name).split_whitespace().count() > 3 {
            return None;
        }
        let spoken = text[at + 3..].trim_start_matches([':', ',', ' ']).trim();
        if spoken.is_empty() {
            return None;
        }
        return names
            .resolve(name)
            .map(|id| VoiceCommand::Speak(id, spoken.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::Campaign;
    use crate::roster::Roster;
    use std::time::Duration;

    fn book() -> AddressBook {
        AddressBook::new(
            &Roster::from_definitions(&Campaign::example().npcs),
            Duration::from_secs(30),
        )
    }

    fn id(name: &str) -> NpcId {
        NpcId::from_name(name)
    }

    #[test]
    fn commands() {
        let b = book();
        let cases: Vec<(&str, Option<VoiceCommand>)> = vec![
            ("Mute Grimble.", Some(VoiceCommand::Mute(id("Grimble")))),
            ("mute grimbel", Some(VoiceCommand::Mute(id("Grimble")))),
            ("Grimble, be quiet!", Some(VoiceCommand::Mute(id("Grimble")))),
            ("Elara, shut up.", Some(VoiceCommand::Mute(id("Elara")))),
            ("Unmute Elara", Some(VoiceCommand::Unmute(id("Elara")))),
            ("Everyone, stop!", Some(VoiceCommand::MuteAll)),
            ("everybody be quiet", Some(VoiceCommand::MuteAll)),
            ("Everyone continue.", Some(VoiceCommand::UnmuteAll)),
            (
                "Grimble, say: Welcome to the Sleeping Giant!",
                Some(VoiceCommand::Speak(
                    id("Grimble"),
                    "Welcome to the Sleeping Giant!".into(),
                )),
            ),
            (
                "Elara say Hello, travellers.",
                Some(VoiceCommand::Speak(id("Elara"), "Hello, travellers.".into())),
            ),
            ("mute nobody", None),
            ("Grimble, what do you say about the goblins?", None),
            ("I say we go north", None),
            ("Grimble, say", None),
            ("Grimble, how much is the ale?", None),
            ("Let's stop here for tonight", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text, &b), expected, "for {text:?}");
        }
    }
}
