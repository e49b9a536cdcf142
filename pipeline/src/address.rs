//! Address detection: which NPC a player is talking to (SPEC §7).
//!
//! Deterministic and cheap (no model call). In order:
//! 1. an explicit name — the full name, or any name word of at least four
//!    letters, at word boundaries, case-insensitive, tolerant of small
//!    mishearings (Damerau–Levenshtein distance — adjacent transpositions
//!    count as one edit — ≤ 1 for name words of 4–6 letters, ≤ 2 for longer ones; a phonetic key; two words heard as one
//!    name, e.g. "Glyphox or" → Glyphoxa). The first NPC named wins;
//! 2. the DM's puppet override;
//! 3. the NPC addressed last, within the continuation window (not
//!    `address_only` NPCs);
//! 4. the only unmuted NPC (not `address_only`).
//!
//! Muted NPCs never answer; backchannels ("mhm", "yeah") and empty text
//! route nowhere.

use std::time::Duration;

use tokio::time::Instant;

use crate::roster::{NpcId, Roster};

/// Articles (English and German) that are never name words.
const ARTICLES: &[&str] = &[
    "the", "a", "an", "der", "die", "das", "den", "dem", "des", "ein", "eine", "einer", "eines", "einem", "einen",
];

/// Frequent words that must not fuzzily match a name ("grumble" may, "there" may not).
const COMMON_WORDS: &[&str] = &[
    "about", "after", "again", "also", "been", "before", "being", "came", "come", "could", "does", "doing", "done",
    "down", "each", "even", "ever", "from", "give", "going", "good", "great", "have", "having", "here", "into", "just",
    "know", "like", "look", "make", "many", "more", "most", "much", "must", "need", "never", "only", "other", "over",
    "please", "really", "said", "same", "should", "some", "still", "such", "sure", "take", "tell", "than", "thank",
    "thanks", "that", "their", "them", "then", "there", "these", "they", "thing", "think", "this", "those", "time",
    "very", "want", "well", "went", "were", "what", "when", "where", "which", "while", "will", "with", "would", "your",
    "yours", "aber", "auch", "bitte", "dann", "dass", "doch", "hier", "immer", "jetzt", "kann", "mehr", "nicht",
    "noch", "oder", "schon", "sehr", "sein", "sind", "über", "viel", "wann", "warum", "was", "weil", "wenn", "wieder",
    "wird", "wohl",
];

/// Utterances made only of these words are backchannels and address nobody.
const BACKCHANNELS: &[&str] = &[
    "mhm", "mm", "mmm", "hm", "hmm", "hmmm", "uh", "um", "uhm", "umm", "er", "erm", "ah", "oh", "huh", "uh-huh", "aha",
    "yeah", "yep", "yup", "ok", "okay", "right", "sure", "alright", "cool", "nice", "wow", "ja", "jo", "genau", "äh",
    "ähm", "achso", "na",
];

/// How the NPC was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressReason {
    /// Its name (or a name word) was said exactly.
    Name,
    /// A near miss of its name (edit distance, phonetic key or two words joined).
    Misheard,
    /// The DM's puppet override.
    Puppet,
    /// It was addressed last, recently.
    Continuation,
    /// It is the only NPC that can answer.
    OnlyNpc,
}

/// Why nobody answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoTarget {
    /// Nothing was said.
    Empty,
    /// Only a backchannel ("mhm", "yeah").
    Backchannel,
    /// The NPC named is muted.
    Muted,
    /// No NPC is named and none follows from context.
    Unaddressed,
}

/// The outcome of address detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// This NPC answers.
    Npc {
        /// The NPC.
        id: NpcId,
        /// How it was found.
        reason: AddressReason,
    },
    /// Nobody answers.
    Nobody(NoTarget),
}

/// What address detection remembers between utterances.
#[derive(Debug, Clone, Default)]
pub struct AddressState {
    /// The NPC addressed last and when.
    pub last: Option<(NpcId, Instant)>,
    /// The DM's puppet override: un-named utterances go to this NPC.
    pub puppet: Option<NpcId>,
}

