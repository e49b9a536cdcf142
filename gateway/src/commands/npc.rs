//! `/npc list|mute|unmute|speak|muteall|unmuteall` (SPEC §2): the DM's live
//! controls over the session's NPCs, through the worker that runs it.

use glyphoxa_proto::v1::NpcStatus;
use glyphoxa_proto::ApiError;

use super::reply::{Choice, Embed, Message, MAX_CHOICES};
use super::{
    live_session, matches_partial, CommandContext, CommandError, CommandResult, Interaction, Reply, SessionInfo,
};
use crate::store::StoredNpc;
use crate::workers::WorkerError;

/// Longest text `/npc speak` accepts (one Discord message).
const MAX_SPEECH_CHARS: usize = 2000;

fn icon(muted: bool) -> &'static str {
    if muted {
        "🔇"
    } else {
        "🔊"
    }
}

/// The worker running `session`, or a refusal if it has none (still
/// starting).
fn worker_of(session: &SessionInfo) -> Result<&str, CommandError> {
    session
        .worker
        .as_deref()
        .ok_or_else(|| CommandError::Refused("The session is still starting; try again in a moment.".into()))
}

/// The worker refused for a reason the DM can act on (a muted NPC cannot
/// speak, empty text): say it; anything else is the generic worker error.
fn worker_error(error: WorkerError) -> CommandError {
    match error.api_error() {
        Some(ApiError::FailedPrecondition(reason) | ApiError::InvalidArgument(reason)) => {
            CommandError::Refused(format!("The voice worker refused: {reason}."))
        }
        _ => CommandError::from(error),
    }
}

/// The session's roster as recorded for its campaign.
async fn roster(ctx: &CommandContext, session: &SessionInfo) -> Result<Vec<StoredNpc>, CommandError> {
    match &session.campaign_id {
        Some(campaign) => Ok(ctx.store().npcs(campaign).await?),
        None => Ok(Vec::new()),
    }
}

/// The canonical name of the NPC `name` (case-insensitive) in the session's
/// roster, or a refusal listing the names there are.
async fn resolve(ctx: &CommandContext, session: &SessionInfo, name: &str) -> Result<String, CommandError> {
    let roster = roster(ctx, session).await?;
    if let Some(npc) = roster
        .iter()
        .find(|npc| npc.npc.name.eq_ignore_ascii_case(name) || npc.id == name)
    {
        return Ok(npc.npc.name.clone());
    }
    let known: Vec<&str> = roster.iter().map(|npc| npc.npc.name.as_str()).collect();
    Err(CommandError::Refused(if known.is_empty() {
        format!("There is no NPC called “{name}”: this session's campaign has no NPCs.")
    } else {
        format!("There is no NPC called “{name}”. The NPCs are: {}.", known.join(", "))
    }))
}

fn required<'a>(interaction: &'a Interaction, option: &str) -> Result<&'a str, CommandError> {
    interaction
        .string(option)
        .ok_or_else(|| CommandError::Refused(format!("Give the `{option}` option.")))
}

/// `/npc list`: every NPC of the session with its mute state and id.
pub(crate) async fn list(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let session = live_session(ctx, interaction).await?;
    let worker = worker_of(&session)?;
    reply.defer(true).await?;
    let npcs = ctx
        .workers
        .list_npcs(worker, session.id.as_str())
        .await
        .map_err(worker_error)?;
    reply.send(Message::embed(roster_embed(&npcs))).await?;
    Ok(())
}

fn roster_embed(npcs: &[NpcStatus]) -> Embed {
    let muted = npcs.iter().filter(|npc| npc.muted).count();
    let lines: Vec<String> = npcs
        .iter()
        .map(|npc| format!("{} **{}** — `{}`", icon(npc.muted), npc.name, npc.id))
        .collect();
    let description = if lines.is_empty() {
        "This session has no NPCs. Add some to the campaign file and `/campaign load` it.".to_string()
    } else {
        lines.join("\n")
    };
    Embed::titled("NPCs")
        .description(description)
        .footer(format!("{} NPCs, {muted} muted", npcs.len()))
}

/// `/npc mute` / `/npc unmute` `name`.
pub(crate) async fn mute(
    ctx: &CommandContext,
    interaction: &Interaction,
    reply: &mut Reply,
    muted: bool,
) -> CommandResult {
    let name = required(interaction, "name")?;
    let session = live_session(ctx, interaction).await?;
    let worker = worker_of(&session)?;
    let name = resolve(ctx, &session, name).await?;
    reply.defer(true).await?;
    let id = session.id.as_str();
    let (npc, changed) = if muted {
        let r = ctx.workers.mute_npc(worker, id, &name).await.map_err(worker_error)?;
        (r.npc, r.changed)
    } else {
        let r = ctx.workers.unmute_npc(worker, id, &name).await.map_err(worker_error)?;
        (r.npc, r.changed)
    };
    let name = npc.map_or(name, |npc| npc.name);
    let text = match (muted, changed) {
        (true, true) => format!("🔇 {name} is muted."),
        (true, false) => format!("🔇 {name} was already muted."),
        (false, true) => format!("🔊 {name} can speak again."),
        (false, false) => format!("🔊 {name} was not muted."),
    };
    reply.send(Message::text(text)).await?;
    Ok(())
}

