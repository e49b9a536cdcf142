//! The loopback fake Discord, driven by plain clients (reqwest, a
//! tokio-tungstenite WebSocket) and by a real serenity 0.12 bot.
//!
//! Run: `cargo test -p glyphoxa-gateway --features fakes --test fake_discord`.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use glyphoxa_gateway::discord::fake::{
    BotFixture, ChannelFixture, FakeDiscord, FakeDiscordConfig, FakeDiscordError, GuildFixture, InteractionFixture,
    OptionFixture, ReplyKind,
};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const TOKEN: &str = "test-bot-token";
const APP: &str = "900000000000000001";
const BOT_USER: &str = "900000000000000002";
const GUILD: &str = "800000000000000001";
const VOICE: &str = "700000000000000001";
const TEXT: &str = "700000000000000002";
const PLAYER: &str = "500000000000000001";
const STEP: Duration = Duration::from_secs(5);

fn bot() -> BotFixture {
    BotFixture::new(TOKEN, APP, BOT_USER, "Glyphoxa").with_guild(
        GuildFixture::new(GUILD, "The Table")
            .with_voice_state(PLAYER, VOICE)
            .with_channel(ChannelFixture::text(TEXT, "general"))
            .with_role("400000000000000001", "Dungeon Master"),
    )
}

async fn fake_with_bot() -> FakeDiscord {
    let fake = FakeDiscord::start().await.expect("fake Discord starts");
    fake.add_bot(bot());
    fake
}

/// A raw gateway client.
struct Gateway {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    hello: Value,
}

impl Gateway {
    /// Connects the way serenity does (URL from `GET /api/v10/gateway`, `?v=10`) and reads HELLO.
    async fn connect(fake: &FakeDiscord) -> Self {
        let answer: Value = reqwest::get(format!("{}/api/v10/gateway", fake.url()))
            .await
            .expect("GET /gateway")
            .json()
            .await
            .expect("gateway JSON");
        let url = answer["url"].as_str().expect("gateway url").to_owned();
        assert_eq!(url, fake.gateway_url());
        let (socket, _) = tokio_tungstenite::connect_async(format!("{url}?v=10"))
            .await
            .expect("WebSocket connects");
        let mut gateway = Self {
            socket,
            hello: Value::Null,
        };
        gateway.hello = gateway.next().await;
        assert_eq!(gateway.hello["op"], 10, "first payload is HELLO: {}", gateway.hello);
        gateway
    }

    /// Connects, identifies with `token` and reads READY and one GUILD_CREATE.
    async fn identified(fake: &FakeDiscord, token: &str) -> (Self, Value) {
        let mut gateway = Self::connect(fake).await;
        gateway.identify(token).await;
        let ready = gateway.dispatch("READY").await;
        gateway.dispatch("GUILD_CREATE").await;
        (gateway, ready)
    }

    async fn send(&mut self, payload: Value) {
        self.socket
            .send(Message::text(payload.to_string()))
            .await
            .expect("send to gateway");
    }

    async fn identify(&mut self, token: &str) {
        self.send(json!({
            "op": 2,
            "d": {
                "token": format!("Bot {token}"),
                "intents": 641,
                "properties": { "os": "linux", "browser": "test", "device": "test" },
                "compress": false,
                "large_threshold": 250,
                "shard": [0, 1],
            }
        }))
        .await;
    }

