//! The enrollment API's rate limit: failed attempts (codes unknown, used or expired) counted per
//! minute in the store, all gateways together, so the limit holds for every provider instance
//! and across restarts. With 40-bit codes and a handful of failures a minute, guessing a live
//! code is hopeless.

use rusqlite::{Connection, OptionalExtension as _, params};

const MINUTE_MS: i64 = 60_000;

/// Whether another attempt may be tried at `now_ms`: fewer than `limit` failures this minute.
pub fn allows(conn: &Connection, limit: u32, now_ms: i64) -> rusqlite::Result<bool> {
    let failures: Option<i64> = conn
        .query_row(
            "SELECT failures FROM enroll_failures WHERE minute = ?1",
            [now_ms.div_euclid(MINUTE_MS)],
            |r| r.get(0),
        )
        .optional()?;
    Ok(failures.unwrap_or(0) < i64::from(limit))
}

/// Records a failed attempt at `now_ms` (in the caller's transaction); minutes before the last
/// one are dropped.
pub fn record(conn: &Connection, now_ms: i64) -> rusqlite::Result<()> {
    let minute = now_ms.div_euclid(MINUTE_MS);
    conn.execute(
        "INSERT INTO enroll_failures (minute, failures) VALUES (?1, 1) \
         ON CONFLICT (minute) DO UPDATE SET failures = enroll_failures.failures + 1",
        [minute],
    )?;
    conn.execute(
        "DELETE FROM enroll_failures WHERE minute < ?1",
        params![minute - 1],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_minute() {
        let conn = Connection::open_in_memory().unwrap();
        for sql in crate::db::MIGRATIONS {
            conn.execute_batch(sql).unwrap();
        }
        let t = 1_767_225_600_000_i64;
        for _ in 0..3 {
            assert!(allows(&conn, 3, t).unwrap());
            record(&conn, t + 1).unwrap();
        }
        assert!(
            !allows(&conn, 3, t + 59_000).unwrap(),
            "the fourth in the minute"
        );
        assert!(allows(&conn, 3, t + MINUTE_MS).unwrap(), "the next minute");
        record(&conn, t + 3 * MINUTE_MS).unwrap();
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM enroll_failures", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1, "old minutes are dropped");
    }
}
