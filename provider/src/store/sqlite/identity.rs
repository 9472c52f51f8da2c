//! Reading a SQLite file's store id without changing the file (`PRAGMA quick_check` first).

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use crate::store::identity::{Damaged, StoreFile};

/// What the database file at `database` holds, read without changing it: missing, empty (no
/// file content, no WAL, or no tables), or a store that passes `quick_check`, with its id.
pub fn inspect(database: &Path) -> Result<StoreFile, Damaged> {
    let len = match fs::metadata(database) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreFile::Missing),
        Err(e) => return Err(Damaged(e.to_string())),
    };
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    let wal_len = fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len());
    if len == 0 && wal_len == 0 {
        return Ok(StoreFile::Empty);
    }
    let started = std::time::Instant::now();
    let conn = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Damaged(e.to_string()))?;
    let report = quick_check(&conn).map_err(|e| Damaged(format!("quick_check: {e}")))?;
    if report != ["ok"] {
        let mut detail = report.into_iter().take(3).collect::<Vec<_>>().join("; ");
        detail.insert_str(0, "quick_check: ");
        return Err(Damaged(detail));
    }
    tracing::info!(path = %database.display(), ms = started.elapsed().as_millis(), "store passed quick_check");
    let has_id: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'store_identity'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(|e| Damaged(e.to_string()))?
        .is_some();
    if !has_id {
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| Damaged(e.to_string()))?;
        return Ok(if tables == 0 {
            StoreFile::Empty
        } else {
            StoreFile::Store(None)
        });
    }
    let id = conn
        .query_row("SELECT store_id FROM store_identity", [], |r| {
            r.get::<_, String>(0)
        })
        .optional()
        .map_err(|e| Damaged(e.to_string()))?;
    Ok(StoreFile::Store(id))
}

fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}
