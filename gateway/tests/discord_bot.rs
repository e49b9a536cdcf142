//! The tenants' Discord bots end to end (issue 8): serenity bots managed by
//! `SerenityBots`, driven through the admin API, talking to the loopback
//! fake Discord (REST + gateway WebSocket); sessions on the in-memory fake
//! worker. Assertions are on what the fake Discord recorded: the real
//! payloads the bots sent.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use common::logs::capture_logs;
use common::{did, tid, TestDb};
use glyphoxa_gateway::bots::{BotCounts, BotManager, BotSpec, BotState};
use glyphoxa_gateway::commands::definitions::command_set;
use glyphoxa_gateway::commands::RecapEngines;
use glyphoxa_gateway::crypto::BotToken;
use glyphoxa_gateway::discord::fake::fixtures::DEFAULT_USER_ID;
use glyphoxa_gateway::discord::fake::{FakeDiscord, FakeState, InteractionFixture, OptionFixture, ReplyKind};
use glyphoxa_gateway::discord::{Backoff, DiscordSettings, HttpAttachments, SerenityBots};
use glyphoxa_gateway::orchestrator::{Orchestrator, OrchestratorSettings};
use glyphoxa_gateway::store::{NewTranscriptLine, SessionState};
use glyphoxa_gateway::workers::fake::FakeWorker;
use glyphoxa_gateway::workers::{InProcessWorkerClient, WorkerClient};
use glyphoxa_gateway::{Gateway, GatewaySettings};
use glyphoxa_proto::ApiError;
use serde_json::{json, Value};

use common::discord::*;
use glyphoxa_gateway::discord::fake::scenarios::knowledge::campaign_yaml;

on_both_backends!(
    create_update_change_token_and_delete,
    session_start_and_stop,
    refusals_answer_at_once,
    npc_commands_and_autocomplete_reach_the_worker,
    voice_server_moves_and_removal_from_voice,
    two_tenants_and_a_rejected_token,
    the_session_dashboard_is_posted_edited_and_finalised,
    a_session_ended_elsewhere_makes_the_bot_leave_voice,
);

