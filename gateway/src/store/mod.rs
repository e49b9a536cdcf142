//! Persistent state of the control plane over sqlx: SQLite (embedded
//! default) or PostgreSQL (production), one migration set per backend
//! (`gateway/migrations/{sqlite,postgres}`), embedded in the binary.
//!
//! Every query about a tenant's data goes through a [`TenantStore`], a handle
//! that carries the tenant id and adds it to every statement, so reading or
//! changing another tenant's rows cannot be written by accident. The only
//! queries on [`Store`] itself are the ones that are cross-tenant by nature:
//! creating and listing tenants (admin API), finding which tenant owns a
//! session id (worker reports carry only the session id) and finding stale
//! sessions for the cleanup loop; each of them hands back tenant ids to
//! continue with through [`Store::tenant`].
//!
//! ```no_run
//! # async fn run() -> Result<(), glyphoxa_gateway::store::StoreError> {
//! use glyphoxa_gateway::store::{Store, StoreSettings};
//! use glyphoxa_gateway::ids::TenantId;
//! let store = Store::connect(&StoreSettings::new("sqlite://glyphoxa.db")).await?;
//! let acme = store.tenant(&TenantId::parse("acme").map_err(|e| glyphoxa_gateway::store::StoreError::invalid("tenant id", e.to_string()))?);
//! let sessions = acme.sessions(50).await?;
//! # let _ = sessions;
//! # Ok(())
//! # }
//! ```

mod history;
mod knowledge;
mod sessions;
mod tenants;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::ConnectOptions as _;

pub use history::{
    Feedback, FeedbackRatings, NewTranscriptLine, Recap, RecapAudio, SessionEventRecord, TranscriptEntry, TurnOutcome,
    TurnRecord,
};
pub use knowledge::{CampaignImport, StoredCampaign, StoredEntity, StoredNpc, MAX_DESCRIPTION_CHARS};
pub use sessions::{
    CreateSessionError, EndCondition, EndSession, LiveRule, NewSession, Session, SessionState, StaleKind, StaleSession,
    Transition, Usage,
};
pub use tenants::{LicenseTier, NewTenant, Tenant, TenantUpdate, UnknownTier};

use crate::ids::TenantId;
use crate::time::{Clock, SystemClock};

/// The embedded migrations of `backend`.
fn migrator(backend: Backend) -> Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    }
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (`sqlite://FILE`).
    Sqlite,
    /// PostgreSQL (`postgres://…`).
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if any.
    pub fn of_url(url: &str) -> Option<Self> {
        let url = url.trim();
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// How to open a [`Store`].
#[derive(Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `sqlite://FILE` (created if missing; `sqlite::memory:` for a private
    /// in-memory database) or `postgres://USER@HOST/DATABASE`.
    pub url: String,
    /// Largest number of pooled connections (at least 1).
    pub max_connections: u32,
    /// PostgreSQL only: the schema to use (`search_path`), created if
    /// missing; `None` = the server's default (`public`). Lets several
    /// gateways or test runs share one database.
    pub schema: Option<String>,
    /// Apply pending migrations when connecting (default `true`).
    pub migrate: bool,
    /// How long to wait for a free pooled connection.
    pub acquire_timeout: Duration,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("schema", &self.schema)
            .field("migrate", &self.migrate)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

impl StoreSettings {
    /// Settings for `url` with 10 connections, the default schema and
    /// migrations applied on connect.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            schema: None,
            migrate: true,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// A database URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:<redacted>{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl(String),
    /// The database could not be opened or reached.
    #[error("cannot open database {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What sqlx said.
        source: sqlx::Error,
    },
    /// Applying the migrations failed.
    #[error("migrating database {url} failed: {source}")]
    Migrate {
        /// The URL, password redacted.
        url: String,
        /// What the migrator said.
        source: sqlx::migrate::MigrateError,
    },
    /// A value does not fit the store's rules.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field, e.g. "entity name".
        field: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A row with the same key already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The row a write refers to does not exist (for this tenant).
    #[error("{0} not found")]
    NotFound(String),
    /// A stored value cannot be read back (hand-edited or corrupt row).
    #[error("corrupt {what} in the database: {message}")]
    Corrupt {
        /// Which value, e.g. "tenant guild_ids".
        what: &'static str,
        /// The parse error.
        message: String,
    },
    /// A query failed.
    #[error("database error while {context}: {source}")]
    Database {
        /// What the store was doing.
        context: &'static str,
        /// What sqlx said.
        source: sqlx::Error,
    },
}

