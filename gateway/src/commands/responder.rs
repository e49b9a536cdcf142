//! Sending replies: the [`Responder`] a transport implements (serenity's
//! HTTP client, or a recorder in tests) and [`Reply`], which keeps Discord's
//! order — one initial response, then an edit of the original after a defer,
//! then follow-ups — and splits long messages.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::reply::{Choice, InitialResponse, Message, Modal, MAX_CHOICES};

/// Discord refused or could not take a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sending the reply failed: {0}")]
pub struct ReplyError(pub String);

/// Delivers replies to one interaction.
#[async_trait]
pub trait Responder: Send + Sync {
    /// The initial response (exactly once per interaction).
    async fn respond(&self, response: InitialResponse) -> Result<(), ReplyError>;
    /// Replaces the original response (after a defer, this is the answer).
    async fn edit_original(&self, message: Message) -> Result<(), ReplyError>;
    /// Sends one more message.
    async fn follow_up(&self, message: Message) -> Result<(), ReplyError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Fresh,
    Deferred,
    Answered,
}

/// The reply to one interaction, in Discord's order.
pub struct Reply {
    responder: Arc<dyn Responder>,
    stage: Stage,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("stage", &self.stage).finish()
    }
}

impl Reply {
    /// A reply through `responder`.
    pub fn new(responder: Arc<dyn Responder>) -> Self {
        Self {
            responder,
            stage: Stage::Fresh,
        }
    }

    /// Whether anything was sent yet.
    pub fn is_fresh(&self) -> bool {
        self.stage == Stage::Fresh
    }

    /// Acknowledges now ("thinking…") so slow work can follow; the next
    /// [`Reply::send`] edits the original. Does nothing once answered.
    pub async fn defer(&mut self, ephemeral: bool) -> Result<(), ReplyError> {
        if self.stage == Stage::Fresh {
            self.responder.respond(InitialResponse::Defer { ephemeral }).await?;
            self.stage = Stage::Deferred;
        }
        Ok(())
    }

    /// Sends `message`, split at Discord's limits: the first part answers
    /// (or edits the deferred original), the rest are follow-ups.
    pub async fn send(&mut self, message: Message) -> Result<(), ReplyError> {
        for part in message.split() {
            match self.stage {
                Stage::Fresh => self.responder.respond(InitialResponse::Message(part)).await?,
                Stage::Deferred => self.responder.edit_original(part).await?,
                Stage::Answered => self.responder.follow_up(part).await?,
            }
            self.stage = Stage::Answered;
        }
        Ok(())
    }

    /// Replaces the message whose button was pressed (a plain send once
    /// anything was sent). Long messages: the first part replaces it, the
    /// rest follow.
    pub async fn update(&mut self, message: Message) -> Result<(), ReplyError> {
        if self.stage != Stage::Fresh {
            return self.send(message).await;
        }
        let mut parts = message.split().into_iter();
        if let Some(first) = parts.next() {
            self.responder.respond(InitialResponse::UpdateMessage(first)).await?;
            self.stage = Stage::Answered;
        }
        for part in parts {
            self.responder.follow_up(part).await?;
        }
        Ok(())
    }

    /// Opens a modal (only as the initial response).
    pub async fn modal(&mut self, modal: Modal) -> Result<(), ReplyError> {
        if self.stage != Stage::Fresh {
            return Err(ReplyError("a modal can only be the first response".into()));
        }
        self.responder.respond(InitialResponse::Modal(modal)).await?;
        self.stage = Stage::Answered;
        Ok(())
    }

    /// Answers an autocomplete request with at most 25 choices.
    pub async fn choices(&mut self, mut choices: Vec<Choice>) -> Result<(), ReplyError> {
        choices.truncate(MAX_CHOICES);
        if self.stage != Stage::Fresh {
            return Err(ReplyError("autocomplete choices can only be the first response".into()));
        }
        self.responder.respond(InitialResponse::Choices(choices)).await?;
        self.stage = Stage::Answered;
        Ok(())
    }
}

/// One thing a [`RecordingResponder`] was asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The initial response.
    Initial(InitialResponse),
    /// An edit of the original response.
    EditOriginal(Message),
    /// A follow-up.
    FollowUp(Message),
}

