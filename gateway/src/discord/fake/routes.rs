//! The REST route table of the fake (API v10 paths as serenity 0.12 builds
//! them, plus `/attachments/`): authentication, then each route mapped to
//! the state operation that serves it.

use serde_json::{json, Value};

use super::api_error::ApiError;
use super::commands::{self, Scope};
use super::fixtures::BotFixture;
use super::limits;
use super::messages::{decode_path, Origin};
use super::objects;
use super::records::UploadedFile;
use super::state::FakeState;

/// A parsed REST request.
#[derive(Debug)]
pub(super) struct Incoming<'a> {
    pub(super) method: &'a str,
    pub(super) path: &'a str,
    /// Token of `Authorization`, without `Bot `.
    pub(super) token: Option<&'a str>,
    /// JSON body (`payload_json` for multipart).
    pub(super) body: Option<&'a Value>,
    pub(super) files: &'a [UploadedFile],
}

/// What the fake answers.
#[derive(Debug)]
pub(super) enum Answer {
    /// A JSON body with a status.
    Json(u16, Value),
    /// 204.
    NoContent,
    /// A served file.
    File { content_type: String, bytes: Vec<u8> },
}

impl Answer {
    fn ok(body: Value) -> Self {
        Self::Json(200, body)
    }

    /// The status code.
    pub(super) fn status(&self) -> u16 {
        match self {
            Self::Json(status, _) => *status,
            Self::NoContent => 204,
            Self::File { .. } => 200,
        }
    }
}

impl From<ApiError> for Answer {
    fn from(error: ApiError) -> Self {
        Self::Json(error.status, error.body)
    }
}

fn answer<T>(result: Result<T, ApiError>, ok: impl FnOnce(T) -> Answer) -> Answer {
    result.map_or_else(Answer::from, ok)
}

/// Serves one request against the state.
pub(super) fn route(state: &mut FakeState, request: &Incoming<'_>) -> Answer {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["attachments", path @ ..] if request.method == "GET" => {
            let key = decode_path(&path.join("/"));
            match state.files.get(&key) {
                Some(file) => Answer::File {
                    content_type: file.content_type.clone(),
                    bytes: file.bytes.clone(),
                },
                None => ApiError::not_found().into(),
            }
        }
        ["api", "v10", rest @ ..] => api(state, request, rest),
        _ => ApiError::not_found().into(),
    }
}

fn api(state: &mut FakeState, request: &Incoming<'_>, rest: &[&str]) -> Answer {
    // The gateway URL is public: serenity falls back to the real gateway when this fails.
    if let ("GET", ["gateway"]) = (request.method, rest) {
        return Answer::ok(json!({ "url": state.settings.gateway_url }));
    }
    // A token, when sent, must be valid everywhere else.
    let bot = match request.token {
        Some(token) => match state.bot(token) {
            Some(bot) => Some(bot.clone()),
            None => return ApiError::unauthorized().into(),
        },
        None => None,
    };
    let (method, body, files) = (request.method, request.body, request.files);
    // Interaction callbacks and webhooks are authorised by the interaction token in the path.
    match (method, rest) {
        ("POST", ["interactions", id, token, "callback"]) => {
            return answer(state.interaction_callback(id, token, body, files), |()| {
                Answer::NoContent
            });
        }
        ("POST", ["webhooks", app, token]) => {
            return answer(state.create_followup(app, token, body, files), Answer::ok);
        }
        ("GET", ["webhooks", app, token, "messages", message]) => {
            return answer(state.get_webhook_message(app, token, message), Answer::ok);
        }
        ("PATCH", ["webhooks", app, token, "messages", message]) => {
            return answer(state.edit_webhook_message(app, token, message, body, files), Answer::ok);
        }
        ("DELETE", ["webhooks", app, token, "messages", message]) => {
            return answer(state.delete_webhook_message(app, token, message), |()| {
                Answer::NoContent
            });
        }
        _ => {}
    }
    let Some(bot) = bot else {
        return ApiError::unauthorized().into();
    };
    match (method, rest) {
        ("GET", ["gateway", "bot"]) => Answer::ok(objects::gateway_bot(&state.settings.gateway_url)),
        ("GET", ["users", "@me"]) => Answer::ok(objects::current_user(&bot)),
        ("GET", ["oauth2", "applications", "@me"] | ["applications", "@me"]) => {
            Answer::ok(objects::application_info(&bot))
        }
        (_, ["applications", app, "guilds", guild, "commands", command @ ..]) => {
            let scope = commands::scope(&bot, app, Some(guild));
            answer(scope, |scope| command_route(state, scope, method, command, body))
        }
        (_, ["applications", app, "commands", command @ ..]) => {
            let scope = commands::scope(&bot, app, None);
            answer(scope, |scope| command_route(state, scope, method, command, body))
        }
        (_, ["channels", channel, "messages", message @ ..]) => {
            channel_route(state, &bot, channel, method, message, body, files)
        }
        _ => ApiError::not_found().into(),
    }
}

fn command_route(state: &mut FakeState, scope: Scope, method: &str, command: &[&str], body: Option<&Value>) -> Answer {
    match (method, command) {
        ("PUT", []) => answer(state.overwrite_commands(scope, body), |list| Answer::ok(json!(list))),
        ("GET", []) => Answer::ok(json!(state.list_commands(&scope))),
        ("POST", []) => answer(state.upsert_command(scope, body), |command| Answer::Json(201, command)),
        ("GET", [id]) => answer(state.get_command(&scope, id), Answer::ok),
        ("PATCH", [id]) => answer(state.edit_command(&scope, id, body), Answer::ok),
        ("DELETE", [id]) => answer(state.delete_command(&scope, id), |()| Answer::NoContent),
        _ => ApiError::not_found().into(),
    }
}

fn channel_route(
    state: &mut FakeState,
    bot: &BotFixture,
    channel: &str,
    method: &str,
    message: &[&str],
    body: Option<&Value>,
    files: &[UploadedFile],
) -> Answer {
    let in_channel = |state: &FakeState, id: &str| {
        state
            .message(id)
            .filter(|message| message.get("channel_id").and_then(Value::as_str) == Some(channel))
            .is_some()
    };
    let body = body.cloned().unwrap_or(Value::Null);
    match (method, message) {
        ("POST", []) => match limits::check_message(&body, &[], files.len(), true) {
            Ok(()) => Answer::ok(state.create_message(bot, channel, Origin::Channel, &body, files)),
            Err(error) => error.into(),
        },
        ("GET", []) => {
            let mut list: Vec<Value> = state.channel_messages(channel).into_iter().cloned().collect();
            list.reverse();
            Answer::ok(json!(list))
        }
        ("GET", [id]) if in_channel(state, id) => Answer::ok(state.message(id).cloned().unwrap_or_default()),
        ("PATCH", [id]) if in_channel(state, id) => {
            let body = if body.is_null() { json!({}) } else { body };
            match limits::check_message(&body, &[], files.len(), false) {
                Ok(()) => state
                    .edit_message(id, &body, files)
                    .map_or_else(|| ApiError::unknown_message().into(), Answer::ok),
                Err(error) => error.into(),
            }
        }
        ("DELETE", [id]) if in_channel(state, id) => {
            state.delete_message(id);
            Answer::NoContent
        }
        ("GET" | "PATCH" | "DELETE", [_]) => ApiError::unknown_message().into(),
        _ => ApiError::not_found().into(),
    }
}
