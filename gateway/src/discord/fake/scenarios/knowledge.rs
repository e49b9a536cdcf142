//! `/entity add|list|remove|import` and `/campaign info|load|switch`.

use serde_json::{json, Value};

use super::{buttons, counted, modal_inputs, text_of, with_names, Table};
use crate::discord::fake::{InteractionFixture, OptionFixture};
use glyphoxa_pipeline::campaign::EntityKind;

/// Names the knowledge scenarios add; the table's own campaign must not use them.
const ADDED: &[&str] = &[
    "Phandalin",
    "Grimble",
    "Klarg",
    "Yeemik",
    "Old Owl Well",
    "Potion of Healing",
    "Snarl",
    "Never",
    "The Yawning Portal",
    "Lost Mine of Phandelver",
];

/// Fails at once (rather than with a confusing assertion later) if the
/// table's campaign already holds names the scenarios add.
async fn check_table(table: &dyn Table) {
    let names = table.entity_names().await;
    for name in ADDED {
        assert!(
            !names.iter().any(|n| n.eq_ignore_ascii_case(name)),
            "the table's campaign must not contain {name}: {names:?}"
        );
    }
    let campaigns = table.store().campaigns().await.expect("the store answers");
    for campaign in campaigns {
        assert!(
            !ADDED.contains(&campaign.info.name.as_str()),
            "the table must not have a campaign named {}",
            campaign.info.name
        );
    }
}

/// A campaign file: "The Yawning Portal" with Grimble, `extra` villagers and
/// one location (Phandalin).
pub fn campaign_yaml(extra: usize) -> String {
    let mut yaml = String::from(
        "campaign: { name: \"The Yawning Portal\", system: dnd5e }\nnpcs:\n  - { name: Grimble, personality: \"A grumpy dwarven innkeeper.\" }\n",
    );
    for i in 0..extra {
        yaml.push_str(&format!(
            "  - {{ name: \"Villager {i:02}\", personality: \"A villager.\" }}\n"
        ));
    }
    yaml.push_str("entities:\n  - { name: Phandalin, type: location, description: \"A frontier town.\" }\n");
    yaml
}

/// A second campaign file: "Lost Mine of Phandelver" with two locations.
pub fn lost_mine_yaml() -> String {
    "campaign: { name: \"Lost Mine of Phandelver\", system: dnd5e, description: \"Goblins and a lost mine.\" }\n\
     npcs:\n  - { name: Sildar, personality: \"A stern knight.\" }\n\
     entities:\n  - { name: Cragmaw Hideout, type: location, description: \"A goblin cave.\" }\n  \
     - { name: Wave Echo Cave, type: location, description: \"The lost mine.\" }\n"
        .to_string()
}

/// A Foundry VTT actor export.
pub fn foundry_actor(name: &str) -> Value {
    json!({
        "name": name, "type": "npc",
        "system": {"details": {"biography": {"value": "<p>A <em>sneaky</em> goblin.</p>"}}},
        "prototypeToken": {"name": name}, "items": []
    })
}

/// `/entity import` (or `/campaign load`) of a file the fake serves.
fn upload(table: &dyn Table, command: &str, sub: &str, file: &str, bytes: impl Into<Vec<u8>>) -> InteractionFixture {
    table.command(command, Some(sub), vec![OptionFixture::attachment("file", file, bytes)])
}

