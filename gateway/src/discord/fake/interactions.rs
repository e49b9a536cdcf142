//! Interactions from INTERACTION_CREATE to the last follow-up: building the
//! payload from an [`InteractionFixture`], the callback (once, of a type
//! allowed for the interaction), the original response and follow-ups
//! through the interaction webhook, each reply recorded in order.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::api_error::ApiError;
use super::fixtures::{BotFixture, InteractionFixture, InteractionKind, OptionFixture, OptionValue};
use super::limits;
use super::messages::{Origin, EPHEMERAL, LOADING};
use super::objects::{self, ALL_PERMISSIONS, ATTACHMENT_SIZE_LIMIT};
use super::records::{InteractionReply, ReplyKind, SentInteraction, UploadedFile};
use super::state::{FakeState, StoredFile};
use super::FakeDiscordError;

/// Interaction response (callback) types.
mod callback {
    pub(super) const CHANNEL_MESSAGE: u64 = 4;
    pub(super) const DEFERRED_CHANNEL_MESSAGE: u64 = 5;
    pub(super) const DEFERRED_UPDATE_MESSAGE: u64 = 6;
    pub(super) const UPDATE_MESSAGE: u64 = 7;
    pub(super) const AUTOCOMPLETE_RESULT: u64 = 8;
    pub(super) const MODAL: u64 = 9;
}

/// An interaction the fake sent, and how it was answered.
#[derive(Debug, Clone)]
pub(super) struct InteractionEntry {
    pub(super) token: String,
    pub(super) application_id: String,
    pub(super) bot: BotFixture,
    /// Interaction type: 2 command, 3 component, 4 autocomplete, 5 modal submit.
    pub(super) kind: u64,
    pub(super) channel_id: String,
    pub(super) sent_at: Instant,
    pub(super) acknowledged: bool,
    /// The original response message, once there is one.
    pub(super) original: Option<String>,
    /// The message a component sits on.
    pub(super) source_message: Option<String>,
    pub(super) followups: Vec<String>,
    pub(super) replies: Vec<InteractionReply>,
}

/// Adds `object` under `resolved[section][id]`.
fn resolve(resolved: &mut Map<String, Value>, section: &str, id: &str, object: Value) {
    if let Some(map) = resolved
        .entry(section.to_owned())
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        map.insert(id.to_owned(), object);
    }
}

/// What building an INTERACTION_CREATE needs to keep when it is sent.
struct Built {
    payload: Value,
    files: Vec<(String, StoredFile)>,
    source_message: Option<String>,
}

impl FakeState {
    /// Sends `fixture` to the bot of `token` as INTERACTION_CREATE.
    pub(super) fn send_interaction(
        &mut self,
        token: &str,
        fixture: &InteractionFixture,
    ) -> Result<SentInteraction, FakeDiscordError> {
        let bot = self.bot(token).cloned().ok_or_else(|| FakeDiscordError::UnknownBot {
            token: token.to_owned(),
        })?;
        if let Some(guild_id) = &fixture.guild_id {
            if !bot.guilds.iter().any(|guild| &guild.id == guild_id) {
                return Err(FakeDiscordError::NotInGuild {
                    token: token.to_owned(),
                    guild_id: guild_id.clone(),
                });
            }
        }
        let id = self.next_id();
        let interaction_token = format!("fake-interaction-token-{id}");
        let built = self.build_interaction(&bot, fixture, &id, &interaction_token);
        let kind = built.payload.get("type").and_then(Value::as_u64).unwrap_or_default();
        self.dispatch(token, "INTERACTION_CREATE", built.payload)?;
        self.files.extend(built.files);
        self.interactions.insert(
            id.clone(),
            InteractionEntry {
                token: interaction_token.clone(),
                application_id: bot.application_id.clone(),
                bot,
                kind,
                channel_id: fixture.channel_id.clone(),
                sent_at: Instant::now(),
                acknowledged: false,
                original: None,
                source_message: built.source_message,
                followups: Vec::new(),
                replies: Vec::new(),
            },
        );
        Ok(SentInteraction {
            id,
            token: interaction_token,
        })
    }

