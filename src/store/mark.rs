//! The outbox's record outside itself, to see at start that the outbox was reset.
//!
//! A damage that `quick_check` does not see (a file truncated to zero length, a lost or damaged
//! WAL, a file replaced) leaves a valid but emptier database: without a witness, the lost
//! readings would vanish with no alarm. So:
//!
//! - every outbox has an identity, a random `outbox_id` written in its `meta` table when it is
//!   created (and the highest row id it ever pruned, `high_row`, so pruning does not look like a
//!   loss);
//! - next to it, `outbox.db.mark` (a small JSON file, replaced atomically) records that id and
//!   the highest row id committed, refreshed at most every [`MARK_EVERY`] by the writer and at
//!   open.
//!
//! At open, a mark naming another outbox (or an outbox with no identity: a new, empty file) that
//! had held readings raises the `outbox-reset` alarm; a mark whose highest row the database no
//! longer reaches raises it too (the last commits were lost). The mark lags the database, never
//! leads it, so a healthy outbox never raises the alarm. A missing or unreadable mark raises
//! nothing (first start, or an outbox from before this record existed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

/// Least time between two refreshes of the mark by the writer.
pub const MARK_EVERY: Duration = Duration::from_secs(5);

/// What the mark file holds. Written only by the writer thread; read once, at open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The `outbox_id` from the `meta` table of the outbox the mark is about (16 hex digits).
    /// A database at open with another id, or with none, is a reset outbox.
    pub outbox_id: String,
    /// The highest row id it had held (its newest row, or the newest it pruned) when the mark
    /// was written: a lower bound, as the mark lags the database. At 0 or below nothing is
    /// judged (the outbox had held no reading).
    pub highest_row: i64,
    /// When the mark was written (Unix milliseconds); only quoted in the alarm message.
    pub updated_at_ms: i64,
}

/// `outbox.db` -> `outbox.db.mark`.
pub fn mark_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".mark");
    PathBuf::from(name)
}

/// The mark at `path`, when there is a readable one.
pub fn load(path: &Path) -> Option<Mark> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the mark atomically (temporary file, fsync, rename).
pub fn save(path: &Path, mark: &Mark) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("mark.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(mark).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The outbox's identity, created when missing. `(id, created_now)`.
pub(super) fn identity(conn: &Connection) -> rusqlite::Result<(String, bool)> {
    if let Some(id) = super::schema::meta(conn, "outbox_id")? {
        return Ok((id, false));
    }
    let mut rnd = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd)
        .expect("the system random source works");
    let id = format!("{:016x}", u64::from_le_bytes(rnd));
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('outbox_id', ?1)",
        params![id],
    )?;
    Ok((id, true))
}

/// The highest row id the database has held: its newest row, or the newest it pruned.
pub(super) fn highest_row(conn: &Connection) -> rusqlite::Result<i64> {
    let newest: Option<i64> = conn.query_row("SELECT MAX(id) FROM readings", [], |r| r.get(0))?;
    let pruned: Option<i64> = conn
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'high_row'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(newest.unwrap_or(0).max(pruned.unwrap_or(0)))
}

/// Records the newest row before rows are deleted, so pruning is not taken for a loss.
pub(super) const NOTE_HIGH_ROW: &str = "INSERT INTO meta (key, value) \
    SELECT 'high_row', CAST(MAX(id) AS TEXT) FROM readings WHERE 1 HAVING MAX(id) IS NOT NULL \
    ON CONFLICT(key) DO UPDATE SET value = \
      CAST(MAX(CAST(meta.value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)";

/// What the mark says about the database found at open, as an alarm message (none when the
/// outbox is the one the mark describes, whole).
pub(super) fn judge(
    mark: Option<&Mark>,
    outbox_id: &str,
    created_now: bool,
    highest: i64,
) -> Option<String> {
    let mark = mark?;
    if mark.highest_row <= 0 {
        return None;
    }
    let when = chrono::DateTime::from_timestamp_millis(mark.updated_at_ms)
        .map_or_else(|| "-".into(), |t| t.to_rfc3339());
    if mark.outbox_id != outbox_id || created_now {
        return Some(format!(
            "the outbox was reset: it is a new, empty database, but outbox {} had committed \
             readings (rows up to {} at {when}); readings not yet acknowledged by the provider \
             may be lost. Look for a moved-aside or backed-up outbox file.",
            mark.outbox_id, mark.highest_row
        ));
    }
    if mark.highest_row > highest {
        return Some(format!(
            "the outbox lost its last writes: rows up to {} were committed (at {when}) but the \
             database holds rows only up to {highest} (a damaged or lost WAL file); up to {} \
             readings may be lost.",
            mark.highest_row,
            mark.highest_row - highest
        ));
    }
    None
}

/// Keeps the mark file of one open outbox up to date. Owned by [`super::Outbox`], so only the
/// writer thread writes the mark.
#[derive(Debug)]
pub(super) struct MarkWriter {
    /// `outbox.db.mark` beside the database.
    path: PathBuf,
    /// The identity of the open outbox, written into every mark.
    outbox_id: String,
    /// The highest row of the last mark written; `None` until one is written (a failed write
    /// leaves it, so the next refresh tries again).
    written: Option<i64>,
    /// Before this instant an unforced refresh does nothing ([`MARK_EVERY`] after the last).
    next: std::time::Instant,
}

impl MarkWriter {
    pub(super) fn new(db_path: &Path, outbox_id: String) -> Self {
        Self {
            path: mark_path(db_path),
            outbox_id,
            written: None,
            next: std::time::Instant::now(),
        }
    }

    /// Writes the mark when the highest row changed, at most every [`MARK_EVERY`] unless
    /// `force`. A failure (a full disk) is logged and retried later.
    pub(super) fn refresh(&mut self, conn: &Connection, force: bool) {
        let now = std::time::Instant::now();
        if !force && now < self.next {
            return;
        }
        self.next = now + MARK_EVERY;
        let Ok(highest) = highest_row(conn) else {
            return;
        };
        if self.written == Some(highest) {
            return;
        }
        let mark = Mark {
            outbox_id: self.outbox_id.clone(),
            highest_row: highest,
            updated_at_ms: super::now_ms(),
        };
        match save(&self.path, &mark) {
            Ok(()) => self.written = Some(highest),
            Err(e) => tracing::warn!(error = %e, "outbox mark not written"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(id: &str, highest_row: i64) -> Mark {
        Mark {
            outbox_id: id.into(),
            highest_row,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn only_a_reset_or_a_loss_is_judged() {
        assert_eq!(judge(None, "a", true, 0), None, "first start");
        assert_eq!(judge(Some(&mark("a", 10)), "a", false, 12), None);
        assert_eq!(judge(Some(&mark("a", 0)), "b", true, 0), None, "was empty");
        let reset = judge(Some(&mark("a", 10)), "b", true, 0).unwrap();
        assert!(reset.contains("outbox was reset"), "{reset}");
        let lost = judge(Some(&mark("a", 10)), "a", false, 7).unwrap();
        assert!(lost.contains("up to 3 readings"), "{lost}");
    }

    #[test]
    fn the_mark_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = mark_path(&dir.path().join("outbox.db"));
        assert_eq!(load(&path), None);
        save(&path, &mark("a", 5)).unwrap();
        assert_eq!(load(&path), Some(mark("a", 5)));
        std::fs::write(&path, b"{broken").unwrap();
        assert_eq!(load(&path), None);
    }
}
