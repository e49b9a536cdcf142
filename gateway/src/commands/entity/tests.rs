//! Handler tests of `/entity` over the command bench (SQLite, fake worker).

use std::collections::BTreeMap;

use glyphoxa_proto::ApiError;
use serde_json::json;

use super::*;
use crate::commands::interaction::OptionValue;
use crate::commands::reply::InitialResponse;
use crate::commands::responder::Sent;
use crate::commands::testing::*;
use crate::ids::TenantId;
use crate::store::{LicenseTier, NewTenant};

/// The `/entity add` modal submitted by the DM with these fields.
fn submit(name: &str, kind: &str, description: &str, tags: &str) -> Interaction {
    let fields = BTreeMap::from([
        ("name".to_string(), name.to_string()),
        ("type".to_string(), kind.to_string()),
        ("description".to_string(), description.to_string()),
        ("tags".to_string(), tags.to_string()),
    ]);
    Interaction::modal_submit(ENTITY_ADD_MODAL, fields, dm()).in_guild(id(GUILD), id(TEXT_CHANNEL))
}

/// `/entity import` of `bytes` served as `filename`.
fn import_of(bench: &Bench, filename: &str, bytes: &[u8]) -> Interaction {
    let file = bench.files.serve(filename, bytes);
    command("entity", Some("import")).with_option("file", OptionValue::Attachment(file))
}

/// `/entity remove name`.
fn remove_named(name: &str) -> Interaction {
    command("entity", Some("remove")).with_option("name", OptionValue::String(name.into()))
}

/// The DM pressing the button `custom_id`.
fn button(custom_id: &str) -> Interaction {
    Interaction::component(custom_id, dm()).in_guild(id(GUILD), id(TEXT_CHANNEL))
}

/// Autocomplete of `/entity remove name` with `partial` typed.
fn autocomplete(partial: &str) -> Interaction {
    Interaction::autocomplete("entity", Some("remove"), "name", partial, dm()).in_guild(id(GUILD), id(TEXT_CHANNEL))
}

/// The text of a single immediate (not deferred) message.
fn immediate(sent: &[Sent]) -> String {
    match sent {
        [Sent::Initial(InitialResponse::Message(_))] => sent[0].text(),
        other => panic!("expected one immediate message, got {other:?}"),
    }
}

/// The text of a deferred answer (defer, then the edit and any follow-ups).
fn deferred(sent: &[Sent]) -> String {
    assert_eq!(
        sent.first(),
        Some(&Sent::Initial(InitialResponse::Defer { ephemeral: true })),
        "{sent:?}"
    );
    assert!(matches!(sent.get(1), Some(Sent::EditOriginal(_))), "{sent:?}");
    sent[1..].iter().map(Sent::text).collect::<Vec<_>>().join("\n")
}

/// The autocomplete choices sent.
fn choices(sent: &[Sent]) -> Vec<Choice> {
    match sent {
        [Sent::Initial(InitialResponse::Choices(choices))] => choices.clone(),
        other => panic!("expected choices, got {other:?}"),
    }
}

/// Every entity of the active campaign.
async fn active_entities(bench: &Bench) -> Vec<StoredEntity> {
    let store = bench.ctx.store();
    let campaign = store.active_campaign().await.unwrap().expect("an active campaign");
    store.entities(&campaign.id, None, 1000).await.unwrap()
}

/// Adds an entity through the modal, asserting success.
async fn add_entity(bench: &Bench, name: &str, kind: &str) {
    let text = bench.text(submit(name, kind, "", "")).await;
    assert!(text.contains("Added"), "{text}");
}

/// How many UpdateKnowledge calls the fake worker got.
fn knowledge_updates(bench: &Bench) -> usize {
    bench
        .worker
        .calls()
        .iter()
        .filter(|call| call.starts_with("UpdateKnowledge("))
        .count()
}

// ---- add ----