    fn build_interaction(&mut self, bot: &BotFixture, fixture: &InteractionFixture, id: &str, token: &str) -> Built {
        let now = Self::now();
        let guild_id = fixture.guild_id.as_deref();
        let mut files = Vec::new();
        let mut source_message = None;
        let (kind, data, message) = match &fixture.kind {
            InteractionKind::Command { name, options } | InteractionKind::Autocomplete { name, options } => {
                let command_id = self
                    .command_id(&bot.application_id, guild_id, name)
                    .unwrap_or_else(|| self.next_id());
                let mut resolved = Map::new();
                let options: Vec<Value> = options
                    .iter()
                    .map(|option| self.option_json(option, guild_id, &mut resolved, &mut files))
                    .collect();
                let mut data = json!({ "id": command_id, "name": name, "type": 1, "options": options });
                if let Some(fields) = data.as_object_mut() {
                    if !resolved.is_empty() {
                        fields.insert("resolved".to_owned(), Value::Object(resolved));
                    }
                    if let Some(guild_id) = guild_id {
                        fields.insert("guild_id".to_owned(), json!(guild_id));
                    }
                }
                let kind = if matches!(fixture.kind, InteractionKind::Command { .. }) {
                    2
                } else {
                    4
                };
                (kind, data, None)
            }
            InteractionKind::Component {
                custom_id,
                component_type,
                values,
                message_id,
            } => {
                let message = message_id
                    .as_ref()
                    .and_then(|id| self.messages.get(id).cloned())
                    .unwrap_or_else(|| self.made_up_message(bot, &fixture.channel_id, custom_id, &now));
                source_message = message.get("id").and_then(Value::as_str).map(str::to_owned);
                let mut data = json!({ "custom_id": custom_id, "component_type": component_type });
                if *component_type != 2 {
                    if let Some(fields) = data.as_object_mut() {
                        fields.insert("values".to_owned(), json!(values));
                    }
                }
                (3, data, Some(message))
            }
            InteractionKind::ModalSubmit { custom_id, fields } => {
                let rows: Vec<Value> = fields
                    .iter()
                    .map(|(input, value)| {
                        json!({ "type": 1, "components": [{ "type": 4, "custom_id": input, "value": value }] })
                    })
                    .collect();
                (5, json!({ "custom_id": custom_id, "components": rows }), None)
            }
        };
        let mut payload = json!({
            "id": id,
            "application_id": bot.application_id,
            "type": kind,
            "data": data,
            "channel_id": fixture.channel_id,
            "channel": {
                "id": fixture.channel_id,
                "type": if guild_id.is_some() { 0 } else { 1 },
                "permissions": ALL_PERMISSIONS,
            },
            "token": token,
            "version": 1,
            "app_permissions": ALL_PERMISSIONS,
            "locale": fixture.locale,
            "entitlements": [],
            "context": if guild_id.is_some() { 0 } else { 1 },
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        });
        if let Some(fields) = payload.as_object_mut() {
            let user = objects::user(&fixture.user_id, &fixture.username, false);
            match guild_id {
                Some(guild_id) => {
                    let mut member = objects::member(user, &fixture.roles, &now);
                    if let Some(member) = member.as_object_mut() {
                        member.insert("permissions".to_owned(), json!(ALL_PERMISSIONS));
                    }
                    fields.insert("guild_id".to_owned(), json!(guild_id));
                    fields.insert("guild_locale".to_owned(), json!("en-US"));
                    fields.insert("member".to_owned(), member);
                }
                None => {
                    fields.insert("user".to_owned(), user);
                }
            }
            if let Some(message) = message {
                fields.insert("message".to_owned(), message);
            }
        }
        Built {
            payload,
            files,
            source_message,
        }
    }

