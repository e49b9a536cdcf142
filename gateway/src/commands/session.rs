//! `/session start` and `/session stop` (SPEC §2). Recaps live in
//! [`super::recap`].

use super::reply::{Embed, Message};
use super::{
    guild_of, human_duration, CommandContext, CommandError, CommandResult, Interaction, Reply, SessionError, StopCause,
};

/// Green for a started session.
const STARTED: u32 = 0x2e_cc_71;
/// Grey for an ended one.
const ENDED: u32 = 0x95_a5_a6;

/// `/session start`: the caller must sit in a voice channel of this guild;
/// one session per guild. Joins the channel, starts the session on a worker
/// and answers with its id, campaign and channel; the context's observer
/// (the live dashboard) learns of it, without delaying the answer.
pub(crate) async fn start(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let guild = guild_of(interaction)?;
    if let Some(live) = ctx.sessions.info(guild).await? {
        return Err(SessionError::AlreadyActive(live.id).into());
    }
    let user = &interaction.invoker.user_id;
    let Some(channel) = ctx.voice.channel_of(guild, user) else {
        return Err(CommandError::Refused(
            "Join a voice channel in this server first, then run `/session start` again.".into(),
        ));
    };
    reply.defer(true).await?;
    let session = ctx
        .sessions
        .start(guild, &channel, user)
        .await
        .map_err(|error| match error {
            SessionError::AlreadyActive(_) | SessionError::NoActiveSession => CommandError::from(error),
            other => CommandError::Failed(format!("Could not start the session: {other}")),
        })?;
    // Returns at once: the dashboard posts in a task of its own.
    ctx.observe_started(&session, interaction.channel_id.as_ref());
    let mut embed = Embed::titled("🎙️ Session started")
        .field("Session", format!("`{}`", session.id), false)
        .field("Campaign", session.campaign.as_deref().unwrap_or("(none)"), true)
        .field("Channel", format!("<#{}>", session.channel_id), true)
        .footer("Talk to your NPCs by name. /session stop ends it.");
    embed.color = Some(STARTED);
    reply.send(Message::embed(embed)).await?;
    Ok(())
}

