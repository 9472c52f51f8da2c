//! Opening the outbox file: pragmas, `quick_check`, migrations, and what to do when the file is
//! unreadable (move it aside with an alarm, start a fresh one: capture must go on).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};

use super::{Alarm, OutboxStatus, StoreError, alarm, key, now_ms};

/// Schema migrations, applied in order at open; index + 1 is the version. Never edit one that
/// has shipped.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE readings (
        id             INTEGER PRIMARY KEY,      -- capture order
        reading_id     TEXT NOT NULL UNIQUE,
        device_address TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        payload        BLOB NOT NULL,            -- the tm_protocol::Reading as JSON
        state          INTEGER NOT NULL,         -- RowState
        batch_id       TEXT,
        attempts       INTEGER NOT NULL DEFAULT 0,
        settled_at_ms  INTEGER,
        reason         TEXT
    );
    CREATE INDEX readings_state ON readings(state, id);
    CREATE INDEX readings_batch ON readings(batch_id) WHERE batch_id IS NOT NULL;
    CREATE TABLE quarantine (
        id             INTEGER PRIMARY KEY,
        device_address TEXT NOT NULL,
        characteristic TEXT NOT NULL,
        raw            BLOB NOT NULL,
        received_at_ms INTEGER NOT NULL,
        error          TEXT NOT NULL
    );
    CREATE TABLE device_marks (
        device_address      TEXT PRIMARY KEY,
        last_sequence       INTEGER,
        last_received_at_ms INTEGER NOT NULL,
        readings            INTEGER NOT NULL
    );
    CREATE TABLE alarms (
        kind         TEXT PRIMARY KEY,
        message      TEXT NOT NULL,
        raised_at_ms INTEGER NOT NULL
    );
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
"#,
    // Leases are kept in memory since version 2: `batch_id` and `attempts` are no longer
    // written, and the index on `batch_id` has nothing to find.
    "DROP INDEX IF EXISTS readings_batch;",
    // Version 3: the UNIQUE index holds the compact, ordered row key ([`super::key`]) instead
    // of the reading id's hex text, and the columns unused since version 2 are gone. Rows an
    // earlier version left leased are pending again.
    r#"
    CREATE TABLE readings_v3 (
        id             INTEGER PRIMARY KEY,      -- capture order
        reading_key    BLOB NOT NULL,            -- order || SHA-256 of the reading id
        device_address TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        payload        BLOB NOT NULL,            -- the tm_protocol::Reading as JSON
        state          INTEGER NOT NULL,         -- RowState
        settled_at_ms  INTEGER,
        reason         TEXT
    );
    CREATE UNIQUE INDEX readings_key ON readings_v3(reading_key);
    INSERT INTO readings_v3
        (id, reading_key, device_address, received_at_ms, payload, state, settled_at_ms, reason)
        SELECT id, tm_reading_key(payload, reading_id, received_at_ms), device_address,
               received_at_ms, payload, CASE state WHEN 1 THEN 0 ELSE state END,
               settled_at_ms, reason
        FROM readings ORDER BY id;
    DROP TABLE readings;
    ALTER TABLE readings_v3 RENAME TO readings;
    CREATE INDEX readings_state ON readings(state, id);
"#,
];

/// What opening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Where the unreadable file was moved, when it was.
    pub moved_aside: Option<PathBuf>,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the writer connection, moving an unreadable file aside.
pub(super) fn open_writer(path: &Path) -> Result<(Connection, OpenReport), StoreError> {
    match try_open(path) {
        Ok(conn) => Ok((conn, OpenReport { moved_aside: None })),
        Err(e) if is_corruption(&e) => {
            let aside = move_aside(path)?;
            tracing::error!(
                moved_to = %aside.display(),
                error = %e,
                "outbox database unreadable: moved aside, starting a fresh one"
            );
            let conn = try_open(path).map_err(sqlite(path))?;
            conn.execute(
                "INSERT OR REPLACE INTO alarms (kind, message, raised_at_ms) VALUES (?1, ?2, ?3)",
                params![
                    alarm::DATABASE_CORRUPT,
                    format!(
                        "the outbox database was unreadable at start ({e}); it was moved to {} \
                         for inspection and a fresh outbox opened. Readings in it were not sent.",
                        aside.display()
                    ),
                    now_ms()
                ],
            )
            .map_err(sqlite(path))?;
            Ok((
                conn,
                OpenReport {
                    moved_aside: Some(aside),
                },
            ))
        }
        Err(e) => Err(sqlite(path)(e)),
    }
}