async fn create_update_change_token_and_delete(db: &TestDb) {
    let world = world(db).await;
    world.create_tenant("acme", TOKEN_A, &[G1, G2], None).await;

    // Connected, the command set registered in both guilds by bulk overwrite.
    world.wait_registered(APP_A, G1).await;
    world.wait_registered(APP_A, G2).await;
    for guild in [G1, G2] {
        let puts = command_puts(&world, APP_A, guild);
        assert_eq!(
            puts.first(),
            Some(&Value::Array(command_set())),
            "the exact set is PUT in {guild}"
        );
    }
    let status = world.bot_status("acme", "connected").await;
    assert_eq!(status["guild_count"], 2, "{status}");
    assert!(world.fake.connected(TOKEN_A));

    // Fewer guilds and a DM role: re-registered, removed where no longer
    // wanted, without reconnecting.
    let (status, answer) = world
        .api(
            Method::PUT,
            "/tenants/acme",
            Some(json!({"guild_ids": [G1, G3], "dm_role_id": DM_ROLE})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    world
        .wait("commands removed from G2", |s| {
            s.registered_commands(APP_A, G2).is_some_and(<[Value]>::is_empty)
        })
        .await;
    assert_eq!(command_puts(&world, APP_A, G1).len(), 2, "G1 re-registered");
    assert_eq!(identifies(&world, TOKEN_A), 1, "no reconnect for an update");
    // A guild the bot is not in: still connected, the status says where it failed.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = world.bot_status("acme", "connected").await;
        let message = status["message"].as_str().unwrap_or_default().to_string();
        if message.contains(G3) {
            assert!(message.contains("403"), "{status}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new role applies at once.
    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 1).await;
    assert!(text.contains(&format!("<@&{DM_ROLE}>")), "{text}");

    // A new token: the old client is gone, the new bot registers.
    let (status, answer) = world
        .api(Method::PUT, "/tenants/acme", Some(json!({"bot_token": TOKEN_B})))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    world.wait_registered(APP_B, G1).await;
    world.wait("old client closed", |s| !s.connected(TOKEN_A)).await;
    assert!(world.fake.connected(TOKEN_B));
    assert!(
        world.fake.registered_commands(APP_B, G2).is_none(),
        "only the configured guild"
    );
    world.bot_status("acme", "connected").await;

    // Deleted: commands removed, bot disconnected.
    let (status, _) = world.api(Method::DELETE, "/tenants/acme", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    world
        .wait("commands unregistered", |s| {
            s.registered_commands(APP_B, G1).is_some_and(<[Value]>::is_empty)
        })
        .await;
    world.wait("bot disconnected", |s| !s.connected(TOKEN_B)).await;
    let (status, _) = world.api(Method::GET, "/tenants/acme/bot", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(world.bots.tenants().is_empty());
    assert!(!world
        .bots
        .status(&tid("acme"))
        .message
        .unwrap_or_default()
        .contains("SECRET"));
}

async fn session_start_and_stop(db: &TestDb) {
    let world = world(db).await;
    world.create_tenant("acme", TOKEN_A, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;

    let sent = world
        .replies(TOKEN_A, command("session", Some("start"), vec![]), 2)
        .await;
    let kinds: Vec<ReplyKind> = sent.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![ReplyKind::Callback, ReplyKind::EditOriginal]);
    assert_eq!(
        sent[0].body,
        json!({"type": 5, "data": {"flags": 64}}),
        "deferred first"
    );
    assert!(
        sent[0].after < Duration::from_secs(3),
        "deferred within Discord's deadline"
    );
    let answer = text_of(&sent[1].body);
    assert!(answer.contains("Session started"), "{answer}");
    assert!(answer.contains(&format!("<#{VOICE}>")), "{answer}");
    assert!(answer.contains("Default campaign"), "{answer}");
    let session = db
        .store
        .tenant(&tid("acme"))
        .live_session_in_guild(&did(G1))
        .await
        .unwrap()
        .expect("a live session");
    assert_eq!(session.state, SessionState::Active);
    assert!(answer.contains(session.id.as_str()), "{answer}");
    assert_eq!(world.worker.sessions(), vec![session.id.to_string()]);
    assert_eq!(
        voice_ops(&world, TOKEN_A),
        vec![(G1.to_string(), Some(VOICE.to_string()))]
    );
    assert_eq!(
        world.fake.voice_channel(G1, BOT_A).as_deref(),
        Some(VOICE),
        "the bot sits in the channel"
    );
    // Starting again: refused at once, naming the session.
    let replies = world
        .interact(TOKEN_A, command("session", Some("start"), vec![]), 1)
        .await;
    assert_eq!(replies[0]["type"], 4);
    assert_eq!(replies[0]["data"]["flags"], 64);
    let refusal = text_of(&replies[0]);
    assert!(
        refusal.contains("already running") && refusal.contains(session.id.as_str()),
        "{refusal}"
    );

    // Stop: deferred, ended with its duration, the bot leaves voice.
    db.clock.advance(Duration::from_secs(65));
    let replies = world
        .interact(TOKEN_A, command("session", Some("stop"), vec![]), 2)
        .await;
    assert_eq!(replies[0]["type"], 5);
    let answer = text_of(&replies[1]);
    assert!(
        answer.contains("Session ended") && answer.contains("1 min 05 s"),
        "{answer}"
    );
    assert!(world.worker.sessions().is_empty());
    world
        .wait("the bot left voice", |s| s.voice_channel(G1, BOT_A).is_none())
        .await;
    assert_eq!(voice_ops(&world, TOKEN_A).last(), Some(&(G1.to_string(), None)));
    let stored = db
        .store
        .tenant(&tid("acme"))
        .session(&session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, SessionState::Ended);

    // Stopping twice is harmless.
    let text = world.text(TOKEN_A, command("session", Some("stop"), vec![]), 1).await;
    assert!(text.contains("No active session"), "{text}");
    let leaves = voice_ops(&world, TOKEN_A).iter().filter(|(_, c)| c.is_none()).count();
    assert_eq!(leaves, 1, "one leave for one stop");
}

async fn a_session_ended_elsewhere_makes_the_bot_leave_voice(db: &TestDb) {
    let world = world(db).await;
    // Dedicated: a session per guild.
    let body = json!({"id": "acme", "license_tier": "dedicated", "bot_token": TOKEN_A, "guild_ids": [G1, G2]});
    let (status, answer) = world.api(Method::POST, "/tenants", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    world.create_tenant("bravo", TOKEN_B, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;
    world.wait_registered(APP_B, G1).await;
    let in_g2 = |interaction: InteractionFixture| interaction.in_guild(G2, TEXT);
    world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    world
        .text(TOKEN_A, in_g2(command("session", Some("start"), vec![])), 2)
        .await;
    let session = |guild: &str| {
        let store = db.store.tenant(&tid("acme"));
        let guild = did(guild);
        async move {
            store
                .live_session_in_guild(&guild)
                .await
                .unwrap()
                .expect("a live session")
                .id
        }
    };
    let (in_g1, in_g2_session) = (session(G1).await, session(G2).await);
    assert_eq!(world.fake.voice_channel(G1, BOT_A).as_deref(), Some(VOICE));

    // The worker reports the G1 session ended (it crashed): the bot leaves
    // G1's voice channel, and only that one.
    let ended = world
        .orchestrator
        .report_state(&in_g1, SessionState::Ended, Some("the engine thread died"), Some("w1"))
        .await
        .unwrap()
        .expect("a known session");
    assert_eq!(ended.state, SessionState::Ended);
    world
        .wait("the bot left G1's voice channel", |s| {
            s.voice_channel(G1, BOT_A).is_none()
        })
        .await;
    assert_eq!(world.fake.voice_channel(G2, BOT_A).as_deref(), Some(VOICE));
    assert_eq!(voice_ops(&world, TOKEN_A).last(), Some(&(G1.to_string(), None)));

    // Ended by the orchestrator (as the admin API and the cleanup do): the
    // same. The other tenant's bot never moved.
    world
        .orchestrator
        .stop(&tid("acme"), &in_g2_session, "ended by an operator")
        .await
        .unwrap();
    world
        .wait("the bot left G2's voice channel", |s| {
            s.voice_channel(G2, BOT_A).is_none()
        })
        .await;
    assert!(
        voice_ops(&world, TOKEN_B).is_empty(),
        "{:?}",
        voice_ops(&world, TOKEN_B)
    );

    // A new session in G1 is not disturbed by the earlier ends.
    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("Session started"), "{text}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(world.fake.voice_channel(G1, BOT_A).as_deref(), Some(VOICE));
    let leaves = voice_ops(&world, TOKEN_A).iter().filter(|(_, c)| c.is_none()).count();
    assert_eq!(leaves, 2, "one leave per ended session");
}

async fn refusals_answer_at_once(db: &TestDb) {
    let world = world_with(db, Duration::from_millis(700)).await;
    world.create_tenant("acme", TOKEN_A, &[G1], Some(DM_ROLE)).await;
    world.wait_registered(APP_A, G1).await;

    // Without the DM role: the role is named, nothing else happens.
    let replies = world
        .interact(TOKEN_A, command("session", Some("start"), vec![]), 1)
        .await;
    assert_eq!(replies[0]["type"], 4);
    assert_eq!(replies[0]["data"]["flags"], 64);
    assert!(text_of(&replies[0]).contains(&format!("<@&{DM_ROLE}>")));

    // With the role but not in a voice channel.
    let outside = command("session", Some("start"), vec![])
        .by_user(PLAYER, "pip")
        .with_roles(vec![DM_ROLE.into()]);
    let replies = world.interact(TOKEN_A, outside, 1).await;
    assert_eq!(replies[0]["type"], 4);
    assert!(text_of(&replies[0]).contains("Join a voice channel"), "{replies:?}");
    assert!(voice_ops(&world, TOKEN_A).is_empty(), "no join was attempted");

    // A voice channel the member joins later is seen through VOICE_STATE_UPDATE;
    // Discord not answering the join: a clear failure after the timeout, nothing left behind.
    world.fake.set_voice_state(G1, PLAYER, Some(VOICE));
    world.fake.set_auto_voice(G1, false);
    let dm = command("session", Some("start"), vec![])
        .by_user(PLAYER, "pip")
        .with_roles(vec![DM_ROLE.into()]);
    let text = world.text(TOKEN_A, dm, 2).await;
    assert!(text.contains("Could not join the voice channel"), "{text}");
    assert!(world.worker.sessions().is_empty());
    world
        .wait("left again", |s| {
            s.gateway_ops(TOKEN_A)
                .iter()
                .any(|op| op.op == Some(4) && op.d["channel_id"].is_null())
        })
        .await;
    let live = db
        .store
        .tenant(&tid("acme"))
        .live_session_in_guild(&did(G1))
        .await
        .unwrap();
    assert!(live.is_none());

    // Discord answers again: the DM starts a session.
    world.fake.set_auto_voice(G1, true);
    let dm = command("session", Some("start"), vec![])
        .by_user(PLAYER, "pip")
        .with_roles(vec![DM_ROLE.into()]);
    let text = world.text(TOKEN_A, dm, 2).await;
    assert!(text.contains("Session started"), "{text}");

    // Unknown buttons get a clear answer.
    let button = InteractionFixture::button("no-such-button").in_guild(G1, TEXT);
    let text = world.text(TOKEN_A, button, 1).await;
    assert!(text.contains("don't know that command"), "{text}");
}

async fn npc_commands_and_autocomplete_reach_the_worker(db: &TestDb) {
    let world = world(db).await;
    world.create_tenant("acme", TOKEN_A, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;

    // The campaign comes in as an attachment the fake serves.
    let load = command(
        "campaign",
        Some("load"),
        vec![OptionFixture::attachment("file", "tavern.yaml", campaign_yaml(29))],
    );
    let text = world.text(TOKEN_A, load, 2).await;
    assert!(text.contains("The Yawning Portal"), "{text}");

    // No session yet.
    let text = world.text(TOKEN_A, command("npc", Some("list"), vec![]), 1).await;
    assert!(text.contains("No active session"), "{text}");

    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("The Yawning Portal"), "{text}");

    let text = world.text(TOKEN_A, command("npc", Some("list"), vec![]), 2).await;
    assert!(text.contains("Grimble") && text.contains("Villager 28"), "{text}");
    let mute = command("npc", Some("mute"), vec![OptionFixture::string("name", "grimble")]);
    let text = world.text(TOKEN_A, mute, 2).await;
    assert!(text.contains("Grimble is muted"), "{text}");
    let speak = command(
        "npc",
        Some("speak"),
        vec![
            OptionFixture::string("name", "Villager 03"),
            OptionFixture::string("text", "Welcome!"),
        ],
    );
    let text = world.text(TOKEN_A, speak, 2).await;
    assert!(text.contains("Welcome!"), "{text}");
    let text = world.text(TOKEN_A, command("npc", Some("muteall"), vec![]), 2).await;
    assert!(text.contains("Muted 29 NPCs"), "{text}");
    let text = world.text(TOKEN_A, command("npc", Some("unmuteall"), vec![]), 2).await;
    assert!(text.contains("Unmuted 30 NPCs"), "{text}");
    let calls = world.worker.calls().join(" ");
    for call in ["ListNPCs", "MuteNPC", "SpeakNPC", "MuteAllNPCs", "UnmuteAllNPCs"] {
        assert!(calls.contains(call), "{call} missing in {calls}");
    }

    // Autocomplete: at most 25 choices, matching what was typed.
    let all = InteractionFixture::autocomplete(
        "npc",
        vec![OptionFixture::subcommand(
            "mute",
            vec![OptionFixture::focused("name", "")],
        )],
    )
    .in_guild(G1, TEXT);
    let replies = world.interact(TOKEN_A, all, 1).await;
    assert_eq!(replies[0]["type"], 8);
    let choices = replies[0]["data"]["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 25);
    let typed = InteractionFixture::autocomplete(
        "npc",
        vec![OptionFixture::subcommand(
            "mute",
            vec![OptionFixture::focused("name", "gri")],
        )],
    )
    .in_guild(G1, TEXT);
    let replies = world.interact(TOKEN_A, typed, 1).await;
    assert_eq!(
        replies[0]["data"]["choices"],
        json!([{"name": "Grimble", "value": "Grimble"}])
    );

    // The worker down: a clear reply, not silence.
    world
        .worker
        .fail_all(Some(ApiError::Unavailable("worker restarting".into())));
    let text = world.text(TOKEN_A, command("npc", Some("list"), vec![]), 2).await;
    assert!(text.to_lowercase().contains("voice service unavailable"), "{text}");
}

async fn voice_server_moves_and_removal_from_voice(db: &TestDb) {
    let world = world(db).await;
    world.create_tenant("acme", TOKEN_A, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;
    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("Session started"), "{text}");
    let session = world.worker.sessions().pop().expect("a worker session");

    // Discord moves the voice server: the worker is told.
    world
        .fake
        .send_dispatch(
            TOKEN_A,
            "VOICE_SERVER_UPDATE",
            json!({"guild_id": G1, "token": "moved-voice-token", "endpoint": "moved.example:443"}),
        )
        .expect("dispatch");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !world.worker.calls().contains(&format!("UpdateVoiceServer({session})")) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", world.worker.calls());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A moderator disconnects the bot: the session ends.
    world.fake.set_voice_state(G1, BOT_A, None);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let live = db
            .store
            .tenant(&tid("acme"))
            .live_session_in_guild(&did(G1))
            .await
            .unwrap();
        if live.is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the session is still live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(world.worker.sessions().is_empty());
    let ended = db
        .store
        .tenant(&tid("acme"))
        .latest_session(Some(&did(G1)), false)
        .await
        .unwrap()
        .expect("the session is stored");
    assert_eq!(
        ended.end_reason.as_deref(),
        Some("the bot was removed from the voice channel"),
        "not a stop by the bot's own user"
    );
    let text = world.text(TOKEN_A, command("session", Some("stop"), vec![]), 1).await;
    assert!(text.contains("No active session"), "{text}");
}

async fn two_tenants_and_a_rejected_token(db: &TestDb) {
    let world = world(db).await;
    world.create_tenant("acme", TOKEN_A, &[G1], None).await;
    world.create_tenant("bravo", TOKEN_B, &[G2], None).await;
    world.create_tenant("charlie", BAD_TOKEN, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;
    world.wait_registered(APP_B, G2).await;

    // The rejected token: an error in its status, the token never shown.
    let status = world.bot_status("charlie", "error").await;
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("rejected"), "{status}");
    assert!(!status.to_string().contains("SECRET"), "{status}");
    // The others are untouched.
    world.bot_status("acme", "connected").await;
    let bravo = world.bot_status("bravo", "connected").await;
    assert_eq!(bravo["guild_count"], 2, "{bravo}");
    assert!(world.fake.registered_commands(APP_A, G2).is_none());
    assert!(world.fake.registered_commands(APP_B, G1).is_none());
    // What readiness and the bot-state gauges count.
    let counts = BotCounts::of(&world.bots.statuses());
    assert_eq!(
        (counts.connected, counts.error, counts.total()),
        (2, 1, 3),
        "{counts:?}"
    );
    assert_eq!(counts.failed_tenants, [tid("charlie")]);

    // Data never crosses: acme's session is acme's, bravo's guild has none.
    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("Session started"), "{text}");
    let bravo_stop =
        InteractionFixture::command("session", vec![OptionFixture::subcommand("stop", vec![])]).in_guild(G2, TEXT);
    let text = world.text(TOKEN_B, bravo_stop, 1).await;
    assert!(text.contains("No active session"), "{text}");
    let load = command(
        "campaign",
        Some("load"),
        vec![OptionFixture::attachment("file", "tavern.yaml", campaign_yaml(1))],
    );
    let text = world.text(TOKEN_A, load, 1).await;
    assert!(text.contains("session"), "no load while a session runs: {text}");
    let stop = command("session", Some("stop"), vec![]);
    world.text(TOKEN_A, stop, 2).await;
    let load = command(
        "campaign",
        Some("load"),
        vec![OptionFixture::attachment("file", "tavern.yaml", campaign_yaml(1))],
    );
    let text = world.text(TOKEN_A, load, 2).await;
    assert!(text.contains("The Yawning Portal"), "{text}");
    let bravo_info =
        InteractionFixture::command("campaign", vec![OptionFixture::subcommand("info", vec![])]).in_guild(G2, TEXT);
    let text = world.text(TOKEN_B, bravo_info, 1).await;
    assert!(!text.contains("The Yawning Portal"), "{text}");
    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("The Yawning Portal"), "{text}");
    assert!(db
        .store
        .tenant(&tid("bravo"))
        .live_session_in_guild(&did(G1))
        .await
        .unwrap()
        .is_none());
    assert!(db
        .store
        .tenant(&tid("acme"))
        .live_session_in_guild(&did(G1))
        .await
        .unwrap()
        .is_some());
    // Every reply went through the right bot's interactions.
    for reply in world.fake.requests() {
        if reply.path.contains("/webhooks/") {
            assert!(
                reply.path.contains(APP_A) || reply.path.contains(APP_B),
                "{}",
                reply.path
            );
        }
    }

    // Deleting the failed tenant leaves the others running.
    let (status, _) = world.api(Method::DELETE, "/tenants/charlie", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    world.bot_status("acme", "connected").await;
    world.bot_status("bravo", "connected").await;
}

/// The field `name` of the first embed of a message.
fn embed_field<'a>(message: &'a Value, name: &str) -> &'a str {
    message["embeds"][0]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|field| field["name"] == name)
        .and_then(|field| field["value"].as_str())
        .unwrap_or_default()
}

fn embed_title(message: &Value) -> &str {
    message["embeds"][0]["title"].as_str().unwrap_or_default()
}

/// `PATCH`es of channel message `message`.
fn message_edits(world: &World, message: &Value) -> usize {
    let suffix = format!("/messages/{}", message["id"].as_str().unwrap_or_default());
    world
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.starts_with("/api/v10/channels/") && r.path.ends_with(&suffix))
        .count()
}

/// Dashboards refreshed every 100 ms.
fn quick_dashboards(channel: Option<&'static str>) -> WorldOptions {
    WorldOptions {
        discord: Box::new(move |settings| {
            let settings = DiscordSettings {
                dashboard_interval: Duration::from_millis(100),
                ..settings
            };
            match channel {
                Some(channel) => settings.with_dashboard_channel(channel),
                None => settings,
            }
        }),
        ..WorldOptions::default()
    }
}

async fn the_session_dashboard_is_posted_edited_and_finalised(db: &TestDb) {
    let world = world_from(db, quick_dashboards(None)).await;
    world.create_tenant("acme", TOKEN_A, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;
    let sent = world
        .replies(TOKEN_A, command("session", Some("start"), vec![]), 2)
        .await;
    let kinds: Vec<ReplyKind> = sent.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![ReplyKind::Callback, ReplyKind::EditOriginal],
        "the reply is unchanged"
    );
    assert!(text_of(&sent[1].body).contains("Session started"));
    let session = db
        .store
        .tenant(&tid("acme"))
        .live_session_in_guild(&did(G1))
        .await
        .unwrap()
        .expect("a live session");

    // Posted in the channel of /session start, for everyone.
    world
        .wait("dashboard posted", |s| !s.channel_messages(TEXT).is_empty())
        .await;
    let posted = world.fake.channel_messages(TEXT)[0].clone();
    assert_eq!(embed_title(&posted), "📊 Live session", "{posted}");
    assert_eq!(posted["flags"], 0, "public");
    assert_eq!(posted["author"]["id"], BOT_A);
    assert_eq!(embed_field(&posted, "Session"), format!("`{}`", session.id));
    assert_eq!(embed_field(&posted, "Campaign"), "Default campaign");
    assert_eq!(embed_field(&posted, "Utterances"), "0");

    // Edited while it runs, with fresh figures.
    let line = NewTranscriptLine {
        speaker_id: DEFAULT_USER_ID.into(),
        speaker_name: "player".into(),
        npc_id: None,
        text: "Hello, innkeeper!".into(),
        start_ms: common::T0,
        end_ms: common::T0 + 800,
        outcome: None,
        turn_id: None,
        puppet: false,
    };
    db.store
        .tenant(&tid("acme"))
        .append_transcript(&session.id, &line)
        .await
        .unwrap();
    world
        .wait("dashboard edited", |s| {
            s.channel_messages(TEXT)
                .first()
                .is_some_and(|m| !m["edited_timestamp"].is_null() && embed_field(m, "Utterances") == "1")
        })
        .await;

    // Finalised on stop: final figures, no further edits.
    db.clock.advance(Duration::from_secs(65));
    let text = world.text(TOKEN_A, command("session", Some("stop"), vec![]), 2).await;
    assert!(text.contains("Session ended"), "{text}");
    world
        .wait("dashboard finalised", |s| {
            s.channel_messages(TEXT)
                .first()
                .is_some_and(|m| embed_title(m) == "📊 Session ended")
        })
        .await;
    let last = world.fake.channel_messages(TEXT)[0].clone();
    assert_eq!(embed_field(&last, "Status"), "⏹️ ended");
    assert_eq!(embed_field(&last, "Duration"), "1 min 05 s");
    assert_eq!(embed_field(&last, "Utterances"), "1");
    let edits = message_edits(&world, &last);
    assert!(edits >= 2, "{edits} edits");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(message_edits(&world, &last), edits, "no edits after the final one");
    assert_eq!(world.fake.channel_messages(TEXT).len(), 1, "one dashboard message");
}

/// A configured dashboard channel is used; a bot shutting down marks its
/// dashboards offline and edits them no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_channel_and_a_bot_shutdown() {
    const DASHBOARD: &str = "200000000000000009";
    let db = common::sqlite().await;
    let world = world_from(&db, quick_dashboards(Some(DASHBOARD))).await;
    world.create_tenant("acme", TOKEN_A, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;
    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("Session started"), "{text}");
    world
        .wait("dashboard posted", |s| !s.channel_messages(DASHBOARD).is_empty())
        .await;
    assert!(world.fake.channel_messages(TEXT).is_empty());
    world.bots.shutdown(Duration::from_secs(10)).await;
    let last = world.fake.channel_messages(DASHBOARD)[0].clone();
    assert_eq!(embed_field(&last, "Status"), "⏸️ dashboard offline", "{last}");
    let edits = message_edits(&world, &last);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(message_edits(&world, &last), edits);
}

/// Bot tokens and voice tokens never reach a log line, at any level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_never_logged() {
    let (captured, _capture) = capture_logs();
    let db = common::sqlite().await;
    let world = world(&db).await;
    world.create_tenant("acme", TOKEN_A, &[G1], None).await;
    world.create_tenant("charlie", BAD_TOKEN, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;
    world.bot_status("charlie", "error").await;
    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("Session started"), "{text}");
    world
        .fake
        .send_dispatch(
            TOKEN_A,
            "VOICE_SERVER_UPDATE",
            json!({"guild_id": G1, "token": "moved-voice-token", "endpoint": "moved.example:443"}),
        )
        .expect("dispatch");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !world.worker.calls().iter().any(|c| c.starts_with("UpdateVoiceServer")) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = world.text(TOKEN_A, command("session", Some("stop"), vec![]), 2).await;
    assert!(text.contains("Session ended"), "{text}");
    let (status, _) = world.api(Method::DELETE, "/tenants/acme", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    world.wait("bot disconnected", |s| !s.connected(TOKEN_A)).await;

    let voice_tokens: Vec<String> = world
        .fake
        .dispatches(TOKEN_A)
        .iter()
        .filter(|d| d.event == "VOICE_SERVER_UPDATE")
        .filter_map(|d| d.data["token"].as_str().map(str::to_string))
        .collect();
    assert!(!voice_tokens.is_empty());
    let logs = captured.text();
    assert!(logs.contains("slash commands registered"), "the capture works");
    for secret in [TOKEN_A, TOKEN_B, BAD_TOKEN]
        .iter()
        .map(|t| t.to_string())
        .chain(voice_tokens)
    {
        assert!(!logs.contains(&secret), "{secret} was logged");
    }
}

/// A dropped gateway connection comes back by itself; commands keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_gateway_drops() {
    let db = common::sqlite().await;
    let world = world(&db).await;
    world.create_tenant("acme", TOKEN_A, &[G1], None).await;
    world.wait_registered(APP_A, G1).await;
    assert_eq!(world.fake.close_gateway(TOKEN_A, 4000), 1);
    world.wait("reconnected", |s| s.connected(TOKEN_A)).await;
    world.bot_status("acme", "connected").await;
    let text = world.text(TOKEN_A, command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("Session started"), "{text}");
}

/// Discord unreachable: the bot keeps trying with backoff and says why; it
/// stops when disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_discord_is_retried_with_backoff() {
    let db = common::sqlite().await;
    let worker = Arc::new(FakeWorker::new("w1", 8));
    let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(worker));
    let orchestrator = Arc::new(Orchestrator::new(
        db.store.clone(),
        workers,
        OrchestratorSettings::default(),
    ));
    // A closed port: every call fails to connect.
    let settings = DiscordSettings {
        backoff: Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        },
        ..DiscordSettings::default().with_api_url("http://127.0.0.1:1")
    };
    let files = Arc::new(HttpAttachments::new(Duration::from_secs(5)).expect("downloader"));
    let bots = SerenityBots::new(settings, orchestrator, files, RecapEngines::default()).expect("bots");
    bots.connect(BotSpec {
        tenant_id: tid("acme"),
        token: BotToken::new(TOKEN_A),
        guild_ids: vec![did(G1)],
        dm_role_id: None,
    });
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = bots.status(&tid("acme"));
        let message = status.message.clone().unwrap_or_default();
        if message.contains("unreachable") {
            assert_eq!(status.state, BotState::Connecting);
            assert!(message.contains("retrying"), "{message}");
            assert!(!message.contains("SECRET"), "{message}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bots.disconnect(&tid("acme"));
    assert_eq!(bots.status(&tid("acme")).state, BotState::Disconnected);
    bots.shutdown(Duration::from_secs(2)).await;
}

/// Gateway mode with real bots: a tenant created through the admin API
/// connects; the bot closes with the gateway (commands stay) and connects
/// again when the gateway starts over the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_the_bots_and_reconnects_them_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeDiscord::start().await.expect("fake Discord");
    fake.add_bot(bot_a());
    let mut settings = GatewaySettings::new(format!("sqlite://{}", dir.path().join("gw.db").display()), KEY);
    settings.admin_addr = "127.0.0.1:0".parse().expect("addr");
    settings.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    settings.admin.secret_key = Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    settings.shutdown_grace = Duration::from_secs(5);
    settings.discord = DiscordSettings::default().with_api_url(fake.url());
    let worker = Arc::new(FakeWorker::new("w1", 8));
    let workers: Arc<dyn WorkerClient> = Arc::new(InProcessWorkerClient::new(worker));

    let gateway = Gateway::start_with_discord_workers(settings.clone(), workers.clone(), RecapEngines::default())
        .await
        .expect("gateway starts");
    let created = reqwest::Client::new()
        .post(format!("http://{}/api/v1/tenants", gateway.admin_addr()))
        .bearer_auth(KEY)
        .json(&json!({"id": "acme", "license_tier": "shared", "bot_token": TOKEN_A, "guild_ids": [G1]}))
        .send()
        .await
        .expect("admin API answers");
    assert_eq!(created.status().as_u16(), 201);
    let registered = |s: &FakeState| s.registered_commands(APP_A, G1).is_some_and(|c| !c.is_empty());
    fake.wait_until(registered, WAIT).await.expect("registered");
    gateway.shutdown().await.expect("clean shutdown");
    assert!(!fake.connected(TOKEN_A), "the bot closed with the gateway");
    assert!(
        fake.registered_commands(APP_A, G1).is_some_and(|c| !c.is_empty()),
        "commands stay"
    );

    let gateway = Gateway::start_with_discord_workers(settings, workers, RecapEngines::default())
        .await
        .expect("gateway starts again");
    fake.wait_until(|s| s.connected(TOKEN_A), WAIT)
        .await
        .expect("reconnected at start");
    gateway.shutdown().await.expect("clean shutdown");
}
