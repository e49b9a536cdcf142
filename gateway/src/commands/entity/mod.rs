//! `/entity add | list | remove | import` (SPEC §2): the campaign knowledge
//! of the tenant's active campaign.
//!
//! Entities always belong to the active campaign; `/entity add` and
//! `/entity import` create the tenant's default campaign on first use.
//! Every change also reaches the running sessions of the tenant that use
//! that campaign (NPC context, STT keyword hints) through the worker's
//! `UpdateKnowledge`. The store is written first: when a worker cannot be
//! told, the change is kept and the reply says the running session did not
//! get it.
//!
//! The file helpers ([`checked_upload`], [`download_text`]) and the
//! campaign-file checks are shared with `/campaign load`.

mod foundry;

use std::collections::{BTreeMap, HashSet};

use glyphoxa_pipeline::campaign::{Campaign, CampaignError, Entity, EntityKind, MAX_NAME_CHARS};
use glyphoxa_proto::v1::UpdateKnowledgeRequest;

use super::reply::{Button, ButtonStyle, Choice, Embed, Message, Modal, TextInput, MAX_CHOICES};
use super::{
    matches_partial, Attachment, CommandContext, CommandError, CommandResult, Interaction, InteractionKind, Reply,
    ENTITY_ADD_MODAL, ENTITY_REMOVE_CANCEL, ENTITY_REMOVE_CONFIRM,
};
use crate::ids::CampaignId;
use crate::orchestrator::entity_to_proto;
use crate::store::{Session, StoreError, StoredCampaign, StoredEntity, TenantStore, MAX_DESCRIPTION_CHARS};

/// Largest file `/entity import` and `/campaign load` accept (10 MB).
pub(super) const MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;
/// Longest tag list of the `/entity add` modal, in characters.
const MAX_TAGS_CHARS: usize = 200;
/// Entities shown by `/entity list` (one embed field each).
const LIST_LIMIT: u32 = 25;
/// Characters of description shown per entity in `/entity list`.
const LIST_DESCRIPTION_CHARS: usize = 80;
/// Entities scanned for "contains" autocomplete matches after the prefix
/// matches.
const COMPLETE_SCAN: u32 = 2000;
/// Entities per `UpdateKnowledge` call, so big imports stay well within a
/// gRPC message.
const SYNC_BATCH: usize = 100;
/// The allowed entity types, for messages.
const TYPE_LIST: &str = "npc, location, item, faction, quest, lore";
/// Red of the removal confirmation.
const DANGER: u32 = 0xe7_4c_3c;
/// Blue of entity lists.
const INFO: u32 = 0x34_98_db;

// ---- /entity add ----

/// `/entity add`: opens the modal (name, type, description, tags).
pub(crate) async fn add(_ctx: &CommandContext, _interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let modal = Modal {
        custom_id: ENTITY_ADD_MODAL.to_string(),
        title: "Add an entity".into(),
        inputs: vec![
            TextInput::short("name", "Name", MAX_NAME_CHARS as u16, true).placeholder("Phandalin"),
            TextInput::short("type", "Type", 20, true).placeholder("npc, location, item, faction, quest or lore"),
            TextInput::paragraph("description", "Description", MAX_DESCRIPTION_CHARS as u16, false)
                .placeholder("What the NPCs know about it"),
            TextInput::short("tags", "Tags (comma separated)", MAX_TAGS_CHARS as u16, false)
                .placeholder("town, starting area"),
        ],
    };
    reply.modal(modal).await?;
    Ok(())
}