impl StoreError {
    /// Builds [`StoreError::Invalid`].
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The unique constraint (PostgreSQL: its name; SQLite: the message
    /// naming its columns) a failed write violated, if that is why it failed.
    pub fn unique_violation(&self) -> Option<String> {
        match self {
            Self::Database {
                source: sqlx::Error::Database(db),
                ..
            } if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                Some(db.constraint().map_or_else(|| db.message().to_string(), str::to_string))
            }
            _ => None,
        }
    }

    /// Whether a failed write violated a foreign key.
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(self, Self::Database { source: sqlx::Error::Database(db), .. }
            if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
    }
}

/// Adds what the store was doing to a sqlx error.
pub(crate) trait Ctx<T> {
    /// Wraps the error as [`StoreError::Database`] with `context`.
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Database { context, source })
    }
}

/// The connection pool of one backend.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
/// The body is compiled once per backend, so the same SQL text (with `$N`
/// placeholders, which both accept) and the same row types serve both.
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a transaction bound to `$tx` and commits it when the
/// body evaluates; an early return (`?` or `return`) rolls it back. SQLite
/// transactions start `IMMEDIATE` (take the write lock first), so
/// read-then-write transactions never fail with a busy snapshot; PostgreSQL
/// bodies lock rows explicitly where they need to.
macro_rules! with_tx {
    ($db:expr, $what:literal, |$tx:ident, $backend:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(pool) => {
                #[allow(unused_variables)]
                let $backend = $crate::store::Backend::Sqlite;
                let mut $tx = $crate::store::Ctx::ctx(pool.begin_with("BEGIN IMMEDIATE").await, $what)?;
                let out = $body;
                $crate::store::Ctx::ctx($tx.commit().await, $what)?;
                out
            }
            $crate::store::Db::Postgres(pool) => {
                #[allow(unused_variables)]
                let $backend = $crate::store::Backend::Postgres;
                let mut $tx = $crate::store::Ctx::ctx(pool.begin().await, $what)?;
                let out = $body;
                $crate::store::Ctx::ctx($tx.commit().await, $what)?;
                out
            }
        }
    };
}

pub(crate) use {with_pool, with_tx};

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The database migrated.
    pub backend: Backend,
    /// Migrations applied by this call (0 when the schema was current).
    pub applied: usize,
    /// The schema version now in place.
    pub version: i64,
}

/// The gateway's database: a pool for SQLite or PostgreSQL, and the clock
/// that stamps its rows. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    clock: Arc<dyn Clock>,
}

impl Store {
    /// Opens the database (creating a SQLite file if missing) and, when
    /// `settings.migrate` is set, applies pending migrations.
    pub async fn connect(settings: &StoreSettings) -> Result<Self, StoreError> {
        let url = settings.url.trim();
        let shown = redact_url(url);
        let connect_error = |source| StoreError::Connect {
            url: shown.clone(),
            source,
        };
        let max = settings.max_connections.max(1);
        let db = match Backend::of_url(url) {
            Some(Backend::Sqlite) => {
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let mut options = SqliteConnectOptions::from_str(url)
                    .map_err(connect_error)?
                    .create_if_missing(true)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(30))
                    .log_statements(tracing::log::LevelFilter::Trace);
                if !in_memory {
                    options = options
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
                }
                // An in-memory database lives as long as its one connection.
                let pool = SqlitePoolOptions::new()
                    .max_connections(if in_memory { 1 } else { max })
                    .min_connections(u32::from(in_memory))
                    .idle_timeout(if in_memory {
                        None
                    } else {
                        Some(Duration::from_secs(600))
                    })
                    .max_lifetime(if in_memory {
                        None
                    } else {
                        Some(Duration::from_secs(1800))
                    })
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                Db::Sqlite(pool)
            }
            Some(Backend::Postgres) => {
                let mut options = PgConnectOptions::from_str(url)
                    .map_err(connect_error)?
                    .log_statements(tracing::log::LevelFilter::Trace);
                if let Some(schema) = &settings.schema {
                    check_schema_name(schema)?;
                    create_schema(options.clone(), schema).await.map_err(connect_error)?;
                    options = options.options([("search_path", schema.as_str())]);
                }
                let pool = PgPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(settings.acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                Db::Postgres(pool)
            }
            None => return Err(StoreError::UnsupportedUrl(shown)),
        };
        let store = Self {
            db,
            clock: Arc::new(SystemClock),
        };
        if settings.migrate {
            store
                .run_migrations(settings.schema.is_none())
                .await
                .map_err(|source| StoreError::Migrate { url: shown, source })?;
        }
        Ok(store)
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.run_migrations(true).await.map_err(|source| StoreError::Migrate {
            url: String::from("(open store)"),
            source,
        })
    }

