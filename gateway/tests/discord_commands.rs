//! The knowledge, campaign, feedback and recap commands end to end (issue 8)
//! in gateway mode: real serenity bots managed by `SerenityBots`, tenants
//! created through the admin API, the loopback fake Discord playing the
//! users (modals, buttons, attachments it serves itself), sessions on the
//! in-memory fake worker. Assertions are on the payloads the bots sent and
//! on the tenant-scoped store.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::discord::*;
use common::{tid, TestDb, T0};
use futures_util::StreamExt as _;
use glyphoxa_gateway::commands::RecapEngines;
use glyphoxa_gateway::discord::fake::fixtures::DEFAULT_USER_ID;
use glyphoxa_gateway::discord::fake::{InteractionFixture, OptionFixture};
use glyphoxa_gateway::ids::SessionId;
use glyphoxa_gateway::store::NewTranscriptLine;
use glyphoxa_pipeline::campaign::EntityKind;
use glyphoxa_pipeline::providers::{
    ChatRequest, FinishReason, LanguageModel, LlmEvent, LlmStream, PcmChunk, ProviderError, TextToSpeech, TtsRequest,
};
use glyphoxa_proto::v1::AudioPriority;
use serde_json::{json, Value};

on_both_backends!(
    entity_add_list_and_remove,
    entity_import_yaml_and_foundry,
    campaign_info_load_and_switch,
    feedback_modal_and_average,
    session_recap_and_voice_recap,
    tenant_data_never_crosses,
);

// ---- helpers ----