/// The `/entity add` modal submitted: validates every field (refusals name
/// the field and what is allowed), stores the entity in the active campaign
/// (the default campaign on first use), answers with its name, type and id
/// and tells the running sessions.
///
/// A name already used by an entity of the campaign (any type, ignoring
/// case) is refused rather than replaced: names are how the DM, the players
/// and the NPCs refer to entities, a retyped name usually means a slip, and
/// overwriting would silently lose the old description. The refusal names
/// the existing entity and how to replace it (`/entity remove` first);
/// bulk updates by name go through `/entity import`.
pub(crate) async fn add_submit(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let entity = entity_from_modal(interaction)?;
    let store = ctx.store();
    let campaign = store.ensure_active_campaign().await?;
    if let Some(existing) = entities_named(&store, &campaign.id, &entity.name)
        .await?
        .into_iter()
        .next()
    {
        return Err(CommandError::Refused(format!(
            "Campaign *{}* already has an entity named **{}** (a {}, id `{}`). Pick another name, or remove it \
             first with `/entity remove` to replace it.",
            campaign.info.name, existing.entity.name, existing.entity.kind, existing.id
        )));
    }
    let stored = store.add_entity(&campaign.id, &entity).await?;
    let mut text = format!(
        "Added the {} **{}** to campaign *{}*.\nId: `{}`",
        stored.entity.kind, stored.entity.name, campaign.info.name, stored.id
    );
    if !stored.entity.tags.is_empty() {
        text.push_str(&format!("\nTags: {}", stored.entity.tags.join(", ")));
    }
    let sessions = sessions_using(ctx, &campaign.id).await?;
    if !sessions.is_empty() {
        reply.defer(true).await?;
        let sync = sync_sessions(ctx, &sessions, std::slice::from_ref(&stored), &[]).await;
        text.push_str(&format!(
            "\n{}",
            sync.note(
                "The running session knows it now.",
                &format!("**{}** is saved", stored.entity.name)
            )
        ));
    }
    reply.send(Message::text(text)).await?;
    Ok(())
}

/// The entity the modal describes, or the refusal naming the bad field.
fn entity_from_modal(interaction: &Interaction) -> Result<Entity, CommandError> {
    let refuse = |text: String| Err(CommandError::Refused(text));
    let name = interaction.field("name");
    if name.is_empty() {
        return refuse(format!(
            "Please give the entity a **name** (up to {MAX_NAME_CHARS} characters)."
        ));
    }
    let length = name.chars().count();
    if length > MAX_NAME_CHARS {
        return refuse(format!(
            "The **name** is {length} characters long; at most {MAX_NAME_CHARS} are allowed."
        ));
    }
    let kind_text = interaction.field("type");
    if kind_text.is_empty() {
        return refuse(format!("Please give the entity a **type**: one of {TYPE_LIST}."));
    }
    let Ok(kind) = kind_text.parse::<EntityKind>() else {
        return refuse(format!(
            "{kind_text:?} is not an entity **type**. Use one of: {TYPE_LIST}."
        ));
    };
    let description = interaction.field("description");
    let length = description.chars().count();
    if length > MAX_DESCRIPTION_CHARS {
        return refuse(format!(
            "The **description** is {length} characters long; at most {MAX_DESCRIPTION_CHARS} are allowed."
        ));
    }
    let tags_text = interaction.field("tags");
    let length = tags_text.chars().count();
    if length > MAX_TAGS_CHARS {
        return refuse(format!(
            "The **tags** are {length} characters long; at most {MAX_TAGS_CHARS} are allowed \
             (comma separated, e.g. `town, sword coast`)."
        ));
    }
    let mut seen = HashSet::new();
    let tags = tags_text
        .split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty() && seen.insert(tag.to_lowercase()))
        .map(str::to_string)
        .collect();
    Ok(Entity {
        name: name.to_string(),
        kind,
        description: description.to_string(),
        tags,
        properties: BTreeMap::new(),
        relationships: Vec::new(),
    })
}

// ---- /entity list ----

