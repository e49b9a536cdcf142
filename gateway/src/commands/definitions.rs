//! The command set registered in every guild of a bot (SPEC §2), as
//! Discord's application-command JSON for a bulk overwrite (idempotent
//! re-registration).

use serde_json::{json, Value};

/// Discord's option type numbers.
mod kind {
    pub const SUB_COMMAND: u8 = 1;
    pub const STRING: u8 = 3;
    pub const ATTACHMENT: u8 = 11;
}

/// Entity types offered by `/entity list`.
pub const ENTITY_TYPES: [&str; 6] = ["npc", "location", "item", "faction", "quest", "lore"];

fn sub(name: &str, description: &str, options: Vec<Value>) -> Value {
    json!({"type": kind::SUB_COMMAND, "name": name, "description": description, "options": options})
}

fn text(name: &str, description: &str, required: bool, autocomplete: bool) -> Value {
    json!({"type": kind::STRING, "name": name, "description": description, "required": required,
           "autocomplete": autocomplete})
}

fn file(name: &str, description: &str) -> Value {
    json!({"type": kind::ATTACHMENT, "name": name, "description": description, "required": true})
}

fn npc_name() -> Value {
    text("name", "The NPC's name", true, true)
}

/// Every command with its subcommands and options.
pub fn command_set() -> Vec<Value> {
    let session_id = || {
        text(
            "session_id",
            "A session id (default: the current or latest one)",
            false,
            true,
        )
    };
    let entity_types: Vec<Value> = ENTITY_TYPES.iter().map(|t| json!({"name": t, "value": t})).collect();
    vec![
        json!({"name": "session", "description": "Run a voice session with your NPCs", "type": 1, "options": [
            sub("start", "Start a session in your voice channel", vec![]),
            sub("stop", "Stop the session", vec![]),
            sub("recap", "Show a recap of a session", vec![session_id()]),
            sub("voice-recap", "Narrate the previous session's recap in voice", vec![session_id()]),
        ]}),
        json!({"name": "npc", "description": "Control the session's NPCs", "type": 1, "options": [
            sub("list", "List the NPCs and whether they are muted", vec![]),
            sub("mute", "Mute an NPC", vec![npc_name()]),
            sub("unmute", "Unmute an NPC", vec![npc_name()]),
            sub("speak", "Make an NPC say exactly this", vec![
                npc_name(),
                text("text", "What the NPC says", true, false),
            ]),
            sub("muteall", "Mute every NPC", vec![]),
            sub("unmuteall", "Unmute every NPC", vec![]),
        ]}),
        json!({"name": "entity", "description": "Campaign knowledge: people, places, things", "type": 1, "options": [
            sub("add", "Add an entity", vec![]),
            sub("list", "List entities", vec![json!({
                "type": kind::STRING, "name": "type", "description": "Only this type", "required": false,
                "choices": entity_types,
            })]),
            sub("remove", "Remove an entity", vec![text("name", "The entity's name", true, true)]),
            sub("import", "Import a campaign YAML or a Foundry VTT JSON export", vec![file("file", "The file (≤ 10 MB)")]),
        ]}),
        json!({"name": "campaign", "description": "Your campaigns", "type": 1, "options": [
            sub("info", "Show your campaigns", vec![]),
            sub("load", "Load a campaign file and make it active", vec![file("file", "The campaign YAML")]),
            sub("switch", "Make another campaign active", vec![text("name", "The campaign's name", true, true)]),
        ]}),
        json!({"name": "feedback", "description": "Rate the last session", "type": 1}),
    ]
}

/// Every routing key (`command subcommand`, or `command`) of the set.
pub fn command_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for command in command_set() {
        let name = command["name"].as_str().unwrap_or_default().to_string();
        let subs: Vec<String> = command["options"]
            .as_array()
            .map(|options| {
                options
                    .iter()
                    .filter(|o| o["type"] == kind::SUB_COMMAND)
                    .filter_map(|o| o["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if subs.is_empty() {
            keys.push(name);
        } else {
            keys.extend(subs.into_iter().map(|sub| format!("{name} {sub}")));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_follows_discords_rules() {
        let set = command_set();
        assert_eq!(set.len(), 5);
        for command in &set {
            let name = command["name"].as_str().unwrap();
            assert!(name.len() <= 32 && name.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
            assert!(command["description"].as_str().unwrap().chars().count() <= 100);
            for option in command["options"].as_array().into_iter().flatten() {
                assert!(
                    option["description"].as_str().unwrap().chars().count() <= 100,
                    "{option}"
                );
                assert!(option["options"].as_array().map_or(0, Vec::len) <= 25);
            }
        }
        assert_eq!(command_keys().len(), 18);
        assert!(command_keys().contains(&"session voice-recap".to_string()));
        assert!(command_keys().contains(&"feedback".to_string()));
    }
}
