//! `/campaign info | load | switch` (SPEC §2): the tenant's campaigns and
//! which one is active.
//!
//! The active campaign is what `/session start` runs and where `/entity`
//! commands work. Loading and switching are refused while any session of
//! the tenant is live: a running session keeps the campaign it started
//! with, and changing the ground under it would leave the DM guessing which
//! NPCs and knowledge it uses.

use glyphoxa_pipeline::campaign::EntityKind;

use super::entity::{checked_upload, download_text, import_failed, parse_campaign, Upload};
use super::reply::{Choice, Embed, Message, MAX_CHOICES};
use super::{matches_partial, CommandContext, CommandError, CommandResult, Interaction, Reply};
use crate::ids::CampaignId;
use crate::store::{StoredCampaign, TenantStore};

/// Characters of a campaign description shown by `/campaign info`.
const INFO_DESCRIPTION_CHARS: usize = 300;
/// Suffixes tried when a new campaign's id is taken by another name.
const MAX_ID_SUFFIX: u32 = 100;
/// Purple of campaign embeds.
const CAMPAIGN_COLOR: u32 = 0x9b_59_b6;

/// `/campaign info`: every campaign of the tenant with its system,
/// description, voiced NPCs and entity counts by type; the active one
/// marked.
pub(crate) async fn info(ctx: &CommandContext, _interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let store = ctx.store();
    let campaigns = store.campaigns().await?;
    if campaigns.is_empty() {
        reply
            .send(Message::text(
                "No campaigns yet. Load one with `/campaign load` (a campaign `.yaml` file), or just use \
                 `/entity add` and a default campaign is created for you.",
            ))
            .await?;
        return Ok(());
    }
    let active = store.active_campaign().await?.map(|c| c.id);
    let mut embed = Embed::titled("Campaigns");
    embed = match campaigns.iter().find(|c| Some(&c.id) == active.as_ref()) {
        Some(current) => embed.description(format!("Active: **{}**", current.info.name)),
        None => embed.description("No campaign is active; `/campaign switch` picks one."),
    };
    for campaign in &campaigns {
        let is_active = Some(&campaign.id) == active.as_ref();
        let name = if is_active {
            format!("▶ {} (active)", campaign.info.name)
        } else {
            campaign.info.name.clone()
        };
        embed = embed.field(name, campaign_summary(&store, campaign).await?, false);
    }
    let count = campaigns.len();
    embed = embed.footer(format!(
        "{count} {} · /campaign switch changes the active one",
        if count == 1 { "campaign" } else { "campaigns" }
    ));
    embed.color = Some(CAMPAIGN_COLOR);
    reply.send(Message::embed(embed)).await?;
    Ok(())
}

/// System, description, NPC count and entity counts by type of one
/// campaign, for an embed field.
async fn campaign_summary(store: &TenantStore, campaign: &StoredCampaign) -> Result<String, CommandError> {
    let mut lines = Vec::new();
    if !campaign.info.system.is_empty() {
        lines.push(format!("System: {}", campaign.info.system));
    }
    if !campaign.info.description.is_empty() {
        lines.push(shorten(&campaign.info.description, INFO_DESCRIPTION_CHARS));
    }
    let counts = store.entity_counts(&campaign.id).await?;
    let total: i64 = counts.values().sum();
    let entities = if total == 0 {
        "Entities: none".to_string()
    } else {
        let by_kind: Vec<String> = EntityKind::ALL
            .iter()
            .filter_map(|kind| counts.get(kind).map(|n| format!("{n} {kind}")))
            .collect();
        format!("Entities: {total} ({})", by_kind.join(", "))
    };
    lines.push(entities);
    let npcs = store.npcs(&campaign.id).await?.len();
    lines.push(format!("Voiced NPCs: {npcs}"));
    Ok(lines.join("\n"))
}

