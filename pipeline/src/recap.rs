//! Session recaps: "previously, on your campaign…".
//!
//! The language model writes the recap from the transcript as a narrator —
//! third person, past tense, only what happened, ending on a hook. Without
//! a model (or when it fails) the recap is the plain timestamped transcript.
//! Long recaps are split for Discord's 4096-character embed descriptions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::campaign::CampaignInfo;
use crate::providers::{ChatMessage, ChatRequest, LanguageModel, LlmEvent, Role};
use crate::splitter::split_sentences;
use crate::transcript::{EntryKind, TranscriptEntry};

/// Discord's limit for one embed description.
pub const EMBED_DESCRIPTION_LIMIT: usize = 4096;
/// Most transcript characters given to the model (the most recent are kept).
const TRANSCRIPT_CHARS: usize = 24_000;

/// Where a recap's text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecapSource {
    /// Written by the language model.
    Llm,
    /// The plain transcript (no model, or it failed).
    Transcript,
}

/// A recap of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recap {
    /// The recap text.
    pub text: String,
    /// How it was made.
    pub source: RecapSource,
}

/// `HH:MM` (UTC) of a time.
fn clock(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    format!("{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60)
}

/// The plain transcript: one `[HH:MM] Speaker: text` line per entry.
pub fn plain_transcript(entries: &[TranscriptEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            let cut = if e.kind == EntryKind::Cut { " —" } else { "" };
            format!("[{}] {}: {}{cut}", clock(e.started_at), e.speaker_name, e.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The messages asking the model for a recap.
pub fn recap_messages(campaign: &CampaignInfo, entries: &[TranscriptEntry]) -> Vec<ChatMessage> {
    let transcript = plain_transcript(entries);
    let start = transcript.len().saturating_sub(TRANSCRIPT_CHARS);
    let start = (start..transcript.len())
        .find(|&i| transcript.is_char_boundary(i))
        .unwrap_or(transcript.len());
    let system = format!(
        "You are the narrator of the tabletop roleplaying campaign \"{}\"{}. Write a recap of the session transcript below for the players, \
         as a narrator would open the next session: third person, past tense, two or three short paragraphs, vivid but faithful. \
         Mention only events, characters and places that appear in the transcript; never invent anything. \
         End on a hook that makes the players want to continue. Plain prose only: no headings, no lists.",
        campaign.name,
        if campaign.system.is_empty() { String::new() } else { format!(" ({})", campaign.system) }
    );
    vec![
        ChatMessage::new(Role::System, system),
        ChatMessage::new(Role::User, format!("Transcript:\n{}", &transcript[start..])),
    ]
}

/// Writes a recap of `entries` with `llm` if given, else (or on failure) returns the plain transcript.
pub async fn recap(
    llm: Option<&dyn LanguageModel>,
    campaign: &CampaignInfo,
    entries: &[TranscriptEntry],
    deadline: Option<Instant>,
) -> Recap {
    if entries.is_empty() {
        return Recap {
            text: "Nothing was said in this session.".into(),
            source: RecapSource::Transcript,
        };
    }
    if let Some(llm) = llm {
        let request = ChatRequest {
            messages: recap_messages(campaign, entries),
            max_tokens: Some(700),
            temperature: Some(0.7),
            deadline,
            ..ChatRequest::default()
        };
        match write(llm, request).await {
            Ok(text) if !text.trim().is_empty() => {
                return Recap {
                    text: text.trim().to_string(),
                    source: RecapSource::Llm,
                }
            }
            Ok(_) => tracing::warn!("the recap model returned nothing; using the transcript"),
            Err(error) => tracing::warn!(%error, "recap model failed; using the transcript"),
        }
    }
    Recap {
        text: plain_transcript(entries),
        source: RecapSource::Transcript,
    }
}

async fn write(llm: &dyn LanguageModel, request: ChatRequest) -> Result<String, String> {
    let mut stream = llm.chat(request).await.map_err(|e| e.to_string())?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event.map_err(|e| e.to_string())? {
            LlmEvent::Text(piece) => text.push_str(&piece),
            LlmEvent::Finished(_) => break,
            _ => {}
        }
    }
    Ok(text)
}

/// Splits `text` into pieces of at most `limit` characters, at paragraph,
/// then line, then sentence, then word borders; never drops text.
pub fn split_for_embeds(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut pieces: Vec<String> = Vec::new();
    let mut current = String::new();
    let push = |part: &str, separator: &str, current: &mut String, pieces: &mut Vec<String>| {
        let needed = current.chars().count() + separator.chars().count() + part.chars().count();
        if !current.is_empty() && needed > limit {
            pieces.push(std::mem::take(current));
        }
        if !current.is_empty() {
            current.push_str(separator);
        }
        current.push_str(part);
    };
    for unit in units(text, limit) {
        push(&unit.0, unit.1, &mut current, &mut pieces);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// Breaks `text` into units no longer than `limit`, each with the separator
/// that preceded it.
fn units(text: &str, limit: usize) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for (p, paragraph) in text.split("\n\n").enumerate() {
        let paragraph_sep = if p == 0 { "" } else { "\n\n" };
        for (l, line) in paragraph.split('\n').enumerate() {
            let line_sep = if l == 0 { paragraph_sep } else { "\n" };
            if line.chars().count() <= limit {
                out.push((line.to_string(), line_sep));
                continue;
            }
            let mut first = true;
            for sentence in split_sentences(line) {
                for piece in split_long(&sentence, limit) {
                    out.push((piece, if first { line_sep } else { " " }));
                    first = false;
                }
            }
        }
    }
    out
}

/// Splits at word borders; a single word longer than `limit` is cut.
fn split_long(text: &str, limit: usize) -> Vec<String> {
    if text.chars().count() <= limit {
        return vec![text.to_string()];
    }
    let mut out = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let chars: Vec<char> = word.chars().collect();
        for piece in chars.chunks(limit) {
            let piece: String = piece.iter().collect();
            if !current.is_empty() && current.chars().count() + 1 + piece.chars().count() > limit {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&piece);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::Campaign;

    fn entry(speaker: &str, text: &str, minute: u64, kind: EntryKind) -> TranscriptEntry {
        TranscriptEntry {
            session_id: "s".into(),
            speaker_id: speaker.to_lowercase(),
            speaker_name: speaker.into(),
            npc_id: None,
            text: text.into(),
            started_at: UNIX_EPOCH + Duration::from_secs(20 * 3600 + minute * 60),
            ended_at: UNIX_EPOCH + Duration::from_secs(20 * 3600 + minute * 60 + 5),
            kind,
        }
    }

    #[test]
    fn plain_transcript_has_times_and_marks_cuts() {
        let entries = [
            entry("Alice", "Grimble, an ale!", 3, EntryKind::Utterance),
            entry("Grimble", "Three copper, and", 4, EntryKind::Cut),
        ];
        assert_eq!(
            plain_transcript(&entries),
            "[20:03] Alice: Grimble, an ale!\n[20:04] Grimble: Three copper, and —"
        );
    }

    #[test]
    fn prompt_asks_for_a_faithful_narrated_recap() {
        let campaign = Campaign::example();
        let messages = recap_messages(&campaign.campaign, &[entry("Alice", "Hello", 1, EntryKind::Utterance)]);
        let system = &messages[0].content;
        for wanted in [
            "third person",
            "past tense",
            "never invent",
            "hook",
            "The Sleeping Giant",
        ] {
            assert!(system.contains(wanted), "{wanted} missing");
        }
        assert!(messages[1].content.contains("Alice: Hello"));
    }

    #[test]
    fn long_text_splits_at_borders_without_losing_text() {
        let paragraph = "The party drank. ".repeat(150);
        let text = format!("{}\n\n{}\n\n{}", paragraph.trim(), paragraph.trim(), "x".repeat(5000));
        let pieces = split_for_embeds(&text, EMBED_DESCRIPTION_LIMIT);
        assert!(pieces.len() >= 3);
        assert!(pieces.iter().all(|p| p.chars().count() <= EMBED_DESCRIPTION_LIMIT));
        let joined: String = pieces.concat();
        let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
        assert_eq!(strip(&joined), strip(&text), "no text lost");
        assert_eq!(split_for_embeds("short", 4096), ["short"]);
        assert!(split_for_embeds("", 4096).is_empty() || split_for_embeds("", 4096) == [""]);
    }
}