/// `/entity list [type]`: up to 25 entities of the active campaign (name,
/// type, the start of the description), the total in the footer.
pub(crate) async fn list(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let kind =
        match interaction.string("type") {
            Some(text) => Some(text.parse::<EntityKind>().map_err(|_| {
                CommandError::Refused(format!("{text:?} is not an entity type. Use one of: {TYPE_LIST}."))
            })?),
            None => None,
        };
    let store = ctx.store();
    let Some(campaign) = store.active_campaign().await? else {
        reply
            .send(Message::text(
                "No entities yet. Add one with `/entity add`, or import a campaign file (`.yaml`) or a \
                 Foundry VTT export (`.json`) with `/entity import`.",
            ))
            .await?;
        return Ok(());
    };
    let entities = store.entities(&campaign.id, kind, LIST_LIMIT).await?;
    let counts = store.entity_counts(&campaign.id).await?;
    let total: i64 = match kind {
        Some(kind) => counts.get(&kind).copied().unwrap_or(0),
        None => counts.values().sum(),
    };
    if entities.is_empty() {
        let text = match kind {
            Some(kind) => format!(
                "Campaign *{}* has no {kind} entities. Add one with `/entity add`, or run `/entity list` \
                 without a type to see everything.",
                campaign.info.name
            ),
            None => format!(
                "Campaign *{}* has no entities yet. Add one with `/entity add`, or import a campaign file \
                 (`.yaml`) or a Foundry VTT export (`.json`) with `/entity import`.",
                campaign.info.name
            ),
        };
        reply.send(Message::text(text)).await?;
        return Ok(());
    }
    let title = match kind {
        Some(kind) => format!("Entities of {} — {kind}", campaign.info.name),
        None => format!("Entities of {}", campaign.info.name),
    };
    let mut embed = Embed::titled(title);
    for stored in &entities {
        let description = short(&stored.entity.description, LIST_DESCRIPTION_CHARS);
        let value = if description.is_empty() {
            format!("*{}* · no description", stored.entity.kind)
        } else {
            format!("*{}* · {description}", stored.entity.kind)
        };
        embed = embed.field(stored.entity.name.clone(), value, false);
    }
    let noun = if total == 1 { "entity" } else { "entities" };
    let shown = i64::try_from(entities.len()).unwrap_or(i64::MAX);
    embed = if shown < total {
        embed.footer(format!(
            "{shown} of {total} {noun} shown — pick a type to narrow the list"
        ))
    } else {
        embed.footer(format!("{total} {noun}"))
    };
    embed.color = Some(INFO);
    reply.send(Message::embed(embed)).await?;
    Ok(())
}

/// The start of `text` on one line, at most `max` characters, cut at a word
/// with "…".
fn short(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let hard: String = line.chars().take(max.saturating_sub(1)).collect();
    let cut = match hard.rfind(' ') {
        Some(at) if at > hard.len() / 2 => &hard[..at],
        _ => hard.as_str(),
    };
    format!("{}…", cut.trim_end())
}

// ---- /entity remove ----

/// `/entity remove name`: asks to confirm with Cancel / Confirm buttons.
/// The name is matched ignoring case (or is an entity id, which the
/// autocomplete uses when two entities share a name).
pub(crate) async fn remove(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let Some(wanted) = interaction.string("name") else {
        return Err(CommandError::Refused(
            "Name the entity to remove (start typing to pick one).".into(),
        ));
    };
    let store = ctx.store();
    let Some(campaign) = store.active_campaign().await? else {
        return Err(CommandError::Refused(format!(
            "There is no entity named {wanted:?}: no campaign has entities yet."
        )));
    };
    let entity = resolve_entity(&store, &campaign, wanted).await?;
    let mut embed = Embed::titled(format!("Remove {}?", entity.entity.name)).description(format!(
        "This removes the {} **{}** from campaign *{}*. It cannot be undone.",
        entity.entity.kind, entity.entity.name, campaign.info.name
    ));
    let description = short(&entity.entity.description, 200);
    if !description.is_empty() {
        embed = embed.field("Description", description, false);
    }
    embed = embed.footer(format!("id {}", entity.id));
    embed.color = Some(DANGER);
    let buttons = vec![
        Button::new(ENTITY_REMOVE_CANCEL, "Cancel", ButtonStyle::Secondary),
        Button::new(
            format!("{ENTITY_REMOVE_CONFIRM}{}", entity.id),
            "Confirm",
            ButtonStyle::Danger,
        ),
    ];
    reply.send(Message::embed(embed).with_buttons(buttons)).await?;
    Ok(())
}

