//! Splits a language model's streamed reply into sentences for TTS.
//!
//! Text arrives token by token; a sentence is handed out as soon as it is
//! complete, so speech synthesis starts while the model is still writing.
//! A sentence ends at `.`, `!`, `?` or `…` (closing quotes and brackets may
//! follow) when whitespace comes next — but not after common abbreviations
//! (Mr., Dr., St., e.g.), initials (J. R. R.), inside decimals (3.5) or at an
//! ellipsis that continues the same sentence ("Well... maybe").
//!
//! What an LLM writes but should not be spoken is removed: stage directions
//! (`*sighs*`, `(grumbles)`, `[laughs]`), markup tags and `<think>` blocks,
//! and name labels such as `Grimble:` at the start of a sentence. Empty or
//! tag-only sentences are never handed out.

/// Abbreviations after which a period does not end a sentence (lower case, without the period).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "mt", "capt", "lt", "col", "gen", "sgt", "cpt", "no", "vs",
    "approx", "e.g", "i.e", "etc", "cf", "fig", "ca", "vol", "ft", "lb", "oz", "hr", "min", "sec", "z.b", "bzw", "usw",
    "ggf", "evtl", "hl",
];

/// A sentence longer than this is handed out at the next comma or space so
/// that speech starts in time.
const MAX_SENTENCE_CHARS: usize = 280;

/// Streaming sentence splitter; see the module documentation.
#[derive(Debug, Clone)]
pub struct SentenceSplitter {
    /// Spoken text of the sentence being built.
    current: String,
    /// Nesting of `(`/`[` stage directions being skipped.
    bracket_depth: u32,
    /// Inside `*...*`.
    in_asterisks: bool,
    /// Inside `<...>`; holds the tag text so far.
    tag: Option<String>,
    /// Inside `<think>...</think>`.
    in_think: bool,
    /// A terminator was seen; the next word decides whether it ends the sentence.
    pending_end: bool,
    /// Whitespace followed the pending terminator.
    saw_space: bool,
    /// Name labels to strip (lower case), e.g. the NPC names.
    labels: Vec<String>,
}

impl Default for SentenceSplitter {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl SentenceSplitter {
    /// A splitter that also strips `Name:` labels for these names.
    pub fn new(label_names: &[&str]) -> Self {
        let mut labels: Vec<String> = label_names
            .iter()
            .map(|n| n.trim().to_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        labels.extend(["narrator", "npc", "assistant", "dm", "gm"].map(String::from));
        Self {
            current: String::new(),
            bracket_depth: 0,
            in_asterisks: false,
            tag: None,
            in_think: false,
            pending_end: false,
            saw_space: false,
            labels,
        }
    }

    /// Feeds the next piece of text; returns the sentences it completed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        let mut done = Vec::new();
        for c in text.chars() {
            self.push_char(c, &mut done);
        }
        done
    }

    /// The reply ended: returns the last sentence, if anything speakable is left.
    pub fn finish(&mut self) -> Option<String> {
        self.pending_end = false;
        self.saw_space = false;
        self.tag = None;
        self.bracket_depth = 0;
        self.in_asterisks = false;
        self.in_think = false;
        let sentence = std::mem::take(&mut self.current);
        self.clean(&sentence)
    }