/// `/npc speak` `name` `text`: the NPC says exactly the text (no LLM).
pub(crate) async fn speak(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let name = required(interaction, "name")?;
    let text = required(interaction, "text")?;
    let length = text.chars().count();
    if length > MAX_SPEECH_CHARS {
        return Err(CommandError::Refused(format!(
            "That is {length} characters; an NPC says at most {MAX_SPEECH_CHARS} at once."
        )));
    }
    let session = live_session(ctx, interaction).await?;
    let worker = worker_of(&session)?;
    let name = resolve(ctx, &session, name).await?;
    reply.defer(true).await?;
    let response = ctx
        .workers
        .speak_npc(worker, session.id.as_str(), &name, text)
        .await
        .map_err(worker_error)?;
    let name = response.npc.map_or(name, |npc| npc.name);
    reply.send(Message::text(format!("🗣️ {name} says: “{text}”"))).await?;
    Ok(())
}

/// `/npc muteall` / `/npc unmuteall`: replies how many changed.
pub(crate) async fn mute_all(
    ctx: &CommandContext,
    interaction: &Interaction,
    reply: &mut Reply,
    muted: bool,
) -> CommandResult {
    let session = live_session(ctx, interaction).await?;
    let worker = worker_of(&session)?;
    reply.defer(true).await?;
    let id = session.id.as_str();
    let changed = if muted {
        ctx.workers.mute_all_npcs(worker, id).await
    } else {
        ctx.workers.unmute_all_npcs(worker, id).await
    }
    .map_err(worker_error)?;
    let plural = if changed == 1 { "NPC" } else { "NPCs" };
    let text = match (muted, changed) {
        (true, 0) => "🔇 Every NPC was already muted.".to_string(),
        (false, 0) => "🔊 No NPC was muted.".to_string(),
        (true, n) => format!("🔇 Muted {n} {plural}."),
        (false, n) => format!("🔊 Unmuted {n} {plural}."),
    };
    reply.send(Message::text(text)).await?;
    Ok(())
}

/// Autocomplete of `name`: the live roster from the worker (the campaign's
/// NPCs if the worker cannot be asked), matching what was typed.
pub(crate) async fn complete(ctx: &CommandContext, interaction: &Interaction) -> Vec<Choice> {
    let partial = interaction.string("name").unwrap_or_default();
    let Ok(session) = live_session(ctx, interaction).await else {
        return Vec::new();
    };
    let live = match session.worker.as_deref() {
        Some(worker) => ctx.workers.list_npcs(worker, session.id.as_str()).await.ok(),
        None => None,
    };
    let names: Vec<String> = match live {
        Some(npcs) => npcs.into_iter().map(|npc| npc.name).collect(),
        None => roster(ctx, &session)
            .await
            .map(|npcs| npcs.into_iter().map(|npc| npc.npc.name).collect())
            .unwrap_or_default(),
    };
    names
        .into_iter()
        .filter(|name| matches_partial(name, partial))
        .take(MAX_CHOICES)
        .map(Choice::same)
        .collect()
}

#[cfg(test)]
mod tests {
    use glyphoxa_pipeline::campaign::Campaign;

    use super::*;
    use crate::commands::interaction::OptionValue;
    use crate::commands::reply::InitialResponse;
    use crate::commands::responder::Sent;
    use crate::commands::testing::*;
    use crate::ids::CampaignId;

    const TAVERN: &str = r#"
campaign: { name: "The Yawning Portal" }
npcs:
  - { name: Grimble, personality: "A grumpy dwarven innkeeper." }
  - { name: Mira, personality: "A cheerful bard." }
  - { name: Old Tom, personality: "A sleepy fisherman." }
"#;

    async fn bench_with_session() -> Bench {
        let bench = Bench::new().await;
        let campaign = Campaign::from_yaml(TAVERN, "tavern.yaml").unwrap();
        let store = bench.ctx.store();
        let id = CampaignId::from_name("The Yawning Portal");
        store.import_campaign(&id, &campaign).await.unwrap();
        store.set_active_campaign(Some(&id)).await.unwrap();
        bench.start_session().await;
        bench
    }