    async fn run_migrations(&self, locking: bool) -> Result<MigrationReport, sqlx::migrate::MigrateError> {
        let before = self.applied_migrations().await;
        let backend = self.backend();
        let mut migrations = migrator(backend);
        // Concurrent migrations of separate schemas need no database-wide lock.
        migrations.set_locking(locking);
        with_pool!(&self.db, |pool| migrations.run(pool).await)?;
        let after = self.applied_migrations().await;
        Ok(MigrationReport {
            backend,
            applied: after.saturating_sub(before),
            version: migrations.iter().map(|m| m.version).max().unwrap_or(0),
        })
    }

    /// How many migrations the database records as applied (0 before the
    /// first run).
    async fn applied_migrations(&self) -> usize {
        let count: Result<i64, sqlx::Error> = with_pool!(&self.db, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await
        });
        count.map_or(0, |n| usize::try_from(n).unwrap_or(0))
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
            .ctx("checking the database connection")
    }

    /// Closes every pooled connection (waits for connections in use).
    pub async fn close(&self) {
        with_pool!(&self.db, |pool| pool.close().await);
    }

    /// The handle through which every query about `tenant`'s data goes.
    pub fn tenant(&self, tenant: &TenantId) -> TenantStore {
        TenantStore {
            db: self.db.clone(),
            clock: Arc::clone(&self.clock),
            tenant: tenant.clone(),
        }
    }

    /// The same store stamping rows with `clock` (tests move time with a
    /// [`ManualClock`](crate::time::ManualClock)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock that stamps rows.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }
}

fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && schema.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "PostgreSQL schema",
            format!("{schema:?}: use 1 to 63 lower-case letters, digits or '_', not starting with a digit"),
        ))
    }
}

async fn create_schema(options: PgConnectOptions, schema: &str) -> Result<(), sqlx::Error> {
    use sqlx::{Connection as _, Executor as _};
    let mut conn = sqlx::PgConnection::connect_with(&options).await?;
    // The name was checked by `check_schema_name`; identifiers cannot be bound.
    conn.execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
        .await?;
    conn.close().await
}

/// Drops a PostgreSQL schema made with [`StoreSettings::schema`] and
/// everything in it (tests and benches clean up with it). Refuses
/// non-PostgreSQL URLs and malformed names.
pub async fn drop_schema(database_url: &str, schema: &str) -> Result<(), StoreError> {
    use sqlx::{Connection as _, Executor as _};
    check_schema_name(schema)?;
    if Backend::of_url(database_url) != Some(Backend::Postgres) {
        return Err(StoreError::UnsupportedUrl(redact_url(database_url)));
    }
    let connect_error = |source| StoreError::Connect {
        url: redact_url(database_url),
        source,
    };
    let options = PgConnectOptions::from_str(database_url).map_err(connect_error)?;
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(connect_error)?;
    conn.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
        .await
        .ctx("dropping a schema")?;
    conn.close().await.ctx("dropping a schema")
}

/// Opens `database_url` and applies every pending migration: the entry point
/// of `glyphoxa migrate`. The gateway also does this at start-up.
pub async fn migrate(database_url: &str) -> Result<MigrationReport, StoreError> {
    let mut settings = StoreSettings::new(database_url);
    settings.max_connections = 1;
    settings.migrate = false;
    let store = Store::connect(&settings).await?;
    let report = store.run_migrations(true).await.map_err(|source| StoreError::Migrate {
        url: redact_url(database_url),
        source,
    });
    store.close().await;
    report
}

/// The data of one tenant: every method reads or writes only rows whose
/// tenant id is this handle's. Get one with [`Store::tenant`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct TenantStore {
    db: Db,
    clock: Arc<dyn Clock>,
    tenant: TenantId,
}

impl TenantStore {
    /// The tenant this handle is scoped to.
    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn tid(&self) -> &str {
        self.tenant.as_str()
    }

    fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Reads a JSON column.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        message: e.to_string(),
    })
}

/// Writes a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(Backend::of_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgresql://a@b/c"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("mysql://a"), None);
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:<redacted>@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert!(check_schema_name("t_1").is_ok());
        assert!(check_schema_name("T; drop").is_err());
    }
}