    /// The next frame, as JSON (close frames and timeouts fail the test).
    async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(STEP, self.socket.next())
                .await
                .expect("a gateway frame in time")
                .expect("connection open")
                .expect("valid frame");
            match frame {
                Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON frame"),
                Message::Close(close) => panic!("gateway closed: {close:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame, which must be dispatch `event`; returns its `d`.
    async fn dispatch(&mut self, event: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["op"], 0, "expected dispatch {event}, got {frame}");
        assert_eq!(frame["t"], event, "expected dispatch {event}, got {frame}");
        frame["d"].clone()
    }

    /// Reads until the close frame; returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            let frame = tokio::time::timeout(STEP, self.socket.next())
                .await
                .expect("a close frame in time");
            match frame {
                Some(Ok(Message::Close(Some(close)))) => return u16::from(close.code),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn identify_gets_ready_then_guild_create() {
    let fake = fake_with_bot().await;
    let mut gateway = Gateway::connect(&fake).await;
    assert_eq!(gateway.hello["d"]["heartbeat_interval"], 41_250);
    gateway.identify(TOKEN).await;

    let ready = gateway.next().await;
    assert_eq!(
        (ready["op"].clone(), ready["s"].clone(), ready["t"].clone()),
        (json!(0), json!(1), json!("READY"))
    );
    let ready = &ready["d"];
    assert_eq!(ready["v"], 10);
    assert_eq!(ready["user"]["id"], BOT_USER);
    assert_eq!(ready["user"]["bot"], true);
    assert_eq!(ready["application"]["id"], APP);
    assert_eq!(ready["guilds"], json!([{ "id": GUILD, "unavailable": true }]));
    assert_eq!(ready["resume_gateway_url"], fake.gateway_url());
    assert!(ready["session_id"].as_str().is_some_and(|id| !id.is_empty()));

    let guild = gateway.next().await;
    assert_eq!(
        (guild["s"].clone(), guild["t"].clone()),
        (json!(2), json!("GUILD_CREATE"))
    );
    let guild = &guild["d"];
    assert_eq!(guild["id"], GUILD);
    assert_eq!(guild["name"], "The Table");
    assert_eq!(guild["voice_states"][0]["user_id"], PLAYER);
    assert_eq!(guild["voice_states"][0]["channel_id"], VOICE);
    let channel_ids: Vec<&str> = guild["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|channel| channel["id"].as_str())
        .collect();
    assert!(
        channel_ids.contains(&TEXT) && channel_ids.contains(&VOICE),
        "{channel_ids:?}"
    );
    assert!(guild["members"]
        .as_array()
        .expect("members")
        .iter()
        .any(|m| m["user"]["id"] == BOT_USER));

    fake.wait_until(|state| state.connected(TOKEN), STEP)
        .await
        .expect("connected");
    let ops: Vec<Option<u8>> = fake.gateway_ops(TOKEN).iter().map(|op| op.op).collect();
    assert_eq!(ops, [Some(2)]);
    let events: Vec<String> = fake.dispatches(TOKEN).into_iter().map(|sent| sent.event).collect();
    assert_eq!(events, ["READY", "GUILD_CREATE"]);

    drop(gateway);
    fake.wait_until(|state| !state.connected(TOKEN), STEP)
        .await
        .expect("disconnect noticed");
}

#[tokio::test]
async fn heartbeats_are_acknowledged_at_the_configured_interval() {
    let fake = FakeDiscord::start_with(FakeDiscordConfig {
        heartbeat_interval: Duration::from_millis(250),
        ..FakeDiscordConfig::default()
    })
    .await
    .expect("fake starts");
    fake.add_bot(bot());
    let (mut gateway, _) = Gateway::identified(&fake, TOKEN).await;
    assert_eq!(gateway.hello["d"]["heartbeat_interval"], 250);
    gateway.send(json!({ "op": 1, "d": 2 })).await;
    let ack = gateway.next().await;
    assert_eq!(ack["op"], 11, "{ack}");
    let heartbeat = fake.gateway_ops(TOKEN).into_iter().find(|op| op.op == Some(1));
    assert_eq!(heartbeat.map(|op| op.d), Some(json!(2)));
}

#[tokio::test]
async fn bad_token_is_refused_on_rest_and_gateway() {
    let fake = fake_with_bot().await;
    let answer = client()
        .get(format!("{}/api/v10/users/@me", fake.url()))
        .header("Authorization", "Bot wrong-token")
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status(), 401);
    let body: Value = answer.json().await.expect("JSON error");
    assert_eq!(body, json!({ "message": "401: Unauthorized", "code": 0 }));

    let mut gateway = Gateway::connect(&fake).await;
    gateway.identify("wrong-token").await;
    assert_eq!(gateway.close_code().await, 4004);
    assert!(!fake.connected("wrong-token"));
    assert_eq!(fake.gateway_ops("wrong-token").len(), 1, "the IDENTIFY is recorded");

    // Undecodable payloads close with 4002; payloads needing a session before IDENTIFY with 4003.
    let mut garbled = Gateway::connect(&fake).await;
    garbled.socket.send(Message::text("{not json")).await.expect("send");
    assert_eq!(garbled.close_code().await, 4002);
    let mut early = Gateway::connect(&fake).await;
    early
        .send(json!({ "op": 4, "d": { "guild_id": GUILD, "channel_id": VOICE } }))
        .await;
    assert_eq!(early.close_code().await, 4003);

    // The valid token works until it is revoked; then the open connection gets 4004 too.
    let me: Value = client()
        .get(format!("{}/api/v10/users/@me", fake.url()))
        .header("Authorization", format!("Bot {TOKEN}"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("user JSON");
    assert_eq!(me["id"], BOT_USER);
    let (mut gateway, _) = Gateway::identified(&fake, TOKEN).await;
    fake.revoke_token(TOKEN);
    assert_eq!(gateway.close_code().await, 4004);
    let status = client()
        .get(format!("{}/api/v10/users/@me", fake.url()))
        .header("Authorization", format!("Bot {TOKEN}"))
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 401);
}

#[tokio::test]
async fn bulk_overwrite_is_stored_and_read_back() {
    let fake = fake_with_bot().await;
    let url = format!("{}/api/v10/applications/{APP}/guilds/{GUILD}/commands", fake.url());
    let commands = json!([
        { "name": "session", "description": "Sessions", "type": 1,
          "options": [{ "type": 1, "name": "start", "description": "Start a session" }] },
        { "name": "feedback", "description": "Give feedback" },
    ]);
    let answer = client()
        .put(&url)
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&commands)
        .send()
        .await
        .expect("PUT");
    assert_eq!(answer.status(), 200);
    let echoed: Vec<Value> = answer.json().await.expect("commands JSON");
    assert_eq!(echoed.len(), 2);
    for command in &echoed {
        assert!(command["id"].as_str().is_some());
        assert_eq!(command["application_id"], APP);
        assert_eq!(command["guild_id"], GUILD);
    }

    let listed: Vec<Value> = client()
        .get(&url)
        .header("Authorization", format!("Bot {TOKEN}"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed, echoed);
    assert_eq!(fake.registered_commands(APP, GUILD), Some(echoed.clone()));

    // Overwriting again keeps the id of a command with the same name (idempotent registration).
    let again: Vec<Value> = client()
        .put(&url)
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&json!([{ "name": "session", "description": "Sessions" }]))
        .send()
        .await
        .expect("PUT")
        .json()
        .await
        .expect("JSON");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["id"], echoed[0]["id"]);

    // Deleting one command, then a guild the bot is not in, then a malformed body.
    let id = again[0]["id"].as_str().expect("id");
    let deleted = client()
        .delete(format!("{url}/{id}"))
        .header("Authorization", format!("Bot {TOKEN}"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), 204);
    assert_eq!(fake.registered_commands(APP, GUILD), Some(Vec::new()));
    let foreign = client()
        .put(format!("{}/api/v10/applications/{APP}/guilds/1/commands", fake.url()))
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&json!([]))
        .send()
        .await
        .expect("PUT");
    assert_eq!(foreign.status(), 403);
    let malformed = client()
        .put(&url)
        .header("Authorization", format!("Bot {TOKEN}"))
        .header("Content-Type", "application/json")
        .body("[{not json")
        .send()
        .await
        .expect("PUT");
    assert_eq!(malformed.status(), 400);
    let recorded = fake.requests();
    let last = recorded.last().expect("recorded");
    assert_eq!((last.method.as_str(), last.status), ("PUT", 400));
    assert_eq!(last.body, Some(json!("[{not json")));
    assert_eq!(last.application_id.as_deref(), Some(APP));
}

#[tokio::test]
async fn interaction_replies_are_recorded_in_order() {
    let fake = fake_with_bot().await;
    let (mut gateway, _) = Gateway::identified(&fake, TOKEN).await;
    let sent = fake
        .send_interaction(
            TOKEN,
            InteractionFixture::command(
                "npc",
                vec![OptionFixture::subcommand(
                    "speak",
                    vec![OptionFixture::string("name", "Grim")],
                )],
            )
            .in_guild(GUILD, TEXT)
            .by_user(PLAYER, "alice")
            .with_roles(vec!["400000000000000001".to_owned()]),
        )
        .expect("interaction sent");
    let interaction = gateway.dispatch("INTERACTION_CREATE").await;
    assert_eq!(interaction["id"], sent.id.as_str());
    assert_eq!(interaction["token"], sent.token.as_str());
    assert_eq!(interaction["type"], 2);
    assert_eq!(interaction["application_id"], APP);
    assert_eq!(interaction["guild_id"], GUILD);
    assert_eq!(interaction["channel_id"], TEXT);
    assert_eq!(interaction["member"]["user"]["id"], PLAYER);
    assert_eq!(interaction["member"]["roles"], json!(["400000000000000001"]));
    assert_eq!(interaction["data"]["name"], "npc");
    assert_eq!(interaction["data"]["options"][0]["type"], 1);
    assert_eq!(interaction["data"]["options"][0]["options"][0]["value"], "Grim");

    let http = client();
    let callback = http
        .post(format!(
            "{}/api/v10/interactions/{}/{}/callback",
            fake.url(),
            sent.id,
            sent.token
        ))
        .json(&json!({ "type": 5, "data": { "flags": 64 } }))
        .send()
        .await
        .expect("callback");
    assert_eq!(callback.status(), 204);
    let twice = http
        .post(format!(
            "{}/api/v10/interactions/{}/{}/callback",
            fake.url(),
            sent.id,
            sent.token
        ))
        .json(&json!({ "type": 4, "data": { "content": "again" } }))
        .send()
        .await
        .expect("callback");
    assert_eq!(twice.status(), 400);
    let webhook = format!("{}/api/v10/webhooks/{APP}/{}", fake.url(), sent.token);
    let edited: Value = http
        .patch(format!("{webhook}/messages/@original"))
        .json(&json!({ "content": "Grim says hello." }))
        .send()
        .await
        .expect("edit")
        .json()
        .await
        .expect("message JSON");
    assert_eq!(edited["content"], "Grim says hello.");
    assert_eq!(edited["flags"], 64, "still ephemeral, no longer loading");
    // A follow-up with a file, as multipart with payload_json.
    let form = reqwest::multipart::Form::new()
        .part(
            "files[0]",
            reqwest::multipart::Part::bytes(b"transcript".to_vec())
                .file_name("recap.txt")
                .mime_str("text/plain")
                .expect("mime"),
        )
        .text(
            "payload_json",
            json!({ "content": "part 2", "attachments": [{ "id": 0, "filename": "recap.txt" }] }).to_string(),
        );
    let followup: Value = http
        .post(&webhook)
        .multipart(form)
        .send()
        .await
        .expect("follow-up")
        .json()
        .await
        .expect("message JSON");
    assert_eq!(followup["content"], "part 2");
    let file_url = followup["attachments"][0]["url"].as_str().expect("attachment url");
    let served = http
        .get(file_url)
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&served[..], b"transcript");

