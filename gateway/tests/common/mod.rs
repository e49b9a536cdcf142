//! Test databases for both backends, isolated per test.
//!
//! SQLite: a fresh file in a temporary directory. PostgreSQL (when
//! `GLYPHOXA_TEST_DATABASE_URL` is set): a fresh random schema in the shared
//! test database, used through `search_path` and dropped when the test ends
//! (also when it panics), so tests can run concurrently and repeatedly
//! without ever needing an empty database.
#![allow(dead_code)]

pub mod discord;
pub mod logs;

use std::sync::Arc;

use glyphoxa_gateway::ids::{DiscordId, TenantId};
use glyphoxa_gateway::store::{Backend, LicenseTier, NewTenant, Store, StoreSettings, Tenant};
use glyphoxa_gateway::time::{Clock, ManualClock};

/// The environment variable naming the PostgreSQL test database.
pub const PG_ENV: &str = "GLYPHOXA_TEST_DATABASE_URL";

/// A store on a private database that is removed when this is dropped.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    pub schema: Option<String>,
    pub backend: Backend,
    pub clock: Arc<ManualClock>,
    guard: Guard,
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres { url, schema } = self {
            let (url, schema) = (url.clone(), schema.clone());
            // Our own runtime on our own thread: works whether or not the
            // test's runtime is still alive (or panicking).
            let _ = std::thread::spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                runtime.block_on(async move {
                    use sqlx::{Connection, Executor};
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                        let _ = conn
                            .execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
                            .await;
                        let _ = conn.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// 2025-03-10T12:00:00Z, the tests' "now".
pub const T0: i64 = 1_741_608_000_000;

impl TestDb {
    /// A URL that reaches this database (for code that takes only a URL).
    pub fn scoped_url(&self) -> String {
        match &self.schema {
            Some(schema) => {
                let sep = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{sep}options[search_path]={schema}", self.url)
            }
            None => self.url.clone(),
        }
    }

    /// Settings that open this same database.
    pub fn settings(&self) -> StoreSettings {
        let mut settings = StoreSettings::new(&self.url);
        settings.schema = self.schema.clone();
        settings.max_connections = 8;
        settings
    }

    /// Creates a tenant.
    pub async fn tenant(&self, id: &str, tier: LicenseTier) -> Tenant {
        let new = NewTenant::new(tid(id), tier);
        self.store.create_tenant(&new).await.expect("create tenant")
    }

    pub fn label(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

pub fn tid(id: &str) -> TenantId {
    TenantId::parse(id).expect("tenant id")
}

pub fn did(id: &str) -> DiscordId {
    DiscordId::parse(id).expect("discord id")
}

/// A fresh SQLite database in a temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let clock = Arc::new(ManualClock::new(T0));
    let mut settings = StoreSettings::new(&url);
    settings.max_connections = 8;
    let store = Store::connect(&settings)
        .await
        .expect("open sqlite")
        .with_clock(clock.clone() as Arc<dyn Clock>);
    TestDb {
        store,
        url,
        schema: None,
        backend: Backend::Sqlite,
        clock,
        guard: Guard::Sqlite(dir),
    }
}

/// A fresh schema in the PostgreSQL test database, or `None` (with the
/// reason printed) when `GLYPHOXA_TEST_DATABASE_URL` is unset.
pub async fn postgres() -> Option<TestDb> {
    let Ok(url) = std::env::var(PG_ENV) else {
        eprintln!("skipped: {PG_ENV} is not set (CI sets it to postgres://postgres@127.0.0.1:5432/test)");
        return None;
    };
    if url.trim().is_empty() {
        eprintln!("skipped: {PG_ENV} is empty");
        return None;
    }
    let schema = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
    let guard = Guard::Postgres {
        url: url.clone(),
        schema: schema.clone(),
    };
    let clock = Arc::new(ManualClock::new(T0));
    let mut settings = StoreSettings::new(&url);
    settings.schema = Some(schema.clone());
    settings.max_connections = 8;
    let store = Store::connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but the database cannot be used: {e}"))
        .with_clock(clock.clone() as Arc<dyn Clock>);
    Some(TestDb {
        store,
        url,
        schema: Some(schema),
        backend: Backend::Postgres,
        clock,
        guard,
    })
}

/// Generates one `#[tokio::test]` per backend for each listed async
/// function taking `&TestDb`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::common::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::common::postgres().await else { return };
                    super::$name(&db).await;
                }
            )*
        }
    };
}