/// `/session stop`: stops the worker, ends the session, leaves voice and
/// answers with the id and duration (the observer learns of it). Without a
/// session it says so.
pub(crate) async fn stop(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let guild = guild_of(interaction)?;
    if ctx.sessions.info(guild).await?.is_none() {
        return Err(SessionError::NoActiveSession.into());
    }
    reply.defer(true).await?;
    let session = ctx
        .sessions
        .stop(guild, StopCause::Command(&interaction.invoker.user_id))
        .await?;
    ctx.observe_stopped(&session);
    let mut embed = Embed::titled("Session ended")
        .field("Session", format!("`{}`", session.id), false)
        .field("Duration", human_duration(session.duration_ms), true)
        .field("Campaign", session.campaign.as_deref().unwrap_or("(none)"), true);
    embed.color = Some(ENDED);
    reply.send(Message::embed(embed)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use glyphoxa_proto::ApiError;

    use super::*;
    use crate::commands::permissions::PermissionChecker;
    use crate::commands::reply::InitialResponse;
    use crate::commands::responder::Sent;
    use crate::commands::testing::*;

    fn immediate_text(sent: &[Sent]) -> String {
        match sent {
            [Sent::Initial(InitialResponse::Message(m))] => m.content.clone(),
            other => panic!("expected one immediate message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn start_defers_joins_and_reports_then_stop_reports_the_duration() {
        let bench = Bench::new().await;
        let sent = bench.run(command("session", Some("start"))).await;
        assert_eq!(sent[0], Sent::Initial(InitialResponse::Defer { ephemeral: true }));
        let Some(Sent::EditOriginal(answer)) = sent.get(1) else {
            panic!("{sent:?}")
        };
        let text = Sent::EditOriginal(answer.clone()).text();
        assert!(text.contains("Session started"), "{text}");
        assert!(text.contains(&format!("<#{VOICE_CHANNEL}>")), "{text}");
        assert!(text.contains("Default campaign"), "{text}");
        assert_eq!(bench.voice.joined(GUILD), Some(id(VOICE_CHANNEL)));
        assert_eq!(bench.worker.sessions().len(), 1);

        bench.clock.advance(Duration::from_secs(185));
        let text = bench.text(command("session", Some("stop"))).await;
        assert!(text.contains("Session ended") && text.contains("3 min 05 s"), "{text}");
        assert!(bench.worker.sessions().is_empty());
        assert_eq!(bench.voice.joined(GUILD), None);

        // Stopping twice is harmless and says so at once.
        let sent = bench.run(command("session", Some("stop"))).await;
        assert!(immediate_text(&sent).contains("No active session"));
    }

    #[tokio::test]
    async fn refusals_answer_at_once_without_deferring() {
        let bench = Bench::new().await;
        // Not in a voice channel.
        let mut stranger = command("session", Some("start"));
        stranger.invoker = player();
        let sent = bench.run(stranger).await;
        assert!(immediate_text(&sent).contains("Join a voice channel"));

        // Already running: names the session.
        bench.start_session().await;
        let live = bench.ctx.sessions.info(&id(GUILD)).await.unwrap().unwrap();
        let sent = bench.run(command("session", Some("start"))).await;
        let text = immediate_text(&sent);
        assert!(
            text.contains("already running") && text.contains(live.id.as_str()),
            "{text}"
        );

        // Outside a guild.
        let direct = Interaction::command("session", Some("start"), dm());
        assert!(immediate_text(&bench.run(direct).await).contains("only works in a server"));
    }

    #[tokio::test]
    async fn the_dm_role_is_checked_before_anything_else() {
        let mut bench = Bench::new().await;
        bench.ctx = bench
            .ctx
            .clone()
            .with_permissions(PermissionChecker::new(Some(id("555"))));
        let sent = bench.run(command("session", Some("start"))).await;
        assert!(immediate_text(&sent).contains("<@&555>"));
        assert!(bench.voice.log().is_empty(), "nothing was attempted");
        let mut dm_with_role = command("session", Some("start"));
        dm_with_role.invoker.roles.push(id("555"));
        assert!(bench.text(dm_with_role).await.contains("Session started"));
    }

    /// Records what the handlers tell it.
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl crate::commands::SessionObserver for Recorder {
        fn started(&self, session: &crate::commands::SessionInfo, channel: Option<&crate::ids::DiscordId>) {
            let channel = channel.map(ToString::to_string).unwrap_or_default();
            self.0.lock().unwrap().push(format!("started {} {channel}", session.id));
        }
        fn stopped(&self, session: &crate::commands::SessionInfo) {
            self.0
                .lock()
                .unwrap()
                .push(format!("stopped {} {:?}", session.id, session.state));
        }
    }

    #[tokio::test]
    async fn the_observer_learns_of_starts_and_stops_that_succeed() {
        let mut bench = Bench::new().await;
        let recorder = std::sync::Arc::new(Recorder::default());
        bench.ctx = bench.ctx.clone().with_observer(recorder.clone());
        bench.worker.fail_all(Some(ApiError::Unavailable("worker down".into())));
        bench.text(command("session", Some("start"))).await;
        bench.worker.fail_all(None);
        bench.text(command("session", Some("stop"))).await;
        assert!(
            recorder.0.lock().unwrap().is_empty(),
            "nothing started, nothing stopped"
        );

        bench.start_session().await;
        let live = bench.ctx.sessions.info(&id(GUILD)).await.unwrap().unwrap();
        bench.text(command("session", Some("start"))).await;
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![format!("started {} {TEXT_CHANNEL}", live.id)],
            "a refused second start is not reported"
        );
        bench.text(command("session", Some("stop"))).await;
        bench.text(command("session", Some("stop"))).await;
        assert_eq!(
            recorder.0.lock().unwrap().last(),
            Some(&format!("stopped {} Ended", live.id))
        );
        assert_eq!(recorder.0.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_start_leaves_nothing_behind_and_says_why() {
        let bench = Bench::new().await;
        bench.worker.fail_all(Some(ApiError::Unavailable("worker down".into())));
        let text = bench.text(command("session", Some("start"))).await;
        assert!(text.contains("Could not start the session"), "{text}");
        assert!(text.contains("unavailable"), "{text}");
        assert_eq!(bench.voice.joined(GUILD), None, "the bot left the channel again");
        assert!(bench.ctx.sessions.info(&id(GUILD)).await.unwrap().is_none());

        bench.worker.fail_all(None);
        bench.voice.fail_joins(Some("no VOICE_SERVER_UPDATE within 10 s"));
        let text = bench.text(command("session", Some("start"))).await;
        assert!(
            text.contains("Could not join the voice channel") && text.contains("10 s"),
            "{text}"
        );
        assert!(bench.ctx.sessions.info(&id(GUILD)).await.unwrap().is_none());
    }
}