#[derive(Debug, Clone)]
struct NameEntry {
    id: NpcId,
    /// The full name's words, lower case (articles included, for exact full-name matches).
    full: Vec<String>,
    /// Name words that count alone: ≥ 4 letters, not articles; with their phonetic keys.
    words: Vec<(String, String)>,
    address_only: bool,
}

/// A heard word with what matching needs to know about it.
struct Heard {
    text: String,
    chars: usize,
    /// Long enough and not a frequent word: may fuzzily match a name.
    fuzzy_ok: bool,
    key: String,
}

impl Heard {
    fn new(text: String) -> Self {
        let chars = text.chars().count();
        let fuzzy_ok = chars >= 3 && !COMMON_WORDS.contains(&text.as_str()) && !ARTICLES.contains(&text.as_str());
        let key = if fuzzy_ok && chars >= 4 {
            phonetic_key(&text)
        } else {
            String::new()
        };
        Self {
            text,
            chars,
            fuzzy_ok,
            key,
        }
    }
}

/// Whether `token` (or it joined with the next word) is a near miss of one of `entry`'s name words.
fn near_miss(entry: &NameEntry, token: &Heard, joined: Option<&Heard>) -> bool {
    entry.words.iter().any(|(word, key)| {
        let length = word.chars().count();
        let allowed = if length <= 6 { 1 } else { 2 };
        let close = |heard: &Heard| {
            heard.fuzzy_ok
                && heard.chars.abs_diff(length) <= allowed
                && strsim::osa_distance(&heard.text, word) <= allowed
        };
        close(token) || (!token.key.is_empty() && token.key == *key) || joined.is_some_and(|j| length >= 7 && close(j))
    })
}

/// The names of a roster, prepared for matching.
#[derive(Debug, Clone)]
pub struct AddressBook {
    entries: Vec<NameEntry>,
    continuation: Duration,
}

/// A word of an utterance.
fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .flat_map(|word| word.split('-').filter(|w| !w.is_empty()).collect::<Vec<_>>())
        .map(str::to_lowercase)
        .collect()
}

impl AddressBook {
    /// Prepares the names of `roster`; an addressed NPC stays the default
    /// listener for `continuation` (SPEC: about 30 s).
    pub fn new(roster: &Roster, continuation: Duration) -> Self {
        let entries = roster
            .npcs()
            .iter()
            .map(|npc| {
                let full = tokenize(&npc.definition.name);
                let words = full
                    .iter()
                    .filter(|w| w.chars().count() >= 4 && !ARTICLES.contains(&w.as_str()))
                    .map(|w| (w.clone(), phonetic_key(w)))
                    .collect();
                NameEntry {
                    id: npc.id.clone(),
                    full,
                    words,
                    address_only: npc.definition.address_only,
                }
            })
            .collect();
        Self { entries, continuation }
    }

    /// The NPC named first in `text`, with whether the name was heard exactly.
    pub fn named(&self, text: &str) -> Option<(NpcId, AddressReason)> {
        let tokens = tokenize(text);
        self.named_in(&tokens)
            .map(|(index, reason)| (self.entries[index].id.clone(), reason))
    }

    fn named_in(&self, tokens: &[String]) -> Option<(usize, AddressReason)> {
        // Per-token facts, computed once for all NPCs.
        let heard: Vec<Heard> = tokens.iter().map(|t| Heard::new(t.clone())).collect();
        let joined: Vec<Option<Heard>> = (0..tokens.len())
            .map(|i| tokens.get(i + 1).map(|next| Heard::new(format!("{}{next}", tokens[i]))))
            .collect();
        for position in 0..tokens.len() {
            // Exact matches at this position beat near misses at this position.
            let mut near: Option<usize> = None;
            for (index, entry) in self.entries.iter().enumerate() {
                if !entry.full.is_empty() && tokens[position..].starts_with(&entry.full) {
                    return Some((index, AddressReason::Name));
                }
                if entry.words.iter().any(|(word, _)| *word == tokens[position]) {
                    return Some((index, AddressReason::Name));
                }
                if near.is_none() && near_miss(entry, &heard[position], joined[position].as_ref()) {
                    near = Some(index);
                }
            }
            if let Some(index) = near {
                return Some((index, AddressReason::Misheard));
            }
        }
        None
    }