    fn push_char(&mut self, c: char, done: &mut Vec<String>) {
        // Markup tags, and whole <think> blocks.
        if let Some(tag) = &mut self.tag {
            if c == '>' {
                let name = tag
                    .trim()
                    .trim_start_matches('/')
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_lowercase();
                let closing = tag.trim_start().starts_with('/');
                if name == "think" || name == "thinking" {
                    self.in_think = !closing;
                }
                self.tag = None;
            } else if tag.len() > 40 || c == '\n' {
                // Not a tag after all: a lone '<'.
                let text = format!("<{tag}{c}");
                self.tag = None;
                for ch in text.chars().skip(1) {
                    self.push_char(ch, done);
                }
            } else {
                tag.push(c);
            }
            return;
        }
        if c == '<' {
            self.tag = Some(String::new());
            return;
        }
        if self.in_think {
            return;
        }
        // Stage directions.
        match c {
            '*' => {
                self.in_asterisks = !self.in_asterisks;
                return;
            }
            '(' | '[' => {
                self.bracket_depth += 1;
                return;
            }
            ')' | ']' if self.bracket_depth > 0 => {
                self.bracket_depth -= 1;
                return;
            }
            _ => {}
        }
        if self.in_asterisks || self.bracket_depth > 0 {
            return;
        }

        if self.pending_end {
            if is_closing(c) || c.is_whitespace() {
                self.saw_space |= c.is_whitespace();
                self.current.push(c);
                return;
            }
            if !self.saw_space {
                if is_terminator(c) {
                    self.current.push(c); // "?!", "..."
                    return;
                }
                self.pending_end = false; // "3.5", "e.g"
            } else {
                self.pending_end = false;
                self.saw_space = false;
                if !c.is_lowercase() {
                    self.emit(done);
                }
                // A lower-case word continues the sentence: "Well... maybe", "\"Go!\" he said".
            }
        }

        self.current.push(c);
        if is_terminator(c) && !self.is_abbreviation() {
            self.pending_end = true;
        } else if self.current.chars().count() >= MAX_SENTENCE_CHARS && (c == ',' || c == ';' || c.is_whitespace()) {
            self.emit(done);
        }
    }

    /// Whether the period just pushed belongs to an abbreviation or an initial.
    fn is_abbreviation(&self) -> bool {
        if !self.current.ends_with('.') {
            return false;
        }
        let before = &self.current[..self.current.len() - 1];
        if before.ends_with('.') {
            return false; // an ellipsis in the making
        }
        let word = before
            .rsplit(|c: char| c.is_whitespace() || c == '"' || c == '(')
            .next()
            .unwrap_or("");
        if word.is_empty() {
            return false;
        }
        let mut letters = word.chars();
        if let (Some(first), None) = (letters.next(), letters.next()) {
            if first.is_uppercase() {
                return true; // an initial: "J."
            }
        }
        ABBREVIATIONS.contains(&word.to_lowercase().as_str())
    }

    fn emit(&mut self, done: &mut Vec<String>) {
        let sentence = std::mem::take(&mut self.current);
        if let Some(clean) = self.clean(&sentence) {
            done.push(clean);
        }
    }

    /// Removes labels and stray markup; `None` if nothing speakable is left.
    fn clean(&self, sentence: &str) -> Option<String> {
        let mut text = sentence.trim().to_string();
        // "Grimble:" / "**Grimble:**" at the start.
        if let Some((label, rest)) = text.split_once(':') {
            let label = label
                .trim()
                .trim_matches(|c: char| c == '*' || c == '_' || c == '"')
                .trim()
                .to_lowercase();
            if self.labels.contains(&label) {
                text = rest.trim().to_string();
            }
        }
        let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for punctuation in [" .", " ,", " !", " ?", " ;", " :", " …"] {
            while let Some(at) = text.find(punctuation) {
                text.remove(at);
            }
        }
        // Quotation marks are not spoken.
        let text = text.replace(['"', '“', '”', '„', '«', '»'], "");
        let text = text.trim();
        if text.chars().any(char::is_alphanumeric) {
            Some(text.to_string())
        } else {
            None
        }
    }
}

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}

fn is_closing(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | '»' | ')' | ']')
}