    let replies = fake.interaction_replies(&sent.id);
    let kinds: Vec<ReplyKind> = replies.iter().map(|reply| reply.kind).collect();
    assert_eq!(
        kinds,
        [ReplyKind::Callback, ReplyKind::EditOriginal, ReplyKind::Followup]
    );
    assert_eq!(replies[2].files[0].filename, "recap.txt");
    let bodies = fake.interaction_responses(&sent.id);
    assert_eq!(bodies[0]["type"], 5);
    assert_eq!(bodies[1]["content"], "Grim says hello.");
    assert_eq!(bodies[2]["content"], "part 2");
    let original = fake.state(|state| state.original_message_id(&sent.id).map(str::to_owned));
    assert_eq!(original.as_deref(), edited["id"].as_str());

    // Discord's limits: 2001 characters are refused with Invalid Form Body.
    let too_long = http
        .post(&webhook)
        .json(&json!({ "content": "x".repeat(2001) }))
        .send()
        .await
        .expect("follow-up");
    assert_eq!(too_long.status(), 400);
    let error: Value = too_long.json().await.expect("error JSON");
    assert_eq!(error["code"], 50035);
    assert_eq!(
        fake.interaction_replies(&sent.id).len(),
        3,
        "refused replies are not recorded as replies"
    );
}