/// The entity of `campaign` that `wanted` names: its id, or its name
/// ignoring case. Two entities of different types with that name are
/// refused with both listed.
async fn resolve_entity(
    store: &TenantStore,
    campaign: &StoredCampaign,
    wanted: &str,
) -> Result<StoredEntity, CommandError> {
    if let Some(by_id) = store.entity(wanted).await? {
        if by_id.campaign_id == campaign.id {
            return Ok(by_id);
        }
    }
    let mut named = entities_named(store, &campaign.id, wanted).await?;
    match named.len() {
        0 => Err(CommandError::Refused(format!(
            "Campaign *{}* has no entity named {wanted:?}. `/entity list` shows what it has.",
            campaign.info.name
        ))),
        1 => Ok(named.remove(0)),
        _ => {
            let kinds: Vec<&str> = named.iter().map(|e| e.entity.kind.as_str()).collect();
            Err(CommandError::Refused(format!(
                "Several entities are named {wanted:?} ({}). Pick the one you mean from the list while typing \
                 the name.",
                kinds.join(", ")
            )))
        }
    }
}

/// The entities of `campaign` named exactly `name`, ignoring case.
async fn entities_named(
    store: &TenantStore,
    campaign: &CampaignId,
    name: &str,
) -> Result<Vec<StoredEntity>, StoreError> {
    let key = name.trim().to_lowercase();
    // Exact names sort before longer names with the same prefix, so the
    // first page of the prefix search holds them all (one per type).
    let found = store.search_entities(campaign, name.trim(), MAX_CHOICES as u32).await?;
    Ok(found
        .into_iter()
        .filter(|e| e.entity.name.trim().to_lowercase() == key)
        .collect())
}

/// The Confirm button: removes the entity, replaces the confirmation with
/// the outcome and tells the running sessions (a follow-up says so when a
/// session could not be told). An entity already gone is said plainly.
pub(crate) async fn remove_confirm(
    ctx: &CommandContext,
    interaction: &Interaction,
    reply: &mut Reply,
) -> CommandResult {
    let InteractionKind::Component { custom_id } = &interaction.kind else {
        return Err(CommandError::Refused("This is not a removal confirmation.".into()));
    };
    let entity_id = custom_id.strip_prefix(ENTITY_REMOVE_CONFIRM).unwrap_or_default().trim();
    let store = ctx.store();
    let existing = if entity_id.is_empty() {
        None
    } else {
        store.entity(entity_id).await?
    };
    let removed = match existing {
        Some(entity) if store.delete_entity(&entity.id).await? => entity,
        _ => {
            reply
                .update(Message::text(
                    "That entity is already gone (removed or replaced meanwhile); nothing was removed.",
                ))
                .await?;
            return Ok(());
        }
    };
    reply
        .update(Message::text(format!(
            "Removed the {} **{}**.",
            removed.entity.kind, removed.entity.name
        )))
        .await?;
    let sessions = sessions_using(ctx, &removed.campaign_id).await?;
    if !sessions.is_empty() {
        let sync = sync_sessions(ctx, &sessions, &[], std::slice::from_ref(&removed.id)).await;
        if sync.has_failures() {
            reply.send(Message::text(sync.note("", "The removal is saved"))).await?;
        }
    }
    Ok(())
}

/// The Cancel button: replaces the confirmation, nothing removed.
pub(crate) async fn remove_cancel(
    _ctx: &CommandContext,
    _interaction: &Interaction,
    reply: &mut Reply,
) -> CommandResult {
    reply.update(Message::text("Cancelled: nothing was removed.")).await?;
    Ok(())
}

/// Autocomplete of `/entity remove name`: up to 25 entities of the active
/// campaign whose name contains what was typed (ignoring case), names
/// starting with it first. A name shared by several entities is shown with
/// each one's type and completes to the entity's id.
pub(crate) async fn complete(ctx: &CommandContext, interaction: &Interaction) -> Vec<Choice> {
    let Some(partial) = super::focused_text(interaction, "name") else {
        return Vec::new();
    };
    match entity_choices(&ctx.store(), partial).await {
        Ok(choices) => choices,
        Err(error) => {
            tracing::warn!(tenant = %ctx.tenant, %error, "entity autocomplete failed");
            Vec::new()
        }
    }
}