#[tokio::test]
async fn add_opens_the_modal_with_the_four_inputs() {
    let bench = Bench::new().await;
    let sent = bench.run(command("entity", Some("add"))).await;
    let [Sent::Initial(InitialResponse::Modal(modal))] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(modal.custom_id, ENTITY_ADD_MODAL);
    let ids: Vec<&str> = modal.inputs.iter().map(|i| i.custom_id.as_str()).collect();
    for wanted in ["name", "type", "description", "tags"] {
        assert!(ids.iter().any(|id| id.contains(wanted)), "{wanted} in {ids:?}");
    }
    let by_id = |wanted: &str| modal.inputs.iter().find(|i| i.custom_id.contains(wanted)).unwrap();
    assert_eq!((by_id("name").max_length, by_id("name").required), (100, true));
    assert!(by_id("type").required);
    assert!(by_id("description").paragraph && by_id("description").max_length == 2000);
    assert_eq!(by_id("tags").max_length, 200);
}

#[tokio::test]
async fn a_submitted_entity_is_stored_in_the_default_campaign_and_reported() {
    let bench = Bench::new().await;
    let sent = bench
        .run(submit(
            " Phandalin ",
            "Location",
            "A frontier town.",
            "town, , Sword Coast, town",
        ))
        .await;
    let text = immediate(&sent);
    let stored = active_entities(&bench).await;
    assert_eq!(stored.len(), 1);
    let entity = &stored[0];
    assert_eq!(entity.entity.name, "Phandalin");
    assert_eq!(entity.entity.kind, EntityKind::Location);
    assert_eq!(entity.entity.tags, ["town", "Sword Coast"]);
    assert!(text.contains("**Phandalin**") && text.contains("location"), "{text}");
    assert!(text.contains(&entity.id) && text.contains("Default campaign"), "{text}");
    let campaign = bench.ctx.store().active_campaign().await.unwrap().unwrap();
    assert_eq!(campaign.id, CampaignId::default_campaign());
}