#[tokio::test]
async fn components_autocomplete_modals_and_attachments() {
    let fake = fake_with_bot().await;
    let (mut gateway, _) = Gateway::identified(&fake, TOKEN).await;
    let http = client();
    let callback = |sent: &glyphoxa_gateway::discord::fake::SentInteraction| {
        format!(
            "{}/api/v10/interactions/{}/{}/callback",
            fake.url(),
            sent.id,
            sent.token
        )
    };

    // Autocomplete: the focused option arrives; more than 25 choices are refused.
    let sent = fake
        .send_interaction(
            TOKEN,
            InteractionFixture::autocomplete(
                "npc",
                vec![OptionFixture::subcommand(
                    "mute",
                    vec![OptionFixture::focused("name", "Gr")],
                )],
            )
            .in_guild(GUILD, TEXT),
        )
        .expect("sent");
    let interaction = gateway.dispatch("INTERACTION_CREATE").await;
    assert_eq!(interaction["type"], 4);
    let focused = &interaction["data"]["options"][0]["options"][0];
    assert_eq!(
        (focused["value"].clone(), focused["focused"].clone()),
        (json!("Gr"), json!(true))
    );
    let choices: Vec<Value> = (0..26)
        .map(|n| json!({ "name": n.to_string(), "value": n.to_string() }))
        .collect();
    let refused = http
        .post(callback(&sent))
        .json(&json!({ "type": 8, "data": { "choices": choices } }))
        .send()
        .await
        .expect("callback");
    assert_eq!(refused.status(), 400);
    let wrong_type = http
        .post(callback(&sent))
        .json(&json!({ "type": 4, "data": { "content": "no" } }))
        .send()
        .await
        .expect("callback");
    assert_eq!(wrong_type.status(), 400);
    let accepted = http
        .post(callback(&sent))
        .json(&json!({ "type": 8, "data": { "choices": [{ "name": "Grim", "value": "grim" }] } }))
        .send()
        .await
        .expect("callback");
    assert_eq!(accepted.status(), 204);

    // A button on the bot's reply; UPDATE_MESSAGE (7) edits that message.
    let sent = fake
        .send_interaction(
            TOKEN,
            InteractionFixture::command("entity", vec![]).in_guild(GUILD, TEXT),
        )
        .expect("sent");
    gateway.dispatch("INTERACTION_CREATE").await;
    let buttons =
        json!([{ "type": 1, "components": [{ "type": 2, "style": 4, "label": "Confirm", "custom_id": "confirm" }] }]);
    let answered = http
        .post(callback(&sent))
        .json(&json!({ "type": 4, "data": { "content": "Remove Grim?", "components": buttons } }))
        .send()
        .await
        .expect("callback");
    assert_eq!(answered.status(), 204);
    let original = fake
        .state(|state| state.original_message_id(&sent.id).map(str::to_owned))
        .expect("original message");
    let pressed = fake
        .send_interaction(
            TOKEN,
            InteractionFixture::button("confirm")
                .on_message(original.clone())
                .in_guild(GUILD, TEXT),
        )
        .expect("sent");
    let interaction = gateway.dispatch("INTERACTION_CREATE").await;
    assert_eq!(interaction["type"], 3);
    assert_eq!(interaction["data"]["custom_id"], "confirm");
    assert_eq!(interaction["data"]["component_type"], 2);
    assert_eq!(interaction["message"]["id"], original.as_str());
    let updated = http
        .post(callback(&pressed))
        .json(&json!({ "type": 7, "data": { "content": "Removed.", "components": [] } }))
        .send()
        .await
        .expect("callback");
    assert_eq!(updated.status(), 204);
    let message = fake.message(&original).expect("message");
    assert_eq!(
        (message["content"].clone(), message["components"].clone()),
        (json!("Removed."), json!([]))
    );

    // A modal submission carries its text inputs in action rows.
    fake.send_interaction(
        TOKEN,
        InteractionFixture::modal_submit("entity-add", vec![("entity-name".to_owned(), "Grim".to_owned())])
            .in_guild(GUILD, TEXT),
    )
    .expect("sent");
    let interaction = gateway.dispatch("INTERACTION_CREATE").await;
    assert_eq!(interaction["type"], 5);
    assert_eq!(
        interaction["data"]["components"][0]["components"][0],
        json!({ "type": 4, "custom_id": "entity-name", "value": "Grim" })
    );

    // An attachment option is resolved to a URL the fake serves.
    fake.send_interaction(
        TOKEN,
        InteractionFixture::command(
            "entity",
            vec![OptionFixture::subcommand(
                "import",
                vec![OptionFixture::attachment(
                    "file",
                    "campaign.yaml",
                    b"name: Test".to_vec(),
                )],
            )],
        )
        .in_guild(GUILD, TEXT),
    )
    .expect("sent");
    let interaction = gateway.dispatch("INTERACTION_CREATE").await;
    let id = interaction["data"]["options"][0]["options"][0]["value"]
        .as_str()
        .expect("attachment id");
    let attachment = &interaction["data"]["resolved"]["attachments"][id];
    assert_eq!(attachment["filename"], "campaign.yaml");
    assert_eq!(attachment["size"], 10);
    let url = attachment["url"].as_str().expect("url");
    let bytes = http.get(url).send().await.expect("GET").bytes().await.expect("bytes");
    assert_eq!(&bytes[..], b"name: Test");
}

