//! Messages the bots post (channel messages, interaction responses,
//! follow-ups): built from the bots' payloads into message objects, edited,
//! deleted, and their uploaded files served back under `/attachments/`.

use serde_json::{json, Map, Value};

use super::fixtures::BotFixture;
use super::objects;
use super::records::UploadedFile;
use super::state::{FakeState, StoredFile};

/// `flags` bit: only the invoking user sees the message.
pub(super) const EPHEMERAL: u64 = 1 << 6;
/// `flags` bit: a deferred response still "thinking".
pub(super) const LOADING: u64 = 1 << 7;

/// Where a new message comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum Origin<'a> {
    /// `POST /channels/{id}/messages`.
    Channel,
    /// An interaction response or follow-up of application `application_id`.
    Interaction {
        /// The bot's application id (the message's `webhook_id` and `application_id`).
        application_id: &'a str,
    },
}

/// Percent-encodes a path segment for `/attachments/` URLs.
pub(super) fn encode_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub(super) fn decode_path(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Embeds as Discord echoes them: `type` defaults to `rich`.
fn normalise_embeds(embeds: &Value) -> Value {
    let Some(list) = embeds.as_array() else {
        return json!([]);
    };
    let normalised: Vec<Value> = list
        .iter()
        .map(|embed| {
            let mut embed = embed.clone();
            if let Some(fields) = embed.as_object_mut() {
                fields.entry("type").or_insert_with(|| json!("rich"));
            }
            embed
        })
        .collect();
    Value::Array(normalised)
}

/// The `attachments` entry of `payload` describing upload `files[n]`.
fn described<'a>(payload: &'a Value, field: &str) -> Option<&'a Map<String, Value>> {
    let index = field.strip_prefix("files[")?.strip_suffix(']')?;
    payload
        .get("attachments")?
        .as_array()?
        .iter()
        .filter_map(Value::as_object)
        .find(|entry| match entry.get("id") {
            Some(Value::String(id)) => id == index,
            Some(Value::Number(id)) => id.to_string() == index,
            _ => false,
        })
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

impl FakeState {
    /// Serves `bytes` at `/attachments/{path}` (path segments encoded); returns the URL.
    pub(super) fn serve_file(&mut self, path: &str, content_type: &str, bytes: Vec<u8>) -> String {
        self.files.insert(
            path.to_owned(),
            StoredFile {
                content_type: content_type.to_owned(),
                bytes,
            },
        );
        self.file_url(path)
    }

    /// The URL `/attachments/{path}` is served at.
    pub(super) fn file_url(&self, path: &str) -> String {
        let encoded: Vec<String> = path.split('/').map(encode_segment).collect();
        format!("{}/attachments/{}", self.settings.rest_origin, encoded.join("/"))
    }

    /// Attachment objects for uploaded files, now served by the fake.
    fn store_uploads(&mut self, payload: &Value, files: &[UploadedFile]) -> Vec<Value> {
        let mut attachments = Vec::with_capacity(files.len());
        for file in files {
            let description = described(payload, &file.field);
            let filename = description
                .and_then(|entry| entry.get("filename"))
                .and_then(Value::as_str)
                .unwrap_or(&file.filename)
                .to_owned();
            let content_type = file
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            let id = self.next_id();
            let url = self.serve_file(&format!("{id}/{filename}"), &content_type, file.bytes.clone());
            attachments.push(json!({
                "id": id,
                "filename": filename,
                "description": description.and_then(|entry| entry.get("description")).cloned(),
                "size": file.bytes.len(),
                "url": url,
                "proxy_url": url,
                "content_type": content_type,
            }));
        }
        attachments
    }

    /// Creates and stores a message from `payload` (already checked) in `channel_id`.
    pub(super) fn create_message(
        &mut self,
        bot: &BotFixture,
        channel_id: &str,
        origin: Origin<'_>,
        payload: &Value,
        files: &[UploadedFile],
    ) -> Value {
        let id = self.next_id();
        let attachments = self.store_uploads(payload, files);
        let mut message = json!({
            "id": id,
            "channel_id": channel_id,
            "author": objects::user(&bot.user_id, &bot.username, true),
            "content": payload.get("content").and_then(Value::as_str).unwrap_or_default(),
            "timestamp": Self::now(),
            "edited_timestamp": null,
            "tts": payload.get("tts").and_then(Value::as_bool).unwrap_or(false),
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": normalise_embeds(payload.get("embeds").unwrap_or(&Value::Null)),
            "components": payload.get("components").cloned().unwrap_or_else(|| json!([])),
            "pinned": false,
            "type": 0,
            "flags": payload.get("flags").and_then(Value::as_u64).unwrap_or(0),
        });
        if let (Origin::Interaction { application_id }, Some(fields)) = (origin, message.as_object_mut()) {
            fields.insert("type".to_owned(), json!(20));
            fields.insert("webhook_id".to_owned(), json!(application_id));
            fields.insert("application_id".to_owned(), json!(application_id));
        }
        self.messages.insert(id.clone(), message.clone());
        if matches!(origin, Origin::Channel) {
            self.channel_messages.entry(channel_id.to_owned()).or_default().push(id);
        }
        message
    }

    /// Applies an edit `payload` (already checked) to message `id`; returns
    /// the edited message, or `None` if there is no such message.
    pub(super) fn edit_message(&mut self, id: &str, payload: &Value, files: &[UploadedFile]) -> Option<Value> {
        let uploads = self.store_uploads(payload, files);
        let message = self.messages.get_mut(id)?.as_object_mut()?;
        for key in ["content", "components"] {
            if let Some(value) = payload.get(key) {
                let value = if value.is_null() && key == "content" {
                    json!("")
                } else {
                    value.clone()
                };
                message.insert(key.to_owned(), value);
            }
        }
        if let Some(embeds) = payload.get("embeds") {
            message.insert("embeds".to_owned(), normalise_embeds(embeds));
        }
        let old_flags = message.get("flags").and_then(Value::as_u64).unwrap_or(0);
        let asked = payload.get("flags").and_then(Value::as_u64).unwrap_or(old_flags);
        // An edit can neither make a message ephemeral nor public; it ends "thinking".
        let flags = (asked & !(EPHEMERAL | LOADING)) | (old_flags & EPHEMERAL);
        message.insert("flags".to_owned(), json!(flags));
        let mut attachments: Vec<Value> = message
            .get("attachments")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(keep) = payload.get("attachments").and_then(Value::as_array) {
            let kept: Vec<String> = keep
                .iter()
                .filter_map(|entry| entry.get("id"))
                .filter_map(id_text)
                .collect();
            attachments.retain(|attachment| {
                attachment
                    .get("id")
                    .and_then(id_text)
                    .is_some_and(|id| kept.contains(&id))
            });
        }
        attachments.extend(uploads);
        message.insert("attachments".to_owned(), Value::Array(attachments));
        message.insert("edited_timestamp".to_owned(), json!(Self::now()));
        Some(Value::Object(message.clone()))
    }

    /// Deletes message `id`; `false` if there was none.
    pub(super) fn delete_message(&mut self, id: &str) -> bool {
        let existed = self.messages.remove(id).is_some();
        for ids in self.channel_messages.values_mut() {
            ids.retain(|kept| kept != id);
        }
        existed
    }
}