async fn entity_choices(store: &TenantStore, partial: &str) -> Result<Vec<Choice>, StoreError> {
    let Some(campaign) = store.active_campaign().await? else {
        return Ok(Vec::new());
    };
    let mut found = store.search_entities(&campaign.id, partial, MAX_CHOICES as u32).await?;
    if found.len() < MAX_CHOICES && !partial.is_empty() {
        let seen: HashSet<String> = found.iter().map(|e| e.id.clone()).collect();
        let more = store.entities(&campaign.id, None, COMPLETE_SCAN).await?;
        found.extend(
            more.into_iter()
                .filter(|e| !seen.contains(&e.id) && matches_partial(&e.entity.name, partial))
                .take(MAX_CHOICES - found.len()),
        );
    }
    let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
    for stored in &found {
        *per_name.entry(stored.entity.name.to_lowercase()).or_default() += 1;
    }
    Ok(found
        .into_iter()
        .map(|stored| {
            if per_name.get(&stored.entity.name.to_lowercase()).copied().unwrap_or(0) > 1 {
                Choice {
                    name: short(&format!("{} ({})", stored.entity.name, stored.entity.kind), 100),
                    value: stored.id,
                }
            } else {
                Choice::same(stored.entity.name)
            }
        })
        .collect())
}

// ---- /entity import ----

/// What an uploaded file holds, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upload {
    /// A campaign file (SPEC §6): `.yaml` or `.yml`.
    CampaignYaml,
    /// A Foundry VTT export: `.json`.
    FoundryJson,
}

impl Upload {
    fn of(filename: &str) -> Option<Self> {
        let lower = filename.trim().to_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Some(Upload::CampaignYaml)
        } else if lower.ends_with(".json") {
            Some(Upload::FoundryJson)
        } else {
            None
        }
    }

    fn described(self) -> &'static str {
        match self {
            Upload::CampaignYaml => "a campaign file (`.yaml` or `.yml`)",
            Upload::FoundryJson => "a Foundry VTT export (`.json`)",
        }
    }
}

/// The `file` attachment and its kind; refused at once (before any
/// download) when it is missing, of a kind not in `accepted` or over 10 MB.
pub(super) fn checked_upload<'a>(
    interaction: &'a Interaction,
    accepted: &[Upload],
) -> Result<(&'a Attachment, Upload), CommandError> {
    let wanted = accepted.iter().map(|u| u.described()).collect::<Vec<_>>().join(" or ");
    let Some(file) = interaction.attachment("file") else {
        return Err(CommandError::Refused(format!("Attach {wanted} as the `file` option.")));
    };
    let Some(kind) = Upload::of(&file.filename).filter(|kind| accepted.contains(kind)) else {
        return Err(CommandError::Refused(format!(
            "I cannot read `{}`: attach {wanted}.",
            file.filename
        )));
    };
    if file.size > MAX_UPLOAD_BYTES {
        return Err(CommandError::Refused(format!(
            "`{}` is {}; files up to {} are accepted.",
            file.filename,
            megabytes(file.size),
            megabytes(MAX_UPLOAD_BYTES)
        )));
    }
    Ok((file, kind))
}

/// `bytes` as "12.3 MB" (MB = 2^20 bytes, as Discord counts), rounded up
/// so a file just over the limit never reads as the limit.
fn megabytes(bytes: u64) -> String {
    let tenths = (bytes as f64 / (1024.0 * 1024.0) * 10.0).ceil() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0} MB")
    } else {
        format!("{tenths:.1} MB")
    }
}

/// Defers (downloads are slow), downloads the attachment (at most 10 MB)
/// and reads it as UTF-8 text.
pub(super) async fn download_text(
    ctx: &CommandContext,
    file: &Attachment,
    reply: &mut Reply,
) -> Result<String, CommandError> {
    reply.defer(true).await?;
    let bytes = ctx
        .files
        .fetch(file, MAX_UPLOAD_BYTES)
        .await
        .map_err(|error| CommandError::Failed(format!("Could not download `{}`: {error}", file.filename)))?;
    let text = String::from_utf8(bytes).map_err(|error| {
        CommandError::Refused(format!(
            "Nothing was imported: `{}` is not UTF-8 text (invalid byte at offset {}).",
            file.filename,
            error.utf8_error().valid_up_to()
        ))
    })?;
    Ok(text.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(text))
}

