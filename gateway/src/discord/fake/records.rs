//! What the fake Discord saw and sent, as tests read it back: REST requests,
//! gateway ops from bots, dispatches to bots and the replies to each
//! interaction.

use std::time::Duration;

use serde_json::Value;

/// One REST request, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `PUT`.
    pub method: String,
    /// Path, e.g. `/api/v10/applications/1/guilds/2/commands`.
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// The token of `Authorization: Bot <token>`, if one was sent.
    pub token: Option<String>,
    /// The application id of the bot owning that token, if known.
    pub application_id: Option<String>,
    /// The JSON body (`payload_json` for multipart); a body that is not
    /// JSON is kept as a JSON string.
    pub body: Option<Value>,
    /// Files uploaded with a multipart body.
    pub files: Vec<UploadedFile>,
    /// The status the fake answered with.
    pub status: u16,
}

/// A file part of a multipart request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedFile {
    /// The form field, e.g. `files[0]`.
    pub field: String,
    /// The file name the client gave.
    pub filename: String,
    /// The part's content type, if given.
    pub content_type: Option<String>,
    /// The content.
    pub bytes: Vec<u8>,
}

/// One gateway payload a bot sent.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayOp {
    /// The connection it came on (in order of connection).
    pub connection: u64,
    /// The opcode; `None` for a payload that was not valid JSON with an `op`.
    pub op: Option<u8>,
    /// The payload's `d` (or, for an undecodable payload, its text).
    pub d: Value,
}

/// One dispatch (op 0) the fake sent to a bot.
#[derive(Debug, Clone, PartialEq)]
pub struct SentDispatch {
    /// The gateway session it belongs to.
    pub session_id: String,
    /// Its sequence number.
    pub seq: u64,
    /// Event name, e.g. `INTERACTION_CREATE`.
    pub event: String,
    /// Event data.
    pub data: Value,
}

/// How a bot answered an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// `POST /interactions/{id}/{token}/callback`.
    Callback,
    /// `PATCH /webhooks/{app}/{token}/messages/@original`.
    EditOriginal,
    /// `DELETE /webhooks/{app}/{token}/messages/@original`.
    DeleteOriginal,
    /// `POST /webhooks/{app}/{token}`.
    Followup,
    /// `PATCH /webhooks/{app}/{token}/messages/{id}`.
    EditFollowup,
    /// `DELETE /webhooks/{app}/{token}/messages/{id}`.
    DeleteFollowup,
}

/// One accepted reply to an interaction (rejected ones are only in the
/// request log).
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionReply {
    /// Which endpoint it came through.
    pub kind: ReplyKind,
    /// The JSON body (`payload_json` for multipart; `null` for deletes).
    pub body: Value,
    /// Files uploaded with it.
    pub files: Vec<UploadedFile>,
    /// The message it created or edited, if any.
    pub message_id: Option<String>,
    /// Time from sending the INTERACTION_CREATE to this reply.
    pub after: Duration,
}

/// An interaction the fake sent: what a test needs to find its replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentInteraction {
    /// The interaction id (key of [`super::FakeDiscord::interaction_responses`]).
    pub id: String,
    /// The interaction token (part of its callback and webhook URLs).
    pub token: String,
}
