//! The provider's store: every table the provider keeps, behind one handle.
//!
//! [`Store`] is the seam between the provider's features and the database. Feature code asks
//! it for a unit of work (one method per transaction: "commit these batches", "redeem this
//! code", "deliver the next HUB update") and gets typed records back; it never sees a
//! connection or SQL. Each area of the provider has its file here, holding its records, its
//! methods on [`Store`] and the statements of each backend.
//!
//! Backends:
//! - **SQLite** ([`sqlite`], the embedded default): one file, one writer connection. The
//!   demo and small providers run on it.
//! - **PostgreSQL** ([`postgres`]): one database shared by several provider instances; a pool,
//!   TLS, migrations under an advisory lock. [`settings`] reads which one a provider uses.
//!
//! Pure logic (state machines, alert rules, renderers) stays in the feature modules and works on
//! the records this module returns; this module imports no feature module.

pub mod adherence;
pub mod alerts;
pub mod audit;
pub mod checkin;
pub mod claims;
pub mod commands;
pub mod enrollment;
pub mod fleet;
pub mod gateways;
pub mod hub_outbox;
pub mod hub_updates;
pub mod identity;
pub mod leases;
pub mod metrics;
pub mod pins;
pub mod postgres;
pub mod readings;
pub mod sessions;
pub mod settings;
pub mod setup;
pub mod snapshots;
pub mod sqlite;
pub mod transfer;
pub mod triage;
pub mod views;

use std::path::{Path, PathBuf};

pub use postgres::PgStore;
pub use settings::Database;
pub use sqlite::SqliteStore;

/// A stored time as the text the store hands back (an audit entry's time, when an outbox row
/// was queued, when a pin was made), on either backend: RFC 3339 in UTC (`+00:00`) to the
/// microsecond, the precision PostgreSQL keeps, so both give the same text for one instant.
pub fn time_text(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL failed (connecting, a statement, the pool).
    #[error("database {url}: {what}")]
    Postgres {
        /// The database as configured (no password in it).
        url: String,
        /// What failed.
        what: String,
    },
    /// A blocking task panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Group commits of reading batches run at once on PostgreSQL ([`Store::concurrent_commits`]).
const POSTGRES_CONCURRENT_COMMITS: usize = 4;

/// Handle to the store; cheap to clone. Every part of the provider holds a clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating if needed) the SQLite store at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            backend: Backend::Sqlite(SqliteStore::open(path)?),
        })
    }

    /// Opens the configured store: the SQLite file, or a pool to the PostgreSQL server (its
    /// migrations applied under the migration lock).
    pub async fn connect(database: &Database) -> Result<Self, StoreError> {
        let backend = match database {
            Database::Sqlite(path) => {
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??;
                Backend::Sqlite(store)
            }
            Database::Postgres(settings) => Backend::Postgres(PgStore::connect(settings).await?),
        };
        Ok(Self { backend })
    }

    /// The SQLite side, for the checks and tools that read its tables directly (tests,
    /// benchmarks, copying a store); `None` on PostgreSQL. Feature code uses the methods of
    /// [`Store`].
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match &self.backend {
            Backend::Sqlite(store) => Some(store),
            Backend::Postgres(_) => None,
        }
    }

    /// The PostgreSQL side, for the same checks and tools; `None` on SQLite.
    pub fn postgres(&self) -> Option<&PgStore> {
        match &self.backend {
            Backend::Postgres(store) => Some(store),
            Backend::Sqlite(_) => None,
        }
    }

    /// Which backend this is, for logs and errors: the SQLite file or the PostgreSQL URL
    /// (never a password).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(store) => store.path().display().to_string(),
            Backend::Postgres(store) => store.url().to_owned(),
        }
    }

    /// How many write transactions of reading batches are worth running at once: one on
    /// SQLite (its single writer connection runs them in turn anyway), a few on PostgreSQL,
    /// whose server commits several at once on all its cores while each waits for its WAL
    /// flush.
    pub fn concurrent_commits(&self) -> usize {
        match &self.backend {
            Backend::Sqlite(_) => 1,
            Backend::Postgres(_) => POSTGRES_CONCURRENT_COMMITS,
        }
    }

    /// The store's id: random, written once when the store is created (see
    /// [`crate::store_id`]).
    pub async fn store_id(&self) -> Result<String, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => store.store_id(),
            Backend::Postgres(store) => store.store_id().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    #[test]
    fn a_stored_time_is_text_to_the_microsecond() {
        let t = chrono::Utc
            .timestamp_opt(1_767_225_600, 123_456_789)
            .single()
            .unwrap();
        assert_eq!(super::time_text(t), "2026-01-01T00:00:00.123456+00:00");
        let whole = chrono::Utc
            .timestamp_opt(1_767_225_600, 0)
            .single()
            .unwrap();
        assert_eq!(super::time_text(whole), "2026-01-01T00:00:00.000000+00:00");
    }
}