/// A campaign file parsed, or the refusal listing every problem with its
/// line.
pub(super) fn parse_campaign(filename: &str, text: &str) -> Result<Campaign, CommandError> {
    const SHOWN: usize = 20;
    let campaign = match Campaign::from_yaml(text, filename) {
        Ok(campaign) => campaign,
        Err(CampaignError::Invalid { errors, .. }) => {
            let mut message = format!("Nothing was imported: `{filename}` is not a valid campaign file:");
            for error in errors.iter().take(SHOWN) {
                message.push_str(&format!("\n• {error}"));
            }
            if errors.len() > SHOWN {
                message.push_str(&format!("\n… and {} more problems.", errors.len() - SHOWN));
            }
            return Err(CommandError::Refused(message));
        }
        Err(other) => {
            return Err(CommandError::Refused(format!(
                "Nothing was imported from `{filename}`: {other}"
            )))
        }
    };
    // The store checks these too, but without saying which entity it was.
    for (index, entity) in campaign.entities.iter().enumerate() {
        let length = entity.description.chars().count();
        if length > MAX_DESCRIPTION_CHARS {
            return Err(CommandError::Refused(format!(
                "Nothing was imported from `{filename}`: entities[{index}] ({:?}) has a description of {length} \
                 characters; at most {MAX_DESCRIPTION_CHARS} are allowed.",
                entity.name
            )));
        }
    }
    Ok(campaign)
}

/// A store error of a campaign-file import, for the user: nothing was
/// imported (the import is one transaction).
pub(super) fn import_failed(filename: &str, error: StoreError) -> CommandError {
    match error {
        StoreError::Invalid { .. } | StoreError::Conflict(_) | StoreError::NotFound(_) => {
            CommandError::Refused(format!("Nothing was imported from `{filename}`: {error}."))
        }
        other => CommandError::from(other),
    }
}

/// `/entity import file`: a campaign file (`.yaml`/`.yml`) or a Foundry VTT
/// export (`.json`, ≤ 10 MB) into the active campaign (the default campaign
/// on first use). Reports how many entities were imported; a bad Foundry
/// entry stops the import and the reply says how many were imported before
/// it. Imported entities reach the running sessions of that campaign.
pub(crate) async fn import(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let (file, kind) = checked_upload(interaction, &[Upload::CampaignYaml, Upload::FoundryJson])?;
    let text = download_text(ctx, file, reply).await?;
    match kind {
        Upload::CampaignYaml => import_campaign_file(ctx, reply, &file.filename, &text).await,
        Upload::FoundryJson => import_foundry(ctx, reply, &file.filename, &text).await,
    }
}

