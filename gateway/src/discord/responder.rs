//! [`HttpResponder`]: the command layer's [`Responder`] over serenity's HTTP
//! client — the interaction callback, edits of the original response and
//! follow-ups, with bodies built by [`super::wire`].

use std::sync::Arc;

use async_trait::async_trait;
use serenity::all::Http;

use super::wire::{self, ReplyTarget};
use crate::commands::reply::{InitialResponse, Message};
use crate::commands::responder::{ReplyError, Responder};

/// Replies to one interaction through Discord's REST API.
pub struct HttpResponder {
    http: Arc<Http>,
    target: ReplyTarget,
}

impl std::fmt::Debug for HttpResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponder").field("target", &self.target).finish()
    }
}

impl HttpResponder {
    /// Replies to `target` with the bot's `http` client.
    pub fn new(http: Arc<Http>, target: ReplyTarget) -> Self {
        Self { http, target }
    }
}

/// What went wrong with a Discord REST call, without its URL (interaction
/// and webhook URLs carry secret tokens) and never with the bot token.
pub fn describe(error: &serenity::Error) -> String {
    use serenity::all::HttpError;
    match error {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) => {
            let mut text = format!(
                "Discord answered {}: {}",
                response.status_code.as_u16(),
                response.error.message
            );
            for detail in &response.error.errors {
                text.push_str(&format!(" ({}: {})", detail.path, detail.message));
            }
            text
        }
        serenity::Error::Http(HttpError::Request(request)) => {
            let why = if request.is_connect() {
                "cannot connect"
            } else if request.is_timeout() {
                "timed out"
            } else if request.is_decode() || request.is_body() {
                "the answer could not be read"
            } else {
                "the request failed"
            };
            format!("Discord API unreachable: {why}")
        }
        other => other.to_string(),
    }
}

/// The HTTP status of a failed REST call, if Discord answered.
pub fn status_of(error: &serenity::Error) -> Option<u16> {
    match error {
        serenity::Error::Http(http) => http.status_code().map(|s| s.as_u16()),
        _ => None,
    }
}

#[async_trait]
impl Responder for HttpResponder {
    async fn respond(&self, response: InitialResponse) -> Result<(), ReplyError> {
        let body = wire::initial_response_json(&response);
        self.http
            .create_interaction_response(self.target.id, &self.target.token, &body, Vec::new())
            .await
            .map_err(|e| ReplyError(format!("interaction callback: {}", describe(&e))))
    }

    async fn edit_original(&self, message: Message) -> Result<(), ReplyError> {
        let body = wire::message_json(&message, false);
        self.http
            .edit_original_interaction_response(&self.target.token, &body, Vec::new())
            .await
            .map(|_| ())
            .map_err(|e| ReplyError(format!("editing the original response: {}", describe(&e))))
    }

    async fn follow_up(&self, message: Message) -> Result<(), ReplyError> {
        let body = wire::message_json(&message, true);
        self.http
            .create_followup_message(&self.target.token, &body, Vec::new())
            .await
            .map(|_| ())
            .map_err(|e| ReplyError(format!("follow-up message: {}", describe(&e))))
    }
}