/// Splits a whole text at once (for puppet lines and recaps).
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut splitter = SentenceSplitter::default();
    let mut sentences = splitter.push(text);
    sentences.extend(splitter.finish());
    sentences
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `input` through the splitter token by token (pieces of `n` chars) and at once.
    fn split(input: &str, labels: &[&str]) -> Vec<String> {
        let whole = {
            let mut s = SentenceSplitter::new(labels);
            let mut out = s.push(input);
            out.extend(s.finish());
            out
        };
        for n in [1, 2, 3, 7] {
            let mut s = SentenceSplitter::new(labels);
            let mut out = Vec::new();
            let chars: Vec<char> = input.chars().collect();
            for piece in chars.chunks(n) {
                out.extend(s.push(&piece.iter().collect::<String>()));
            }
            out.extend(s.finish());
            assert_eq!(out, whole, "pieces of {n} differ for {input:?}");
        }
        whole
    }

    #[test]
    fn splitter_cases() {
        let cases: &[(&str, &[&str])] = &[
            ("Hello there. How are you?", &["Hello there.", "How are you?"]),
            ("Stop! Thief!", &["Stop!", "Thief!"]),
            ("Really?! I never.", &["Really?!", "I never."]),
            ("One.\nTwo.", &["One.", "Two."]),
            ("Mr. Smith went home. He slept.", &["Mr. Smith went home.", "He slept."]),
            (
                "Ask Dr. Brandt at St. Mary's. Now.",
                &["Ask Dr. Brandt at St. Mary's.", "Now."],
            ),
            (
                "Bring herbs, e.g. sage or mint. Hurry.",
                &["Bring herbs, e.g. sage or mint.", "Hurry."],
            ),
            (
                "The ale costs 3.5 silver. Pay up.",
                &["The ale costs 3.5 silver.", "Pay up."],
            ),
            (
                "J. R. R. Tolkien wrote it. Fine.",
                &["J. R. R. Tolkien wrote it.", "Fine."],
            ),
            (
                "Well... maybe I know. Maybe not.",
                &["Well... maybe I know.", "Maybe not."],
            ),
            ("Hmm… perhaps. Yes.", &["Hmm… perhaps.", "Yes."]),
            ("I waited... Then it came.", &["I waited...", "Then it came."]),
            ("\"Get out!\" he said. Go.", &["Get out! he said.", "Go."]),
            ("“Aye.” He nods.", &["Aye.", "He nods."]),
            ("*grumbles* Fine. I'll pour.", &["Fine.", "I'll pour."]),
            ("(sighs) Another one? [laughs] Sure.", &["Another one?", "Sure."]),
            ("*wipes the counter*", &[]),
            ("Grimble: Welcome, traveller.", &["Welcome, traveller."]),
            ("**Grimble:** What'll it be?", &["What'll it be?"]),
            ("<think>The player wants ale.</think>Ale it is.", &["Ale it is."]),
            ("<break time=\"1s\"/>", &[]),
            ("", &[]),
            ("   ", &[]),
            ("...", &[]),
            ("No trailing terminator", &["No trailing terminator"]),
            ("Two sentences.  Extra   spaces.", &["Two sentences.", "Extra spaces."]),
            ("Version 2.0 is out. Great.", &["Version 2.0 is out.", "Great."]),
            ("It was 5 p.m. when they came.", &["It was 5 p.m. when they came."]),
            (
                "Narrator: The door creaks. Elara: Who's there?",
                &["The door creaks.", "Who's there?"],
            ),
            ("Costs 5 gp (or 50 sp). Deal?", &["Costs 5 gp.", "Deal?"]),
            (
                "Grimble pours. grimble grumbles.",
                &["Grimble pours. grimble grumbles."],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(split(input, &["Grimble", "Elara"]), *expected, "for {input:?}");
        }
    }

    #[test]
    fn sentence_is_released_as_soon_as_whitespace_confirms_it() {
        let mut s = SentenceSplitter::default();
        assert!(s.push("Welcome").is_empty());
        assert!(
            s.push(" to the inn.").is_empty(),
            "must wait: could be an abbreviation or decimal"
        );
        assert!(s.push(" ").is_empty(), "must wait: a lower-case word would continue it");
        assert_eq!(s.push("What"), ["Welcome to the inn."]);
        assert_eq!(s.finish().as_deref(), Some("What"));
    }

    #[test]
    fn overlong_sentence_is_cut_at_a_comma() {
        let long = "word, ".repeat(100);
        let mut s = SentenceSplitter::default();
        let out = s.push(&long);
        assert!(!out.is_empty(), "an endless sentence must still reach TTS");
        assert!(out.iter().all(|x| x.chars().count() <= MAX_SENTENCE_CHARS + 1));
    }

    #[test]
    fn lone_angle_bracket_does_not_swallow_the_text() {
        assert_eq!(split("3 < 4\nis true.", &[]), ["3 4 is true."]);
    }

    #[test]
    fn split_sentences_of_a_whole_text() {
        assert_eq!(split_sentences("Go. Be off? Now"), ["Go.", "Be off?", "Now"]);
    }
}
