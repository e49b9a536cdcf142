//! The NPCs of a session: who they are and whether they are muted.

use std::fmt;

use crate::campaign::NpcDefinition;

/// Identifies an NPC within a session (stable across the session; the
/// gateway's stored id, or one derived from the name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NpcId(pub String);

impl NpcId {
    /// An id derived from an NPC's name: lower case, words joined by `-`.
    pub fn from_name(name: &str) -> Self {
        let slug: Vec<String> = name
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        NpcId(slug.join("-"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NpcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One NPC of the session.
#[derive(Debug, Clone, PartialEq)]
pub struct Npc {
    /// Its id.
    pub id: NpcId,
    /// Name, persona and voice.
    pub definition: NpcDefinition,
    /// Muted NPCs never answer and their speech is cut.
    pub muted: bool,
}

/// The session's NPCs in campaign order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Roster {
    npcs: Vec<Npc>,
}

impl Roster {
    /// A roster of unmuted NPCs with ids derived from their names.
    pub fn from_definitions(definitions: &[NpcDefinition]) -> Self {
        Self {
            npcs: definitions
                .iter()
                .map(|definition| Npc {
                    id: NpcId::from_name(&definition.name),
                    definition: definition.clone(),
                    muted: false,
                })
                .collect(),
        }
    }

    /// A roster of NPCs with given ids.
    pub fn new(npcs: Vec<Npc>) -> Self {
        Self { npcs }
    }

    /// All NPCs.
    pub fn npcs(&self) -> &[Npc] {
        &self.npcs
    }

    /// The NPC with this id.
    pub fn get(&self, id: &NpcId) -> Option<&Npc> {
        self.npcs.iter().find(|npc| &npc.id == id)
    }

    /// The NPC with this name (case-insensitive, surrounding space ignored).
    pub fn by_name(&self, name: &str) -> Option<&Npc> {
        let name = name.trim();
        self.npcs
            .iter()
            .find(|npc| npc.definition.name.eq_ignore_ascii_case(name))
    }

    /// Sets the mute state of one NPC; returns whether it changed, `None` if unknown.
    pub fn set_muted(&mut self, id: &NpcId, muted: bool) -> Option<bool> {
        let npc = self.npcs.iter_mut().find(|npc| &npc.id == id)?;
        let changed = npc.muted != muted;
        npc.muted = muted;
        Some(changed)
    }

    /// Sets the mute state of every NPC; returns how many changed.
    pub fn set_all_muted(&mut self, muted: bool) -> usize {
        let mut changed = 0;
        for npc in &mut self.npcs {
            if npc.muted != muted {
                npc.muted = muted;
                changed += 1;
            }
        }
        changed
    }

    /// Names of every NPC, in order.
    pub fn names(&self) -> Vec<&str> {
        self.npcs.iter().map(|npc| npc.definition.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::Campaign;

    #[test]
    fn ids_from_names() {
        assert_eq!(NpcId::from_name("Sildar Hallwinter").as_str(), "sildar-hallwinter");
        assert_eq!(NpcId::from_name("  Grimble ").as_str(), "grimble");
    }

    #[test]
    fn mute_counts_changes() {
        let mut roster = Roster::from_definitions(&Campaign::example().npcs);
        let grimble = roster.by_name("GRIMBLE").unwrap().id.clone();
        assert_eq!(roster.set_muted(&grimble, true), Some(true));
        assert_eq!(roster.set_muted(&grimble, true), Some(false));
        assert_eq!(roster.set_muted(&NpcId("nobody".into()), true), None);
        assert_eq!(roster.set_all_muted(true), roster.npcs().len() - 1);
        assert_eq!(roster.set_all_muted(false), roster.npcs().len());
    }
}