#[tokio::test]
async fn every_bad_field_is_refused_at_once_naming_it() {
    let bench = Bench::new().await;
    let cases = [
        (submit("", "npc", "", ""), "**name**"),
        (submit(&"n".repeat(101), "npc", "", ""), "101 characters"),
        (submit("Smaug", "", "", ""), "**type**"),
        (
            submit("Smaug", "dragon", "", ""),
            "npc, location, item, faction, quest, lore",
        ),
        (submit("Smaug", "npc", &"d".repeat(2001), ""), "**description** is 2001"),
        (submit("Smaug", "npc", "", &"t,".repeat(101)), "**tags** are 202"),
    ];
    for (interaction, wanted) in cases {
        let text = immediate(&bench.run(interaction).await);
        assert!(text.contains(wanted), "{wanted:?} in {text}");
    }
    assert!(
        bench.ctx.store().active_campaign().await.unwrap().is_none(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn a_duplicate_name_is_refused_with_the_existing_entity() {
    let bench = Bench::new().await;
    add_entity(&bench, "Grimble", "npc").await;
    let existing = active_entities(&bench).await.remove(0);
    for kind in ["npc", "location"] {
        let text = immediate(&bench.run(submit("GRIMBLE", kind, "Again", "")).await);
        assert!(text.contains("already has an entity named **Grimble**"), "{text}");
        assert!(text.contains(&existing.id) && text.contains("/entity remove"), "{text}");
    }
    assert_eq!(active_entities(&bench).await.len(), 1);
}

// ---- list ----

#[tokio::test]
async fn list_shows_entities_with_the_total_and_filters_by_type() {
    let bench = Bench::new().await;
    let text = immediate(&bench.run(command("entity", Some("list"))).await);
    assert!(
        text.contains("No entities yet") && text.contains("/entity add"),
        "{text}"
    );

    bench
        .text(submit(
            "Phandalin",
            "location",
            &format!("A town. {}", "Very old. ".repeat(30)),
            "",
        ))
        .await;
    add_entity(&bench, "Grimble", "npc").await;
    let sent = bench.run(command("entity", Some("list"))).await;
    let [Sent::Initial(InitialResponse::Message(message))] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    let embed = &message.embeds[0];
    assert_eq!(embed.fields.len(), 2);
    assert_eq!(embed.fields[0].name, "Grimble");
    assert!(embed.fields[0].value.contains("npc") && embed.fields[0].value.contains("no description"));
    assert!(embed.fields[1].value.starts_with("*location* · A town.") && embed.fields[1].value.ends_with('…'));
    assert_eq!(embed.footer.as_deref(), Some("2 entities"));

    let filtered = command("entity", Some("list")).with_option("type", OptionValue::String("NPC".into()));
    let text = immediate(&bench.run(filtered).await);
    assert!(
        text.contains("Grimble") && !text.contains("Phandalin") && text.contains("1 entity"),
        "{text}"
    );
    let none = command("entity", Some("list")).with_option("type", OptionValue::String("quest".into()));
    assert!(immediate(&bench.run(none).await).contains("no quest entities"));
    let bad = command("entity", Some("list")).with_option("type", OptionValue::String("dragon".into()));
    assert!(immediate(&bench.run(bad).await).contains("not an entity type"));
}

#[tokio::test]
async fn list_shows_at_most_25_and_counts_the_rest() {
    let bench = Bench::new().await;
    let store = bench.ctx.store();
    let campaign = store.ensure_active_campaign().await.unwrap();
    for i in 0..30 {
        let entity = Entity {
            name: format!("Place {i:02}"),
            kind: EntityKind::Location,
            description: String::new(),
            tags: vec![],
            properties: BTreeMap::new(),
            relationships: vec![],
        };
        store.add_entity(&campaign.id, &entity).await.unwrap();
    }
    let sent = bench.run(command("entity", Some("list"))).await;
    let [Sent::Initial(InitialResponse::Message(message))] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(message.embeds[0].fields.len(), 25);
    assert!(message.embeds[0]
        .footer
        .as_deref()
        .unwrap()
        .starts_with("25 of 30 entities"));
}

// ---- remove ----

#[tokio::test]
async fn remove_asks_then_confirm_removes_and_a_second_confirm_says_it_is_gone() {
    let bench = Bench::new().await;
    add_entity(&bench, "Phandalin", "location").await;
    let entity = active_entities(&bench).await.remove(0);

    let sent = bench.run(remove_named("phandalin")).await;
    let [Sent::Initial(InitialResponse::Message(message))] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    let ids: Vec<&str> = message.buttons.iter().map(|b| b.custom_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            ENTITY_REMOVE_CANCEL.to_string(),
            format!("{ENTITY_REMOVE_CONFIRM}{}", entity.id)
        ]
    );
    assert_eq!(message.buttons[1].label, "Confirm");
    assert_eq!(active_entities(&bench).await.len(), 1, "asking removes nothing");

    let sent = bench.run(button(ids[1])).await;
    let [Sent::Initial(InitialResponse::UpdateMessage(update))] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(update.content.contains("Removed the location **Phandalin**") && update.buttons.is_empty());
    assert!(active_entities(&bench).await.is_empty());

    let sent = bench.run(button(ids[1])).await;
    let [Sent::Initial(InitialResponse::UpdateMessage(update))] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(update.content.contains("already gone"), "{}", update.content);
}

#[tokio::test]
async fn cancel_removes_nothing_and_unknown_names_are_refused() {
    let bench = Bench::new().await;
    let text = immediate(&bench.run(remove_named("Nowhere")).await);
    assert!(text.contains("no entity named \"Nowhere\""), "{text}");
    add_entity(&bench, "Phandalin", "location").await;
    let text = immediate(&bench.run(remove_named("Nowhere")).await);
    assert!(
        text.contains("has no entity named \"Nowhere\"") && text.contains("/entity list"),
        "{text}"
    );

    let sent = bench.run(button(ENTITY_REMOVE_CANCEL)).await;
    let [Sent::Initial(InitialResponse::UpdateMessage(update))] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(update.content.contains("nothing was removed"));
    assert_eq!(active_entities(&bench).await.len(), 1);
}

#[tokio::test]
async fn a_shared_name_is_told_apart_by_type_and_id() {
    let bench = Bench::new().await;
    let yaml =
        "campaign: { name: X }\nentities:\n  - { name: Grimble, type: npc }\n  - { name: Grimble, type: location }\n";
    bench.text(import_of(&bench, "x.yaml", yaml.as_bytes())).await;
    let text = immediate(&bench.run(remove_named("grimble")).await);
    assert!(
        text.contains("Several entities") && text.contains("npc") && text.contains("location"),
        "{text}"
    );

    let offered = choices(&bench.run(autocomplete("grim")).await);
    assert_eq!(offered.len(), 2);
    assert!(offered.iter().any(|c| c.name == "Grimble (location)"), "{offered:?}");
    let npc = active_entities(&bench)
        .await
        .into_iter()
        .find(|e| e.entity.kind == EntityKind::Npc)
        .unwrap();
    let pick = offered.iter().find(|c| c.name == "Grimble (npc)").unwrap();
    assert_eq!(pick.value, npc.id);
    let sent = bench.run(remove_named(&pick.value)).await;
    assert!(immediate(&sent).contains("removes the npc **Grimble**"));
}

#[tokio::test]
async fn autocomplete_offers_at_most_25_names_containing_the_text() {
    let bench = Bench::new().await;
    assert!(choices(&bench.run(autocomplete("")).await).is_empty());
    let store = bench.ctx.store();
    let campaign = store.ensure_active_campaign().await.unwrap();
    for name in (0..30)
        .map(|i| format!("Cave {i:02}"))
        .chain(["Old Cavern".into(), "Town".into()])
    {
        let entity = Entity {
            name,
            kind: EntityKind::Location,
            description: String::new(),
            tags: vec![],
            properties: BTreeMap::new(),
            relationships: vec![],
        };
        store.add_entity(&campaign.id, &entity).await.unwrap();
    }
    assert_eq!(choices(&bench.run(autocomplete("")).await).len(), 25);
    assert_eq!(choices(&bench.run(autocomplete("cav")).await).len(), 25);
    let found = choices(&bench.run(autocomplete("VERN")).await);
    assert_eq!(found, vec![Choice::same("Old Cavern")]);
    let found = choices(&bench.run(autocomplete("ave 0")).await);
    assert_eq!(found.len(), 10);
    assert!(choices(&bench.run(autocomplete("zzz")).await).is_empty());
}

// ---- import: campaign files ----

/// A campaign file with one NPC and three entities.
const CAMPAIGN: &str = "campaign: { name: Lost Mine, system: dnd5e }
npcs:
  - name: Sildar
    personality: A loyal knight.
entities:
  - { name: Phandalin, type: location, description: A frontier town, tags: [town] }
  - { name: Cragmaw, type: faction }
  - { name: Glasstaff, type: npc }
";

#[tokio::test]
async fn a_campaign_file_imports_into_the_active_campaign() {
    let bench = Bench::new().await;
    add_entity(&bench, "Phandalin", "location").await;
    let text = deferred(
        &bench
            .run(import_of(&bench, "lost-mine.yaml", CAMPAIGN.as_bytes()))
            .await,
    );
    assert!(
        text.contains("Imported 3 entities") && text.contains("2 new, 1 updated"),
        "{text}"
    );
    assert!(text.contains("1 npc, 1 location, 1 faction"), "{text}");
    assert!(
        text.contains("roster now has 1 NPC") && text.contains("/campaign load"),
        "{text}"
    );
    let store = bench.ctx.store();
    let campaign = store.active_campaign().await.unwrap().unwrap();
    assert_eq!(
        campaign.info.name, "Default campaign",
        "the active campaign keeps its name"
    );
    assert_eq!(store.npcs(&campaign.id).await.unwrap().len(), 1);
    let phandalin = active_entities(&bench)
        .await
        .into_iter()
        .find(|e| e.entity.name == "Phandalin")
        .unwrap();
    assert_eq!(phandalin.entity.description, "A frontier town");

    // A file without NPCs keeps the roster.
    let more = "campaign: { name: Default campaign }\nentities:\n  - { name: Tresendar Manor, type: location }\n";
    let text = bench.text(import_of(&bench, "more.yml", more.as_bytes())).await;
    assert!(
        text.contains("Imported 1 entity") && !text.contains("/campaign load"),
        "{text}"
    );
    assert_eq!(store.npcs(&campaign.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_campaign_file_imports_nothing_and_names_the_line() {
    let bench = Bench::new().await;
    let bad = "campaign: { name: X }\nentities:\n  - name: Smaug\n    type: dragon\n";
    let text = deferred(&bench.run(import_of(&bench, "bad.yaml", bad.as_bytes())).await);
    assert!(
        text.contains("Nothing was imported") && text.contains("line 4"),
        "{text}"
    );
    let long = format!(
        "campaign: {{ name: X }}\nentities:\n  - {{ name: Ok, type: lore }}\n  - {{ name: Big, type: lore, description: {} }}\n",
        "d".repeat(2100)
    );
    let text = bench.text(import_of(&bench, "long.yaml", long.as_bytes())).await;
    assert!(
        text.contains("entities[1] (\"Big\")") && text.contains("2100"),
        "{text}"
    );
    let invalid_utf8 = bench.text(import_of(&bench, "bin.yaml", &[0x63, 0xff, 0xfe])).await;
    assert!(invalid_utf8.contains("not UTF-8"), "{invalid_utf8}");
    assert!(bench.ctx.store().active_campaign().await.unwrap().is_none());
}

#[tokio::test]
async fn wrong_or_oversized_files_are_refused_without_downloading() {
    let bench = Bench::new().await;
    let text = immediate(&bench.run(import_of(&bench, "notes.txt", b"hello")).await);
    assert!(text.contains("`.yaml` or `.yml`") && text.contains("`.json`"), "{text}");
    let text = immediate(&bench.run(command("entity", Some("import"))).await);
    assert!(text.contains("Attach"), "{text}");
    // Not served at all: a download would fail with "not found".
    let huge = Attachment {
        id: "1".into(),
        filename: "world.json".into(),
        size: 10 * 1024 * 1024 + 1,
        url: "memory://nowhere".into(),
    };
    let sent = bench
        .run(command("entity", Some("import")).with_option("file", OptionValue::Attachment(huge)))
        .await;
    let text = immediate(&sent);
    assert!(
        text.contains("is 10.1 MB; files up to 10 MB") && !text.contains("not found"),
        "{text}"
    );
}

// ---- import: Foundry VTT ----

/// A Foundry actor export named `name`.
fn actor(name: &str) -> serde_json::Value {
    json!({
        "name": name, "type": "npc", "img": "goblin.webp",
        "system": {"details": {"biography": {"value": "<p>A <em>sneaky</em> goblin &amp; thief.</p>"}}},
        "prototypeToken": {"name": name}, "items": []
    })
}

#[tokio::test]
async fn foundry_actor_item_and_journal_documents_import() {
    let bench = Bench::new().await;
    let text = deferred(
        &bench
            .run(import_of(&bench, "goblin.json", actor("Klarg").to_string().as_bytes()))
            .await,
    );
    assert!(text.contains("Imported 1 entry") && text.contains("1 npc"), "{text}");

    let item = json!({"name": "Glasstaff's Staff", "type": "weapon",
        "system": {"description": {"value": "<p>A glass staff.</p><p>Casts <b>suggestion</b>.</p>"}}});
    bench
        .text(import_of(&bench, "staff.json", item.to_string().as_bytes()))
        .await;
    let journal = json!({"name": "Rumours", "pages": [{"name": "Rumours", "type": "text",
        "text": {"content": "<ul><li>Orcs near Wyvern Tor</li><li>Redbrands</li></ul>", "format": 1}}]});
    bench
        .text(import_of(&bench, "rumours.json", journal.to_string().as_bytes()))
        .await;

    let stored = active_entities(&bench).await;
    let get = |name: &str| stored.iter().find(|e| e.entity.name == name).unwrap().entity.clone();
    assert_eq!(get("Klarg").kind, EntityKind::Npc);
    assert_eq!(get("Klarg").description, "A sneaky goblin & thief.");
    assert_eq!(get("Glasstaff's Staff").kind, EntityKind::Item);
    assert_eq!(
        get("Glasstaff's Staff").description,
        "A glass staff.\nCasts suggestion."
    );
    assert_eq!(get("Glasstaff's Staff").tags, ["weapon"]);
    assert_eq!(get("Rumours").kind, EntityKind::Lore);
    assert_eq!(get("Rumours").description, "- Orcs near Wyvern Tor\n- Redbrands");

    // Importing again updates rather than duplicates.
    let text = bench
        .text(import_of(&bench, "goblin.json", actor("Klarg").to_string().as_bytes()))
        .await;
    assert!(text.contains("0 new, 1 updated"), "{text}");
    assert_eq!(active_entities(&bench).await.len(), 3);
}

#[tokio::test]
async fn a_foundry_bundle_imports_everything_and_names_skipped_keys() {
    let bench = Bench::new().await;
    let bundle = json!({
        "actors": [actor("Klarg"), actor("Yeemik")],
        "items": [{"name": "Potion of Healing", "type": "consumable", "system": {"description": {"value": "Heals."}}}],
        "journal": [{"name": "Old Owl Well", "content": "<p>A ruined tower.</p>"}],
        "scenes": [{"name": "Cave"}]
    });
    let text = bench
        .text(import_of(&bench, "bundle.JSON", bundle.to_string().as_bytes()))
        .await;
    assert!(
        text.contains("Imported 4 entries") && text.contains("2 npc, 1 item, 1 lore"),
        "{text}"
    );
    assert!(text.contains("Skipped") && text.contains("scenes"), "{text}");
    assert_eq!(active_entities(&bench).await.len(), 4);
}

#[tokio::test]
async fn a_bad_foundry_entry_stops_the_import_and_reports_the_count_before_it() {
    let bench = Bench::new().await;
    let list = json!([actor("Klarg"), actor("Yeemik"), {"type": "npc", "system": {}}, actor("Never")]);
    let text = deferred(
        &bench
            .run(import_of(&bench, "list.json", list.to_string().as_bytes()))
            .await,
    );
    assert!(
        text.contains("Imported 2 entries") && text.contains("before a bad entry"),
        "{text}"
    );
    assert!(text.contains("entry 3 has no `name`"), "{text}");
    let names: Vec<String> = active_entities(&bench)
        .await
        .into_iter()
        .map(|e| e.entity.name)
        .collect();
    assert_eq!(names, ["Klarg", "Yeemik"]);

    let text = bench
        .text(import_of(&bench, "broken.json", b"[\n  {\"name\": \"A\",\n  oops\n]"))
        .await;
    assert!(
        text.contains("Nothing was imported") && text.contains("not valid JSON") && text.contains("line 3"),
        "{text}"
    );
    let text = bench.text(import_of(&bench, "empty.json", b"[]")).await;
    assert!(text.contains("holds no actors, items or journal entries"), "{text}");
}

#[tokio::test]
async fn long_foundry_descriptions_are_cut_and_said_so() {
    let bench = Bench::new().await;
    let mut long = actor("Chatterbox");
    long["system"]["details"]["biography"]["value"] = json!(format!("<p>{}</p>", "blah ".repeat(800)));
    let text = bench
        .text(import_of(&bench, "long.json", long.to_string().as_bytes()))
        .await;
    assert!(text.contains("1 description was cut to 2000 characters"), "{text}");
    let stored = active_entities(&bench).await.remove(0);
    assert!(stored.entity.description.chars().count() <= 2000);
}

// ---- running sessions ----

#[tokio::test]
async fn changes_reach_the_running_session() {
    let bench = Bench::new().await;
    bench.start_session().await;
    let session = bench.ctx.store().live_sessions().await.unwrap().remove(0);
    let call = format!("UpdateKnowledge({})", session.id);

    let text = deferred(&bench.run(submit("Phandalin", "location", "", "")).await);
    assert!(
        text.contains("Added") && text.contains("running session knows it now"),
        "{text}"
    );
    assert_eq!(bench.worker.calls().iter().filter(|c| **c == call).count(), 1);

    bench
        .text(import_of(&bench, "x.json", actor("Klarg").to_string().as_bytes()))
        .await;
    bench.text(import_of(&bench, "x.yaml", CAMPAIGN.as_bytes())).await;
    assert_eq!(knowledge_updates(&bench), 3);

    let entity = active_entities(&bench).await.remove(0);
    let sent = bench
        .run(button(&format!("{ENTITY_REMOVE_CONFIRM}{}", entity.id)))
        .await;
    assert_eq!(sent.len(), 1, "no follow-up when the session was updated: {sent:?}");
    assert_eq!(knowledge_updates(&bench), 4);
}

#[tokio::test]
async fn a_worker_failure_keeps_the_change_and_says_the_session_missed_it() {
    let bench = Bench::new().await;
    bench.start_session().await;
    bench.worker.fail_all(Some(ApiError::Unavailable("worker down".into())));
    let text = deferred(&bench.run(submit("Phandalin", "location", "", "")).await);
    assert!(text.contains("Added the location **Phandalin**"), "{text}");
    assert!(
        text.contains("**Phandalin** is saved, but the running session could not be updated"),
        "{text}"
    );
    assert!(
        text.contains("unavailable") && text.contains("/session start"),
        "{text}"
    );
    let entity = active_entities(&bench).await.remove(0);

    let sent = bench
        .run(button(&format!("{ENTITY_REMOVE_CONFIRM}{}", entity.id)))
        .await;
    assert!(matches!(&sent[0], Sent::Initial(InitialResponse::UpdateMessage(m)) if m.content.contains("Removed")));
    let follow_up = sent[1].text();
    assert!(
        follow_up.contains("The removal is saved, but the running session could not be updated"),
        "{follow_up}"
    );
    assert!(active_entities(&bench).await.is_empty());
}

// ---- tenants ----

#[tokio::test]
async fn another_tenants_entities_are_out_of_reach() {
    let bench = Bench::new().await;
    let other = TenantId::parse("globex").unwrap();
    bench
        .store
        .create_tenant(&NewTenant::new(other.clone(), LicenseTier::Shared))
        .await
        .unwrap();
    let their_store = bench.store.tenant(&other);
    let campaign = their_store.ensure_active_campaign().await.unwrap();
    let secret = Entity {
        name: "Secret Lair".into(),
        kind: EntityKind::Location,
        description: String::new(),
        tags: vec![],
        properties: BTreeMap::new(),
        relationships: vec![],
    };
    let theirs = their_store.add_entity(&campaign.id, &secret).await.unwrap();
    add_entity(&bench, "Phandalin", "location").await;

    let text = bench.text(command("entity", Some("list"))).await;
    assert!(text.contains("Phandalin") && !text.contains("Secret Lair"), "{text}");
    assert_eq!(choices(&bench.run(autocomplete("secret")).await), vec![]);
    assert!(immediate(&bench.run(remove_named(&theirs.id)).await).contains("has no entity named"));
    let sent = bench
        .run(button(&format!("{ENTITY_REMOVE_CONFIRM}{}", theirs.id)))
        .await;
    assert!(sent[0].text().contains("already gone"));
    assert!(
        their_store.entity(&theirs.id).await.unwrap().is_some(),
        "their entity is untouched"
    );
}