    /// A bot message with one button, for components sent without `on_message`.
    fn made_up_message(&mut self, bot: &BotFixture, channel_id: &str, custom_id: &str, now: &str) -> Value {
        json!({
            "id": self.next_id(),
            "channel_id": channel_id,
            "author": objects::user(&bot.user_id, &bot.username, true),
            "content": "",
            "timestamp": now,
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [{
                "type": 1,
                "components": [{ "type": 2, "style": 1, "label": custom_id, "custom_id": custom_id }],
            }],
            "pinned": false,
            "type": 0,
            "flags": 0,
            "application_id": bot.application_id,
        })
    }

    /// One option as Discord sends it, adding to `resolved` and `files`.
    fn option_json(
        &mut self,
        option: &OptionFixture,
        guild_id: Option<&str>,
        resolved: &mut Map<String, Value>,
        files: &mut Vec<(String, StoredFile)>,
    ) -> Value {
        let value = match &option.value {
            OptionValue::SubCommand(options) | OptionValue::SubCommandGroup(options) => {
                let nested: Vec<Value> = options
                    .iter()
                    .map(|nested| self.option_json(nested, guild_id, resolved, files))
                    .collect();
                return json!({ "name": option.name, "type": option.value.code(), "options": nested });
            }
            OptionValue::Focused(typed) => {
                return json!({ "name": option.name, "type": option.value.code(), "value": typed, "focused": true });
            }
            OptionValue::String(text) => json!(text),
            OptionValue::Integer(number) => json!(number),
            OptionValue::Boolean(flag) => json!(flag),
            OptionValue::Number(number) => json!(number),
            OptionValue::User(id) => {
                resolve(resolved, "users", id, objects::user(id, &format!("user-{id}"), false));
                if guild_id.is_some() {
                    let mut member = objects::member(Value::Null, &[], &Self::now());
                    if let Some(fields) = member.as_object_mut() {
                        fields.remove("user");
                        fields.insert("permissions".to_owned(), json!(ALL_PERMISSIONS));
                    }
                    resolve(resolved, "members", id, member);
                }
                json!(id)
            }
            OptionValue::Channel(id) => {
                let channel =
                    json!({ "id": id, "name": format!("channel-{id}"), "type": 0, "permissions": ALL_PERMISSIONS });
                resolve(resolved, "channels", id, channel);
                json!(id)
            }
            OptionValue::Role(id) => {
                resolve(
                    resolved,
                    "roles",
                    id,
                    objects::role(id, &format!("role-{id}"), 1, ALL_PERMISSIONS),
                );
                json!(id)
            }
            OptionValue::Attachment {
                filename,
                content_type,
                bytes,
            } => {
                let id = self.next_id();
                let path = format!("{id}/{filename}");
                let mime = content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".to_owned());
                let url = self.file_url(&path);
                files.push((
                    path,
                    StoredFile {
                        content_type: mime,
                        bytes: bytes.clone(),
                    },
                ));
                let mut attachment = json!({
                    "id": id,
                    "filename": filename,
                    "size": bytes.len(),
                    "url": url,
                    "proxy_url": url,
                    "ephemeral": true,
                });
                if let (Some(content_type), Some(fields)) = (content_type, attachment.as_object_mut()) {
                    fields.insert("content_type".to_owned(), json!(content_type));
                }
                resolve(resolved, "attachments", &id, attachment);
                json!(id)
            }
        };
        json!({ "name": option.name, "type": option.value.code(), "value": value })
    }

    fn entry_by_id(&mut self, id: &str, token: &str) -> Result<&mut InteractionEntry, ApiError> {
        self.interactions
            .get_mut(id)
            .filter(|entry| entry.token == token)
            .ok_or_else(ApiError::unknown_interaction)
    }

    /// The interaction behind webhook `/webhooks/{application_id}/{token}`.
    fn interaction_id_by_webhook(&self, application_id: &str, token: &str) -> Result<String, ApiError> {
        self.interactions
            .iter()
            .find(|(_, entry)| entry.token == token && entry.application_id == application_id)
            .map(|(id, _)| id.clone())
            .ok_or_else(ApiError::unknown_webhook)
    }

