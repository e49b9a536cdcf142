//! Tenants: license tier, encrypted bot token, guilds, DM role, active
//! campaign and monthly quota.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{from_json, to_json, with_pool, with_tx, Backend, Ctx, Store, StoreError, TenantStore};
use crate::crypto::EncryptedToken;
use crate::ids::{CampaignId, DiscordId, TenantId};

/// A tenant's license (SPEC §3): how many sessions it may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LicenseTier {
    /// At most one non-ended session for the whole tenant.
    Shared,
    /// At most one non-ended session per guild of the tenant.
    Dedicated,
}

impl LicenseTier {
    /// `shared` or `dedicated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Dedicated => "dedicated",
        }
    }
}

impl fmt::Display for LicenseTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that names no license tier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid license_tier {0:?}: use \"shared\" or \"dedicated\"")]
pub struct UnknownTier(pub String);

impl FromStr for LicenseTier {
    type Err = UnknownTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "shared" => Ok(Self::Shared),
            "dedicated" => Ok(Self::Dedicated),
            other => Err(UnknownTier(other.chars().take(40).collect())),
        }
    }
}

/// A tenant as stored. The bot token is never part of it: only whether one
/// is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// The tenant id.
    pub id: TenantId,
    /// Its license.
    pub license_tier: LicenseTier,
    /// Whether a bot token is stored.
    pub has_bot_token: bool,
    /// Guilds the bot serves (empty = every guild it is in).
    pub guild_ids: Vec<DiscordId>,
    /// Role whose members may use DM commands; `None` = everyone.
    pub dm_role_id: Option<DiscordId>,
    /// The active campaign (may not exist yet).
    pub campaign_id: Option<CampaignId>,
    /// Monthly quota of session hours; 0 = unlimited.
    pub monthly_session_hours: f64,
    /// Created, unix ms.
    pub created_at: i64,
    /// Last changed, unix ms.
    pub updated_at: i64,
}

/// A tenant to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    /// The tenant id.
    pub id: TenantId,
    /// Its license.
    pub license_tier: LicenseTier,
    /// The bot token, already encrypted.
    pub bot_token: Option<EncryptedToken>,
    /// Guilds the bot serves.
    pub guild_ids: Vec<DiscordId>,
    /// DM role.
    pub dm_role_id: Option<DiscordId>,
    /// Active campaign.
    pub campaign_id: Option<CampaignId>,
    /// Monthly quota of session hours; 0 = unlimited.
    pub monthly_session_hours: f64,
}

impl NewTenant {
    /// A tenant with only an id and a tier.
    pub fn new(id: TenantId, license_tier: LicenseTier) -> Self {
        Self {
            id,
            license_tier,
            bot_token: None,
            guild_ids: Vec::new(),
            dm_role_id: None,
            campaign_id: None,
            monthly_session_hours: 0.0,
        }
    }
}

/// Changes to a tenant: `None` keeps a field, `Some(None)` clears a
/// clearable one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantUpdate {
    /// New license.
    pub license_tier: Option<LicenseTier>,
    /// New encrypted token, or `Some(None)` to remove it.
    pub bot_token: Option<Option<EncryptedToken>>,
    /// New guild list.
    pub guild_ids: Option<Vec<DiscordId>>,
    /// New DM role, or `Some(None)` to clear it.
    pub dm_role_id: Option<Option<DiscordId>>,
    /// New active campaign, or `Some(None)` to clear it.
    pub campaign_id: Option<Option<CampaignId>>,
    /// New quota.
    pub monthly_session_hours: Option<f64>,
}

pub(crate) fn check_quota(hours: f64) -> Result<(), StoreError> {
    if hours.is_finite() && (0.0..=1_000_000.0).contains(&hours) {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "monthly_session_hours",
            format!("{hours} is out of range: use 0 (unlimited) to 1000000"),
        ))
    }
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    license_tier: String,
    bot_token: Option<Vec<u8>>,
    guild_ids: String,
    dm_role_id: Option<String>,
    campaign_id: Option<String>,
    monthly_session_hours: f64,
    created_at: i64,
    updated_at: i64,
}

const TENANT_COLUMNS: &str = "id, license_tier, bot_token, guild_ids, dm_role_id, campaign_id, \
     monthly_session_hours, created_at, updated_at";

