//! The provider's SQLite store.
//!
//! One file, WAL mode, `synchronous=FULL` (a receipt is only sent after a commit that survives a
//! power cut), `foreign_keys=ON`. Migrations run at open, in order, each exactly once, recorded
//! in `schema_migrations`. A feature adds its tables by appending to [`MIGRATIONS`]; never edit
//! a migration that has shipped.
//!
//! Concurrency: one writer connection behind a mutex, used only from blocking threads
//! ([`Db::write`] runs the closure in `spawn_blocking`), so no async task ever holds the lock
//! across an await. Readers get their own connection per call ([`Db::read`]); WAL lets them run
//! beside the writer.
//!
//! The schema sticks to portable SQL (TEXT, INTEGER, BLOB, no SQLite-only types) so a PostgreSQL
//! backend can serve a fleet that outgrows one machine.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

/// Schema migrations, applied in order. Index + 1 is the migration's version.
pub const MIGRATIONS: &[&str] = &[
    // 1: prescriptions/sessions and enrolled gateways (shared by portal, enrollment, ingest).
    r#"
    CREATE TABLE sessions (
        telemonitoring_id TEXT PRIMARY KEY,
        patient_id        TEXT NOT NULL,
        prescriber_id     TEXT NOT NULL,
        status            TEXT NOT NULL,
        carepath_id       TEXT,
        carepath_version  TEXT,
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL
    );
    CREATE TABLE gateways (
        gateway_id        TEXT PRIMARY KEY,
        public_key        BLOB NOT NULL UNIQUE,
        telemonitoring_id TEXT REFERENCES sessions(telemonitoring_id),
        state             TEXT NOT NULL,
        enrolled_at       TEXT NOT NULL,
        revoked_at        TEXT
    );
    CREATE INDEX gateways_session ON gateways(telemonitoring_id);
    "#,
    // 2: Portal prescriptions (declared patient fields only), enrollment codes, HUB outbox.
    r#"
    CREATE TABLE prescriptions (
        telemonitoring_id TEXT PRIMARY KEY REFERENCES sessions(telemonitoring_id),
        patient_fields    TEXT NOT NULL,
        page_token        TEXT NOT NULL UNIQUE
    );
    CREATE TABLE enrollment_codes (
        code_digest       TEXT PRIMARY KEY,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        carepath_id       TEXT NOT NULL,
        carepath_version  TEXT NOT NULL,
        issued_at_ms      INTEGER NOT NULL,
        expires_at_ms     INTEGER NOT NULL,
        used_at_ms        INTEGER
    );
    CREATE INDEX enrollment_codes_session ON enrollment_codes(telemonitoring_id, issued_at_ms);
    CREATE TABLE hub_outbox (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        telemonitoring_id TEXT NOT NULL,
        body              TEXT NOT NULL,
        state             INTEGER NOT NULL DEFAULT 0,
        attempts          INTEGER NOT NULL DEFAULT 0,
        last_error        TEXT,
        created_at        TEXT NOT NULL,
        done_at           TEXT
    );
    CREATE INDEX hub_outbox_pending ON hub_outbox(state, seq);
    "#,
    // 3: ingested readings (one row per reading_id: de-duplication) and the latest heartbeat of
    // each gateway.
    r#"
    CREATE TABLE readings (
        reading_id        TEXT PRIMARY KEY,
        gateway_id        TEXT NOT NULL,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        batch_id          TEXT NOT NULL,
        kind              TEXT NOT NULL,
        effective_time    TEXT NOT NULL,
        received_at       TEXT NOT NULL,
        ingested_at       TEXT NOT NULL,
        payload           TEXT NOT NULL
    );
    CREATE INDEX readings_session_time ON readings(telemonitoring_id, effective_time);
    CREATE TABLE gateway_heartbeats (
        gateway_id  TEXT PRIMARY KEY,
        received_at TEXT NOT NULL,
        payload     TEXT NOT NULL
    );
    "#,
    // 4: the published snapshot of each session's outputs (what the HUB announced and the
    // attachment routes serve).
    r#"
    CREATE TABLE session_outputs (
        telemonitoring_id TEXT PRIMARY KEY REFERENCES sessions(telemonitoring_id),
        published_through INTEGER NOT NULL,
        published_at      TEXT NOT NULL,
        period_start      TEXT NOT NULL,
        period_end        TEXT
    );
    "#,
    // 5: fleet operations: per-gateway health beyond the latest heartbeat, per-device health,
    // alerts (one open row per condition), the append-only audit log, remote commands.
    r#"
    CREATE TABLE ops_gateway_health (
        gateway_id            TEXT PRIMARY KEY,
        heartbeats_total      INTEGER NOT NULL DEFAULT 0,
        backlog_depth         INTEGER NOT NULL DEFAULT 0,
        backlog_growing_since TEXT,
        mqtt_status           TEXT,
        mqtt_status_at        TEXT
    );
    CREATE TABLE ops_devices (
        gateway_id   TEXT NOT NULL,
        address      TEXT NOT NULL,
        model        TEXT,
        last_seen    TEXT,
        last_reading TEXT,
        battery_pct  INTEGER,
        rssi_dbm     INTEGER,
        paired_at    TEXT NOT NULL,
        PRIMARY KEY (gateway_id, address)
    );
    CREATE TABLE ops_alerts (
        alert_id          INTEGER PRIMARY KEY AUTOINCREMENT,
        kind              TEXT NOT NULL,
        subject           TEXT NOT NULL,
        gateway_id        TEXT,
        telemonitoring_id TEXT,
        state             TEXT NOT NULL,
        detail            TEXT NOT NULL,
        opened_at         TEXT NOT NULL,
        acknowledged_at   TEXT,
        acknowledged_by   TEXT,
        resolved_at       TEXT
    );
    CREATE UNIQUE INDEX ops_alerts_one_open ON ops_alerts(kind, subject) WHERE state <> 'resolved';
    CREATE INDEX ops_alerts_gateway ON ops_alerts(gateway_id, alert_id);
    CREATE TABLE ops_audit (
        seq               INTEGER PRIMARY KEY AUTOINCREMENT,
        at                TEXT NOT NULL,
        actor             TEXT NOT NULL,
        action            TEXT NOT NULL,
        gateway_id        TEXT NOT NULL,
        telemonitoring_id TEXT,
        device            TEXT,
        detail            TEXT NOT NULL
    );
    CREATE TRIGGER ops_audit_no_update BEFORE UPDATE ON ops_audit
        BEGIN SELECT RAISE(ABORT, 'ops_audit is append-only'); END;
    CREATE TRIGGER ops_audit_no_delete BEFORE DELETE ON ops_audit
        BEGIN SELECT RAISE(ABORT, 'ops_audit is append-only'); END;
    CREATE TABLE ops_commands (
        command_id TEXT PRIMARY KEY,
        gateway_id TEXT NOT NULL,
        action     TEXT NOT NULL,
        issued_by  TEXT NOT NULL,
        issued_at  TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        frame      BLOB NOT NULL
    );
    CREATE INDEX ops_commands_gateway ON ops_commands(gateway_id, expires_at_ms);
    "#,
    // 6: readings de-duplicated through a compact index on the first 16 characters of the id
    // instead of a primary key on the whole 64-character id. Reading ids are hashes, so every
    // insert lands on a random page of that index; a small index stays in the page cache and
    // dirties far fewer bytes per commit. Uniqueness of `reading_id` is kept by the ingest
    // writer (look up by prefix, compare the whole id, insert in the same transaction).
    r#"
    CREATE TABLE readings_compact (
        reading_id        TEXT NOT NULL,
        gateway_id        TEXT NOT NULL,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        batch_id          TEXT NOT NULL,
        kind              TEXT NOT NULL,
        effective_time    TEXT NOT NULL,
        received_at       TEXT NOT NULL,
        ingested_at       TEXT NOT NULL,
        payload           TEXT NOT NULL
    );
    -- Row ids are kept: session_outputs.published_through refers to them.
    INSERT INTO readings_compact (rowid, reading_id, gateway_id, telemonitoring_id, batch_id,
        kind, effective_time, received_at, ingested_at, payload)
        SELECT rowid, reading_id, gateway_id, telemonitoring_id, batch_id, kind, effective_time,
        received_at, ingested_at, payload FROM readings ORDER BY rowid;
    DROP TABLE readings;
    ALTER TABLE readings_compact RENAME TO readings;
    CREATE INDEX readings_id_prefix ON readings(substr(reading_id, 1, 16));
    CREATE INDEX readings_session_time ON readings(telemonitoring_id, effective_time);
    "#,
    // 7: the gateways' reports of executed commands (the first report of each command).
    r#"
    ALTER TABLE ops_commands ADD COLUMN result_status TEXT;
    ALTER TABLE ops_commands ADD COLUMN result_detail TEXT;
    ALTER TABLE ops_commands ADD COLUMN finished_at TEXT;
    ALTER TABLE ops_commands ADD COLUMN reported_at TEXT;
    "#,
    // 8: HUB outbox per session: a row the HUB refused (4xx) is retried with backoff for a bounded
    // window (`first_refused_at_ms`, `refusals`, `next_attempt_at_ms`), then held (state 2, which
    // rows refused by earlier versions already carry) until an operator re-queues it
    // (`held_at_ms` stays set until the row is delivered). Later rows of the session wait behind
    // it; the index finds each session's oldest undelivered row.
    r#"
    ALTER TABLE hub_outbox ADD COLUMN next_attempt_at_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hub_outbox ADD COLUMN first_refused_at_ms INTEGER;
    ALTER TABLE hub_outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE hub_outbox ADD COLUMN held_at_ms INTEGER;
    CREATE INDEX hub_outbox_session ON hub_outbox(telemonitoring_id, state, seq);
    "#,
    // 9: the connection number of the latest signed MQTT status (a replayed last-will of an
    // older connection is ignored).
    r#"
    ALTER TABLE ops_gateway_health ADD COLUMN mqtt_status_connection INTEGER;
    "#,
    // 10: readings unique per session, enforced by the store: a UNIQUE key on
    // (telemonitoring_id, reading_id) replaces the global de-duplication through the id-prefix
    // index, so a reading id stored for one patient never hides another patient's reading.
    // The key covers the whole id (a prefix cannot be UNIQUE); the ingest writer inserts with
    // ON CONFLICT DO NOTHING and tells stored from duplicate by the affected-row count.
    r#"
    CREATE TABLE readings_per_session (
        reading_id        TEXT NOT NULL,
        gateway_id        TEXT NOT NULL,
        telemonitoring_id TEXT NOT NULL REFERENCES sessions(telemonitoring_id),
        batch_id          TEXT NOT NULL,
        kind              TEXT NOT NULL,
        effective_time    TEXT NOT NULL,
        received_at       TEXT NOT NULL,
        ingested_at       TEXT NOT NULL,
        payload           TEXT NOT NULL,
        UNIQUE (telemonitoring_id, reading_id)
    );
    -- Row ids are kept: session_outputs.published_through refers to them. Ids were unique
    -- across the store until now, so no row conflicts here.
    INSERT INTO readings_per_session (rowid, reading_id, gateway_id, telemonitoring_id,
        batch_id, kind, effective_time, received_at, ingested_at, payload)
        SELECT rowid, reading_id, gateway_id, telemonitoring_id, batch_id, kind, effective_time,
        received_at, ingested_at, payload FROM readings ORDER BY rowid;
    DROP TABLE readings;
    ALTER TABLE readings_per_session RENAME TO readings;
    CREATE INDEX readings_session_time ON readings(telemonitoring_id, effective_time);
    "#,
    // 11: when the latest heartbeat was sent (gateway clock, microseconds), so one delivered
    // late (a redelivery, another broker path) does not overwrite a newer one.
    r#"
    ALTER TABLE gateway_heartbeats ADD COLUMN sent_at_us INTEGER;
    "#,
    // 12: what the store is served as, pinned at the first start: the fingerprints of its keys
    // (a provider started with other key files refuses to serve) and the FHIR identifier
    // system (it does not follow a change of host name).
    r#"
    CREATE TABLE store_pins (
        name      TEXT PRIMARY KEY,
        value     TEXT NOT NULL,
        pinned_at TEXT NOT NULL
    );
    "#,
    // 13: failed enrollment attempts per minute, all gateways together, kept in the store so
    // the limit holds for every provider instance and across restarts.
    r#"
    CREATE TABLE enroll_failures (
        minute   INTEGER PRIMARY KEY,
        failures INTEGER NOT NULL
    );
    "#,
];