impl Sent {
    /// The message's content and embed text, whatever the kind.
    pub fn text(&self) -> String {
        let message = match self {
            Sent::Initial(InitialResponse::Message(m) | InitialResponse::UpdateMessage(m)) => m,
            Sent::EditOriginal(m) | Sent::FollowUp(m) => m,
            Sent::Initial(other) => return format!("{other:?}"),
        };
        let mut text = message.content.clone();
        for embed in &message.embeds {
            text.push_str(&format!("\n{}\n{}", embed.title, embed.description));
            for field in &embed.fields {
                text.push_str(&format!("\n{}: {}", field.name, field.value));
            }
            if let Some(footer) = &embed.footer {
                text.push_str(&format!("\n{footer}"));
            }
        }
        text
    }
}

/// A [`Responder`] that records what it is asked to send (tests, benches).
#[derive(Debug, Default)]
pub struct RecordingResponder {
    sent: Mutex<Vec<Sent>>,
}

impl RecordingResponder {
    /// An empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Everything sent so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.lock().clone()
    }

    /// Forgets what was sent.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sent>> {
        self.sent.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Responder for RecordingResponder {
    async fn respond(&self, response: InitialResponse) -> Result<(), ReplyError> {
        self.lock().push(Sent::Initial(response));
        Ok(())
    }
    async fn edit_original(&self, message: Message) -> Result<(), ReplyError> {
        self.lock().push(Sent::EditOriginal(message));
        Ok(())
    }
    async fn follow_up(&self, message: Message) -> Result<(), ReplyError> {
        self.lock().push(Sent::FollowUp(message));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::reply::TextInput;

    #[tokio::test]
    async fn defer_then_edit_then_follow_ups() {
        let recorder = RecordingResponder::new();
        let mut reply = Reply::new(recorder.clone());
        reply.defer(true).await.unwrap();
        reply.defer(true).await.unwrap(); // once only
        reply.send(Message::text("first")).await.unwrap();
        reply.send(Message::text("second")).await.unwrap();
        assert_eq!(
            recorder.sent(),
            vec![
                Sent::Initial(InitialResponse::Defer { ephemeral: true }),
                Sent::EditOriginal(Message::text("first")),
                Sent::FollowUp(Message::text("second")),
            ]
        );
    }

    #[tokio::test]
    async fn an_immediate_long_answer_is_a_response_then_follow_ups() {
        let recorder = RecordingResponder::new();
        let mut reply = Reply::new(recorder.clone());
        reply.send(Message::text("y ".repeat(2500))).await.unwrap();
        let sent = recorder.sent();
        assert_eq!(sent.len(), 3);
        assert!(matches!(sent[0], Sent::Initial(InitialResponse::Message(_))));
        assert!(matches!(sent[1], Sent::FollowUp(_)));
        assert!(matches!(sent[2], Sent::FollowUp(_)));
    }

    #[tokio::test]
    async fn modals_and_choices_only_first_and_choices_capped() {
        let recorder = RecordingResponder::new();
        let mut reply = Reply::new(recorder.clone());
        let choices: Vec<Choice> = (0..40).map(|i| Choice::same(format!("c{i}"))).collect();
        reply.choices(choices).await.unwrap();
        let Sent::Initial(InitialResponse::Choices(sent)) = &recorder.sent()[0] else {
            panic!("no choices")
        };
        assert_eq!(sent.len(), MAX_CHOICES);
        let modal = Modal {
            custom_id: "m".into(),
            title: "t".into(),
            inputs: vec![TextInput::short("a", "A", 10, true)],
        };
        assert!(reply.modal(modal).await.is_err());
        assert!(reply.choices(vec![]).await.is_err());
    }

    #[tokio::test]
    async fn update_replaces_the_message_when_fresh() {
        let recorder = RecordingResponder::new();
        let mut reply = Reply::new(recorder.clone());
        reply.update(Message::text("done")).await.unwrap();
        reply.update(Message::text("again")).await.unwrap();
        assert_eq!(
            recorder.sent(),
            vec![
                Sent::Initial(InitialResponse::UpdateMessage(Message::text("done"))),
                Sent::FollowUp(Message::text("again")),
            ]
        );
    }
}