    /// The NPC a phrase names (for commands: "mute Grimbel"), exact or near miss.
    pub fn resolve(&self, phrase: &str) -> Option<NpcId> {
        self.named(phrase).map(|(id, _)| id)
    }

    /// Decides who answers `text`. `muted` tells which NPCs are muted; `now`
    /// is the utterance's time (for the continuation window).
    pub fn decide(&self, text: &str, muted: &dyn Fn(&NpcId) -> bool, state: &AddressState, now: Instant) -> Address {
        let tokens = tokenize(text);
        if tokens.is_empty() {
            return Address::Nobody(NoTarget::Empty);
        }
        if tokens.iter().all(|t| BACKCHANNELS.contains(&t.as_str())) {
            return Address::Nobody(NoTarget::Backchannel);
        }
        if let Some((index, reason)) = self.named_in(&tokens) {
            let id = &self.entries[index].id;
            return if muted(id) {
                Address::Nobody(NoTarget::Muted)
            } else {
                Address::Npc { id: id.clone(), reason }
            };
        }
        let available = |id: &NpcId| self.entries.iter().any(|e| &e.id == id) && !muted(id);
        if let Some(puppet) = &state.puppet {
            if available(puppet) {
                return Address::Npc {
                    id: puppet.clone(),
                    reason: AddressReason::Puppet,
                };
            }
        }
        if let Some((last, at)) = &state.last {
            let recent = now.saturating_duration_since(*at) <= self.continuation;
            let answers_unnamed = self.entries.iter().any(|e| &e.id == last && !e.address_only);
            if recent && answers_unnamed && available(last) {
                return Address::Npc {
                    id: last.clone(),
                    reason: AddressReason::Continuation,
                };
            }
        }
        // The only NPC that may answer without being named.
        let mut candidates = self.entries.iter().filter(|e| !e.address_only && !muted(&e.id));
        if let (Some(only), None) = (candidates.next(), candidates.next()) {
            return Address::Npc {
                id: only.id.clone(),
                reason: AddressReason::OnlyNpc,
            };
        }
        Address::Nobody(NoTarget::Unaddressed)
    }
}