#[tokio::test]
async fn channel_messages_and_unknown_routes() {
    let fake = fake_with_bot().await;
    let http = client();
    let url = format!("{}/api/v10/channels/{TEXT}/messages", fake.url());
    let posted: Value = http
        .post(&url)
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&json!({ "embeds": [{ "title": "Dashboard", "description": "idle" }] }))
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("message JSON");
    let id = posted["id"].as_str().expect("id");
    assert_eq!(posted["author"]["id"], BOT_USER);
    let edited = http
        .patch(format!("{url}/{id}"))
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&json!({ "embeds": [{ "title": "Dashboard", "description": "session running" }] }))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(edited.status(), 200);
    let messages = fake.channel_messages(TEXT);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["embeds"][0]["description"], "session running");
    let empty = http
        .post(&url)
        .header("Authorization", format!("Bot {TOKEN}"))
        .json(&json!({ "content": "" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(empty.status(), 400);

    let unknown = http
        .get(format!("{}/api/v10/guilds/{GUILD}/audit-logs", fake.url()))
        .header("Authorization", format!("Bot {TOKEN}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.expect("JSON");
    assert_eq!(body["code"], 0);
    assert!(fake
        .requests()
        .iter()
        .any(|request| request.path.ends_with("/audit-logs") && request.status == 404));

    let attachment = fake.serve_attachment("campaign.yaml", b"name: Test".to_vec());
    let bytes = http
        .get(&attachment)
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&bytes[..], b"name: Test");
}

#[tokio::test]
async fn voice_state_requests_get_voice_events() {
    let fake = fake_with_bot().await;
    let (mut gateway, ready) = Gateway::identified(&fake, TOKEN).await;
    let session_id = ready["session_id"].clone();

    gateway
        .send(
            json!({ "op": 4, "d": { "guild_id": GUILD, "channel_id": VOICE, "self_mute": false, "self_deaf": true } }),
        )
        .await;
    let state = gateway.dispatch("VOICE_STATE_UPDATE").await;
    assert_eq!(state["user_id"], BOT_USER);
    assert_eq!(state["channel_id"], VOICE);
    assert_eq!(state["guild_id"], GUILD);
    assert_eq!(state["session_id"], session_id);
    let server = gateway.dispatch("VOICE_SERVER_UPDATE").await;
    assert_eq!(server["guild_id"], GUILD);
    assert!(server["token"].as_str().is_some_and(|token| !token.is_empty()));
    assert!(server["endpoint"].as_str().is_some());
    assert_eq!(fake.voice_channel(GUILD, BOT_USER).as_deref(), Some(VOICE));

    gateway
        .send(
            json!({ "op": 4, "d": { "guild_id": GUILD, "channel_id": null, "self_mute": false, "self_deaf": false } }),
        )
        .await;
    let left = gateway.dispatch("VOICE_STATE_UPDATE").await;
    assert_eq!(left["channel_id"], Value::Null);
    assert_eq!(fake.voice_channel(GUILD, BOT_USER), None);

    // With auto-voice off Discord stays silent; the heartbeat ACK is the next frame.
    fake.set_auto_voice(GUILD, false);
    gateway
        .send(
            json!({ "op": 4, "d": { "guild_id": GUILD, "channel_id": VOICE, "self_mute": false, "self_deaf": true } }),
        )
        .await;
    gateway.send(json!({ "op": 1, "d": 5 })).await;
    assert_eq!(gateway.next().await["op"], 11);

    // The test plays the rest: a kick and a user moving.
    fake.send_dispatch(
        TOKEN,
        "VOICE_STATE_UPDATE",
        json!({ "guild_id": GUILD, "channel_id": null, "user_id": BOT_USER, "session_id": session_id,
                "deaf": false, "mute": false, "self_deaf": false, "self_mute": false, "self_video": false,
                "suppress": false, "request_to_speak_timestamp": null }),
    )
    .expect("dispatch sent");
    assert_eq!(gateway.dispatch("VOICE_STATE_UPDATE").await["user_id"], BOT_USER);
    fake.set_voice_state(GUILD, PLAYER, None);
    let moved = gateway.dispatch("VOICE_STATE_UPDATE").await;
    assert_eq!(
        (moved["user_id"].clone(), moved["channel_id"].clone()),
        (json!(PLAYER), Value::Null)
    );
    // Moving the bot itself (a kick by a moderator) carries its gateway session.
    fake.set_voice_state(GUILD, BOT_USER, None);
    let kicked = gateway.dispatch("VOICE_STATE_UPDATE").await;
    assert_eq!(
        (kicked["session_id"].clone(), kicked["member"]["user"]["bot"].clone()),
        (session_id, json!(true))
    );
    let ops: Vec<Option<u8>> = fake.gateway_ops(TOKEN).iter().map(|op| op.op).collect();
    assert_eq!(ops, [Some(2), Some(4), Some(4), Some(4), Some(1)]);
}

#[tokio::test]
async fn resume_replays_missed_dispatches() {
    let fake = fake_with_bot().await;
    let (gateway, ready) = Gateway::identified(&fake, TOKEN).await;
    let session_id = ready["session_id"].as_str().expect("session id").to_owned();
    drop(gateway);
    fake.wait_until(|state| !state.connected(TOKEN), STEP)
        .await
        .expect("disconnected");
    assert!(matches!(
        fake.send_dispatch(TOKEN, "TYPING_START", json!({})),
        Err(FakeDiscordError::NotConnected { .. })
    ));

    let mut gateway = Gateway::connect(&fake).await;
    gateway
        .send(json!({ "op": 6, "d": { "token": format!("Bot {TOKEN}"), "session_id": session_id, "seq": 1 } }))
        .await;
    // GUILD_CREATE (seq 2) was not acknowledged by seq 1: it comes again, then RESUMED.
    let replayed = gateway.next().await;
    assert_eq!(
        (replayed["t"].clone(), replayed["s"].clone()),
        (json!("GUILD_CREATE"), json!(2))
    );
    let resumed = gateway.next().await;
    assert_eq!(
        (resumed["t"].clone(), resumed["s"].clone()),
        (json!("RESUMED"), json!(3))
    );
    assert!(fake.connected(TOKEN));

    let mut stranger = Gateway::connect(&fake).await;
    stranger
        .send(json!({ "op": 6, "d": { "token": TOKEN, "session_id": "no-such-session", "seq": 0 } }))
        .await;
    assert_eq!(
        stranger.next().await,
        json!({ "op": 9, "d": false, "s": null, "t": null })
    );
}

#[tokio::test]
async fn wait_until_times_out_with_a_clear_error() {
    let fake = fake_with_bot().await;
    let started = tokio::time::Instant::now();
    let error = fake
        .wait_until(|state| state.connected(TOKEN), Duration::from_millis(100))
        .await
        .expect_err("nobody connects");
    assert!(started.elapsed() < STEP);
    assert!(matches!(error, FakeDiscordError::Timeout { .. }));
    let text = error.to_string();
    assert!(text.contains("condition not met within 100ms"), "{text}");
    assert!(text.contains("connected=false"), "{text}");
    assert!(matches!(
        fake.send_interaction("nobody", InteractionFixture::button("x")),
        Err(FakeDiscordError::UnknownBot { .. })
    ));
    assert!(matches!(
        fake.send_interaction(TOKEN, InteractionFixture::button("x")),
        Err(FakeDiscordError::NotConnected { .. })
    ));
}

/// serenity 0.12 itself, pointed at the fake with `HttpBuilder::proxy`:
/// READY/GUILD_CREATE deserialize, commands register, an interaction is
/// deferred, edited and followed up, and a voice join is answered.
mod serenity_bot {
    use serenity::all::{
        ClientBuilder, CommandOptionType, Context, CreateCommand, CreateCommandOption,
        CreateInteractionResponseFollowup, EditInteractionResponse, EventHandler, GatewayIntents, Guild, HttpBuilder,
        Interaction, Ready, VoiceServerUpdateEvent, VoiceState,
    };
    use tokio::sync::mpsc;

    use super::*;

    struct Bot {
        events: mpsc::UnboundedSender<String>,
    }

    impl Bot {
        fn note(&self, event: String) {
            let _ = self.events.send(event);
        }
    }

    #[serenity::async_trait]
    impl EventHandler for Bot {
        async fn ready(&self, _ctx: Context, ready: Ready) {
            self.note(format!("ready {} {}", ready.user.name, ready.application.id));
        }

        async fn guild_create(&self, ctx: Context, guild: Guild, _is_new: Option<bool>) {
            self.note(format!("guild {} voice={}", guild.name, guild.voice_states.len()));
            let session = CreateCommand::new("session")
                .description("Sessions")
                .add_option(CreateCommandOption::new(
                    CommandOptionType::SubCommand,
                    "start",
                    "Start",
                ));
            let registered = guild.id.set_commands(&ctx.http, vec![session]).await;
            self.note(format!("commands {}", registered.map_or(0, |commands| commands.len())));
        }

        async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
            let Interaction::Command(command) = interaction else {
                return;
            };
            let deferred = command.defer_ephemeral(&ctx.http).await.is_ok();
            let edited = command
                .edit_response(&ctx.http, EditInteractionResponse::new().content("Session started."))
                .await
                .is_ok();
            let followed = command
                .create_followup(
                    &ctx.http,
                    CreateInteractionResponseFollowup::new()
                        .content("More.")
                        .ephemeral(true),
                )
                .await
                .is_ok();
            self.note(format!("replied {deferred} {edited} {followed}"));
            let join = json!({ "op": 4, "d": { "guild_id": GUILD, "channel_id": VOICE, "self_mute": false, "self_deaf": true } });
            ctx.shard
                .websocket_message(tungstenite_0_21::Message::Text(join.to_string()));
        }

        async fn voice_state_update(&self, _ctx: Context, _old: Option<VoiceState>, new: VoiceState) {
            self.note(format!("voice state {:?}", new.channel_id.map(|id| id.get())));
        }

        async fn voice_server_update(&self, _ctx: Context, event: VoiceServerUpdateEvent) {
            self.note(format!("voice server {}", event.endpoint.is_some()));
        }
    }

    async fn expect(events: &mut mpsc::UnboundedReceiver<String>, seen: &mut Vec<String>, wanted: &str) {
        while !seen.iter().any(|event| event == wanted) {
            match tokio::time::timeout(STEP, events.recv()).await {
                Ok(Some(event)) => seen.push(event),
                _ => panic!("serenity bot never reported {wanted:?}; saw {seen:?}"),
            }
        }
    }

    #[tokio::test]
    async fn serenity_runs_a_bot_against_the_fake() {
        let fake = FakeDiscord::start_with(FakeDiscordConfig {
            heartbeat_interval: Duration::from_millis(300),
            ..FakeDiscordConfig::default()
        })
        .await
        .expect("fake starts");
        fake.add_bot(bot());
        let (sender, mut events) = mpsc::unbounded_channel();
        let http = HttpBuilder::new(TOKEN)
            .proxy(fake.url())
            .ratelimiter_disabled(true)
            .build();
        let mut client = ClientBuilder::new_with_http(http, GatewayIntents::non_privileged())
            .event_handler(Bot { events: sender })
            .await
            .expect("serenity client");
        let running = tokio::spawn(async move { client.start().await });

        let mut seen = Vec::new();
        expect(&mut events, &mut seen, &format!("ready Glyphoxa {APP}")).await;
        expect(&mut events, &mut seen, "guild The Table voice=1").await;
        expect(&mut events, &mut seen, "commands 1").await;
        assert_eq!(
            fake.registered_commands(APP, GUILD).map(|commands| commands.len()),
            Some(1)
        );

        let sent = fake
            .send_interaction(
                TOKEN,
                InteractionFixture::command("session", vec![OptionFixture::subcommand("start", vec![])])
                    .in_guild(GUILD, TEXT),
            )
            .expect("interaction sent");
        expect(&mut events, &mut seen, "replied true true true").await;
        expect(&mut events, &mut seen, &format!("voice state Some({VOICE})")).await;
        expect(&mut events, &mut seen, "voice server true").await;
        let kinds: Vec<ReplyKind> = fake
            .interaction_replies(&sent.id)
            .iter()
            .map(|reply| reply.kind)
            .collect();
        assert_eq!(
            kinds,
            [ReplyKind::Callback, ReplyKind::EditOriginal, ReplyKind::Followup]
        );
        fake.wait_until(|state| state.gateway_ops(TOKEN).iter().any(|op| op.op == Some(1)), STEP)
            .await
            .expect("serenity heartbeats");

        // A revoked token ends the client with an authentication error (close code 4004).
        fake.revoke_token(TOKEN);
        let ended = tokio::time::timeout(STEP, running).await.expect("client stops");
        assert!(ended.expect("client task").is_err());
    }
}