/// A campaign file into the active campaign: its entities are added or
/// updated (by name and type) and its NPCs replace the roster; a file
/// without NPCs leaves the roster alone. The active campaign keeps its own
/// name, system and description: loading the file as a campaign of its own
/// is `/campaign load`. All or nothing (one transaction).
async fn import_campaign_file(ctx: &CommandContext, reply: &mut Reply, filename: &str, text: &str) -> CommandResult {
    let mut parsed = parse_campaign(filename, text)?;
    let store = ctx.store();
    let active = store.ensure_active_campaign().await?;
    let file_campaign = std::mem::replace(&mut parsed.campaign, active.info.clone());
    let roster_replaced = !parsed.npcs.is_empty();
    if !roster_replaced {
        parsed.npcs = store.npcs(&active.id).await?.into_iter().map(|n| n.npc).collect();
    }
    let imported = store
        .import_campaign(&active.id, &parsed)
        .await
        .map_err(|error| import_failed(filename, error))?;
    let total = imported.entities_created + imported.entities_updated;
    let mut answer = format!(
        "Imported {total} {} from `{filename}` into campaign *{}* ({} new, {} updated){}.",
        plural(total, "entity", "entities"),
        active.info.name,
        imported.entities_created,
        imported.entities_updated,
        kinds_summary(parsed.entities.iter().map(|e| e.kind)),
    );
    if roster_replaced {
        answer.push_str(&format!(
            "\nThe NPC roster now has {} {} from the file.",
            imported.npcs,
            plural(imported.npcs, "NPC", "NPCs")
        ));
    }
    if file_campaign.name.trim().to_lowercase() != active.info.name.trim().to_lowercase() {
        answer.push_str(&format!(
            "\nThe file's campaign section (*{}*) was not applied; use `/campaign load` to load it as a \
             campaign of its own.",
            file_campaign.name
        ));
    }
    let sessions = sessions_using(ctx, &active.id).await?;
    if !sessions.is_empty() {
        let wanted: HashSet<(EntityKind, String)> = parsed
            .entities
            .iter()
            .map(|e| (e.kind, e.name.trim().to_lowercase()))
            .collect();
        let stored: Vec<StoredEntity> = store
            .entities(&active.id, None, u32::MAX)
            .await?
            .into_iter()
            .filter(|e| wanted.contains(&(e.entity.kind, e.entity.name.trim().to_lowercase())))
            .collect();
        if !stored.is_empty() {
            let sync = sync_sessions(ctx, &sessions, &stored, &[]).await;
            answer.push_str(&format!(
                "\n{}",
                sync.note("The running session knows them now.", "The import is saved")
            ));
        }
        if roster_replaced {
            answer.push_str("\nNPC roster changes apply from the next `/session start`.");
        }
    }
    reply.send(Message::text(answer)).await?;
    Ok(())
}

/// A Foundry VTT export, entry by entry, into the active campaign (added,
/// or updated by name and type). The first bad entry stops the import; the
/// entries before it stay imported.
async fn import_foundry(ctx: &CommandContext, reply: &mut Reply, filename: &str, text: &str) -> CommandResult {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|error| {
        CommandError::Refused(format!(
            "Nothing was imported: `{filename}` is not valid JSON ({error})."
        ))
    })?;
    let export = foundry::documents(&json)
        .map_err(|error| CommandError::Refused(format!("Nothing was imported from `{filename}`: {error}.")))?;
    if export.documents.is_empty() {
        return Err(CommandError::Refused(format!(
            "Nothing was imported: `{filename}` holds no actors, items or journal entries."
        )));
    }
    let store = ctx.store();
    let campaign = store.ensure_active_campaign().await?;
    let mut imported: Vec<StoredEntity> = Vec::new();
    let (mut created, mut shortened) = (0usize, 0usize);
    let mut failure = None;
    for document in &export.documents {
        let converted = match document.to_entity() {
            Ok(converted) => converted,
            Err(reason) => {
                failure = Some(format!("{} {reason}", document.label()));
                break;
            }
        };
        match store.upsert_entity(&campaign.id, &converted.entity).await {
            Ok((stored, was_created)) => {
                created += usize::from(was_created);
                shortened += usize::from(converted.shortened);
                imported.push(stored);
            }
            Err(error) => {
                failure = Some(format!("{}: {error}", document.label()));
                break;
            }
        }
    }
    let count = imported.len();
    let mut answer = match &failure {
        None => format!(
            "Imported {count} {} from `{filename}` into campaign *{}* ({created} new, {} updated){}.",
            plural(count, "entry", "entries"),
            campaign.info.name,
            count - created,
            kinds_summary(imported.iter().map(|e| e.entity.kind)),
        ),
        Some(problem) => format!(
            "⚠️ Imported {count} {} from `{filename}` into campaign *{}* before a bad entry stopped the import: \
             {problem}.\nFix it and import the file again: entries already imported are updated, not duplicated.",
            plural(count, "entry", "entries"),
            campaign.info.name,
        ),
    };
    if shortened > 0 {
        answer.push_str(&format!(
            "\n{shortened} {} cut to {MAX_DESCRIPTION_CHARS} characters.",
            plural(shortened, "description was", "descriptions were")
        ));
    }
    if !export.skipped_keys.is_empty() {
        answer.push_str(&format!(
            "\nSkipped (not actors, items or journal entries): {}.",
            export.skipped_keys.join(", ")
        ));
    }
    if !imported.is_empty() {
        let sessions = sessions_using(ctx, &campaign.id).await?;
        if !sessions.is_empty() {
            let sync = sync_sessions(ctx, &sessions, &imported, &[]).await;
            answer.push_str(&format!(
                "\n{}",
                sync.note("The running session knows them now.", "The import is saved")
            ));
        }
    }
    reply.send(Message::text(answer)).await?;
    Ok(())
}

