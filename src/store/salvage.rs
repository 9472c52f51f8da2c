//! Salvaging the readings of an outbox file moved aside as corrupt.
//!
//! The moved-aside copy (with its WAL) is opened read-only and its `readings` table read in row
//! id order, a window at a time. A damaged page makes a read fail: the salvage then probes for
//! the next readable row id, doubling the step, and goes on from there, so one bad page costs
//! only the rows on it. Every pending or leased row whose payload still decodes as a reading
//! with the row's reading id (the `reading_id` column before schema version 3, the hash in
//! `reading_key` since) is inserted into the new outbox as pending (`INSERT OR IGNORE` on the
//! unique row key: nothing is stored twice, and a reading the device re-sends is
//! de-duplicated against it). Acknowledged and rejected rows are not copied (already settled).
//! The provider de-duplicates by `reading_id`, so a salvaged reading it already had is harmless.
//!
//! The counts go into the `database-corrupt` alarm: how many readings were recovered and how
//! many row ids could not be read (an upper bound: ids pruned earlier are counted too).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};

use super::key;

/// What a salvage recovered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Salvaged {
    /// Pending or leased readings copied into the new outbox as pending.
    pub recovered: u64,
    /// Row ids that could not be read, or whose payload was damaged (an upper bound).
    pub unreadable: u64,
    /// Whether the file could not be read at all.
    pub unopenable: bool,
}

/// Rows read per window.
const WINDOW: i64 = 256;
/// Longest run of ids probed past a damaged page before the rest is given up.
const MAX_SKIP: i64 = 1 << 40;

/// The window read, with the id column of the file's schema version (`reading_id` before 3).
fn read_window_sql(id_column: &str) -> String {
    format!(
        "SELECT id, {id_column}, device_address, received_at_ms, payload, state \
         FROM readings WHERE id > ?1 ORDER BY id LIMIT ?2"
    )
}
const PROBE: &str = "SELECT id FROM readings WHERE id >= ?1 ORDER BY id LIMIT 1";
const INSERT: &str = "INSERT OR IGNORE INTO readings \
    (reading_key, device_address, received_at_ms, payload, state) VALUES (?1, ?2, ?3, ?4, 0)";

struct Row {
    id: i64,
    reading_id: String,
    device: String,
    received_at_ms: i64,
    payload: Vec<u8>,
    state: i64,
}

/// Reads what it can from the moved-aside outbox `aside` into `into` (one transaction).
pub fn salvage(aside: &Path, into: &mut Connection) -> rusqlite::Result<Salvaged> {
    let mut out = Salvaged::default();
    let Ok(source) = Connection::open_with_flags(
        aside,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        out.unopenable = true;
        return Ok(out);
    };
    let highest: Option<i64> = source
        .query_row("SELECT MAX(id) FROM readings", [], |r| r.get(0))
        .ok()
        .flatten();
    let version: i64 = source
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap_or(3);
    let window = read_window_sql(if version < 3 {
        "reading_id"
    } else {
        "reading_key"
    });
    let mut rows = Vec::new();
    let mut after = 0i64;
    let mut read_any = false;
    loop {
        match read_window(&source, &window, after, &mut rows) {
            Ok(last) => {
                read_any = true;
                match last {
                    Some(last) => after = last,
                    None => break,
                }
            }
            Err(_) => {
                // Rows before the damage were kept in `rows`; find the next readable id.
                let from = rows.last().map_or(after, |r: &Row| r.id).max(after);
                let progressed = from > after;
                match next_readable(&source, from, highest) {
                    Some(next) if progressed || next > from + 1 => {
                        out.unreadable += u64::try_from(next - from - 1).unwrap_or(0);
                        after = next - 1;
                    }
                    Some(next) => {
                        // Its id is readable but the row is not: skip it.
                        out.unreadable += 1;
                        after = next;
                    }
                    None => {
                        if let Some(h) = highest {
                            out.unreadable += u64::try_from(h - from).unwrap_or(0);
                        } else if !read_any && rows.is_empty() {
                            out.unopenable = true;
                        }
                        break;
                    }
                }
            }
        }
    }
    let tx = into.transaction()?;
    {
        let mut insert = tx.prepare(INSERT)?;
        for row in rows.iter().filter(|r| r.state == 0 || r.state == 1) {
            let reading = serde_json::from_slice::<tm_protocol::Reading>(&row.payload)
                .ok()
                .filter(|r| r.reading_id.as_str() == row.reading_id);
            let Some(reading) = reading else {
                out.unreadable += 1;
                continue;
            };
            insert.execute(params![
                key::reading_key(&reading),
                row.device,
                row.received_at_ms,
                row.payload
            ])?;
            out.recovered += 1;
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Reads one window after `after` into `rows`; the id of its last row, `None` at the end.
/// On an error the rows read before it stay in `rows`.
fn read_window(
    source: &Connection,
    sql: &str,
    after: i64,
    rows: &mut Vec<Row>,
) -> rusqlite::Result<Option<i64>> {
    let mut stmt = source.prepare(sql)?;
    let mut cursor = stmt.query(params![after, WINDOW])?;
    let mut last = None;
    while let Some(r) = cursor.next()? {
        let row = Row {
            id: r.get(0)?,
            reading_id: key::reading_id_in(r.get_ref(1)?)?,
            device: r.get(2)?,
            received_at_ms: r.get(3)?,
            payload: r.get(4)?,
            state: r.get(5)?,
        };
        last = Some(row.id);
        rows.push(row);
    }
    Ok(last)
}

/// The first readable row id after `from`: probes `from + 1, + 2, + 4, ...` until a probe
/// reads, then narrows down to the first readable id past the damage.
fn next_readable(source: &Connection, from: i64, highest: Option<i64>) -> Option<i64> {
    let limit = highest.unwrap_or(from.saturating_add(MAX_SKIP));
    // Ok(first id >= at) when the probe reads, Err when it hits damage.
    let probe = |at: i64| -> Result<Option<i64>, ()> {
        match source.query_row(PROBE, [at], |r| r.get::<_, i64>(0)) {
            Ok(id) => Ok(Some(id)),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(_) => Err(()),
        }
    };
    let mut bad = from;
    let mut step = 1i64;
    loop {
        let at = from.saturating_add(step);
        if at > limit {
            return None;
        }
        match probe(at) {
            Ok(_) => {
                let (mut lo, mut hi) = (bad + 1, at);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if probe(mid).is_ok() {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                return probe(hi).ok().flatten();
            }
            Err(()) => {
                bad = at;
                step = step.saturating_mul(2);
            }
        }
    }
}
