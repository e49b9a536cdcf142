//! Discord's JSON error answers (`{"message": ..., "code": ...}`), with the
//! status codes and error codes the real API uses.

use serde_json::{json, Map, Value};

/// An error answer of the REST API.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ApiError {
    /// HTTP status.
    pub(super) status: u16,
    /// JSON body.
    pub(super) body: Value,
}

impl ApiError {
    fn new(status: u16, code: u32, message: &str) -> Self {
        Self {
            status,
            body: json!({ "message": message, "code": code }),
        }
    }

    /// 401: missing, unknown or revoked token.
    pub(super) fn unauthorized() -> Self {
        Self::new(401, 0, "401: Unauthorized")
    }

    /// 404: no such route.
    pub(super) fn not_found() -> Self {
        Self::new(404, 0, "404: Not Found")
    }

    /// 400: the body is not JSON.
    pub(super) fn invalid_json() -> Self {
        Self::new(400, 50109, "The request body contains invalid JSON.")
    }

    /// 403: the guild is not one of the bot's.
    pub(super) fn missing_access() -> Self {
        Self::new(403, 50001, "Missing Access")
    }

    /// 403: the application id in the path is not the bot's.
    pub(super) fn not_your_application() -> Self {
        Self::new(
            403,
            20012,
            "You are not authorized to perform this action on this application",
        )
    }

    /// 404: unknown interaction id or token.
    pub(super) fn unknown_interaction() -> Self {
        Self::new(404, 10062, "Unknown interaction")
    }

    /// 404: unknown webhook (interaction token not known or not yet acknowledged).
    pub(super) fn unknown_webhook() -> Self {
        Self::new(404, 10015, "Unknown Webhook")
    }

    /// 404: unknown message.
    pub(super) fn unknown_message() -> Self {
        Self::new(404, 10008, "Unknown Message")
    }

    /// 404: unknown application command.
    pub(super) fn unknown_command() -> Self {
        Self::new(404, 10063, "Unknown application command")
    }

    /// 400: the interaction was already answered.
    pub(super) fn already_acknowledged() -> Self {
        Self::new(400, 40060, "Interaction has already been acknowledged.")
    }

    /// 400: a message with nothing in it.
    pub(super) fn empty_message() -> Self {
        Self::new(400, 50006, "Cannot send an empty message")
    }

    /// 400 `Invalid Form Body` (50035) with one error at `path` (JSON keys
    /// and array indexes), as Discord nests them.
    pub(super) fn invalid_form(path: &[String], code: &str, message: &str) -> Self {
        let mut errors = json!({ "_errors": [{ "code": code, "message": message }] });
        for key in path.iter().rev() {
            let mut wrapper = Map::new();
            wrapper.insert(key.clone(), errors);
            errors = Value::Object(wrapper);
        }
        Self {
            status: 400,
            body: json!({ "message": "Invalid Form Body", "code": 50035, "errors": errors }),
        }
    }
}
