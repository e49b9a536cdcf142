//! `/feedback` (SPEC §2): anyone at the table rates the current (else the
//! last) session of this server in a modal — four ratings from 1 to 5 and
//! an optional comment — and gets the average back. Feedback is stored per
//! session and user; submitting again replaces one's earlier feedback.
//!
//! The modal's custom id carries the session id (`feedback:<session id>`),
//! so a form opened during one session still rates that session when it is
//! submitted after the next one started.

use super::interaction::InteractionKind;
use super::reply::{Message, Modal, TextInput};
use super::{guild_of, CommandContext, CommandError, CommandResult, Interaction, Reply, FEEDBACK_MODAL};
use crate::ids::SessionId;
use crate::store::FeedbackRatings;

/// The four ratings: modal input id and what it rates.
const RATINGS: [(&str, &str); 4] = [
    ("voice_latency", "Voice latency"),
    ("npc_personality", "NPC personality"),
    ("memory_accuracy", "Memory accuracy"),
    ("dm_workflow", "DM workflow"),
];
/// Input id of the comment.
const COMMENT: &str = "comment";
/// Longest comment (SPEC §2).
const MAX_COMMENT: u16 = 1000;
/// Longest rating input ("4.5", "5/5").
const MAX_RATING_INPUT: u16 = 4;
/// Title of the modal (Discord allows 45 characters).
const MODAL_TITLE: &str = "How was the session?";

/// `/feedback`: opens the rating modal for the guild's live session, else
/// its most recent one.
pub(crate) async fn open(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let guild = guild_of(interaction)?;
    let session = match ctx.sessions.info(guild).await? {
        Some(live) => live,
        None => ctx.sessions.latest(guild, false).await?.ok_or_else(|| {
            CommandError::Refused(
                "There is no session in this server to give feedback on yet. Play one first (`/session start`).".into(),
            )
        })?,
    };
    let mut inputs: Vec<TextInput> = RATINGS
        .iter()
        .map(|(id, label)| {
            TextInput::short(id, &format!("{label} (1–5)"), MAX_RATING_INPUT, true).placeholder("1 = poor … 5 = great")
        })
        .collect();
    inputs.push(
        TextInput::paragraph(COMMENT, "Anything else? (optional)", MAX_COMMENT, false)
            .placeholder("What worked, what did not, what you would like next time."),
    );
    reply
        .modal(Modal {
            custom_id: format!("{FEEDBACK_MODAL}{}", session.id),
            title: MODAL_TITLE.into(),
            inputs,
        })
        .await?;
    Ok(())
}

/// The feedback modal submitted: checks the session and the ratings,
/// stores them (clamped to 1..=5) and answers with the average.
pub(crate) async fn submit(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let InteractionKind::ModalSubmit { custom_id, .. } = &interaction.kind else {
        return Err(CommandError::Refused("This is not a feedback form.".into()));
    };
    let unknown = || {
        CommandError::Refused(
            "This feedback form belongs to a session I cannot find. Run `/feedback` again.".to_string(),
        )
    };
    let id = custom_id
        .strip_prefix(FEEDBACK_MODAL)
        .and_then(|raw| SessionId::parse(raw.trim()).ok())
        .ok_or_else(unknown)?;
    let session = ctx.sessions.session(&id).await?.ok_or_else(unknown)?;
    if interaction
        .guild_id
        .as_ref()
        .is_some_and(|guild| guild != &session.guild_id)
    {
        return Err(unknown());
    }
    let mut values = [0i64; 4];
    for (value, (field, label)) in values.iter_mut().zip(RATINGS) {
        *value = parse_rating(label, interaction.field(field))?;
    }
    let comment = interaction.field(COMMENT);
    let length = comment.chars().count();
    if length > usize::from(MAX_COMMENT) {
        return Err(CommandError::Refused(format!(
            "Your comment is {length} characters long; at most {MAX_COMMENT} fit. Shorten it and send the form again."
        )));
    }
    let [voice_latency, npc_personality, memory_accuracy, dm_workflow] = values;
    let ratings = FeedbackRatings::clamped(voice_latency, npc_personality, memory_accuracy, dm_workflow);
    let saved = ctx
        .store()
        .save_feedback(&id, &interaction.invoker.user_id, ratings, comment)
        .await?;
    let r = saved.ratings;
    let mut text = format!(
        "🙏 Thanks for your feedback on session `{id}`! Average: **{}** / 5 \
         (voice latency {} · NPC personality {} · memory accuracy {} · DM workflow {}).",
        average(&r),
        r.voice_latency,
        r.npc_personality,
        r.memory_accuracy,
        r.dm_workflow
    );
    if saved.updated_at > saved.created_at {
        text.push_str(" It replaces what you sent earlier for this session.");
    }
    reply.send(Message::text(text)).await?;
    Ok(())
}