/// A phonetic key for names: the consonant skeleton with similar sounds
/// merged (c/k/q → k, ph/v/w → f, z → s, x → ks, th → t, sch/sh → s),
/// vowels and `h` dropped after the first letter, repeats collapsed.
pub fn phonetic_key(word: &str) -> String {
    let chars: Vec<char> = word
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphabetic())
        .collect();
    let mut key = String::with_capacity(chars.len());
    let mut last: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let next = chars.get(i + 1).copied();
        let (sounds, width): (&[char], usize) = match (chars[i], next) {
            ('p', Some('h')) => (&['f'], 2),
            ('s', Some('c')) if chars.get(i + 2) == Some(&'h') => (&['s'], 3),
            ('s', Some('h')) => (&['s'], 2),
            ('t', Some('h')) => (&['t'], 2),
            ('c', Some('k')) => (&['k'], 2),
            ('x', _) => (&['k', 's'], 1),
            ('c' | 'q' | 'k', _) => (&['k'], 1),
            ('v' | 'w' | 'f', _) => (&['f'], 1),
            ('z' | 's' | 'ß', _) => (&['s'], 1),
            ('d' | 't', _) => (&['t'], 1),
            ('a' | 'e' | 'i' | 'o' | 'u' | 'y' | 'ä' | 'ö' | 'ü', _) => (&['a'], 1),
            ('h', _) => (&['h'], 1),
            (other, _) => {
                // Any other letter stands for itself.
                if i == 0 || last != Some(other) {
                    key.push(other);
                }
                last = Some(other);
                i += 1;
                continue;
            }
        };
        for &sound in sounds {
            let silent = i > 0 && (sound == 'a' || sound == 'h');
            if !silent && last != Some(sound) {
                key.push(sound);
            }
            if !silent {
                last = Some(sound);
            }
        }
        i += width;
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::{NpcDefinition, VoiceSpec};
    use crate::roster::Npc;

    fn npc(name: &str, address_only: bool) -> Npc {
        Npc {
            id: NpcId::from_name(name),
            definition: NpcDefinition {
                name: name.into(),
                personality: "x".into(),
                voice: VoiceSpec::default(),
                address_only,
                gm_helper: false,
            },
            muted: false,
        }
    }

    fn book(names: &[(&str, bool)]) -> AddressBook {
        let roster = Roster::new(names.iter().map(|(n, a)| npc(n, *a)).collect());
        AddressBook::new(&roster, Duration::from_secs(30))
    }

    fn id(name: &str) -> NpcId {
        NpcId::from_name(name)
    }

    struct Case {
        text: &'static str,
        muted: &'static [&'static str],
        state: (Option<(&'static str, u64)>, Option<&'static str>),
        expect: Result<(&'static str, AddressReason), NoTarget>,
    }

    const fn case(text: &'static str, expect: Result<(&'static str, AddressReason), NoTarget>) -> Case {
        Case {
            text,
            muted: &[],
            state: (None, None),
            expect,
        }
    }

    use AddressReason::*;
    use NoTarget::*;

    #[test]
    fn address_table() {
        let tavern = book(&[
            ("Grimble", false),
            ("Elara Moonwhisper", false),
            ("The Chronicler", true),
            ("Glyphoxa", false),
            ("Bart", false),
        ]);
        let cases = [
            case("Grimble, what's on tap?", Ok(("Grimble", Name))),
            case("what's on tap, grimble?", Ok(("Grimble", Name))),
            case("GRIMBLE!", Ok(("Grimble", Name))),
            case("Hey Grimble's ale is great", Ok(("Grimble", Name))),
            case("Grimbel, another round", Ok(("Grimble", Misheard))),
            case("Grimbol, another round", Ok(("Grimble", Misheard))),
            case("Krimble, you there?", Ok(("Grimble", Misheard))),
            case("Elara, sing us a song", Ok(("Elara Moonwhisper", Name))),
            case("Moonwhisper, sing", Ok(("Elara Moonwhisper", Name))),
            case("Elara Moonwhisper, hello", Ok(("Elara Moonwhisper", Name))),
            case("Ellara, sing", Ok(("Elara Moonwhisper", Misheard))),
            case("Chronicler, how far is Phandalin?", Ok(("The Chronicler", Name))),
            case("the chronicler knows", Ok(("The Chronicler", Name))),
            case("Glyphox or, are you listening?", Ok(("Glyphoxa", Misheard))),
            case("Glyphoxer, hi", Ok(("Glyphoxa", Misheard))),
            case("Bart, play a tune", Ok(("Bart", Name))),
            case("Elara and Grimble, listen", Ok(("Elara Moonwhisper", Name))),
            case("I asked Grimble, Elara", Ok(("Grimble", Name))),
            case("", Err(Empty)),
            case("  ...  ", Err(Empty)),
            case("mhm", Err(Backchannel)),
            case("Yeah, okay.", Err(Backchannel)),
            case("uh-huh", Err(Backchannel)),
            case("Ja genau", Err(Backchannel)),
            case("What do you think about that?", Err(Unaddressed)),
            case("there is a goblin", Err(Unaddressed)),
            case("The innkeeper is there", Err(Unaddressed)),
            case("Bard, play us something", Ok(("Bart", Misheard))),
            Case {
                text: "Grimble, shut up",
                muted: &["Grimble"],
                state: (None, None),
                expect: Err(Muted),
            },
            Case {
                text: "and another thing",
                muted: &[],
                state: (Some(("Grimble", 10)), None),
                expect: Ok(("Grimble", Continuation)),
            },
            Case {
                text: "and another thing",
                muted: &[],
                state: (Some(("Grimble", 31)), None),
                expect: Err(Unaddressed),
            },
            Case {
                text: "and another thing",
                muted: &["Grimble"],
                state: (Some(("Grimble", 5)), None),
                expect: Err(Unaddressed),
            },
            Case {
                text: "how far is it?",
                muted: &[],
                state: (Some(("The Chronicler", 5)), None),
                expect: Err(Unaddressed),
            },
            Case {
                text: "what do you say?",
                muted: &[],
                state: (Some(("Grimble", 5)), Some("Bart")),
                expect: Ok(("Bart", Puppet)),
            },
            Case {
                text: "Elara, what do you say?",
                muted: &[],
                state: (None, Some("Bart")),
                expect: Ok(("Elara Moonwhisper", Name)),
            },
            Case {
                text: "what now?",
                muted: &["Bart"],
                state: (None, Some("Bart")),
                expect: Err(Unaddressed),
            },
            Case {
                text: "anyone?",
                muted: &["Elara Moonwhisper", "Glyphoxa", "Bart"],
                state: (None, None),
                expect: Ok(("Grimble", OnlyNpc)),
            },
            Case {
                text: "anyone?",
                muted: &["Elara Moonwhisper", "Glyphoxa", "Bart", "Grimble"],
                state: (None, None),
                expect: Err(Unaddressed),
            },
        ];
        assert!(cases.len() >= 30);
        let base = Instant::now() + Duration::from_secs(1000);
        for case in cases {
            let muted: Vec<NpcId> = case.muted.iter().map(|n| id(n)).collect();
            let state = AddressState {
                last: case.state.0.map(|(n, ago)| (id(n), base - Duration::from_secs(ago))),
                puppet: case.state.1.map(id),
            };
            let got = tavern.decide(case.text, &|npc| muted.contains(npc), &state, base);
            let want = match case.expect {
                Ok((name, reason)) => Address::Npc { id: id(name), reason },
                Err(why) => Address::Nobody(why),
            };
            assert_eq!(got, want, "for {:?}", case.text);
        }
    }

    #[test]
    fn single_npc_fallback_and_address_only() {
        let solo = book(&[("Grimble", false)]);
        let now = Instant::now();
        assert_eq!(
            solo.decide("a pint please", &|_| false, &AddressState::default(), now),
            Address::Npc {
                id: id("Grimble"),
                reason: OnlyNpc
            }
        );
        let shy = book(&[("The Chronicler", true)]);
        assert_eq!(
            shy.decide("a pint please", &|_| false, &AddressState::default(), now),
            Address::Nobody(Unaddressed)
        );
    }

    #[test]
    fn short_names_need_the_full_name() {
        let b = book(&[("Bo", false), ("Ann Lee", false), ("Grimble", false)]);
        assert_eq!(b.named("hey bo").map(|x| x.0), Some(id("Bo")));
        assert_eq!(b.named("ann lee, come here").map(|x| x.0), Some(id("Ann Lee")));
        assert_eq!(
            b.named("ann, come here"),
            None,
            "a three-letter word alone is not enough"
        );
    }

    #[test]
    fn german_articles_are_skipped() {
        let b = book(&[("Der Alte Zwerg", false)]);
        assert!(b.named("Alte, komm her").is_some());
        assert!(b.named("der Schmied").is_none(), "'der' is not a name word");
    }

    #[test]
    fn phonetic_keys_merge_similar_sounds() {
        assert_eq!(phonetic_key("Grimble"), phonetic_key("grimbel"));
        assert_eq!(phonetic_key("Kathryn"), phonetic_key("Catryn"));
        assert_eq!(phonetic_key("Philip"), phonetic_key("filip"));
        assert_ne!(phonetic_key("Grimble"), phonetic_key("Elara"));
    }

    #[test]
    fn resolve_for_commands() {
        let b = book(&[("Grimble", false), ("Elara", false)]);
        assert_eq!(b.resolve("grimbel"), Some(id("Grimble")));
        assert_eq!(b.resolve("nobody here"), None);
    }
}