    fn record_reply(
        &mut self,
        id: &str,
        kind: ReplyKind,
        body: Value,
        files: &[UploadedFile],
        message: Option<String>,
    ) {
        if let Some(entry) = self.interactions.get_mut(id) {
            entry.replies.push(InteractionReply {
                kind,
                body,
                files: files.to_vec(),
                message_id: message,
                after: entry.sent_at.elapsed(),
            });
        }
    }

    /// `POST /interactions/{id}/{token}/callback`.
    pub(super) fn interaction_callback(
        &mut self,
        id: &str,
        token: &str,
        body: Option<&Value>,
        files: &[UploadedFile],
    ) -> Result<(), ApiError> {
        let entry = self.entry_by_id(id, token)?.clone();
        if entry.acknowledged {
            return Err(ApiError::already_acknowledged());
        }
        let body = body.cloned().unwrap_or(Value::Null);
        let Some(kind) = body.get("type").and_then(Value::as_u64) else {
            return Err(ApiError::invalid_form(
                &["type".to_owned()],
                "BASE_TYPE_REQUIRED",
                "This field is required",
            ));
        };
        let allowed: &[u64] = match entry.kind {
            2 => &[
                callback::CHANNEL_MESSAGE,
                callback::DEFERRED_CHANNEL_MESSAGE,
                callback::MODAL,
            ],
            3 => &[
                callback::CHANNEL_MESSAGE,
                callback::DEFERRED_CHANNEL_MESSAGE,
                callback::DEFERRED_UPDATE_MESSAGE,
                callback::UPDATE_MESSAGE,
                callback::MODAL,
            ],
            4 => &[callback::AUTOCOMPLETE_RESULT],
            _ if entry.source_message.is_some() => &[
                callback::CHANNEL_MESSAGE,
                callback::DEFERRED_CHANNEL_MESSAGE,
                callback::DEFERRED_UPDATE_MESSAGE,
                callback::UPDATE_MESSAGE,
            ],
            _ => &[callback::CHANNEL_MESSAGE, callback::DEFERRED_CHANNEL_MESSAGE],
        };
        if !allowed.contains(&kind) {
            return Err(ApiError::invalid_form(
                &["type".to_owned()],
                "INTERACTION_RESPONSE_TYPE_INVALID",
                &format!(
                    "Interaction response type {kind} is not valid for interaction type {}",
                    entry.kind
                ),
            ));
        }
        let data = body.get("data").cloned().unwrap_or_else(|| json!({}));
        let origin = Origin::Interaction {
            application_id: &entry.application_id,
        };
        let original = match kind {
            callback::CHANNEL_MESSAGE => {
                limits::check_message(&data, &["data"], files.len(), true)?;
                let message = self.create_message(&entry.bot, &entry.channel_id, origin, &data, files);
                message.get("id").and_then(Value::as_str).map(str::to_owned)
            }
            callback::DEFERRED_CHANNEL_MESSAGE => {
                let ephemeral = data.get("flags").and_then(Value::as_u64).unwrap_or(0) & EPHEMERAL;
                let placeholder = json!({ "content": "", "flags": LOADING | ephemeral });
                let message = self.create_message(&entry.bot, &entry.channel_id, origin, &placeholder, &[]);
                message.get("id").and_then(Value::as_str).map(str::to_owned)
            }
            callback::DEFERRED_UPDATE_MESSAGE => entry.source_message.clone(),
            callback::UPDATE_MESSAGE => {
                limits::check_message(&data, &["data"], files.len(), false)?;
                if let Some(source) = &entry.source_message {
                    self.edit_message(source, &data, files);
                }
                entry.source_message.clone()
            }
            callback::AUTOCOMPLETE_RESULT => {
                limits::check_choices(&data)?;
                None
            }
            _ => {
                limits::check_modal(&data)?;
                None
            }
        };
        if let Some(stored) = self.interactions.get_mut(id) {
            stored.acknowledged = true;
            stored.original = original.clone();
        }
        self.record_reply(id, ReplyKind::Callback, body, files, original);
        Ok(())
    }