impl TenantRow {
    fn into_tenant(self) -> Result<Tenant, StoreError> {
        let corrupt = |what: &'static str, message: String| StoreError::Corrupt { what, message };
        Ok(Tenant {
            id: TenantId::parse(&self.id).map_err(|e| corrupt("tenant id", e.to_string()))?,
            license_tier: self
                .license_tier
                .parse()
                .map_err(|e: UnknownTier| corrupt("tenant license_tier", e.to_string()))?,
            has_bot_token: self.bot_token.is_some(),
            guild_ids: from_json("tenant guild_ids", &self.guild_ids)?,
            dm_role_id: self
                .dm_role_id
                .map(|id| DiscordId::parse(&id))
                .transpose()
                .map_err(|e| corrupt("tenant dm_role_id", e.to_string()))?,
            campaign_id: self
                .campaign_id
                .map(|id| CampaignId::parse(&id))
                .transpose()
                .map_err(|e| corrupt("tenant campaign_id", e.to_string()))?,
            monthly_session_hours: self.monthly_session_hours,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// `FOR UPDATE` where the backend has row locks (PostgreSQL); SQLite
/// transactions already hold the database write lock.
pub(crate) fn for_update(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

impl Store {
    /// Creates a tenant; [`StoreError::Conflict`] if the id is taken.
    pub async fn create_tenant(&self, new: &NewTenant) -> Result<Tenant, StoreError> {
        check_quota(new.monthly_session_hours)?;
        let now = self.now_ms();
        let guild_ids = to_json("tenant guild_ids", &new.guild_ids)?;
        let sql = format!(
            "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {TENANT_COLUMNS}"
        );
        let row: Result<TenantRow, StoreError> = with_pool!(self.db(), |pool| {
            sqlx::query_as::<_, TenantRow>(&sql)
                .bind(new.id.as_str())
                .bind(new.license_tier.as_str())
                .bind(new.bot_token.as_ref().map(|t| t.as_bytes().to_vec()))
                .bind(&guild_ids)
                .bind(new.dm_role_id.as_ref().map(|id| id.as_str()))
                .bind(new.campaign_id.as_ref().map(|id| id.as_str()))
                .bind(new.monthly_session_hours)
                .bind(now)
                .fetch_one(pool)
                .await
                .ctx("creating a tenant")
        });
        match row {
            Ok(row) => row.into_tenant(),
            Err(e) if e.unique_violation().is_some() => Err(StoreError::Conflict(format!("tenant {}", new.id))),
            Err(e) => Err(e),
        }
    }

    /// Every tenant, by id.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id");
        let rows: Vec<TenantRow> = with_pool!(self.db(), |pool| {
            sqlx::query_as::<_, TenantRow>(&sql).fetch_all(pool).await
        })
        .ctx("listing tenants")?;
        rows.into_iter().map(TenantRow::into_tenant).collect()
    }

    /// Ids of the tenants that have a bot token (their bots are connected at
    /// start-up).
    pub async fn tenants_with_bot_token(&self) -> Result<Vec<TenantId>, StoreError> {
        let ids: Vec<String> = with_pool!(self.db(), |pool| {
            sqlx::query_scalar("SELECT id FROM tenants WHERE bot_token IS NOT NULL ORDER BY id")
                .fetch_all(pool)
                .await
        })
        .ctx("listing tenants with bot tokens")?;
        ids.iter()
            .map(|id| {
                TenantId::parse(id).map_err(|e| StoreError::Corrupt {
                    what: "tenant id",
                    message: e.to_string(),
                })
            })
            .collect()
    }
}

impl TenantStore {
    /// The tenant, if it exists.
    pub async fn get(&self) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let row: Option<TenantRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as::<_, TenantRow>(&sql)
                .bind(self.tid())
                .fetch_optional(pool)
                .await
        })
        .ctx("reading a tenant")?;
        row.map(TenantRow::into_tenant).transpose()
    }

    /// Applies `update`; `None` if the tenant does not exist.
    pub async fn update(&self, update: &TenantUpdate) -> Result<Option<Tenant>, StoreError> {
        if let Some(hours) = update.monthly_session_hours {
            check_quota(hours)?;
        }
        let now = self.now_ms();
        let select = format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1{}",
            for_update(self.backend())
        );
        let write = format!(
            "UPDATE tenants SET license_tier = $2, bot_token = $3, guild_ids = $4, dm_role_id = $5, \
             campaign_id = $6, monthly_session_hours = $7, updated_at = $8 WHERE id = $1 RETURNING {TENANT_COLUMNS}"
        );
        let row: Option<TenantRow> = with_tx!(&self.db, "updating a tenant", |tx, backend| {
            let current: Option<TenantRow> = sqlx::query_as::<_, TenantRow>(&select)
                .bind(self.tid())
                .fetch_optional(&mut *tx)
                .await
                .ctx("updating a tenant")?;
            match current {
                None => None,
                Some(current) => {
                    let tier = update
                        .license_tier
                        .map_or(current.license_tier, |t| t.as_str().to_string());
                    let token = match &update.bot_token {
                        None => current.bot_token,
                        Some(token) => token.as_ref().map(|t| t.as_bytes().to_vec()),
                    };
                    let guilds = match &update.guild_ids {
                        None => current.guild_ids,
                        Some(guilds) => to_json("tenant guild_ids", guilds)?,
                    };
                    let role = match &update.dm_role_id {
                        None => current.dm_role_id,
                        Some(role) => role.as_ref().map(|r| r.to_string()),
                    };
                    let campaign = match &update.campaign_id {
                        None => current.campaign_id,
                        Some(campaign) => campaign.as_ref().map(|c| c.to_string()),
                    };
                    let hours = update.monthly_session_hours.unwrap_or(current.monthly_session_hours);
                    let row = sqlx::query_as::<_, TenantRow>(&write)
                        .bind(self.tid())
                        .bind(tier)
                        .bind(token)
                        .bind(guilds)
                        .bind(role)
                        .bind(campaign)
                        .bind(hours)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await
                        .ctx("updating a tenant")?;
                    Some(row)
                }
            }
        });
        row.map(TenantRow::into_tenant).transpose()
    }

    /// Deletes the tenant and, by cascade, all its data; `false` if it did
    /// not exist.
    pub async fn delete(&self) -> Result<bool, StoreError> {
        let done = with_pool!(&self.db, |pool| {
            sqlx::query("DELETE FROM tenants WHERE id = $1")
                .bind(self.tid())
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .ctx("deleting a tenant")?;
        Ok(done > 0)
    }

    /// The stored (encrypted) bot token, if any.
    pub async fn bot_token(&self) -> Result<Option<EncryptedToken>, StoreError> {
        let token: Option<Option<Vec<u8>>> = with_pool!(&self.db, |pool| {
            sqlx::query_scalar("SELECT bot_token FROM tenants WHERE id = $1")
                .bind(self.tid())
                .fetch_optional(pool)
                .await
        })
        .ctx("reading a bot token")?;
        Ok(token.flatten().map(EncryptedToken::from_stored))
    }
}