/// `/entity add` (modal), `/entity list` (all and by type), autocomplete of
/// the name to remove, `/entity remove` with Cancel and Confirm buttons.
pub async fn entity_add_list_and_remove(table: &dyn Table) {
    check_table(table).await;
    let before = table.entity_names().await;

    // /entity add opens the modal with name, type, description and tags.
    let modal = table.first(table.command("entity", Some("add"), vec![])).await;
    assert_eq!(modal["type"], 9, "{modal}");
    assert_eq!(modal["data"]["custom_id"], "entity:add");
    let inputs: Vec<String> = modal_inputs(&modal).into_iter().map(|(id, _)| id).collect();
    for wanted in ["name", "type", "description", "tags"] {
        assert!(inputs.iter().any(|id| id.contains(wanted)), "{wanted} in {inputs:?}");
    }

    // Submitted: stored in the active (or a new default) campaign, answered with name, type and id.
    let added = table.submit(
        "entity:add",
        &[
            ("name", "Phandalin"),
            ("type", "location"),
            ("description", "A frontier town."),
            ("tags", "town, start"),
        ],
    );
    let text = table.text(added, 1).await;
    assert!(
        text.contains("Added the location **Phandalin**") && text.contains("Id: `"),
        "{text}"
    );
    let bad = table.submit("entity:add", &[("name", "Nowhere"), ("type", "planet")]);
    let text = table.text(bad, 1).await;
    assert!(text.contains("not an entity **type**"), "{text}");
    let npc = table.submit(
        "entity:add",
        &[("name", "Grimble"), ("type", "npc"), ("description", "Innkeeper.")],
    );
    table.text(npc, 1).await;
    assert_eq!(
        table.entity_names().await,
        with_names(&before, &["Grimble", "Phandalin"])
    );
    let store = table.store();
    let campaign = store
        .active_campaign()
        .await
        .expect("the store answers")
        .expect("an active campaign");
    let phandalin = store
        .entities(&campaign.id, Some(EntityKind::Location), 10_000)
        .await
        .expect("the store answers")
        .into_iter()
        .find(|e| e.entity.name == "Phandalin")
        .expect("Phandalin stored");
    assert_eq!(phandalin.entity.tags, ["town", "start"]);

    // /entity list, all and by type.
    let text = table.text(table.command("entity", Some("list"), vec![]), 1).await;
    let all = counted(before.len() + 2, "entity", "entities");
    assert!(
        text.contains("Phandalin") && text.contains("Grimble") && text.contains(&all),
        "{all} in {text}"
    );
    let npcs = table.command("entity", Some("list"), vec![OptionFixture::string("type", "npc")]);
    let text = table.text(npcs, 1).await;
    assert!(text.contains("Grimble") && !text.contains("Phandalin"), "{text}");

    // Autocomplete of the name to remove.
    let choices = table
        .first(table.autocomplete("entity", "remove", "name", "phan"))
        .await;
    assert_eq!(
        choices["data"]["choices"],
        json!([{"name": "Phandalin", "value": "Phandalin"}])
    );

    // /entity remove asks with Cancel / Confirm; Cancel keeps it.
    let remove = || {
        table.command(
            "entity",
            Some("remove"),
            vec![OptionFixture::string("name", "phandalin")],
        )
    };
    let sent = table.replies(remove(), 1).await;
    let asked = &sent[0].body;
    assert_eq!(asked["type"], 4);
    assert!(text_of(asked).contains("Remove Phandalin?"), "{asked}");
    let choices = buttons(asked);
    let labels: Vec<&str> = choices.iter().map(|(_, label)| label.as_str()).collect();
    assert_eq!(labels, ["Cancel", "Confirm"]);
    let on = |id: &str| {
        let mut button = table.here(InteractionFixture::button(id));
        if let Some(message) = &sent[0].message_id {
            button = button.on_message(message.clone());
        }
        button
    };
    let cancelled = table.first(on(&choices[0].0)).await;
    assert_eq!(cancelled["type"], 7, "the confirmation is replaced: {cancelled}");
    assert!(text_of(&cancelled).contains("nothing was removed"), "{cancelled}");
    assert_eq!(
        table.entity_names().await,
        with_names(&before, &["Grimble", "Phandalin"])
    );

    // Confirm removes it.
    let sent = table.replies(remove(), 1).await;
    let confirm = buttons(&sent[0].body)
        .into_iter()
        .find(|(_, label)| label == "Confirm")
        .expect("a Confirm button")
        .0;
    let removed = table.first(on(&confirm)).await;
    assert_eq!(removed["type"], 7);
    assert!(
        text_of(&removed).contains("Removed the location **Phandalin**"),
        "{removed}"
    );
    assert_eq!(table.entity_names().await, with_names(&before, &["Grimble"]));
    let text = table.text(table.command("entity", Some("list"), vec![]), 1).await;
    let all = counted(before.len() + 1, "entity", "entities");
    assert!(!text.contains("Phandalin") && text.contains(&all), "{all} in {text}");
    // Pressing Confirm again: said plainly, nothing else removed.
    let again = table.first(on(&confirm)).await;
    assert!(text_of(&again).contains("already gone"), "{again}");
    assert_eq!(table.entity_names().await, with_names(&before, &["Grimble"]));
}