    /// `POST /webhooks/{app}/{token}`: a follow-up message.
    pub(super) fn create_followup(
        &mut self,
        application_id: &str,
        token: &str,
        body: Option<&Value>,
        files: &[UploadedFile],
    ) -> Result<Value, ApiError> {
        let id = self.interaction_id_by_webhook(application_id, token)?;
        let Some(entry) = self.interactions.get(&id).filter(|entry| entry.acknowledged).cloned() else {
            return Err(ApiError::unknown_webhook());
        };
        let body = body.cloned().unwrap_or(Value::Null);
        limits::check_message(&body, &[], files.len(), true)?;
        let origin = Origin::Interaction {
            application_id: &entry.application_id,
        };
        let message = self.create_message(&entry.bot, &entry.channel_id, origin, &body, files);
        let message_id = message.get("id").and_then(Value::as_str).map(str::to_owned);
        if let (Some(stored), Some(message_id)) = (self.interactions.get_mut(&id), &message_id) {
            stored.followups.push(message_id.clone());
        }
        self.record_reply(&id, ReplyKind::Followup, body, files, message_id);
        Ok(message)
    }

    /// Resolves `/webhooks/{app}/{token}/messages/{message}` (`@original`
    /// included) to the interaction id and message id.
    fn webhook_message(&self, application_id: &str, token: &str, message: &str) -> Result<(String, String), ApiError> {
        let id = self.interaction_id_by_webhook(application_id, token)?;
        let entry = self.interactions.get(&id).ok_or_else(ApiError::unknown_webhook)?;
        if !entry.acknowledged {
            return Err(ApiError::unknown_webhook());
        }
        let message_id = if message == "@original" {
            entry.original.clone()
        } else {
            let known = entry.original.as_deref() == Some(message) || entry.followups.iter().any(|id| id == message);
            known.then(|| message.to_owned())
        };
        let message_id = message_id
            .filter(|id| self.messages.contains_key(id))
            .ok_or_else(ApiError::unknown_message)?;
        Ok((id, message_id))
    }

    fn is_original(&self, id: &str, message_id: &str) -> bool {
        self.interactions
            .get(id)
            .is_some_and(|entry| entry.original.as_deref() == Some(message_id))
    }

    /// `GET /webhooks/{app}/{token}/messages/{message}`.
    pub(super) fn get_webhook_message(
        &self,
        application_id: &str,
        token: &str,
        message: &str,
    ) -> Result<Value, ApiError> {
        let (_, message_id) = self.webhook_message(application_id, token, message)?;
        self.messages
            .get(&message_id)
            .cloned()
            .ok_or_else(ApiError::unknown_message)
    }

    /// `PATCH /webhooks/{app}/{token}/messages/{message}`.
    pub(super) fn edit_webhook_message(
        &mut self,
        application_id: &str,
        token: &str,
        message: &str,
        body: Option<&Value>,
        files: &[UploadedFile],
    ) -> Result<Value, ApiError> {
        let (id, message_id) = self.webhook_message(application_id, token, message)?;
        let body = body.cloned().unwrap_or_else(|| json!({}));
        limits::check_message(&body, &[], files.len(), false)?;
        let edited = self
            .edit_message(&message_id, &body, files)
            .ok_or_else(ApiError::unknown_message)?;
        let kind = if self.is_original(&id, &message_id) {
            ReplyKind::EditOriginal
        } else {
            ReplyKind::EditFollowup
        };
        self.record_reply(&id, kind, body, files, Some(message_id));
        Ok(edited)
    }

    /// `DELETE /webhooks/{app}/{token}/messages/{message}`.
    pub(super) fn delete_webhook_message(
        &mut self,
        application_id: &str,
        token: &str,
        message: &str,
    ) -> Result<(), ApiError> {
        let (id, message_id) = self.webhook_message(application_id, token, message)?;
        let kind = if self.is_original(&id, &message_id) {
            ReplyKind::DeleteOriginal
        } else {
            ReplyKind::DeleteFollowup
        };
        self.delete_message(&message_id);
        self.record_reply(&id, kind, Value::Null, &[], Some(message_id));
        Ok(())
    }
}