/// `text` on one line, at most `max` characters ("…" when cut).
fn shorten(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// The refusal while any session of the tenant is live (load and switch).
async fn refuse_while_live(ctx: &CommandContext, what: &str) -> CommandResult {
    if let Some(live) = ctx.store().live_sessions().await?.into_iter().next() {
        return Err(CommandError::Refused(format!(
            "A session is running (id `{}`), so I cannot {what} now. Stop it with `/session stop` first.",
            live.id
        )));
    }
    Ok(())
}

/// `/campaign load file`: a campaign YAML (≤ 10 MB) creates or updates the
/// campaign of that name (its description, its NPC roster, its entities by
/// name and type; entities not in the file are kept) and makes it active.
/// Refused while a session is live; a bad file imports nothing and the
/// reply lists each problem with its line.
pub(crate) async fn load(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let (file, _) = checked_upload(interaction, &[Upload::CampaignYaml])?;
    refuse_while_live(ctx, "load a campaign").await?;
    let text = download_text(ctx, file, reply).await?;
    let campaign = parse_campaign(&file.filename, &text)?;
    let store = ctx.store();
    let (id, existed) = campaign_id_for(&store, campaign.campaign.name.trim()).await?;
    let imported = store
        .import_campaign(&id, &campaign)
        .await
        .map_err(|error| import_failed(&file.filename, error))?;
    if !store.set_active_campaign(Some(&id)).await? {
        return Err(CommandError::Failed(
            "The campaign was saved but could not be made active: this bot's tenant is gone.".into(),
        ));
    }
    let info = &imported.campaign.info;
    let mut embed = Embed::titled(format!(
        "{} campaign {}",
        if existed { "Updated" } else { "Loaded" },
        info.name
    ))
    .description("It is now the active campaign: new sessions use its NPCs and knowledge.");
    if !info.system.is_empty() {
        embed = embed.field("System", info.system.clone(), true);
    }
    embed = embed.field("Voiced NPCs", imported.npcs.to_string(), true).field(
        "Entities",
        format!(
            "{} new, {} updated",
            imported.entities_created, imported.entities_updated
        ),
        true,
    );
    let counts = campaign.entity_counts();
    if !counts.is_empty() {
        let by_kind: Vec<String> = counts.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        embed = embed.field("In the file", by_kind.join(", "), false);
    }
    embed = embed.footer(format!("from {} · id {}", file.filename, id));
    embed.color = Some(CAMPAIGN_COLOR);
    reply.send(Message::embed(embed)).await?;
    Ok(())
}

/// The id to load the campaign `name` into, and whether it exists: the
/// campaign of that name (ignoring case), else an id made from the name
/// (`Lost Mine` → `lost-mine`) that no other campaign uses (`lost-mine-2`…).
async fn campaign_id_for(store: &TenantStore, name: &str) -> Result<(CampaignId, bool), CommandError> {
    if let Some(existing) = store.campaign_by_name(name).await? {
        return Ok((existing.id, true));
    }
    let base = CampaignId::from_name(name);
    if store.campaign(&base).await?.is_none() {
        return Ok((base, false));
    }
    let stem: String = base.as_str().chars().take(56).collect();
    let stem = stem.trim_end_matches(['-', '_']);
    for suffix in 2..=MAX_ID_SUFFIX {
        let Ok(candidate) = CampaignId::parse(&format!("{stem}-{suffix}")) else {
            break;
        };
        if store.campaign(&candidate).await?.is_none() {
            return Ok((candidate, false));
        }
    }
    // A name with no usable letters, or a hundred look-alikes: a random id.
    Ok((CampaignId::from_name(""), false))
}

/// `/campaign switch name`: makes the named campaign (ignoring case; or its
/// id) active. Refused while a session is live or for an unknown name.
pub(crate) async fn switch(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let Some(wanted) = interaction.string("name") else {
        return Err(CommandError::Refused(
            "Name the campaign to switch to (start typing to pick one).".into(),
        ));
    };
    refuse_while_live(ctx, "switch campaigns").await?;
    let store = ctx.store();
    let found = match store.campaign_by_name(wanted).await? {
        Some(campaign) => Some(campaign),
        None => match CampaignId::parse(wanted) {
            Ok(id) => store.campaign(&id).await?,
            Err(_) => None,
        },
    };
    let Some(campaign) = found else {
        let names: Vec<String> = store
            .campaigns()
            .await?
            .into_iter()
            .take(10)
            .map(|c| format!("*{}*", c.info.name))
            .collect();
        let known = if names.is_empty() {
            "There are no campaigns yet; load one with `/campaign load`.".to_string()
        } else {
            format!("Your campaigns: {}.", names.join(", "))
        };
        return Err(CommandError::Refused(format!(
            "There is no campaign named {wanted:?}. {known}"
        )));
    };
    if store
        .active_campaign()
        .await?
        .is_some_and(|active| active.id == campaign.id)
    {
        reply
            .send(Message::text(format!(
                "*{}* already is the active campaign.",
                campaign.info.name
            )))
            .await?;
        return Ok(());
    }
    if !store.set_active_campaign(Some(&campaign.id)).await? {
        return Err(CommandError::Failed(
            "The active campaign could not be changed: this bot's tenant is gone.".into(),
        ));
    }
    let entities: i64 = store.entity_counts(&campaign.id).await?.values().sum();
    let npcs = store.npcs(&campaign.id).await?.len();
    reply
        .send(Message::text(format!(
            "Switched to campaign **{}** ({npcs} voiced NPCs, {entities} entities). New sessions and `/entity` \
             commands use it.",
            campaign.info.name
        )))
        .await?;
    Ok(())
}

/// Autocomplete of `/campaign switch name`: up to 25 campaign names
/// containing what was typed (ignoring case), the active one marked.
pub(crate) async fn complete(ctx: &CommandContext, interaction: &Interaction) -> Vec<Choice> {
    let Some(partial) = super::focused_text(interaction, "name") else {
        return Vec::new();
    };
    let store = ctx.store();
    let listed = async {
        let active = store.active_campaign().await?.map(|c| c.id);
        let campaigns = store.campaigns().await?;
        Ok::<_, crate::store::StoreError>((active, campaigns))
    }
    .await;
    let (active, campaigns) = match listed {
        Ok(listed) => listed,
        Err(error) => {
            tracing::warn!(tenant = %ctx.tenant, %error, "campaign autocomplete failed");
            return Vec::new();
        }
    };
    campaigns
        .into_iter()
        .filter(|c| matches_partial(&c.info.name, partial))
        .take(MAX_CHOICES)
        .map(|c| {
            let shown = if Some(&c.id) == active.as_ref() {
                shorten(&format!("{} (active)", c.info.name), 100)
            } else {
                c.info.name.clone()
            };
            Choice {
                name: shown,
                value: c.info.name,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::interaction::OptionValue;
    use crate::commands::reply::InitialResponse;
    use crate::commands::responder::Sent;
    use crate::commands::testing::*;

    /// A campaign file with one NPC and two entities.
    const LOST_MINE: &str = "campaign: { name: Lost Mine, system: dnd5e, description: Goblins and a mine }\n\
npcs:\n  - name: Sildar\n    personality: A loyal knight.\n\
entities:\n  - { name: Phandalin, type: location, description: A frontier town }\n  - { name: Cragmaw, type: faction }\n";

    /// `/campaign load` of `bytes` served as `filename`.
    fn load_command(bench: &Bench, filename: &str, bytes: &[u8]) -> Interaction {
        let file = bench.files.serve(filename, bytes);
        command("campaign", Some("load")).with_option("file", OptionValue::Attachment(file))
    }

    /// The text of a single immediate (not deferred) message.
    fn immediate(sent: &[Sent]) -> String {
        match sent {
            [Sent::Initial(InitialResponse::Message(m))] => Sent::Initial(InitialResponse::Message(m.clone())).text(),
            other => panic!("expected one immediate message, got {other:?}"),
        }
    }

    /// The autocomplete choices sent.
    fn choices(sent: &[Sent]) -> Vec<Choice> {
        match sent {
            [Sent::Initial(InitialResponse::Choices(choices))] => choices.clone(),
            other => panic!("expected choices, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn load_creates_the_campaign_makes_it_active_and_info_shows_it() {
        let bench = Bench::new().await;
        let sent = bench
            .run(load_command(&bench, "lost-mine.yaml", LOST_MINE.as_bytes()))
            .await;
        assert_eq!(sent[0], Sent::Initial(InitialResponse::Defer { ephemeral: true }));
        let text = sent[1].text();
        assert!(matches!(sent[1], Sent::EditOriginal(_)));
        assert!(text.contains("Loaded campaign Lost Mine"), "{text}");
        assert!(
            text.contains("Voiced NPCs: 1") && text.contains("2 new, 0 updated"),
            "{text}"
        );
        let store = bench.ctx.store();
        let active = store.active_campaign().await.unwrap().unwrap();
        assert_eq!(active.id.as_str(), "lost-mine");
        assert_eq!(active.info.system, "dnd5e");

        // Loading again updates in place.
        let text = bench
            .text(load_command(&bench, "lost-mine.yml", LOST_MINE.as_bytes()))
            .await;
        assert!(
            text.contains("Updated campaign Lost Mine") && text.contains("0 new, 2 updated"),
            "{text}"
        );
        assert_eq!(store.campaigns().await.unwrap().len(), 1);

        // A second campaign; info lists both with counts, the active marked.
        store.ensure_active_campaign().await.unwrap();
        let other = "campaign: { name: Curse of Strahd }\nentities:\n  - { name: Barovia, type: location }\n";
        bench.text(load_command(&bench, "strahd.yaml", other.as_bytes())).await;
        let text = bench.text(command("campaign", Some("info"))).await;
        assert!(text.contains("▶ Curse of Strahd (active)"), "{text}");
        assert!(text.contains("Lost Mine: System: dnd5e"), "{text}");
        assert!(text.contains("Entities: 2 (1 location, 1 faction)"), "{text}");
        assert!(
            text.contains("Goblins and a mine") && text.contains("2 campaigns"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn info_without_campaigns_is_helpful() {
        let bench = Bench::new().await;
        let text = immediate(&bench.run(command("campaign", Some("info"))).await);
        assert!(
            text.contains("No campaigns yet") && text.contains("/campaign load"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn load_refusals_answer_at_once() {
        let bench = Bench::new().await;
        let text = immediate(&bench.run(load_command(&bench, "lost-mine.json", b"{}")).await);
        assert!(text.contains("`.yaml` or `.yml`"), "{text}");
        let text = immediate(&bench.run(command("campaign", Some("load"))).await);
        assert!(text.contains("Attach a campaign file"), "{text}");
        let mut big = bench.files.serve("huge.yaml", b"campaign: { name: X }");
        big.size = 11 * 1024 * 1024;
        let sent = bench
            .run(command("campaign", Some("load")).with_option("file", OptionValue::Attachment(big)))
            .await;
        assert!(immediate(&sent).contains("11 MB"), "{sent:?}");
    }

    #[tokio::test]
    async fn a_bad_file_loads_nothing_and_names_the_line() {
        let bench = Bench::new().await;
        let bad = "campaign: { name: Broken }\nnpcs:\n  - name: Bart\n    personality: A bard.\n    mood: happy\n";
        let text = bench.text(load_command(&bench, "broken.yaml", bad.as_bytes())).await;
        assert!(
            text.contains("Nothing was imported") && text.contains("line 5"),
            "{text}"
        );
        assert!(bench.ctx.store().campaigns().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_name_whose_id_is_taken_gets_its_own_id() {
        let bench = Bench::new().await;
        bench
            .text(load_command(&bench, "a.yaml", b"campaign: { name: Lost Mine }\n"))
            .await;
        let text = bench
            .text(load_command(&bench, "b.yaml", b"campaign: { name: \"Lost Mine!\" }\n"))
            .await;
        assert!(
            text.contains("Loaded campaign Lost Mine!") && text.contains("lost-mine-2"),
            "{text}"
        );
        assert_eq!(bench.ctx.store().campaigns().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn switch_changes_the_active_campaign_and_refuses_unknown_names() {
        let bench = Bench::new().await;
        bench.text(load_command(&bench, "a.yaml", LOST_MINE.as_bytes())).await;
        bench
            .text(load_command(&bench, "b.yaml", b"campaign: { name: Curse of Strahd }\n"))
            .await;
        let switch =
            |name: &str| command("campaign", Some("switch")).with_option("name", OptionValue::String(name.into()));
        let text = immediate(&bench.run(switch("lost MINE")).await);
        assert!(
            text.contains("Switched to campaign **Lost Mine**") && text.contains("2 entities"),
            "{text}"
        );
        let store = bench.ctx.store();
        assert_eq!(store.active_campaign().await.unwrap().unwrap().info.name, "Lost Mine");
        let text = immediate(&bench.run(switch("Lost Mine")).await);
        assert!(text.contains("already is the active campaign"), "{text}");
        let text = immediate(&bench.run(switch("Tomb of Annihilation")).await);
        assert!(
            text.contains("no campaign named") && text.contains("*Curse of Strahd*"),
            "{text}"
        );
        assert_eq!(store.active_campaign().await.unwrap().unwrap().info.name, "Lost Mine");
    }

    #[tokio::test]
    async fn load_and_switch_are_refused_while_a_session_runs() {
        let bench = Bench::new().await;
        bench.text(load_command(&bench, "a.yaml", LOST_MINE.as_bytes())).await;
        bench.start_session().await;
        let text = immediate(
            &bench
                .run(load_command(&bench, "b.yaml", b"campaign: { name: Other }\n"))
                .await,
        );
        assert!(
            text.contains("A session is running") && text.contains("/session stop"),
            "{text}"
        );
        let switch = command("campaign", Some("switch")).with_option("name", OptionValue::String("Lost Mine".into()));
        let text = immediate(&bench.run(switch).await);
        assert!(text.contains("A session is running"), "{text}");
        assert_eq!(bench.ctx.store().campaigns().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn autocomplete_lists_matching_campaigns_at_most_25() {
        let bench = Bench::new().await;
        let store = bench.ctx.store();
        for i in 0..30 {
            let info = glyphoxa_pipeline::campaign::CampaignInfo {
                name: format!("Saga {i:02}"),
                system: String::new(),
                description: String::new(),
            };
            store
                .upsert_campaign(&CampaignId::from_name(&info.name), &info)
                .await
                .unwrap();
        }
        let active = CampaignId::from_name("Saga 07");
        store.set_active_campaign(Some(&active)).await.unwrap();
        let all = choices(
            &bench
                .run(
                    Interaction::autocomplete("campaign", Some("switch"), "name", "", dm())
                        .in_guild(id(GUILD), id(TEXT_CHANNEL)),
                )
                .await,
        );
        assert_eq!(all.len(), 25);
        let some = choices(
            &bench
                .run(
                    Interaction::autocomplete("campaign", Some("switch"), "name", "ga 0", dm())
                        .in_guild(id(GUILD), id(TEXT_CHANNEL)),
                )
                .await,
        );
        assert_eq!(some.len(), 10);
        let marked = some.iter().find(|c| c.value == "Saga 07").unwrap();
        assert_eq!(marked.name, "Saga 07 (active)");
    }

    #[tokio::test]
    async fn campaigns_are_per_tenant() {
        use crate::ids::TenantId;
        use crate::store::{LicenseTier, NewTenant};
        let bench = Bench::new().await;
        let other = TenantId::parse("globex").unwrap();
        bench
            .store
            .create_tenant(&NewTenant::new(other.clone(), LicenseTier::Shared))
            .await
            .unwrap();
        let info = glyphoxa_pipeline::campaign::CampaignInfo {
            name: "Secret Saga".into(),
            system: String::new(),
            description: String::new(),
        };
        bench
            .store
            .tenant(&other)
            .upsert_campaign(&CampaignId::from_name("Secret Saga"), &info)
            .await
            .unwrap();
        let text = bench.text(command("campaign", Some("info"))).await;
        assert!(text.contains("No campaigns yet"), "{text}");
        let switch = command("campaign", Some("switch")).with_option("name", OptionValue::String("Secret Saga".into()));
        assert!(bench.text(switch).await.contains("no campaign named"));
    }
}