/// `/entity import` of a YAML campaign file and of a Foundry VTT export
/// (served by the fake as attachments), a broken file and a file of another
/// kind.
pub async fn entity_import_yaml_and_foundry(table: &dyn Table) {
    check_table(table).await;
    let before = table.entity_names().await;
    let store = table.store();

    // A campaign file (YAML): its entity, and its NPCs replace the roster.
    let replies = table
        .bodies(upload(table, "entity", "import", "tavern.yaml", campaign_yaml(2)), 2)
        .await;
    assert_eq!(replies[0]["type"], 5, "deferred for the download");
    let text = text_of(&replies[1]);
    assert!(
        text.contains("Imported 1 entity from `tavern.yaml`") && text.contains("1 location"),
        "{text}"
    );
    let campaign = store
        .active_campaign()
        .await
        .expect("the store answers")
        .expect("an active campaign");
    let mut roster: Vec<String> = store
        .npcs(&campaign.id)
        .await
        .expect("the store answers")
        .into_iter()
        .map(|npc| npc.npc.name)
        .collect();
    roster.sort();
    assert_eq!(roster, ["Grimble", "Villager 00", "Villager 01"], "the file's roster");
    assert!(text.contains("The NPC roster now has 3 NPCs"), "{text}");

    // A Foundry VTT export (JSON): actors, items and journal entries.
    let bundle = json!({
        "actors": [foundry_actor("Klarg"), foundry_actor("Yeemik")],
        "items": [{"name": "Potion of Healing", "type": "consumable", "system": {"description": {"value": "Heals."}}}],
        "journal": [{"name": "Old Owl Well", "content": "<p>A ruined tower.</p>"}]
    });
    let text = table
        .text(upload(table, "entity", "import", "foundry.json", bundle.to_string()), 2)
        .await;
    assert!(
        text.contains("Imported 4 entries") && text.contains("2 npc, 1 item, 1 lore"),
        "{text}"
    );
    assert_eq!(
        table.entity_names().await,
        with_names(
            &before,
            &["Klarg", "Old Owl Well", "Phandalin", "Potion of Healing", "Yeemik"]
        )
    );
    let klarg = store
        .entities(&campaign.id, Some(EntityKind::Npc), 10_000)
        .await
        .expect("the store answers")
        .into_iter()
        .find(|e| e.entity.name == "Klarg")
        .expect("Klarg");
    assert_eq!(klarg.entity.description, "A sneaky goblin.");

    // A bad entry stops the import; the reply says how many came before it.
    let list = json!([foundry_actor("Snarl"), {"type": "npc", "system": {}}, foundry_actor("Never")]);
    let text = table
        .text(upload(table, "entity", "import", "broken.json", list.to_string()), 2)
        .await;
    assert!(
        text.contains("Imported 1 entry") && text.contains("bad entry"),
        "{text}"
    );
    let names = table.entity_names().await;
    assert!(names.contains(&"Snarl".to_string()) && !names.contains(&"Never".to_string()));

    // A file of another kind: refused at once, nothing downloaded.
    let refusal = table
        .first(upload(table, "entity", "import", "notes.txt", "hello"))
        .await;
    assert_eq!(refusal["type"], 4);
    assert!(text_of(&refusal).contains("I cannot read `notes.txt`"), "{refusal}");
}

/// `/campaign load` (new and again), `/campaign info`, autocomplete and
/// `/campaign switch`; no switching or loading while a session runs, and a
/// new session uses the active campaign.
pub async fn campaign_info_load_and_switch(table: &dyn Table) {
    check_table(table).await;
    let campaigns_before = table.store().campaigns().await.expect("the store answers").len();
    let text = table.text(table.command("campaign", Some("info"), vec![]), 1).await;
    if campaigns_before == 0 {
        assert!(text.contains("No campaigns yet"), "{text}");
    }

    let load = |name: &str, yaml: String| upload(table, "campaign", "load", name, yaml);
    let text = table.text(load("tavern.yaml", campaign_yaml(1)), 2).await;
    assert!(text.contains("Loaded campaign The Yawning Portal"), "{text}");
    let text = table.text(load("lost-mine.yml", lost_mine_yaml()), 2).await;
    assert!(text.contains("Loaded campaign Lost Mine of Phandelver"), "{text}");
    // Loading a file again updates it.
    let text = table.text(load("lost-mine.yml", lost_mine_yaml()), 2).await;
    assert!(text.contains("Updated campaign Lost Mine of Phandelver"), "{text}");

    let text = table.text(table.command("campaign", Some("info"), vec![]), 1).await;
    assert!(text.contains("▶ Lost Mine of Phandelver (active)"), "{text}");
    assert!(
        text.contains("The Yawning Portal") && text.contains("Entities: 2 (2 location)"),
        "{text}"
    );
    let all = counted(campaigns_before + 2, "campaign", "campaigns");
    assert!(text.contains(&all), "{all} in {text}");

    let choices = table
        .first(table.autocomplete("campaign", "switch", "name", "yawn"))
        .await;
    assert_eq!(choices["data"]["choices"][0]["name"], "The Yawning Portal", "{choices}");

    let switch = |name: &str| table.command("campaign", Some("switch"), vec![OptionFixture::string("name", name)]);
    let text = table.text(switch("the yawning portal"), 1).await;
    assert!(text.contains("Switched to campaign **The Yawning Portal**"), "{text}");
    let active = table
        .store()
        .active_campaign()
        .await
        .expect("the store answers")
        .expect("active");
    assert_eq!(active.info.name, "The Yawning Portal");
    let text = table.text(switch("Atlantis"), 1).await;
    assert!(text.contains("no campaign named \"Atlantis\""), "{text}");

    // New sessions use the active campaign; no switching or loading while one runs.
    let text = table.text(table.command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("The Yawning Portal"), "{text}");
    let text = table.text(switch("Lost Mine of Phandelver"), 1).await;
    assert!(text.contains("A session is running"), "{text}");
    let text = table.text(load("tavern.yaml", campaign_yaml(1)), 1).await;
    assert!(text.contains("A session is running"), "{text}");
    table.text(table.command("session", Some("stop"), vec![]), 2).await;
    let text = table.text(switch("Lost Mine of Phandelver"), 1).await;
    assert!(
        text.contains("Switched to campaign **Lost Mine of Phandelver**"),
        "{text}"
    );
}
