//! Schema migrations of an SQLite file: the gateway's outbox and the provider's embedded store
//! apply theirs the same way (feature `sqlite`).
//!
//! A migration is SQL text; its version is its position in the list plus one. Each pending one
//! runs in its own transaction together with the record that it ran, so a crash leaves the file
//! at the previous version, never half migrated. Where the version is recorded is the caller's
//! (`PRAGMA user_version` in the outbox, a `schema_migrations` table with the time in the
//! provider's store); a shipped migration is never edited, only followed by another.

use rusqlite::{Connection, Transaction};

/// Applies the migrations after version `done`, recording each with `record` in its
/// transaction.
pub fn apply(
    conn: &mut Connection,
    migrations: &[&str],
    done: i64,
    record: impl Fn(&Transaction<'_>, i64) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    for (i, sql) in migrations.iter().enumerate() {
        let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
        if version <= done {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        record(&tx, version)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    fn record(tx: &Transaction<'_>, v: i64) -> rusqlite::Result<()> {
        tx.pragma_update(None, "user_version", v)
    }

    #[test]
    fn pending_migrations_run_once_in_order() {
        let mut conn = Connection::open_in_memory().unwrap();
        let list = ["CREATE TABLE a (x)", "INSERT INTO a VALUES (1)"];
        apply(&mut conn, &list[..1], 0, record).unwrap();
        assert_eq!(version(&conn), 1);
        for _ in 0..2 {
            let done = version(&conn);
            apply(&mut conn, &list, done, record).unwrap();
        }
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM a", [], |r| r.get(0))
            .unwrap();
        assert_eq!((version(&conn), rows), (2, 1));
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version_whole() {
        let mut conn = Connection::open_in_memory().unwrap();
        let list = [
            "CREATE TABLE a (x)",
            "INSERT INTO a VALUES (1); INSERT INTO nowhere VALUES (2)",
        ];
        assert!(apply(&mut conn, &list, 0, record).is_err());
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM a", [], |r| r.get(0))
            .unwrap();
        assert_eq!((version(&conn), rows), (1, 0));
    }
}