/// `one` or `many` by `count`.
fn plural(count: usize, one: &'static str, many: &'static str) -> &'static str {
    if count == 1 {
        one
    } else {
        many
    }
}

/// ": 2 npc, 1 item" for the kinds given (empty when none).
fn kinds_summary(kinds: impl Iterator<Item = EntityKind>) -> String {
    let mut counts: BTreeMap<EntityKind, usize> = BTreeMap::new();
    for kind in kinds {
        *counts.entry(kind).or_default() += 1;
    }
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
    format!(": {}", parts.join(", "))
}

// ---- running sessions ----

/// The tenant's live sessions that run `campaign`.
async fn sessions_using(ctx: &CommandContext, campaign: &CampaignId) -> Result<Vec<Session>, CommandError> {
    Ok(ctx
        .store()
        .live_sessions()
        .await?
        .into_iter()
        .filter(|session| session.campaign_id.as_ref() == Some(campaign))
        .collect())
}

/// What telling the running sessions about a knowledge change achieved.
#[derive(Debug, Default)]
struct SessionSync {
    /// Sessions that got the change.
    updated: usize,
    /// Why the others did not, one line per session.
    failures: Vec<String>,
}

impl SessionSync {
    fn has_failures(&self) -> bool {
        !self.failures.is_empty()
    }

    /// The line for the reply: `success` when every session got the change,
    /// else "`saved`, but the running session could not be updated …".
    fn note(&self, success: &str, saved: &str) -> String {
        if self.failures.is_empty() {
            return success.to_string();
        }
        let sessions = if self.failures.len() + self.updated > 1 {
            "a running session"
        } else {
            "the running session"
        };
        format!(
            "⚠️ {saved}, but {sessions} could not be updated ({}). It takes effect at the next `/session start` \
             (stop and start the session to use it now).",
            self.failures.join("; ")
        )
    }
}

/// Sends `upserted` and `removed` to every session in `sessions` (in
/// batches); failures are collected, never raised, because the change is
/// already stored.
async fn sync_sessions(
    ctx: &CommandContext,
    sessions: &[Session],
    upserted: &[StoredEntity],
    removed: &[String],
) -> SessionSync {
    let mut sync = SessionSync::default();
    let upserts: Vec<_> = upserted.iter().map(entity_to_proto).collect();
    let mut batches: Vec<UpdateKnowledgeRequest> = upserts
        .chunks(SYNC_BATCH)
        .map(|chunk| UpdateKnowledgeRequest {
            session_id: String::new(),
            upserted: chunk.to_vec(),
            removed_entity_ids: Vec::new(),
        })
        .collect();
    batches.extend(removed.chunks(SYNC_BATCH * 5).map(|chunk| UpdateKnowledgeRequest {
        session_id: String::new(),
        upserted: Vec::new(),
        removed_entity_ids: chunk.to_vec(),
    }));
    for session in sessions {
        let Some(worker) = session.worker_addr.as_deref() else {
            sync.failures
                .push(format!("session `{}` is still starting", session.id));
            continue;
        };
        let mut outcome = Ok(());
        for batch in &batches {
            let request = UpdateKnowledgeRequest {
                session_id: session.id.to_string(),
                ..batch.clone()
            };
            if let Err(error) = ctx.workers.update_knowledge(worker, request).await {
                tracing::warn!(tenant = %ctx.tenant, session_id = %session.id, %error,
                    "cannot update a running session's knowledge");
                outcome = Err(error);
                break;
            }
        }
        match outcome {
            Ok(()) => sync.updated += 1,
            Err(error) => sync.failures.push(format!("session `{}`: {error}", session.id)),
        }
    }
    sync
}

#[cfg(test)]
mod tests;