    fn npc(sub: &str, name: &str) -> Interaction {
        command("npc", Some(sub)).with_option("name", OptionValue::String(name.into()))
    }

    #[tokio::test]
    async fn list_mute_unmute_and_counts() {
        let bench = bench_with_session().await;
        let text = bench.text(command("npc", Some("list"))).await;
        assert!(
            text.contains("🔊 **Grimble**") && text.contains("🔊 **Old Tom**"),
            "{text}"
        );
        assert!(text.contains("3 NPCs, 0 muted"), "{text}");

        let sent = bench.run(npc("mute", "grimble")).await;
        assert_eq!(sent[0], Sent::Initial(InitialResponse::Defer { ephemeral: true }));
        assert!(sent[1].text().contains("Grimble is muted"), "{sent:?}");
        assert!(bench.text(npc("mute", "GRIMBLE")).await.contains("already muted"));
        assert!(bench
            .text(command("npc", Some("list")))
            .await
            .contains("🔇 **Grimble**"));

        assert!(bench
            .text(command("npc", Some("muteall")))
            .await
            .contains("Muted 2 NPCs"));
        assert!(bench
            .text(command("npc", Some("muteall")))
            .await
            .contains("already muted"));
        assert!(bench.text(npc("unmute", "mira")).await.contains("Mira can speak again"));
        assert!(bench
            .text(command("npc", Some("unmuteall")))
            .await
            .contains("Unmuted 2 NPCs"));
        assert!(bench.text(npc("unmute", "mira")).await.contains("was not muted"));
        let calls = bench.worker.calls().join(" ");
        assert!(calls.contains("MuteNPC") && calls.contains("MuteAllNPCs") && calls.contains("UnmuteNPC"));
    }

    #[tokio::test]
    async fn speak_puppets_and_refuses_what_cannot_be_said() {
        let bench = bench_with_session().await;
        let speak = |name: &str, text: &str| npc("speak", name).with_option("text", OptionValue::String(text.into()));
        let text = bench.text(speak("old tom", "Fish are biting.")).await;
        assert!(text.contains("Old Tom says: “Fish are biting.”"), "{text}");
        assert!(bench.worker.calls().iter().any(|c| c.starts_with("SpeakNPC")));

        let sent = bench.run(speak("Nobody", "hi")).await;
        let [Sent::Initial(InitialResponse::Message(m))] = sent.as_slice() else {
            panic!("{sent:?}")
        };
        assert!(m.content.contains("no NPC called “Nobody”") && m.content.contains("Grimble, Mira, Old Tom"));

        let too_long = "a".repeat(MAX_SPEECH_CHARS + 1);
        assert!(bench.text(speak("Mira", &too_long)).await.contains("at most 2000"));
        assert!(bench
            .text(npc("speak", "Mira"))
            .await
            .contains("Give the `text` option"));

        // A muted NPC cannot be puppeted: the worker's reason reaches the DM.
        bench.text(npc("mute", "Mira")).await;
        assert!(bench.text(speak("Mira", "hello")).await.contains("Mira is muted"));
    }

    #[tokio::test]
    async fn no_session_and_worker_down_are_clear() {
        let bench = Bench::new().await;
        for sub in ["list", "muteall", "unmuteall"] {
            assert!(
                bench
                    .text(command("npc", Some(sub)))
                    .await
                    .contains("No active session"),
                "{sub}"
            );
        }
        assert!(bench.text(npc("mute", "Grimble")).await.contains("No active session"));

        let bench = bench_with_session().await;
        bench
            .worker
            .fail_all(Some(glyphoxa_proto::ApiError::Unavailable("restarting".into())));
        let text = bench.text(command("npc", Some("list"))).await;
        assert!(text.contains("Voice service unavailable, try again"), "{text}");
    }

    #[tokio::test]
    async fn autocomplete_matches_the_live_roster() {
        let bench = bench_with_session().await;
        let complete = |partial: &str| {
            Interaction::autocomplete("npc", Some("mute"), "name", partial, dm()).in_guild(id(GUILD), id(TEXT_CHANNEL))
        };
        let sent = bench.run(complete("m")).await;
        let [Sent::Initial(InitialResponse::Choices(choices))] = sent.as_slice() else {
            panic!("{sent:?}")
        };
        let names: Vec<&str> = choices.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(names, ["Grimble", "Mira", "Old Tom"]);
        let sent = bench.run(complete("TOM")).await;
        assert!(
            matches!(&sent[0], Sent::Initial(InitialResponse::Choices(c)) if c.len() == 1 && c[0].name == "Old Tom")
        );

        // No session: no choices, never an error message.
        let empty = Bench::new().await;
        let sent = empty.run(complete("")).await;
        assert_eq!(sent, vec![Sent::Initial(InitialResponse::Choices(vec![]))]);
    }
}