fn try_open(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidQuery);
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 2 MiB of page cache: new rows and their keys land on the last pages of the table and
    // the key index, and a drain reads the table in row order, so a large backlog needs no
    // more (the cache is the largest part of the agent's memory while it drains). A checkpoint
    // every 16 MiB of WAL rather than every 4 MiB: fewer checkpoint fsyncs while a backlog
    // drains.
    conn.pragma_update(None, "cache_size", -2_048)?;
    conn.pragma_update(None, "wal_autocheckpoint", 4_096)?;
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!("quick_check: {check}")),
        ));
    }
    migrate(&mut conn)?;
    Ok(conn)
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let aside = path.with_file_name(format!(
        "{}.corrupt-{stamp}",
        path.file_name()
            .map_or("outbox.db".into(), |n| n.to_string_lossy())
    ));
    let err = |source| StoreError::MoveAside {
        path: path.to_path_buf(),
        source,
    };
    std::fs::rename(path, &aside).map_err(err)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            std::fs::rename(&side, format!("{}{suffix}", aside.display())).map_err(err)?;
        }
    }
    Ok(aside)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if done < 3 {
        register_key_function(conn)?;
    }
    tm_protocol::migrations::apply(conn, MIGRATIONS, done, |tx, version| {
        tx.pragma_update(None, "user_version", version)
    })
}

/// `tm_reading_key(payload, reading_id, received_at_ms)`: the row key of a row stored before
/// version 3, for its migration. A payload that does not parse is ordered by its receive time
/// (it is kept all the same).
fn register_key_function(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;

    #[derive(serde::Deserialize)]
    struct Order {
        device_time: Option<chrono::NaiveDateTime>,
        sequence: Option<u32>,
        received_at: chrono::DateTime<chrono::Utc>,
    }
    conn.create_scalar_function(
        "tm_reading_key",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let payload = ctx.get_raw(0).as_bytes_or_null()?.unwrap_or_default();
            let reading_id: String = ctx.get(1)?;
            let received_at_ms: i64 = ctx.get(2)?;
            let order = serde_json::from_slice::<Order>(payload).map_or(received_at_ms, |o| {
                key::order(o.device_time, o.sequence, o.received_at.timestamp_millis())
            });
            Ok(key::key(order, &reading_id))
        },
    )
}

const COUNT_BY_STATE: &str = "SELECT state, COUNT(*) FROM readings GROUP BY state";
const OLDEST_UNACKED: &str = "SELECT MIN(received_at_ms) FROM readings WHERE state IN (0, 1)";
const RECENT_REJECTIONS: &str = "SELECT reading_key, COALESCE(reason, '') FROM readings \
                                 WHERE state = 3 ORDER BY settled_at_ms DESC LIMIT 10";
/// The same in a database before version 3 (the id as text): read from outside while the
/// agent is still migrating it, or before the agent upgraded it.
const RECENT_REJECTIONS_BEFORE_3: &str = "SELECT reading_id, COALESCE(reason, '') FROM readings \
                                 WHERE state = 3 ORDER BY settled_at_ms DESC LIMIT 10";

/// Reads the status through `conn` (writer or read-only).
pub(super) fn status(conn: &Connection, quota_bytes: u64) -> rusqlite::Result<OutboxStatus> {
    let mut s = OutboxStatus {
        quota_bytes,
        ..OutboxStatus::default()
    };
    let mut stmt = conn.prepare(COUNT_BY_STATE)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (state, n) = row?;
        let n = u64::try_from(n).unwrap_or(0);
        match state {
            0 => s.pending = n,
            1 => s.leased = n,
            2 => s.acknowledged = n,
            _ => s.rejected += n,
        }
    }
    s.quarantined = conn.query_row("SELECT COUNT(*) FROM quarantine", [], |r| {
        r.get::<_, i64>(0).map(|n| u64::try_from(n).unwrap_or(0))
    })?;
    s.oldest_unacknowledged_ms = conn.query_row(OLDEST_UNACKED, [], |r| r.get(0))?;
    s.last_sync_at = meta(conn, "last_sync_at")?;
    s.last_error = meta(conn, "last_error")?;
    s.used_bytes = used_bytes(conn)?;
    let mut stmt =
        conn.prepare("SELECT kind, message, raised_at_ms FROM alarms ORDER BY raised_at_ms")?;
    s.alarms = stmt
        .query_map([], |r| {
            Ok(Alarm {
                kind: r.get(0)?,
                message: r.get(1)?,
                raised_at_ms: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let sql = if version < 3 {
        RECENT_REJECTIONS_BEFORE_3
    } else {
        RECENT_REJECTIONS
    };
    let mut stmt = conn.prepare(sql)?;
    s.recent_rejections = stmt
        .query_map([], |r| {
            let id = key::reading_id_in(r.get_ref(0)?)?;
            Ok((id, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(s)
}

pub(super) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension as _;
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Bytes held by live pages (free pages left by pruning are reused, so they do not count).
pub(super) fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(u64::try_from((pages - free).max(0) * size).unwrap_or(0))
}

/// The status of the outbox at `path` through a read-only connection (while the agent runs).
pub fn read_status(path: &Path, quota_bytes: u64) -> Result<OutboxStatus, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite(path))?;
    // One snapshot for every read: an agent starting right now may be creating or migrating
    // the file, one migration after the other.
    let snapshot = conn.unchecked_transaction().map_err(sqlite(path))?;
    let version: i64 = snapshot
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite(path))?;
    if version == 0 {
        // Created, its tables not yet.
        return Ok(OutboxStatus {
            quota_bytes,
            ..OutboxStatus::default()
        });
    }
    status(&snapshot, quota_bytes).map_err(sqlite(path))
}