/// Page cache of the writer connection (negative: KiB).
const WRITER_CACHE_KIB: i64 = -65_536;
/// WAL size (pages) that triggers a checkpoint.
const WAL_CHECKPOINT_PAGES: i64 = 16_384;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Handle to the store; cheap to clone. Every part of the provider holds a clone: writes from
/// all of them queue on one connection, which is what keeps de-duplication and ordering right.
#[derive(Debug, Clone)]
pub struct Db {
    /// The database file; each read opens its own read-only connection to it.
    path: PathBuf,
    /// The only writer connection (WAL, `synchronous=FULL`), shared by every clone; each
    /// [`Db::write`] holds it for the whole closure, on a blocking thread.
    writer: Arc<Mutex<Connection>>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

impl Db {
    /// Opens (creating if needed) the store at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let err = |source| DbError::Sqlite {
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
    pub fn store_id(&self) -> Result<String, DbError> {
        self.write_at_start(|c| c.query_row(SELECT_STORE_ID, [], |r| r.get(0)))
    }

    /// Runs `f` with the single writer connection on this thread: for the checks at start,
    /// before anything is served.
    pub fn write_at_start<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        let mut conn = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut conn).map_err(|source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Runs `f` with the single writer connection on a blocking thread.
    pub async fn write<T, F>(&self, f: F) -> Result<T, DbError>
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
            f(&mut conn).map_err(|source| DbError::Sqlite { path, source })
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Runs `f` with a fresh read-only connection on a blocking thread.
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let err = |source| DbError::Sqlite {
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
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}

const SELECT_STORE_ID: &str = "SELECT store_id FROM store_identity";

/// Gives the store its id once: a new store at creation, a store from before store ids at its
/// first open by this version. Kept beside `schema_migrations`, outside [`MIGRATIONS`]: it
/// belongs to the file, not to a feature.
fn identify(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS store_identity (store_id TEXT PRIMARY KEY, created_at TEXT NOT NULL)",
    )?;
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| rusqlite::Error::InvalidQuery)?;
    let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    conn.execute(
        "INSERT INTO store_identity (store_id, created_at) SELECT ?1, ?2 \
         WHERE NOT EXISTS (SELECT 1 FROM store_identity)",
        rusqlite::params![id, chrono::Utc::now().to_rfc3339()],
    )?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let done: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    tm_protocol::migrations::apply(conn, MIGRATIONS, done, |tx, version| {
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            rusqlite::params![version, chrono::Utc::now().to_rfc3339()],
        )
        .map(drop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_apply_once_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.db");
        let db = Db::open(&path).unwrap();
        let n = db
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(usize::try_from(n).unwrap(), MIGRATIONS.len());
        drop(db);
        let db = Db::open(&path).unwrap();
        let mode = db
            .read(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn the_store_keeps_a_reading_once_per_session() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("provider.db")).unwrap();
        let err = db
            .write(|c| {
                for session in ["tm-a", "tm-b"] {
                    c.execute(
                        "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, \
                         status, created_at, updated_at) VALUES (?1, 'p', 'rx', 'accepted', '', '')",
                        [session],
                    )?;
                }
                let insert = "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, \
                    batch_id, kind, effective_time, received_at, ingested_at, payload) \
                    VALUES (?1, 'gw', ?2, 'b', 'glucose', '', '', '', '{}')";
                let id = "ab".repeat(32);
                c.execute(insert, [id.as_str(), "tm-a"])?;
                // The same id under another session is another patient's reading.
                c.execute(insert, [id.as_str(), "tm-b"])?;
                c.execute(insert, [id.as_str(), "tm-a"])
            })
            .await
            .unwrap_err();
        let DbError::Sqlite { source, .. } = &err else {
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
        let id = Db::open(&path).unwrap().store_id().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(Db::open(&path).unwrap().store_id().unwrap(), id);
        let other = Db::open(&dir.path().join("other.db")).unwrap();
        assert_ne!(other.store_id().unwrap(), id);
    }
}