/// A rating as typed: a number (`4`, `4.5`, `4,5`, `4/5`), rounded; out of
/// range values are clamped by [`FeedbackRatings::clamped`]. Anything else
/// is refused naming the field.
fn parse_rating(label: &str, text: &str) -> Result<i64, CommandError> {
    let cleaned = text.trim();
    let cleaned = cleaned.strip_suffix("/5").unwrap_or(cleaned).trim().replace(',', ".");
    if cleaned.is_empty() {
        return Err(CommandError::Refused(format!("Give {label} a rating from 1 to 5.")));
    }
    let value: f64 = cleaned.parse().ok().filter(|v: &f64| v.is_finite()).ok_or_else(|| {
        let shown: String = text.trim().chars().take(20).collect();
        CommandError::Refused(format!("{label} must be a number from 1 to 5, not “{shown}”."))
    })?;
    // Saturating conversion; the store clamps to 1..=5.
    Ok(value.round() as i64)
}

/// The mean of the ratings with one decimal, halves rounded up (4.25 → 4.3).
fn average(ratings: &FeedbackRatings) -> String {
    let sum = i64::from(ratings.voice_latency)
        + i64::from(ratings.npc_personality)
        + i64::from(ratings.memory_accuracy)
        + i64::from(ratings.dm_workflow);
    let tenths = (sum * 10 + 2) / 4;
    format!("{}.{}", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::commands::reply::InitialResponse;
    use crate::commands::responder::Sent;
    use crate::commands::testing::*;
    use crate::ids::TenantId;
    use crate::store::{LicenseTier, NewSession, NewTenant};

    /// Plays a session in the bench's guild and ends it.
    async fn played(bench: &Bench) -> SessionId {
        let info = bench
            .ctx
            .sessions
            .start(&id(GUILD), &id(VOICE_CHANNEL), &id(DM))
            .await
            .expect("session starts");
        bench.clock.advance(Duration::from_secs(60));
        bench
            .ctx
            .sessions
            .stop(&id(GUILD), crate::commands::StopCause::Command(&id(DM)))
            .await
            .expect("session stops");
        info.id
    }

    /// `/feedback` by `invoker` in the bench's guild.
    fn feedback_by(invoker: crate::commands::Invoker) -> Interaction {
        Interaction::command("feedback", None, invoker).in_guild(id(GUILD), id(TEXT_CHANNEL))
    }

    /// The feedback modal for `session` submitted by the player.
    fn form(session: &str, ratings: [&str; 4], comment: &str) -> Interaction {
        let mut fields: BTreeMap<String, String> = RATINGS
            .iter()
            .zip(ratings)
            .map(|((field, _), value)| (field.to_string(), value.to_string()))
            .collect();
        fields.insert(COMMENT.into(), comment.into());
        Interaction::modal_submit(&format!("{FEEDBACK_MODAL}{session}"), fields, player())
            .in_guild(id(GUILD), id(TEXT_CHANNEL))
    }

    /// The one immediate message.
    fn answer(sent: &[Sent]) -> String {
        match sent {
            [Sent::Initial(InitialResponse::Message(m))] => m.content.clone(),
            other => panic!("expected one immediate message, got {other:?}"),
        }
    }

    /// The modal opened as the initial response.
    fn modal(sent: &[Sent]) -> Modal {
        match sent {
            [Sent::Initial(InitialResponse::Modal(modal))] => modal.clone(),
            other => panic!("expected a modal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn feedback_needs_a_session_in_this_server() {
        let bench = Bench::new().await;
        let text = answer(&bench.run(feedback_by(player())).await);
        assert!(text.contains("no session in this server"), "{text}");
        let outside = Interaction::command("feedback", None, player());
        assert!(answer(&bench.run(outside).await).contains("only works in a server"));
    }

    #[tokio::test]
    async fn anyone_gets_a_modal_for_the_live_else_the_last_session() {
        let bench = Bench::new().await;
        let last = played(&bench).await;
        let opened = modal(&bench.run(feedback_by(player())).await);
        assert_eq!(opened.custom_id, format!("feedback:{last}"));
        assert!(opened.title.chars().count() <= 45);
        let ids: Vec<&str> = opened.inputs.iter().map(|i| i.custom_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "voice_latency",
                "npc_personality",
                "memory_accuracy",
                "dm_workflow",
                "comment"
            ]
        );
        assert!(opened.inputs[..4]
            .iter()
            .all(|i| !i.paragraph && i.required && i.label.contains("1–5")));
        let comment = &opened.inputs[4];
        assert!(comment.paragraph && !comment.required && comment.max_length == 1000);
        assert!(opened.inputs.iter().all(|i| i.label.chars().count() <= 45));

        let live = bench
            .ctx
            .sessions
            .start(&id(GUILD), &id(VOICE_CHANNEL), &id(DM))
            .await
            .unwrap();
        let opened = modal(&bench.run(feedback_by(dm())).await);
        assert_eq!(opened.custom_id, format!("feedback:{}", live.id));
    }

    #[tokio::test]
    async fn ratings_are_clamped_stored_and_averaged() {
        let bench = Bench::new().await;
        let session = played(&bench).await;
        let text = answer(
            &bench
                .run(form(session.as_str(), ["5", "9", "0", "3"], " Great fun! "))
                .await,
        );
        assert!(text.contains("Average: **3.5** / 5"), "{text}");
        assert!(
            text.contains("voice latency 5 · NPC personality 5 · memory accuracy 1 · DM workflow 3"),
            "{text}"
        );
        let stored = bench.ctx.store().feedback(Some(&session)).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].user_id, id(PLAYER));
        assert_eq!(stored[0].comment, "Great fun!");
        assert_eq!(
            stored[0].ratings,
            FeedbackRatings {
                voice_latency: 5,
                npc_personality: 5,
                memory_accuracy: 1,
                dm_workflow: 3
            }
        );

        // Friendly number forms; a second submission replaces the first.
        bench.clock.advance(Duration::from_secs(5));
        let text = answer(
            &bench
                .run(form(session.as_str(), ["4", "4,5", "4/5", " 4.4 "], ""))
                .await,
        );
        assert!(
            text.contains("Average: **4.3** / 5") && text.contains("replaces"),
            "{text}"
        );
        let stored = bench.ctx.store().feedback(Some(&session)).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].ratings.npc_personality, 5);
        assert_eq!(stored[0].comment, "");
    }

    #[tokio::test]
    async fn bad_numbers_and_unknown_sessions_are_refused() {
        let bench = Bench::new().await;
        let session = played(&bench).await;
        let text = answer(&bench.run(form(session.as_str(), ["5", "great", "3", "3"], "")).await);
        assert!(
            text.contains("NPC personality must be a number") && text.contains("“great”"),
            "{text}"
        );
        let text = answer(&bench.run(form(session.as_str(), ["5", "4", "", "3"], "")).await);
        assert!(text.contains("Give Memory accuracy a rating"), "{text}");
        let text = answer(&bench.run(form(session.as_str(), ["5", "4", "3", "NaN"], "")).await);
        assert!(text.contains("DM workflow must be a number"), "{text}");
        let long = "x".repeat(1001);
        let text = answer(&bench.run(form(session.as_str(), ["5", "4", "3", "3"], &long)).await);
        assert!(text.contains("1001 characters"), "{text}");
        assert!(bench.ctx.store().feedback(None).await.unwrap().is_empty());

        for unknown in ["", "not a session", SessionId::random().as_str()] {
            let text = answer(&bench.run(form(unknown, ["5", "5", "5", "5"], "")).await);
            assert!(text.contains("session I cannot find"), "{unknown}: {text}");
        }

        // Another tenant's session is as unknown as a made-up one.
        let other = TenantId::parse("other").unwrap();
        bench
            .store
            .create_tenant(&NewTenant::new(other.clone(), LicenseTier::Shared))
            .await
            .unwrap();
        let foreign = bench
            .store
            .tenant(&other)
            .create_session(&NewSession {
                id: SessionId::random(),
                campaign_id: None,
                guild_id: id(GUILD),
                channel_id: id(VOICE_CHANNEL),
                started_by: id(DM),
            })
            .await
            .unwrap();
        let text = answer(&bench.run(form(foreign.id.as_str(), ["5", "5", "5", "5"], "")).await);
        assert!(text.contains("session I cannot find"), "{text}");
        assert!(bench.store.tenant(&other).feedback(None).await.unwrap().is_empty());
    }

    #[test]
    fn averages_round_halves_up() {
        let r = |a, b, c, d| average(&FeedbackRatings::clamped(a, b, c, d));
        assert_eq!(r(5, 4, 4, 4), "4.3");
        assert_eq!(r(5, 5, 5, 4), "4.8");
        assert_eq!(r(5, 5, 4, 4), "4.5");
        assert_eq!(r(1, 1, 1, 1), "1.0");
        assert_eq!(r(5, 5, 5, 5), "5.0");
    }
}