/// A world with tenant `acme` (bot A, guild G1, no DM role) ready.
async fn acme(db: &TestDb, options: WorldOptions) -> World {
    let world = world_from(db, options).await;
    world.create_tenant("acme", TOKEN_A, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;
    world
}

/// The first reply's body after sending `interaction` through bot A.
async fn first(world: &World, interaction: InteractionFixture) -> Value {
    world.interact(TOKEN_A, interaction, 1).await.remove(0)
}

/// The text inputs of a modal callback: `(custom_id, label)`.
fn modal_inputs(callback: &Value) -> Vec<(String, String)> {
    callback["data"]["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|input| {
            (
                input["custom_id"].as_str().unwrap_or_default().to_string(),
                input["label"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The buttons of a message body (or a callback's message): `(custom_id, label)`.
fn buttons(body: &Value) -> Vec<(String, String)> {
    let message = body.get("data").filter(|_| body.get("type").is_some()).unwrap_or(body);
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|button| {
            (
                button["custom_id"].as_str().unwrap_or_default().to_string(),
                button["label"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A modal submission in G1 with `fields`.
fn submit(custom_id: &str, fields: &[(&str, &str)]) -> InteractionFixture {
    let fields = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    InteractionFixture::modal_submit(custom_id, fields).in_guild(G1, TEXT)
}

/// The names of the entities of `tenant`'s active campaign.
async fn entity_names(db: &TestDb, tenant: &str) -> Vec<String> {
    let store = db.store.tenant(&tid(tenant));
    let Some(campaign) = store.active_campaign().await.expect("store") else {
        return Vec::new();
    };
    let mut names: Vec<String> = store
        .entities(&campaign.id, None, 1000)
        .await
        .expect("store")
        .into_iter()
        .map(|e| e.entity.name)
        .collect();
    names.sort();
    names
}

/// The live session of `tenant` in G1.
async fn live_session(db: &TestDb, tenant: &str) -> SessionId {
    db.store
        .tenant(&tid(tenant))
        .live_session_in_guild(&common::did(G1))
        .await
        .expect("store")
        .expect("a live session")
        .id
}

/// A transcript line of the default user.
fn line(text: &str, start_ms: i64) -> NewTranscriptLine {
    NewTranscriptLine {
        speaker_id: DEFAULT_USER_ID.into(),
        speaker_name: "player".into(),
        npc_id: None,
        text: text.into(),
        start_ms,
        end_ms: start_ms + 1500,
        outcome: None,
        turn_id: None,
        puppet: false,
    }
}

/// A Foundry VTT actor export.
fn foundry_actor(name: &str) -> Value {
    json!({
        "name": name, "type": "npc",
        "system": {"details": {"biography": {"value": "<p>A <em>sneaky</em> goblin.</p>"}}},
        "prototypeToken": {"name": name}, "items": []
    })
}

/// A second campaign file.
fn lost_mine_yaml() -> String {
    "campaign: { name: \"Lost Mine of Phandelver\", system: dnd5e, description: \"Goblins and a lost mine.\" }\n\
     npcs:\n  - { name: Sildar, personality: \"A stern knight.\" }\n\
     entities:\n  - { name: Cragmaw Hideout, type: location, description: \"A goblin cave.\" }\n  \
     - { name: Wave Echo Cave, type: location, description: \"The lost mine.\" }\n"
        .to_string()
}

// ---- /entity ----

async fn entity_add_list_and_remove(db: &TestDb) {
    let world = acme(db, WorldOptions::default()).await;

    // /entity add opens the modal with name, type, description and tags.
    let modal = first(&world, command("entity", Some("add"), vec![])).await;
    assert_eq!(modal["type"], 9, "{modal}");
    assert_eq!(modal["data"]["custom_id"], "entity:add");
    let inputs: Vec<String> = modal_inputs(&modal).into_iter().map(|(id, _)| id).collect();
    for wanted in ["name", "type", "description", "tags"] {
        assert!(inputs.iter().any(|id| id.contains(wanted)), "{wanted} in {inputs:?}");
    }

    // Submitted: stored in the (new) default campaign, answered with name, type and id.
    let added = submit(
        "entity:add",
        &[
            ("name", "Phandalin"),
            ("type", "location"),
            ("description", "A frontier town."),
            ("tags", "town, start"),
        ],
    );
    let text = world.text(TOKEN_A, added, 1).await;
    assert!(
        text.contains("Added the location **Phandalin**") && text.contains("Id: `"),
        "{text}"
    );
    let bad = submit("entity:add", &[("name", "Nowhere"), ("type", "planet")]);
    let text = world.text(TOKEN_A, bad, 1).await;
    assert!(text.contains("not an entity **type**"), "{text}");
    let npc = submit(
        "entity:add",
        &[("name", "Grimble"), ("type", "npc"), ("description", "Innkeeper.")],
    );
    world.text(TOKEN_A, npc, 1).await;
    assert_eq!(entity_names(db, "acme").await, ["Grimble", "Phandalin"]);
    let store = db.store.tenant(&tid("acme"));
    let campaign = store.active_campaign().await.unwrap().expect("the default campaign");
    let phandalin = store
        .entities(&campaign.id, Some(EntityKind::Location), 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(phandalin.entity.tags, ["town", "start"]);

    // /entity list, all and by type.
    let text = world.text(TOKEN_A, command("entity", Some("list"), vec![]), 1).await;
    assert!(
        text.contains("Phandalin") && text.contains("Grimble") && text.contains("2 entities"),
        "{text}"
    );
    let npcs = command("entity", Some("list"), vec![OptionFixture::string("type", "npc")]);
    let text = world.text(TOKEN_A, npcs, 1).await;
    assert!(text.contains("Grimble") && !text.contains("Phandalin"), "{text}");

    // Autocomplete of the name to remove.
    let typed = InteractionFixture::autocomplete(
        "entity",
        vec![OptionFixture::subcommand(
            "remove",
            vec![OptionFixture::focused("name", "phan")],
        )],
    )
    .in_guild(G1, TEXT);
    let choices = first(&world, typed).await;
    assert_eq!(
        choices["data"]["choices"],
        json!([{"name": "Phandalin", "value": "Phandalin"}])
    );

    // /entity remove asks with Cancel / Confirm; Cancel keeps it.
    let remove = || {
        command(
            "entity",
            Some("remove"),
            vec![OptionFixture::string("name", "phandalin")],
        )
    };
    let sent = world.replies(TOKEN_A, remove(), 1).await;
    let asked = &sent[0].body;
    assert_eq!(asked["type"], 4);
    assert!(text_of(asked).contains("Remove Phandalin?"), "{asked}");
    let choices = buttons(asked);
    let labels: Vec<&str> = choices.iter().map(|(_, label)| label.as_str()).collect();
    assert_eq!(labels, ["Cancel", "Confirm"]);
    let on = |id: &str| {
        let mut button = InteractionFixture::button(id).in_guild(G1, TEXT);
        if let Some(message) = &sent[0].message_id {
            button = button.on_message(message.clone());
        }
        button
    };
    let cancelled = first(&world, on(&choices[0].0)).await;
    assert_eq!(cancelled["type"], 7, "the confirmation is replaced: {cancelled}");
    assert!(text_of(&cancelled).contains("nothing was removed"), "{cancelled}");
    assert_eq!(entity_names(db, "acme").await, ["Grimble", "Phandalin"]);

    // Confirm removes it.
    let sent = world.replies(TOKEN_A, remove(), 1).await;
    let confirm = buttons(&sent[0].body)
        .into_iter()
        .find(|(_, label)| label == "Confirm")
        .expect("a Confirm button")
        .0;
    let removed = first(&world, on(&confirm)).await;
    assert_eq!(removed["type"], 7);
    assert!(
        text_of(&removed).contains("Removed the location **Phandalin**"),
        "{removed}"
    );
    assert_eq!(entity_names(db, "acme").await, ["Grimble"]);
    let text = world.text(TOKEN_A, command("entity", Some("list"), vec![]), 1).await;
    assert!(!text.contains("Phandalin") && text.contains("1 entity"), "{text}");
    // Pressing Confirm again: said plainly, nothing else removed.
    let again = first(&world, on(&confirm)).await;
    assert!(text_of(&again).contains("already gone"), "{again}");
    assert_eq!(entity_names(db, "acme").await, ["Grimble"]);
}

async fn entity_import_yaml_and_foundry(db: &TestDb) {
    let world = acme(db, WorldOptions::default()).await;

    // A campaign file (YAML), served by the fake as the attachment.
    let yaml = command(
        "entity",
        Some("import"),
        vec![OptionFixture::attachment("file", "tavern.yaml", campaign_yaml(2))],
    );
    let replies = world.interact(TOKEN_A, yaml, 2).await;
    assert_eq!(replies[0]["type"], 5, "deferred for the download");
    let text = text_of(&replies[1]);
    assert!(
        text.contains("Imported 1 entity from `tavern.yaml`") && text.contains("1 location"),
        "{text}"
    );
    assert!(text.contains("The NPC roster now has 3 NPCs"), "{text}");

    // A Foundry VTT export (JSON): actors, items and journal entries.
    let bundle = json!({
        "actors": [foundry_actor("Klarg"), foundry_actor("Yeemik")],
        "items": [{"name": "Potion of Healing", "type": "consumable", "system": {"description": {"value": "Heals."}}}],
        "journal": [{"name": "Old Owl Well", "content": "<p>A ruined tower.</p>"}]
    });
    let json_import = command(
        "entity",
        Some("import"),
        vec![OptionFixture::attachment("file", "foundry.json", bundle.to_string())],
    );
    let text = world.text(TOKEN_A, json_import, 2).await;
    assert!(
        text.contains("Imported 4 entries") && text.contains("2 npc, 1 item, 1 lore"),
        "{text}"
    );
    assert_eq!(
        entity_names(db, "acme").await,
        ["Klarg", "Old Owl Well", "Phandalin", "Potion of Healing", "Yeemik"]
    );
    let store = db.store.tenant(&tid("acme"));
    let campaign = store.active_campaign().await.unwrap().expect("active");
    let klarg = store
        .entities(&campaign.id, Some(EntityKind::Npc), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.entity.name == "Klarg")
        .expect("Klarg");
    assert_eq!(klarg.entity.description, "A sneaky goblin.");

    // A bad entry stops the import; the reply says how many came before it.
    let list = json!([foundry_actor("Snarl"), {"type": "npc", "system": {}}, foundry_actor("Never")]);
    let bad = command(
        "entity",
        Some("import"),
        vec![OptionFixture::attachment("file", "broken.json", list.to_string())],
    );
    let text = world.text(TOKEN_A, bad, 2).await;
    assert!(
        text.contains("Imported 1 entry") && text.contains("bad entry"),
        "{text}"
    );
    let names = entity_names(db, "acme").await;
    assert!(names.contains(&"Snarl".to_string()) && !names.contains(&"Never".to_string()));

    // A file of another kind: refused at once, nothing downloaded.
    let other = command(
        "entity",
        Some("import"),
        vec![OptionFixture::attachment("file", "notes.txt", "hello")],
    );
    let refusal = first(&world, other).await;
    assert_eq!(refusal["type"], 4);
    assert!(text_of(&refusal).contains("I cannot read `notes.txt`"), "{refusal}");
}

// ---- /campaign ----

async fn campaign_info_load_and_switch(db: &TestDb) {
    let world = acme(db, WorldOptions::default()).await;
    let text = world.text(TOKEN_A, command("campaign", Some("info"), vec![]), 1).await;
    assert!(text.contains("No campaigns yet"), "{text}");

    let load = |name: &str, yaml: String| {
        command(
            "campaign",
            Some("load"),
            vec![OptionFixture::attachment("file", name, yaml)],
        )
    };
    let text = world.text(TOKEN_A, load("tavern.yaml", campaign_yaml(1)), 2).await;
    assert!(text.contains("Loaded campaign The Yawning Portal"), "{text}");
    let text = world.text(TOKEN_A, load("lost-mine.yml", lost_mine_yaml()), 2).await;
    assert!(text.contains("Loaded campaign Lost Mine of Phandelver"), "{text}");
    // Loading a file again updates it.
    let text = world.text(TOKEN_A, load("lost-mine.yml", lost_mine_yaml()), 2).await;
    assert!(text.contains("Updated campaign Lost Mine of Phandelver"), "{text}");

    let text = world.text(TOKEN_A, command("campaign", Some("info"), vec![]), 1).await;
    assert!(text.contains("▶ Lost Mine of Phandelver (active)"), "{text}");
    assert!(
        text.contains("The Yawning Portal") && text.contains("Entities: 2 (2 location)"),
        "{text}"
    );
    assert!(text.contains("2 campaigns"), "{text}");

    let typed = InteractionFixture::autocomplete(
        "campaign",
        vec![OptionFixture::subcommand(
            "switch",
            vec![OptionFixture::focused("name", "yawn")],
        )],
    )
    .in_guild(G1, TEXT);
    let choices = first(&world, typed).await;
    assert_eq!(choices["data"]["choices"][0]["name"], "The Yawning Portal", "{choices}");

    let switch = |name: &str| command("campaign", Some("switch"), vec![OptionFixture::string("name", name)]);
    let text = world.text(TOKEN_A, switch("the yawning portal"), 1).await;
    assert!(text.contains("Switched to campaign **The Yawning Portal**"), "{text}");
    let active = db
        .store
        .tenant(&tid("acme"))
        .active_campaign()
        .await
        .unwrap()
        .expect("active");
    assert_eq!(active.info.name, "The Yawning Portal");
    let text = world.text(TOKEN_A, switch("Atlantis"), 1).await;
    assert!(text.contains("no campaign named \"Atlantis\""), "{text}");

    // New sessions use the active campaign; no switching or loading while one runs.
    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("The Yawning Portal"), "{text}");
    let text = world.text(TOKEN_A, switch("Lost Mine of Phandelver"), 1).await;
    assert!(text.contains("A session is running"), "{text}");
    let text = world.text(TOKEN_A, load("tavern.yaml", campaign_yaml(1)), 1).await;
    assert!(text.contains("A session is running"), "{text}");
    world.text(TOKEN_A, command("session", Some("stop"), vec![]), 2).await;
    let text = world.text(TOKEN_A, switch("Lost Mine of Phandelver"), 1).await;
    assert!(
        text.contains("Switched to campaign **Lost Mine of Phandelver**"),
        "{text}"
    );
}

// ---- /feedback ----

async fn feedback_modal_and_average(db: &TestDb) {
    let world = world(db).await;
    world.create_tenant("acme", TOKEN_A, &[G1], Some(DM_ROLE)).await;
    world.wait_registered(APP_A, G1).await;
    let player = |interaction: InteractionFixture| interaction.by_user(PLAYER, "pip");

    // No session yet.
    let text = world.text(TOKEN_A, player(command("feedback", None, vec![])), 1).await;
    assert!(text.contains("no session in this server"), "{text}");

    let start = command("session", Some("start"), vec![]).with_roles(vec![DM_ROLE.into()]);
    let text = world.text(TOKEN_A, start, 2).await;
    assert!(text.contains("Session started"), "{text}");
    let session = live_session(db, "acme").await;

    // Anyone (no DM role) gets the modal: four ratings and a comment.
    let modal = first(&world, player(command("feedback", None, vec![]))).await;
    assert_eq!(modal["type"], 9, "{modal}");
    let custom_id = modal["data"]["custom_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(custom_id, format!("feedback:{session}"));
    let inputs: Vec<String> = modal_inputs(&modal).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        inputs,
        [
            "voice_latency",
            "npc_personality",
            "memory_accuracy",
            "dm_workflow",
            "comment"
        ]
    );

    // Submitted with one rating out of range (clamped) and one as "3/5".
    let form = submit(
        &custom_id,
        &[
            ("voice_latency", "5"),
            ("npc_personality", "4"),
            ("memory_accuracy", "9"),
            ("dm_workflow", "3/5"),
            ("comment", "Grimble was great."),
        ],
    );
    let text = world.text(TOKEN_A, player(form), 1).await;
    assert!(text.contains("Average: **4.3** / 5"), "{text}");
    assert!(text.contains("memory accuracy 5"), "clamped: {text}");
    let stored = db.store.tenant(&tid("acme")).feedback(Some(&session)).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].user_id.as_str(), PLAYER);
    assert_eq!(stored[0].comment, "Grimble was great.");
    let r = stored[0].ratings;
    assert_eq!(
        (r.voice_latency, r.npc_personality, r.memory_accuracy, r.dm_workflow),
        (5, 4, 5, 3)
    );

    // A rating that is no number is refused, naming the field; nothing changes.
    let bad = submit(
        &custom_id,
        &[
            ("voice_latency", "great"),
            ("npc_personality", "4"),
            ("memory_accuracy", "4"),
            ("dm_workflow", "4"),
        ],
    );
    let text = world.text(TOKEN_A, player(bad), 1).await;
    assert!(text.contains("Voice latency must be a number"), "{text}");

    // After the session: feedback still rates the last one.
    let stop = command("session", Some("stop"), vec![]).with_roles(vec![DM_ROLE.into()]);
    world.text(TOKEN_A, stop, 2).await;
    let modal = first(&world, command("feedback", None, vec![])).await;
    assert_eq!(modal["data"]["custom_id"], format!("feedback:{session}"));
}

// ---- /session recap | voice-recap ----

/// What the summariser writes.
const SUMMARY: &str = "The party greeted the innkeeper and asked about the lost mine.";

/// A summariser that counts its calls and always writes [`SUMMARY`].
#[derive(Default)]
struct CountingSummarizer {
    calls: AtomicUsize,
}

#[async_trait]
impl LanguageModel for CountingSummarizer {
    fn name(&self) -> &'static str {
        "counting-llm"
    }

    async fn chat(&self, _request: ChatRequest) -> Result<LlmStream, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut events: Vec<Result<LlmEvent, ProviderError>> = SUMMARY
            .split_inclusive(' ')
            .map(|word| Ok(LlmEvent::Text(word.to_string())))
            .collect();
        events.push(Ok(LlmEvent::Finished(FinishReason::Stop)));
        Ok(futures_util::stream::iter(events).boxed())
    }
}

/// A narrator that counts its calls and speaks a square wave, 2 ms of
/// 24 kHz mono per character.
#[derive(Default)]
struct CountingNarrator {
    calls: AtomicUsize,
}

#[async_trait]
impl TextToSpeech for CountingNarrator {
    fn name(&self) -> &'static str {
        "counting-narrator"
    }

    async fn synthesize(&self, request: TtsRequest) -> Result<glyphoxa_pipeline::providers::PcmStream, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let samples = request.text.chars().count().max(1) * 48;
        let wave: Vec<i16> = (0..samples).map(|i| if i % 24 < 12 { 4000 } else { -4000 }).collect();
        let chunk = PcmChunk {
            samples: wave,
            sample_rate: 24_000,
            channels: 1,
        };
        Ok(futures_util::stream::iter(vec![Ok(chunk)]).boxed())
    }
}

async fn session_recap_and_voice_recap(db: &TestDb) {
    let narrator = Arc::new(CountingNarrator::default());
    let summarizer = Arc::new(CountingSummarizer::default());
    let options = WorldOptions {
        recaps: RecapEngines {
            summarizer: Some(Arc::clone(&summarizer) as Arc<dyn LanguageModel>),
            narrator: Some(Arc::clone(&narrator) as Arc<dyn TextToSpeech>),
            narrator_voice: "bard".into(),
        },
        ..WorldOptions::default()
    };
    let world = acme(db, options).await;
    let text = world.text(TOKEN_A, command("session", Some("recap"), vec![]), 1).await;
    assert!(text.contains("nothing to recap"), "{text}");

    // A first session with a transcript.
    world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    let first_session = live_session(db, "acme").await;
    let store = db.store.tenant(&tid("acme"));
    store
        .append_transcript(&first_session, &line("Hello, innkeeper!", T0 + 1_000))
        .await
        .unwrap();
    store
        .append_transcript(&first_session, &line("We seek the lost mine.", T0 + 5_000))
        .await
        .unwrap();
    db.clock.advance(Duration::from_secs(60));
    world.text(TOKEN_A, command("session", Some("stop"), vec![]), 2).await;
    db.clock.advance(Duration::from_secs(20));

    // /session recap: the embed with the facts and the summary of the transcript.
    let replies = world
        .interact(TOKEN_A, command("session", Some("recap"), vec![]), 2)
        .await;
    assert_eq!(replies[0]["type"], 5);
    let recap = &replies[1];
    assert_eq!(recap["embeds"][0]["title"], "Session Recap", "{recap}");
    let text = text_of(recap);
    for wanted in [
        SUMMARY,
        "Summarised by counting-llm",
        "⏹️ ended",
        "2 entries",
        "Default campaign",
        "1 min 00 s",
        first_session.as_str(),
    ] {
        assert!(text.contains(wanted), "{wanted} missing in {text}");
    }

    // The voice recap needs a session to speak into.
    let text = world
        .text(TOKEN_A, command("session", Some("voice-recap"), vec![]), 1)
        .await;
    assert!(text.contains("No active session"), "{text}");

    // In the next session: narrated through the worker's mixer at narrator priority.
    world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    let second_session = live_session(db, "acme").await;
    let replies = world
        .interact(TOKEN_A, command("session", Some("voice-recap"), vec![]), 2)
        .await;
    assert_eq!(replies[0]["type"], 5);
    let embed = &replies[1]["embeds"][0];
    assert_eq!(embed["title"], "Previously, on your campaign…", "{embed}");
    let text = text_of(&replies[1]);
    assert!(
        text.contains(SUMMARY) && text.contains(first_session.as_str()),
        "the saved summary: {text}"
    );
    assert_eq!(summarizer.calls.load(Ordering::SeqCst), 1);
    let deadline = tokio::time::Instant::now() + WAIT;
    while world.worker.plays().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no PlayAudio");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = world.worker.calls();
    assert!(calls.contains(&format!("PlayAudio({second_session})")), "{calls:?}");
    {
        let plays = world.worker.plays();
        let (header, bytes) = (&plays[0].header, &plays[0].pcm);
        assert_eq!(header.session_id, second_session.as_str());
        assert_eq!(header.priority, AudioPriority::Narrator as i32);
        assert!(bytes.len() > 1000, "{} bytes of narration", bytes.len());
        let loud = bytes
            .chunks_exact(2)
            .any(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() > 1000);
        assert!(loud, "the narration is audible");
    }
    let narrated = narrator.calls.load(Ordering::SeqCst);
    assert!(narrated >= 1);

    // Replayed: the cached text and audio, the narrator is not asked again.
    let text = world
        .text(TOKEN_A, command("session", Some("voice-recap"), vec![]), 2)
        .await;
    assert!(text.contains("Previously, on your campaign"), "{text}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while world.worker.plays().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no second PlayAudio");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(narrator.calls.load(Ordering::SeqCst), narrated, "cached audio");
    assert_eq!(summarizer.calls.load(Ordering::SeqCst), 1, "cached text");
    let plays = world.worker.plays();
    let (first_play, replay) = (plays[0].pcm.len(), plays[1].pcm.len());
    assert_eq!(first_play, replay, "the same narration again");

    // /session recap during the live session recaps it (so far).
    let text = world.text(TOKEN_A, command("session", Some("recap"), vec![]), 2).await;
    assert!(
        text.contains(second_session.as_str()) && text.contains("still running"),
        "{text}"
    );
}

// ---- tenants ----

async fn tenant_data_never_crosses(db: &TestDb) {
    let world = acme(db, WorldOptions::default()).await;
    world.create_tenant("bravo", TOKEN_B, &[G2], None).await;
    world.wait_registered(APP_B, G2).await;
    let in_g2 = |interaction: InteractionFixture| interaction.in_guild(G2, TEXT);

    // acme: a campaign, an entity, a session with feedback.
    let load = command(
        "campaign",
        Some("load"),
        vec![OptionFixture::attachment("file", "tavern.yaml", campaign_yaml(1))],
    );
    world.text(TOKEN_A, load, 2).await;
    let added = submit("entity:add", &[("name", "Secret Vault"), ("type", "location")]);
    world.text(TOKEN_A, added, 1).await;
    world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    let session = live_session(db, "acme").await;
    db.store
        .tenant(&tid("acme"))
        .append_transcript(&session, &line("Only acme hears this.", T0 + 1_000))
        .await
        .unwrap();
    let modal = first(&world, command("feedback", None, vec![])).await;
    let custom_id = modal["data"]["custom_id"].as_str().unwrap_or_default().to_string();
    let ratings = [
        ("voice_latency", "4"),
        ("npc_personality", "4"),
        ("memory_accuracy", "4"),
        ("dm_workflow", "4"),
    ];
    world.text(TOKEN_A, submit(&custom_id, &ratings), 1).await;
    world.text(TOKEN_A, command("session", Some("stop"), vec![]), 2).await;

    // bravo sees none of it, through its commands ...
    let text = world
        .text(TOKEN_B, in_g2(command("entity", Some("list"), vec![])), 1)
        .await;
    assert!(
        text.contains("No entities yet") && !text.contains("Secret Vault"),
        "{text}"
    );
    let text = world
        .text(TOKEN_B, in_g2(command("campaign", Some("info"), vec![])), 1)
        .await;
    assert!(text.contains("No campaigns yet") && !text.contains("Yawning"), "{text}");
    let typed = InteractionFixture::autocomplete(
        "entity",
        vec![OptionFixture::subcommand(
            "remove",
            vec![OptionFixture::focused("name", "")],
        )],
    );
    let choices = world.interact(TOKEN_B, in_g2(typed), 1).await.remove(0);
    assert_eq!(choices["data"]["choices"], json!([]));
    let typed = InteractionFixture::autocomplete(
        "campaign",
        vec![OptionFixture::subcommand(
            "switch",
            vec![OptionFixture::focused("name", "")],
        )],
    );
    let choices = world.interact(TOKEN_B, in_g2(typed), 1).await.remove(0);
    assert_eq!(choices["data"]["choices"], json!([]));
    let switch = command(
        "campaign",
        Some("switch"),
        vec![OptionFixture::string("name", "The Yawning Portal")],
    );
    let text = world.text(TOKEN_B, in_g2(switch), 1).await;
    assert!(text.contains("no campaign named"), "{text}");
    let remove = command(
        "entity",
        Some("remove"),
        vec![OptionFixture::string("name", "Secret Vault")],
    );
    let text = world.text(TOKEN_B, in_g2(remove), 1).await;
    assert!(text.contains("no entity named"), "{text}");
    let recap = command(
        "session",
        Some("recap"),
        vec![OptionFixture::string("session_id", session.as_str())],
    );
    let text = world.text(TOKEN_B, in_g2(recap), 1).await;
    assert!(!text.contains("Only acme hears this."), "{text}");
    let text = world.text(TOKEN_B, in_g2(command("feedback", None, vec![])), 1).await;
    assert!(text.contains("no session in this server"), "{text}");
    // ... not even with acme's ids in buttons and forms.
    let acme_store = db.store.tenant(&tid("acme"));
    let campaign = acme_store.active_campaign().await.unwrap().expect("active");
    let vault = acme_store
        .entities(&campaign.id, Some(EntityKind::Location), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.entity.name == "Secret Vault")
        .expect("the vault");
    let confirm = InteractionFixture::button(format!("entity:remove:confirm:{}", vault.id));
    let text = world.text(TOKEN_B, in_g2(confirm), 1).await;
    assert!(text.contains("already gone"), "{text}");
    assert!(entity_names(db, "acme").await.contains(&"Secret Vault".to_string()));
    let text = world.text(TOKEN_B, in_g2(submit(&custom_id, &ratings)), 1).await;
    assert!(text.contains("cannot find"), "{text}");

    // ... and in the store.
    let bravo = db.store.tenant(&tid("bravo"));
    assert!(bravo.campaigns().await.unwrap().is_empty());
    assert!(bravo.active_campaign().await.unwrap().is_none());
    assert!(bravo.session(&session).await.unwrap().is_none());
    assert!(bravo.feedback(None).await.unwrap().is_empty());
    assert_eq!(bravo.transcript_count(&session).await.unwrap(), 0);
    assert_eq!(acme_store.feedback(Some(&session)).await.unwrap().len(), 1);
}
