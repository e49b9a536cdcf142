//! Campaigns, their entities (with relationships) and their voiced NPC
//! definitions, reusing the campaign types of `glyphoxa_pipeline::campaign`.

use std::collections::{BTreeMap, HashMap};

use glyphoxa_pipeline::campaign::{
    Campaign, CampaignInfo, Entity, EntityKind, NpcDefinition, Relationship, VoiceSpec, MAX_NAME_CHARS,
};

use super::tenants::for_update;
use super::{from_json, to_json, with_pool, with_tx, Ctx, StoreError, TenantStore};
use crate::ids::CampaignId;

/// Longest entity or campaign description, in characters (the gRPC contract's limit).
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
const MAX_TAGS: usize = 50;
const MAX_SHORT_CHARS: usize = 100;
const MAX_LIST: usize = 200;
const MAX_PERSONALITY_CHARS: usize = 8000;

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCampaign {
    /// Its id within the tenant.
    pub id: CampaignId,
    /// Name, system and description.
    pub info: CampaignInfo,
    /// Created, unix ms.
    pub created_at: i64,
    /// Last changed, unix ms.
    pub updated_at: i64,
}

/// An entity as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntity {
    /// Its id (a UUID), stable across updates.
    pub id: String,
    /// The campaign it belongs to.
    pub campaign_id: CampaignId,
    /// The entity.
    pub entity: Entity,
    /// Created, unix ms.
    pub created_at: i64,
    /// Last changed, unix ms.
    pub updated_at: i64,
}

/// A voiced NPC definition as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredNpc {
    /// Its id (a UUID).
    pub id: String,
    /// The campaign it belongs to.
    pub campaign_id: CampaignId,
    /// Its place in the roster (0-based).
    pub position: i64,
    /// The definition.
    pub npc: NpcDefinition,
}

/// What [`TenantStore::import_campaign`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignImport {
    /// The campaign as stored now.
    pub campaign: StoredCampaign,
    /// NPCs in the roster now (the file replaces the roster).
    pub npcs: usize,
    /// Entities created.
    pub entities_created: usize,
    /// Entities updated (same name and type).
    pub entities_updated: usize,
}

fn check_len(field: &'static str, text: &str, max: usize, required: bool) -> Result<(), StoreError> {
    let count = text.chars().count();
    if required && text.trim().is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if count > max {
        return Err(StoreError::invalid(
            field,
            format!("is {count} characters long; at most {max} are allowed"),
        ));
    }
    Ok(())
}

fn check_info(info: &CampaignInfo) -> Result<(), StoreError> {
    check_len("campaign name", &info.name, MAX_NAME_CHARS, true)?;
    check_len("campaign system", &info.system, MAX_SHORT_CHARS, false)?;
    check_len("campaign description", &info.description, MAX_DESCRIPTION_CHARS, false)
}

fn check_entity(entity: &Entity) -> Result<(), StoreError> {
    check_len("entity name", &entity.name, MAX_NAME_CHARS, true)?;
    check_len("entity description", &entity.description, MAX_DESCRIPTION_CHARS, false)?;
    if entity.tags.len() > MAX_TAGS {
        return Err(StoreError::invalid(
            "entity tags",
            format!("at most {MAX_TAGS} tags are allowed"),
        ));
    }
    for tag in &entity.tags {
        check_len("entity tag", tag, MAX_SHORT_CHARS, true)?;
    }
    if entity.properties.len() > MAX_LIST || entity.relationships.len() > MAX_LIST {
        return Err(StoreError::invalid(
            "entity",
            format!("at most {MAX_LIST} properties and {MAX_LIST} relationships are allowed"),
        ));
    }
    for (key, value) in &entity.properties {
        check_len("entity property name", key, MAX_SHORT_CHARS, true)?;
        check_len("entity property value", value, MAX_DESCRIPTION_CHARS, false)?;
    }
    for relationship in &entity.relationships {
        check_len("relationship target", &relationship.target, MAX_NAME_CHARS, true)?;
        check_len("relationship type", &relationship.kind, MAX_SHORT_CHARS, true)?;
    }
    Ok(())
}

