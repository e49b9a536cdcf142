//! The campaign knowledge of a running session, and which parts of it
//! matter for the next reply.

use crate::campaign::{Entity, EntityKind};

/// One known entity with its id (the store's id, or one derived from kind and name).
#[derive(Debug, Clone, PartialEq)]
pub struct KnownEntity {
    /// Stable id, used by updates and removals.
    pub id: String,
    /// The entity.
    pub entity: Entity,
}

/// Everything the session's NPCs may know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Knowledge {
    entries: Vec<KnownEntity>,
}

/// The id used for an entity that has none of its own.
pub fn derived_id(entity: &Entity) -> String {
    format!("{}:{}", entity.kind, entity.name.to_lowercase())
}

fn mentions(haystack_lower: &str, name: &str) -> bool {
    let name = name.to_lowercase();
    if name.is_empty() {
        return false;
    }
    haystack_lower.match_indices(&name).any(|(at, _)| {
        let before = haystack_lower[..at].chars().next_back();
        let after = haystack_lower[at + name.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

impl Knowledge {
    /// Knowledge from campaign entities (ids derived from kind and name).
    pub fn from_entities(entities: &[Entity]) -> Self {
        let mut knowledge = Self::default();
        knowledge.upsert(entities.iter().map(|e| KnownEntity {
            id: derived_id(e),
            entity: e.clone(),
        }));
        knowledge
    }

    /// Adds entities, replacing those with the same id.
    pub fn upsert(&mut self, entities: impl IntoIterator<Item = KnownEntity>) {
        for entry in entities {
            match self.entries.iter_mut().find(|e| e.id == entry.id) {
                Some(existing) => *existing = entry,
                None => self.entries.push(entry),
            }
        }
    }

    /// Removes entities by id; returns how many were removed.
    pub fn remove(&mut self, ids: &[String]) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| !ids.contains(&e.id));
        before - self.entries.len()
    }

    /// Every entity.
    pub fn entries(&self) -> &[KnownEntity] {
        &self.entries
    }

    /// Up to `limit` entities worth telling `npc_name` before replying to
    /// `context` (the utterance and recent transcript): the NPC's own entry
    /// and those mentioned first, then what they are related to, then
    /// places and factions as background.
    pub fn relevant(&self, npc_name: &str, context: &str, limit: usize) -> Vec<&Entity> {
        let context = context.to_lowercase();
        let mut scored: Vec<(u32, usize, &Entity)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(order, entry)| {
                let e = &entry.entity;
                let mut score = 0;
                if e.name.eq_ignore_ascii_case(npc_name) {
                    score += 100;
                }
                if mentions(&context, &e.name) {
                    score += 50;
                }
                if e.relationships
                    .iter()
                    .any(|r| mentions(&context, &r.target) || r.target.eq_ignore_ascii_case(npc_name))
                {
                    score += 20;
                }
                if e.tags.iter().any(|t| mentions(&context, t)) {
                    score += 10;
                }
                if matches!(e.kind, EntityKind::Location | EntityKind::Faction) {
                    score += 2;
                }
                (score, order, e)
            })
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(limit).map(|(_, _, e)| e).collect()
    }

    /// Names to send to speech recognition as keyword hints: NPC names first,
    /// then entity names, at most `limit`.
    pub fn keywords(&self, npc_names: &[&str], limit: usize) -> Vec<String> {
        let mut words: Vec<String> = Vec::new();
        for name in npc_names
            .iter()
            .copied()
            .chain(self.entries.iter().map(|e| e.entity.name.as_str()))
        {
            if !words.iter().any(|w| w.eq_ignore_ascii_case(name)) && !name.trim().is_empty() {
                words.push(name.trim().to_string());
            }
        }
        words.truncate(limit);
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::Campaign;

    #[test]
    fn relevant_prefers_own_and_mentioned_entities() {
        let knowledge = Knowledge::from_entities(&Campaign::example().entities);
        let picked: Vec<&str> = knowledge
            .relevant("Grimble", "What do you know about the Redbrands?", 3)
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(picked[0], "Redbrands");
        assert!(
            picked.contains(&"Tresendar Manor"),
            "related to the Redbrands: {picked:?}"
        );
        assert!(!mentions("the redbrandsmen", "redbrands"), "word boundaries");
    }

    #[test]
    fn upsert_and_remove_by_id() {
        let mut knowledge = Knowledge::from_entities(&Campaign::example().entities);
        let count = knowledge.entries().len();
        let mut ale = knowledge
            .entries()
            .iter()
            .find(|e| e.entity.name == "Dwarven Ale")
            .unwrap()
            .clone();
        ale.entity.description = "Now four copper.".into();
        knowledge.upsert([ale.clone()]);
        assert_eq!(knowledge.entries().len(), count);
        assert!(knowledge
            .entries()
            .iter()
            .any(|e| e.entity.description == "Now four copper."));
        assert_eq!(knowledge.remove(&[ale.id.clone(), "nope".into()]), 1);
        assert_eq!(knowledge.entries().len(), count - 1);
    }

    #[test]
    fn keywords_npcs_first_without_duplicates() {
        let knowledge = Knowledge::from_entities(&Campaign::example().entities);
        let words = knowledge.keywords(&["Grimble", "Elara", "phandalin"], 5);
        assert_eq!(words.len(), 5);
        assert_eq!(&words[..3], ["Grimble", "Elara", "phandalin"]);
        assert!(!words[3..].iter().any(|w| w.eq_ignore_ascii_case("Phandalin")));
    }
}
