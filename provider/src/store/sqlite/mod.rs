//! The SQLite side of the store (the embedded default).
//!
//! One file, WAL mode, `synchronous=FULL` (a receipt is only sent after a commit that survives a
//! power cut), `foreign_keys=ON`. Migrations ([`migrations::MIGRATIONS`]) run at open, in order,
//! each exactly once, recorded in `schema_migrations`; never edit a migration that has shipped.
//!
//! Concurrency: one writer connection behind a mutex, used only from blocking threads
//! ([`SqliteStore::write`] runs the closure in `spawn_blocking`), so no async task ever holds
//! the lock across an await. Readers get their own connection per call
//! ([`SqliteStore::read`]); WAL lets them run beside the writer. The single writer is what keeps
//! de-duplication, the snapshot watermark (`rowid`) and the HUB order right on this backend.

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
pub mod metrics;
pub mod migrations;
pub mod pins;
pub mod readings;
pub mod sessions;
pub mod setup;
pub mod snapshots;
pub mod triage;
pub mod views;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use migrations::{SELECT_STORE_ID, identify, migrate};

/// Page cache of the writer connection (negative: KiB).
const WRITER_CACHE_KIB: i64 = -65_536;
/// WAL size (pages) that triggers a checkpoint.
const WAL_CHECKPOINT_PAGES: i64 = 16_384;

/// Handle to the SQLite file; cheap to clone. Every clone shares the one writer connection:
/// writes from all parts of the provider queue on it.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The database file; each read opens its own read-only connection to it.
    path: PathBuf,
    /// The only writer connection (WAL, `synchronous=FULL`), shared by every clone; each
    /// [`SqliteStore::write`] holds it for the whole closure, on a blocking thread.
    writer: Arc<Mutex<Connection>>,
}

/// A stored RFC 3339 instant; `None` when the text is not one.
pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        // The writer's page cache holds the reading-id index of a large store (64 MiB), and the
        // WAL is checkpointed every 64 MiB rather than every 4 MiB: fewer checkpoint fsyncs, and
        // an index page rewritten by many commits is copied back once.
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(err)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(err)?;
        conn.pragma_update(None, "journal_size_limit", WAL_CHECKPOINT_PAGES * 4096)
            .map_err(err)?;
        configure(&conn).map_err(err)?;
        migrate(&mut conn).map_err(err)?;
        identify(&conn).map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Arc::new(Mutex::new(conn)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store's id: random, written once when the store is created (see
    /// [`crate::store_id`]).
    pub fn store_id(&self) -> Result<String, StoreError> {
        self.write_at_start(|c| c.query_row(SELECT_STORE_ID, [], |r| r.get(0)))
    }

    /// Runs `f` with the single writer connection on this thread: for the checks at start,
    /// before anything is served.
    pub fn write_at_start<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Runs `f` with the single writer connection on a blocking thread.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let writer = self.writer.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut conn).map_err(|source| StoreError::Sqlite { path, source })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` with a fresh read-only connection on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let err = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(err)?;
            configure(&conn).map_err(err)?;
            f(&conn).map_err(err)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use migrations::MIGRATIONS;

    #[tokio::test]
    async fn migrations_apply_once_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.db");
        let store = SqliteStore::open(&path).unwrap();
        let n = store
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(usize::try_from(n).unwrap(), MIGRATIONS.len());
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        let mode = store
            .read(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn the_store_keeps_a_reading_once_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("provider.db")).unwrap();
        let err = store
            .write(|c| {
                for session in ["tm-a", "tm-b"] {
                    c.execute(
                        "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, \
                         status, created_at, updated_at) VALUES (?1, 'p', 'rx', 'accepted', '', '')",
                        [session],
                    )?;
                }
                let insert = "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, \
                    batch_id, kind, effective_time, received_at, ingested_at, payload, \
                    record_order) VALUES (?1, 'gw', ?2, 'b', 'glucose', '', '', '', '{}', 0)";
                let id = "ab".repeat(32);
                c.execute(insert, [id.as_str(), "tm-a"])?;
                // The same id under another session is another patient's reading.
                c.execute(insert, [id.as_str(), "tm-b"])?;
                c.execute(insert, [id.as_str(), "tm-a"])
            })
            .await
            .unwrap_err();
        let StoreError::Sqlite { source, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{source}"
        );
    }

    #[test]
    fn a_store_gets_its_id_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.db");
        let id = SqliteStore::open(&path).unwrap().store_id().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(SqliteStore::open(&path).unwrap().store_id().unwrap(), id);
        let other = SqliteStore::open(&dir.path().join("other.db")).unwrap();
        assert_ne!(other.store_id().unwrap(), id);
    }
}