fn check_npcs(npcs: &[NpcDefinition]) -> Result<(), StoreError> {
    let mut names = HashMap::new();
    let mut helpers = 0;
    for npc in npcs {
        check_len("NPC name", &npc.name, MAX_NAME_CHARS, true)?;
        check_len("NPC personality", &npc.personality, MAX_PERSONALITY_CHARS, true)?;
        if names.insert(npc.name.trim().to_lowercase(), ()).is_some() {
            return Err(StoreError::invalid(
                "NPC name",
                format!("{:?} appears twice in the roster", npc.name),
            ));
        }
        helpers += usize::from(npc.gm_helper);
    }
    if helpers > 1 {
        return Err(StoreError::invalid(
            "NPC gm_helper",
            "at most one NPC may be the gm_helper",
        ));
    }
    Ok(())
}

/// The case-insensitive key of a name.
fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

fn corrupt(what: &'static str, message: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        message: message.to_string(),
    }
}

#[derive(sqlx::FromRow)]
struct CampaignRow {
    id: String,
    name: String,
    system: String,
    description: String,
    created_at: i64,
    updated_at: i64,
}

const CAMPAIGN_COLUMNS: &str = "id, name, system, description, created_at, updated_at";

impl CampaignRow {
    fn into_campaign(self) -> Result<StoredCampaign, StoreError> {
        Ok(StoredCampaign {
            id: CampaignId::parse(&self.id).map_err(|e| corrupt("campaign id", e))?,
            info: CampaignInfo {
                name: self.name,
                system: self.system,
                description: self.description,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct EntityRow {
    id: String,
    campaign_id: String,
    name: String,
    kind: String,
    description: String,
    tags: String,
    properties: String,
    created_at: i64,
    updated_at: i64,
}

const ENTITY_COLUMNS: &str = "id, campaign_id, name, kind, description, tags, properties, created_at, updated_at";

impl EntityRow {
    fn into_entity(self, relationships: Vec<Relationship>) -> Result<StoredEntity, StoreError> {
        Ok(StoredEntity {
            id: self.id,
            campaign_id: CampaignId::parse(&self.campaign_id).map_err(|e| corrupt("entity campaign_id", e))?,
            entity: Entity {
                name: self.name,
                kind: self.kind.parse().map_err(|e| corrupt("entity kind", e))?,
                description: self.description,
                tags: from_json("entity tags", &self.tags)?,
                properties: from_json("entity properties", &self.properties)?,
                relationships,
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct NpcRow {
    id: String,
    campaign_id: String,
    position: i64,
    name: String,
    personality: String,
    voice: String,
    address_only: bool,
    gm_helper: bool,
}

const NPC_COLUMNS: &str = "id, campaign_id, position, name, personality, voice, address_only, gm_helper";

impl NpcRow {
    fn into_npc(self) -> Result<StoredNpc, StoreError> {
        let voice: VoiceSpec = from_json("NPC voice", &self.voice)?;
        Ok(StoredNpc {
            id: self.id,
            campaign_id: CampaignId::parse(&self.campaign_id).map_err(|e| corrupt("NPC campaign_id", e))?,
            position: self.position,
            npc: NpcDefinition {
                name: self.name,
                personality: self.personality,
                voice,
                address_only: self.address_only,
                gm_helper: self.gm_helper,
            },
        })
    }
}

/// Maps a foreign-key failure to "campaign not found" and a unique one to a
/// conflict naming `what`.
fn write_error(error: StoreError, campaign: &CampaignId, what: impl FnOnce() -> String) -> StoreError {
    if error.is_foreign_key_violation() {
        StoreError::NotFound(format!("campaign {campaign}"))
    } else if error.unique_violation().is_some() {
        StoreError::Conflict(what())
    } else {
        error
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in name_key(prefix).chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl TenantStore {
    // ---- campaigns ----

    /// Creates the campaign `id` or updates its name, system and description.
    /// [`StoreError::Conflict`] if another campaign of the tenant has that
    /// name.
    pub async fn upsert_campaign(&self, id: &CampaignId, info: &CampaignInfo) -> Result<StoredCampaign, StoreError> {
        check_info(info)?;
        let now = self.now_ms();
        let sql = format!(
            "INSERT INTO campaigns (tenant_id, id, name, name_key, system, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key, \
             system = excluded.system, description = excluded.description, updated_at = excluded.updated_at \
             RETURNING {CAMPAIGN_COLUMNS}"
        );
        let row: Result<CampaignRow, StoreError> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, CampaignRow>(&sql)
                .bind(self.tid())
                .bind(id.as_str())
                .bind(info.name.trim())
                .bind(name_key(&info.name))
                .bind(info.system.trim())
                .bind(info.description.trim())
                .bind(now)
                .fetch_one(pool)
                .await
                .ctx("saving a campaign")
        });
        match row {
            Ok(row) => row.into_campaign(),
            Err(e) if e.unique_violation().is_some() => {
                Err(StoreError::Conflict(format!("a campaign named {:?}", info.name.trim())))
            }
            Err(e) if e.is_foreign_key_violation() => Err(StoreError::NotFound(format!("tenant {}", self.tid()))),
            Err(e) => Err(e),
        }
    }

    /// The campaign `id`.
    pub async fn campaign(&self, id: &CampaignId) -> Result<Option<StoredCampaign>, StoreError> {
        let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 AND id = $2");
        let row: Option<CampaignRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, CampaignRow>(&sql)
                .bind(self.tid())
                .bind(id.as_str())
                .fetch_optional(pool)
                .await
        })
        .ctx("reading a campaign")?;
        row.map(CampaignRow::into_campaign).transpose()
    }

    /// The campaign named `name` (case-insensitive).
    pub async fn campaign_by_name(&self, name: &str) -> Result<Option<StoredCampaign>, StoreError> {
        let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 AND name_key = $2");
        let row: Option<CampaignRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, CampaignRow>(&sql)
                .bind(self.tid())
                .bind(name_key(name))
                .fetch_optional(pool)
                .await
        })
        .ctx("finding a campaign")?;
        row.map(CampaignRow::into_campaign).transpose()
    }

    /// Every campaign of the tenant, by name.
    pub async fn campaigns(&self) -> Result<Vec<StoredCampaign>, StoreError> {
        let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 ORDER BY name_key");
        let rows: Vec<CampaignRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, CampaignRow>(&sql)
                .bind(self.tid())
                .fetch_all(pool)
                .await
        })
        .ctx("listing campaigns")?;
        rows.into_iter().map(CampaignRow::into_campaign).collect()
    }

    /// Deletes a campaign with its entities and NPCs; `false` if unknown.
    pub async fn delete_campaign(&self, id: &CampaignId) -> Result<bool, StoreError> {
        let done = with_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM campaigns WHERE tenant_id = $1 AND id = $2")
                .bind(self.tid())
                .bind(id.as_str())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .ctx("deleting a campaign")?;
        Ok(done > 0)
    }

    /// The tenant's active campaign, if it is set and exists.
    pub async fn active_campaign(&self) -> Result<Option<StoredCampaign>, StoreError> {
        let sql = "SELECT c.id, c.name, c.system, c.description, c.created_at, c.updated_at \
                   FROM campaigns c JOIN tenants t ON t.id = c.tenant_id AND t.campaign_id = c.id WHERE t.id = $1";
        let row: Option<CampaignRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, CampaignRow>(sql)
                .bind(self.tid())
                .fetch_optional(pool)
                .await
        })
        .ctx("reading the active campaign")?;
        row.map(CampaignRow::into_campaign).transpose()
    }

    /// Makes `id` the active campaign (`None` clears it); `false` if the
    /// tenant does not exist. The campaign need not exist yet.
    pub async fn set_active_campaign(&self, id: Option<&CampaignId>) -> Result<bool, StoreError> {
        let now = self.now_ms();
        let done = with_pool!(&self.db, |pool| {
            sqlx::query("UPDATE tenants SET campaign_id = $2, updated_at = $3 WHERE id = $1")
                .bind(self.tid())
                .bind(id.map(|c| c.as_str()))
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .ctx("setting the active campaign")?;
        Ok(done > 0)
    }

    /// The active campaign, created first if the tenant has none (a
    /// "Default campaign", made active) or if its active campaign id names
    /// one that does not exist yet (created with the id as its name).
    pub async fn ensure_active_campaign(&self) -> Result<StoredCampaign, StoreError> {
        let now = self.now_ms();
        let lock = format!(
            "SELECT campaign_id FROM tenants WHERE id = $1{}",
            for_update(self.backend())
        );
        let insert =
            "INSERT INTO campaigns (tenant_id, id, name, name_key, system, description, created_at, updated_at) \
                      VALUES ($1, $2, $3, $4, '', '', $5, $5) ON CONFLICT (tenant_id, id) DO NOTHING";
        let read = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE tenant_id = $1 AND id = $2");
        let row: CampaignRow = with_tx!(&self.db, "creating the default campaign", |tx, backend| {
            let active: Option<Option<String>> = sqlx::query_scalar(&lock)
                .bind(self.tid())
                .fetch_optional(&mut *tx)
                .await
                .ctx("creating the default campaign")?;
            let Some(active) = active else {
                return Err(StoreError::NotFound(format!("tenant {}", self.tid())));
            };
            let (id, name) = match active {
                Some(id) => (id.clone(), id),
                None => (
                    CampaignId::default_campaign().to_string(),
                    "Default campaign".to_string(),
                ),
            };
            sqlx::query(insert)
                .bind(self.tid())
                .bind(&id)
                .bind(&name)
                .bind(name_key(&name))
                .bind(now)
                .execute(&mut *tx)
                .await
                .ctx("creating the default campaign")
                .map_err(|e| {
                    if e.unique_violation().is_some() {
                        StoreError::Conflict(format!("a campaign named {name:?}"))
                    } else {
                        e
                    }
                })?;
            sqlx::query("UPDATE tenants SET campaign_id = $2 WHERE id = $1 AND campaign_id IS NULL")
                .bind(self.tid())
                .bind(&id)
                .execute(&mut *tx)
                .await
                .ctx("creating the default campaign")?;
            sqlx::query_as::<_, CampaignRow>(&read)
                .bind(self.tid())
                .bind(&id)
                .fetch_one(&mut *tx)
                .await
                .ctx("creating the default campaign")?
        });
        row.into_campaign()
    }

    /// Loads a whole campaign file into campaign `id` in one transaction:
    /// saves its description, replaces its NPC roster and upserts its
    /// entities by name and type (existing entities keep their ids).
    pub async fn import_campaign(&self, id: &CampaignId, campaign: &Campaign) -> Result<CampaignImport, StoreError> {
        check_info(&campaign.campaign)?;
        check_npcs(&campaign.npcs)?;
        for entity in &campaign.entities {
            check_entity(entity)?;
        }
        let now = self.now_ms();
        let info = &campaign.campaign;
        let upsert = format!(
            "INSERT INTO campaigns (tenant_id, id, name, name_key, system, description, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name, name_key = excluded.name_key, \
             system = excluded.system, description = excluded.description, updated_at = excluded.updated_at \
             RETURNING {CAMPAIGN_COLUMNS}"
        );
        let result: (CampaignRow, usize, usize) = with_tx!(&self.db, "importing a campaign", |tx, backend| {
            let row = sqlx::query_as::<_, CampaignRow>(&upsert)
                .bind(self.tid())
                .bind(id.as_str())
                .bind(info.name.trim())
                .bind(name_key(&info.name))
                .bind(info.system.trim())
                .bind(info.description.trim())
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .ctx("importing a campaign")
                .map_err(|e| write_error(e, id, || format!("a campaign named {:?}", info.name.trim())))?;
            sqlx::query("DELETE FROM npc_definitions WHERE tenant_id = $1 AND campaign_id = $2")
                .bind(self.tid())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .ctx("importing a campaign")?;
            for (position, npc) in campaign.npcs.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO npc_definitions (tenant_id, id, campaign_id, position, name, name_key, personality, voice, \
                     address_only, gm_helper, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
                )
                .bind(self.tid())
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(id.as_str())
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(npc.name.trim())
                .bind(name_key(&npc.name))
                .bind(npc.personality.trim())
                .bind(to_json("NPC voice", &npc.voice)?)
                .bind(npc.address_only)
                .bind(npc.gm_helper)
                .bind(now)
                .execute(&mut *tx)
                .await
                .ctx("importing a campaign")?;
            }
            let mut created = 0;
            let mut updated = 0;
            for entity in &campaign.entities {
                let existing: Option<String> = sqlx::query_scalar(
                    "SELECT id FROM entities WHERE tenant_id = $1 AND campaign_id = $2 AND kind = $3 AND name_key = $4",
                )
                .bind(self.tid())
                .bind(id.as_str())
                .bind(entity.kind.as_str())
                .bind(name_key(&entity.name))
                .fetch_optional(&mut *tx)
                .await
                .ctx("importing a campaign")?;
                let entity_id = match existing {
                    Some(entity_id) => {
                        updated += 1;
                        sqlx::query(
                            "UPDATE entities SET name = $3, description = $4, tags = $5, properties = $6, updated_at = $7 \
                             WHERE tenant_id = $1 AND id = $2",
                        )
                        .bind(self.tid())
                        .bind(&entity_id)
                        .bind(entity.name.trim())
                        .bind(entity.description.trim())
                        .bind(to_json("entity tags", &entity.tags)?)
                        .bind(to_json("entity properties", &entity.properties)?)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .ctx("importing a campaign")?;
                        entity_id
                    }
                    None => {
                        created += 1;
                        let entity_id = uuid::Uuid::new_v4().to_string();
                        sqlx::query(
                            "INSERT INTO entities (tenant_id, id, campaign_id, name, name_key, kind, description, tags, properties, \
                             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                        )
                        .bind(self.tid())
                        .bind(&entity_id)
                        .bind(id.as_str())
                        .bind(entity.name.trim())
                        .bind(name_key(&entity.name))
                        .bind(entity.kind.as_str())
                        .bind(entity.description.trim())
                        .bind(to_json("entity tags", &entity.tags)?)
                        .bind(to_json("entity properties", &entity.properties)?)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .ctx("importing a campaign")?;
                        entity_id
                    }
                };
                sqlx::query("DELETE FROM entity_relationships WHERE tenant_id = $1 AND entity_id = $2")
                    .bind(self.tid())
                    .bind(&entity_id)
                    .execute(&mut *tx)
                    .await
                    .ctx("importing a campaign")?;
                for (position, relationship) in entity.relationships.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO entity_relationships (tenant_id, entity_id, position, target, kind) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(self.tid())
                    .bind(&entity_id)
                    .bind(i64::try_from(position).unwrap_or(i64::MAX))
                    .bind(relationship.target.trim())
                    .bind(relationship.kind.trim())
                    .execute(&mut *tx)
                    .await
                    .ctx("importing a campaign")?;
                }
            }
            (row, created, updated)
        });
        let (row, entities_created, entities_updated) = result;
        Ok(CampaignImport {
            campaign: row.into_campaign()?,
            npcs: campaign.npcs.len(),
            entities_created,
            entities_updated,
        })
    }

    // ---- entities ----

    async fn relationships_of(&self, entity_ids: &[String]) -> Result<HashMap<String, Vec<Relationship>>, StoreError> {
        let mut out: HashMap<String, Vec<Relationship>> = HashMap::new();
        if entity_ids.is_empty() {
            return Ok(out);
        }
        // One query per chunk keeps the statement within both backends' parameter limits.
        for chunk in entity_ids.chunks(500) {
            let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT entity_id, target, kind FROM entity_relationships WHERE tenant_id = $1 AND entity_id IN ({}) \
                 ORDER BY entity_id, position",
                placeholders.join(", ")
            );
            let rows: Vec<(String, String, String)> = with_pool!(&self.db, |pool| {
                let mut query = sqlx::query_as(&sql).bind(self.tid());
                for id in chunk {
                    query = query.bind(id);
                }
                query.fetch_all(pool).await
            })
            .ctx("reading entity relationships")?;
            for (entity_id, target, kind) in rows {
                out.entry(entity_id).or_default().push(Relationship { target, kind });
            }
        }
        Ok(out)
    }

    async fn with_relationships(&self, rows: Vec<EntityRow>) -> Result<Vec<StoredEntity>, StoreError> {
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut relationships = self.relationships_of(&ids).await?;
        rows.into_iter()
            .map(|row| {
                let links = relationships.remove(&row.id).unwrap_or_default();
                row.into_entity(links)
            })
            .collect()
    }

    /// Adds an entity to campaign `campaign`. [`StoreError::Conflict`] if one
    /// with the same name and type exists there, [`StoreError::NotFound`] if
    /// the campaign does not exist.
    pub async fn add_entity(&self, campaign: &CampaignId, entity: &Entity) -> Result<StoredEntity, StoreError> {
        match self.save_entity(campaign, entity, false).await? {
            (stored, true) => Ok(stored),
            (_, false) => Err(StoreError::Conflict(format!(
                "{} {:?}",
                entity.kind,
                entity.name.trim()
            ))),
        }
    }

    /// Adds an entity or, if one with the same name and type exists in the
    /// campaign, replaces it (keeping its id). `true` when it was created.
    pub async fn upsert_entity(
        &self,
        campaign: &CampaignId,
        entity: &Entity,
    ) -> Result<(StoredEntity, bool), StoreError> {
        self.save_entity(campaign, entity, true).await
    }

    async fn save_entity(
        &self,
        campaign: &CampaignId,
        entity: &Entity,
        replace: bool,
    ) -> Result<(StoredEntity, bool), StoreError> {
        check_entity(entity)?;
        let now = self.now_ms();
        let tags = to_json("entity tags", &entity.tags)?;
        let properties = to_json("entity properties", &entity.properties)?;
        let key = name_key(&entity.name);
        let outcome: Option<(String, bool)> = with_tx!(&self.db, "saving an entity", |tx, backend| {
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT id FROM entities WHERE tenant_id = $1 AND campaign_id = $2 AND kind = $3 AND name_key = $4",
            )
            .bind(self.tid())
            .bind(campaign.as_str())
            .bind(entity.kind.as_str())
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await
            .ctx("saving an entity")?;
            let saved = match existing {
                Some(_) if !replace => None,
                Some(entity_id) => {
                    sqlx::query(
                        "UPDATE entities SET name = $3, description = $4, tags = $5, properties = $6, updated_at = $7 \
                         WHERE tenant_id = $1 AND id = $2",
                    )
                    .bind(self.tid())
                    .bind(&entity_id)
                    .bind(entity.name.trim())
                    .bind(entity.description.trim())
                    .bind(&tags)
                    .bind(&properties)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .ctx("saving an entity")?;
                    Some((entity_id, false))
                }
                None => {
                    let entity_id = uuid::Uuid::new_v4().to_string();
                    sqlx::query(
                        "INSERT INTO entities (tenant_id, id, campaign_id, name, name_key, kind, description, tags, properties, \
                         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                    )
                    .bind(self.tid())
                    .bind(&entity_id)
                    .bind(campaign.as_str())
                    .bind(entity.name.trim())
                    .bind(&key)
                    .bind(entity.kind.as_str())
                    .bind(entity.description.trim())
                    .bind(&tags)
                    .bind(&properties)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .ctx("saving an entity")
                    .map_err(|e| write_error(e, campaign, || format!("{} {:?}", entity.kind, entity.name.trim())))?;
                    Some((entity_id, true))
                }
            };
            if let Some((entity_id, _)) = &saved {
                sqlx::query("DELETE FROM entity_relationships WHERE tenant_id = $1 AND entity_id = $2")
                    .bind(self.tid())
                    .bind(entity_id)
                    .execute(&mut *tx)
                    .await
                    .ctx("saving an entity")?;
                for (position, relationship) in entity.relationships.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO entity_relationships (tenant_id, entity_id, position, target, kind) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(self.tid())
                    .bind(entity_id)
                    .bind(i64::try_from(position).unwrap_or(i64::MAX))
                    .bind(relationship.target.trim())
                    .bind(relationship.kind.trim())
                    .execute(&mut *tx)
                    .await
                    .ctx("saving an entity")?;
                }
            }
            saved
        });
        match outcome {
            None => {
                let existing = self.entity_by_name(campaign, entity.kind, &entity.name).await?;
                match existing {
                    Some(stored) => Ok((stored, false)),
                    None => Err(StoreError::Conflict(format!(
                        "{} {:?}",
                        entity.kind,
                        entity.name.trim()
                    ))),
                }
            }
            Some((entity_id, created)) => match self.entity(&entity_id).await? {
                Some(stored) => Ok((stored, created)),
                None => Err(StoreError::NotFound(format!("entity {entity_id}"))),
            },
        }
    }

    /// The entity `id`.
    pub async fn entity(&self, id: &str) -> Result<Option<StoredEntity>, StoreError> {
        let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE tenant_id = $1 AND id = $2");
        let row: Option<EntityRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, EntityRow>(&sql)
                .bind(self.tid())
                .bind(id)
                .fetch_optional(pool)
                .await
        })
        .ctx("reading an entity")?;
        Ok(self
            .with_relationships(row.into_iter().collect())
            .await?
            .into_iter()
            .next())
    }

    /// The entity of `kind` named `name` (case-insensitive) in `campaign`.
    pub async fn entity_by_name(
        &self,
        campaign: &CampaignId,
        kind: EntityKind,
        name: &str,
    ) -> Result<Option<StoredEntity>, StoreError> {
        let sql = format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE tenant_id = $1 AND campaign_id = $2 AND kind = $3 AND name_key = $4"
        );
        let row: Option<EntityRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, EntityRow>(&sql)
                .bind(self.tid())
                .bind(campaign.as_str())
                .bind(kind.as_str())
                .bind(name_key(name))
                .fetch_optional(pool)
                .await
        })
        .ctx("finding an entity")?;
        Ok(self
            .with_relationships(row.into_iter().collect())
            .await?
            .into_iter()
            .next())
    }

    /// Up to `limit` entities of `campaign` (of `kind`, if given), by name.
    pub async fn entities(
        &self,
        campaign: &CampaignId,
        kind: Option<EntityKind>,
        limit: u32,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        let sql = format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE tenant_id = $1 AND campaign_id = $2 AND ($3 = '' OR kind = $3) \
             ORDER BY name_key, kind LIMIT $4"
        );
        let rows: Vec<EntityRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, EntityRow>(&sql)
                .bind(self.tid())
                .bind(campaign.as_str())
                .bind(kind.map_or("", EntityKind::as_str))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .ctx("listing entities")?;
        self.with_relationships(rows).await
    }

    /// Up to `limit` entities of `campaign` whose name starts with `prefix`
    /// (case-insensitive), by name: for autocomplete.
    pub async fn search_entities(
        &self,
        campaign: &CampaignId,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<StoredEntity>, StoreError> {
        let sql = format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE tenant_id = $1 AND campaign_id = $2 AND name_key LIKE $3 ESCAPE '\\' \
             ORDER BY name_key, kind LIMIT $4"
        );
        let rows: Vec<EntityRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, EntityRow>(&sql)
                .bind(self.tid())
                .bind(campaign.as_str())
                .bind(like_prefix(prefix))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
        })
        .ctx("searching entities")?;
        self.with_relationships(rows).await
    }

    /// How many entities `campaign` has of each kind.
    pub async fn entity_counts(&self, campaign: &CampaignId) -> Result<BTreeMap<EntityKind, i64>, StoreError> {
        let rows: Vec<(String, i64)> = with_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT kind, COUNT(*) FROM entities WHERE tenant_id = $1 AND campaign_id = $2 GROUP BY kind",
            )
            .bind(self.tid())
            .bind(campaign.as_str())
            .fetch_all(pool)
            .await
        })
        .ctx("counting entities")?;
        rows.into_iter()
            .map(|(kind, count)| Ok((kind.parse().map_err(|e| corrupt("entity kind", e))?, count)))
            .collect()
    }

    /// Deletes the entity `id`; `false` if unknown.
    pub async fn delete_entity(&self, id: &str) -> Result<bool, StoreError> {
        let done = with_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM entities WHERE tenant_id = $1 AND id = $2")
                .bind(self.tid())
                .bind(id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .ctx("deleting an entity")?;
        Ok(done > 0)
    }

    // ---- NPC definitions ----

    /// Replaces the voiced NPC roster of `campaign` (the campaign file is
    /// its one source) and returns it in order.
    pub async fn replace_npcs(
        &self,
        campaign: &CampaignId,
        npcs: &[NpcDefinition],
    ) -> Result<Vec<StoredNpc>, StoreError> {
        check_npcs(npcs)?;
        let now = self.now_ms();
        with_tx!(&self.db, "saving the NPC roster", |tx, backend| {
            sqlx::query("DELETE FROM npc_definitions WHERE tenant_id = $1 AND campaign_id = $2")
                .bind(self.tid())
                .bind(campaign.as_str())
                .execute(&mut *tx)
                .await
                .ctx("saving the NPC roster")?;
            for (position, npc) in npcs.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO npc_definitions (tenant_id, id, campaign_id, position, name, name_key, personality, voice, \
                     address_only, gm_helper, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
                )
                .bind(self.tid())
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(campaign.as_str())
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(npc.name.trim())
                .bind(name_key(&npc.name))
                .bind(npc.personality.trim())
                .bind(to_json("NPC voice", &npc.voice)?)
                .bind(npc.address_only)
                .bind(npc.gm_helper)
                .bind(now)
                .execute(&mut *tx)
                .await
                .ctx("saving the NPC roster")
                .map_err(|e| write_error(e, campaign, || format!("NPC {:?}", npc.name.trim())))?;
            }
        });
        self.npcs(campaign).await
    }

    /// The voiced NPC roster of `campaign`, in order.
    pub async fn npcs(&self, campaign: &CampaignId) -> Result<Vec<StoredNpc>, StoreError> {
        let sql = format!(
            "SELECT {NPC_COLUMNS} FROM npc_definitions WHERE tenant_id = $1 AND campaign_id = $2 ORDER BY position"
        );
        let rows: Vec<NpcRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, NpcRow>(&sql)
                .bind(self.tid())
                .bind(campaign.as_str())
                .fetch_all(pool)
                .await
        })
        .ctx("listing NPCs")?;
        rows.into_iter().map(NpcRow::into_npc).collect()
    }

    /// The NPC definition `id`.
    pub async fn npc(&self, id: &str) -> Result<Option<StoredNpc>, StoreError> {
        let sql = format!("SELECT {NPC_COLUMNS} FROM npc_definitions WHERE tenant_id = $1 AND id = $2");
        let row: Option<NpcRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, NpcRow>(&sql)
                .bind(self.tid())
                .bind(id)
                .fetch_optional(pool)
                .await
        })
        .ctx("reading an NPC")?;
        row.map(NpcRow::into_npc).transpose()
    }
}
