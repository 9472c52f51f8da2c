//! [`Outbox`]: the synchronous operations on the outbox database. Owned by the writer thread
//! ([`super::writer`]); every method is one transaction. Opening, stashing, the quota and
//! status are here; leasing and settling batches are in [`super::lease`].

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::diskfull::{self, DiskGuard, is_disk_full};
use super::lease::Leases;
use super::mark::{self, MarkWriter};
use super::schema::{self, OpenReport};
use super::{OutboxStatus, QUOTA_ALARM_PERCENT, RowState, StoreError, alarm, key, now_ms};
use crate::stash::{StashError, StashOutcome, Stashable};

/// The outbox database, opened for writing. Exactly one exists per agent, owned by the writer
/// thread; everything else reaches it through [`super::OutboxHandle`].
#[derive(Debug)]
pub struct Outbox {
    /// The only writer connection (WAL, `synchronous=FULL` except for receipt bookkeeping).
    pub(super) conn: Connection,
    /// The database file, named in every [`StoreError::Sqlite`].
    pub(super) path: PathBuf,
    /// `store.quota_mb` in bytes: stashes that would take `used_bytes` over it first evict
    /// acknowledged rows, then are refused; 80 % of it raises `quota-high`.
    quota_bytes: u64,
    /// The batches in flight and the rows they hold ([`super::lease`]): in memory only, so
    /// they are lost with the process and the database counts their rows as pending.
    pub(super) leases: Leases,
    /// The reserve file that keeps receipts, pruning and alarms writable on a full disk, and
    /// whether the disk is full now ([`super::diskfull`]).
    pub(super) disk: DiskGuard,
    /// Writes this outbox's identity and highest row id to a file beside it, so a reset
    /// database is noticed at the next open ([`super::mark`]).
    pub(super) mark: MarkWriter,
}

/// Why a stash did not commit (before it becomes a [`StashError`]).
pub(super) enum StashFail {
    /// The quota or the full disk refuses it; the message says which.
    Refused(String),
    /// SQLite failed.
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for StashFail {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
    }
}

const INSERT_READING: &str = "INSERT OR IGNORE INTO readings \
    (reading_key, device_address, received_at_ms, payload, state) VALUES (?1, ?2, ?3, ?4, 0)";
const UPSERT_MARK: &str = "INSERT INTO device_marks \
    (device_address, last_sequence, last_received_at_ms, readings) VALUES (?1, ?2, ?3, 1) \
    ON CONFLICT(device_address) DO UPDATE SET \
      last_sequence = CASE WHEN excluded.last_sequence IS NULL THEN last_sequence \
                           ELSE MAX(COALESCE(last_sequence, -1), excluded.last_sequence) END, \
      last_received_at_ms = MAX(last_received_at_ms, excluded.last_received_at_ms), \
      readings = readings + 1";
const INSERT_QUARANTINE: &str = "INSERT INTO quarantine \
    (device_address, characteristic, raw, received_at_ms, error) VALUES (?1, ?2, ?3, ?4, ?5)";
const PRUNE: &str = "DELETE FROM readings WHERE state = 2 AND settled_at_ms <= ?1";
pub(super) const EVICT_ACKNOWLEDGED: &str = "DELETE FROM readings WHERE state = 2";
pub(super) const SET_META: &str = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)";
const RAISE: &str =
    "INSERT OR IGNORE INTO alarms (kind, message, raised_at_ms) VALUES (?1, ?2, ?3)";
const CLEAR: &str = "DELETE FROM alarms WHERE kind = ?1";
const HIGH_WATER: &str = "SELECT last_sequence FROM device_marks WHERE device_address = ?1";

impl Outbox {
    /// Opens (or creates) the outbox at `path`. On a full disk the reserve is released and the
    /// open tried again, so the outbox opens with the `disk-full` alarm.
    pub fn open(path: &Path, quota_bytes: u64) -> Result<(Self, OpenReport), StoreError> {
        let mut disk = DiskGuard::open(path, quota_bytes);
        let (conn, report, outbox_id) = match prepare(path, &disk) {
            Err(StoreError::Sqlite { source, .. }) if is_disk_full(&source) => {
                disk.on_full();
                prepare(path, &disk)?
            }
            other => other?,
        };
        let mut outbox = Self {
            conn,
            path: path.to_path_buf(),
            quota_bytes,
            leases: Leases::default(),
            disk,
            mark: MarkWriter::new(path, outbox_id),
        };
        outbox.refresh_mark(true);
        if outbox.disk.is_full() {
            outbox.raise_disk_full();
        }
        if outbox.disk.is_full() {
            outbox.truncate_wal();
        }
        Ok((outbox, report))
    }

    pub(super) fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Commits `requests` (each a list of items) in one transaction. Returns one outcome per
    /// request, or a refusal for all of them when the quota is reached or the disk is full
    /// (nothing of a refused request is committed: capture keeps the records).
    pub fn stash(&mut self, requests: &[&[Stashable]]) -> Result<Vec<StashOutcome>, StashError> {
        self.check_space();
        let incoming: usize = requests
            .iter()
            .flat_map(|r| r.iter())
            .map(stashed_size)
            .sum();
        let result = self
            .disk_gate(incoming)
            .and_then(|()| self.make_room(incoming))
            .and_then(|()| self.commit_stash(requests).map_err(StashFail::Db));
        match result {
            Ok(outcomes) => Ok(outcomes),
            Err(StashFail::Refused(message)) => Err(StashError::Refused(message)),
            Err(StashFail::Db(e)) if is_disk_full(&e) => {
                self.on_disk_full();
                Err(StashError::Refused(diskfull::disk_full_refusal()))
            }
            Err(StashFail::Db(e)) => Err(StashError::Refused(format!("outbox write failed: {e}"))),
        }
    }

    fn commit_stash(&mut self, requests: &[&[Stashable]]) -> rusqlite::Result<Vec<StashOutcome>> {
        let tx = self.conn.transaction()?;
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut first_row = None;
        {
            let mut insert = tx.prepare(INSERT_READING)?;
            let mut mark = tx.prepare(UPSERT_MARK)?;
            let mut quarantine = tx.prepare(INSERT_QUARANTINE)?;
            for items in requests {
                let mut out = StashOutcome::default();
                for item in *items {
                    match item {
                        Stashable::Reading(r) => {
                            let payload = serde_json::to_vec(r.as_ref())
                                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                            let received = r.received_at.timestamp_millis();
                            let n = insert.execute(params![
                                key::reading_key(r),
                                r.device.address,
                                received,
                                payload
                            ])?;
                            if n == 1 {
                                let row = tx.last_insert_rowid();
                                first_row.get_or_insert(row);
                                tracing::debug!(reading_id = %r.reading_id, row, "reading committed");
                                out.inserted += 1;
                                mark.execute(params![r.device.address, r.sequence, received])?;
                            } else {
                                tracing::debug!(reading_id = %r.reading_id, "reading already in the outbox");
                                out.duplicates += 1;
                            }
                        }
                        Stashable::Quarantined(q) => {
                            quarantine.execute(params![
                                q.device_address,
                                q.characteristic,
                                q.raw,
                                q.received_at.timestamp_millis(),
                                q.error
                            ])?;
                            out.inserted += 1;
                        }
                    }
                }
                outcomes.push(out);
            }
        }
        tx.commit()?;
        if let Some(first) = first_row {
            self.leases.pending_from(first);
        }
        Ok(outcomes)
    }

    /// Keeps disk use under the quota: raises or clears the 80 % alarm, evicts acknowledged
    /// rows when `incoming` would not fit, and refuses (with an alarm) when it still does not.
    fn make_room(&mut self, incoming: usize) -> Result<(), StashFail> {
        let incoming = u64::try_from(incoming).unwrap_or(u64::MAX);
        let mut used = schema::used_bytes(&self.conn)?;
        if used.saturating_add(incoming) > self.quota_bytes {
            self.conn.execute(mark::NOTE_HIGH_ROW, [])?;
            let evicted = self.conn.execute(EVICT_ACKNOWLEDGED, [])?;
            if evicted > 0 {
                tracing::warn!(
                    rows = evicted,
                    "quota reached: acknowledged rows evicted early"
                );
            }
            used = schema::used_bytes(&self.conn)?;
        }
        if used.saturating_add(incoming) > self.quota_bytes {
            let message = format!(
                "outbox quota of {} bytes reached ({used} used): new readings are refused and stay \
                 on the devices; restore connectivity to the provider or raise store.quota_mb",
                self.quota_bytes
            );
            tracing::error!(used, quota = self.quota_bytes, "{message}");
            self.raise(alarm::QUOTA_FULL, &message)?;
            return Err(StashFail::Refused(message));
        }
        self.clear(alarm::QUOTA_FULL)?;
        let high = self.quota_bytes / 100 * QUOTA_ALARM_PERCENT;
        if used.saturating_add(incoming) > high {
            let message = format!(
                "outbox uses {used} of {} bytes (over {QUOTA_ALARM_PERCENT} %)",
                self.quota_bytes
            );
            self.raise(alarm::QUOTA_HIGH, &message)?;
        } else {
            self.clear(alarm::QUOTA_HIGH)?;
        }
        Ok(())
    }

    /// Refreshes the mark file (at most every few seconds unless `force`).
    pub(super) fn refresh_mark(&mut self, force: bool) {
        self.mark.refresh(&self.conn, force);
    }

    /// Raises (`Some(message)`) or clears (`None`) an alarm of another part of the agent.
    pub fn set_alarm(&mut self, kind: &str, message: Option<&str>) -> Result<(), StoreError> {
        match message {
            Some(m) => self.raise(kind, m),
            None => self.clear(kind),
        }
        .map_err(self.err())
    }

    pub(super) fn raise(&self, kind: &str, message: &str) -> rusqlite::Result<()> {
        self.conn.execute(RAISE, params![kind, message, now_ms()])?;
        Ok(())
    }

    pub(super) fn clear(&self, kind: &str) -> rusqlite::Result<()> {
        self.conn.execute(CLEAR, [kind])?;
        Ok(())
    }

    /// Deletes acknowledged rows settled at or before `settled_before_ms`; on a full disk
    /// every acknowledged row, and the WAL is truncated to hand the space back.
    pub fn prune(&mut self, settled_before_ms: i64) -> Result<usize, StoreError> {
        let before = if self.disk.is_full() {
            i64::MAX
        } else {
            settled_before_ms
        };
        self.conn
            .execute(mark::NOTE_HIGH_ROW, [])
            .map_err(self.err())?;
        let n = self.conn.execute(PRUNE, [before]).map_err(self.err())?;
        if n > 0 && self.disk.is_full() {
            tracing::warn!(rows = n, "disk full: acknowledged rows pruned early");
            self.truncate_wal();
            self.disk.look_now();
        }
        Ok(n)
    }

    /// Records the last sync error (`None` clears it).
    pub fn set_last_error(&mut self, error: Option<&str>) -> Result<(), StoreError> {
        match error {
            Some(e) => self.conn.execute(SET_META, params!["last_error", e]),
            None => self
                .conn
                .execute("DELETE FROM meta WHERE key = 'last_error'", []),
        }
        .map(|_| ())
        .map_err(self.err())
    }

    /// The highest record sequence stored for a device (capture resumes after it).
    pub fn high_water(&self, device_address: &str) -> Result<Option<u32>, StoreError> {
        self.conn
            .query_row(HIGH_WATER, [device_address], |r| r.get::<_, Option<u32>>(0))
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }

    /// The status for `tm-gateway status` and the heartbeat.
    pub fn status(&self) -> Result<OutboxStatus, StoreError> {
        let mut status = schema::status(&self.conn, self.quota_bytes).map_err(self.err())?;
        // Leases are in memory: the database counts their rows as pending.
        let leased = u64::try_from(self.leased_count()).unwrap_or(u64::MAX);
        status.leased = leased;
        status.pending = status.pending.saturating_sub(leased);
        Ok(status)
    }

    /// The state of one reading (tests and diagnostics: it scans the key index).
    pub fn row_state(&self, reading_id: &str) -> Result<Option<RowState>, StoreError> {
        let hash = key::id_hash(reading_id).unwrap_or_default();
        self.conn
            .query_row(
                "SELECT id, state FROM readings WHERE substr(reading_key, 9) = ?1",
                [&hash[..]],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map(|s| {
                s.map(|(id, s)| match s {
                    0 if self.is_leased(id) => RowState::Leased,
                    0 => RowState::Pending,
                    1 => RowState::Leased,
                    2 => RowState::Acknowledged,
                    _ => RowState::Rejected,
                })
            })
            .map_err(self.err())
    }
}

/// Opens the database (moving a corrupt file aside), sets the checkpoint interval for the disk
/// reserve, and checks the outbox's identity against its mark: salvages a moved-aside file, or
/// raises `outbox-reset` when the mark shows readings this database does not have.
fn prepare(path: &Path, disk: &DiskGuard) -> Result<(Connection, OpenReport, String), StoreError> {
    let (mut conn, report) = schema::open_writer(path)?;
    let sql = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(sql)?;
    let pages =
        diskfull::autocheckpoint_pages(disk.bytes(), u64::try_from(page_size).unwrap_or(4096));
    conn.pragma_update(None, "wal_autocheckpoint", pages)
        .map_err(sql)?;
    let previous = mark::load(&mark::mark_path(path));
    let (outbox_id, created_now) = mark::identity(&conn).map_err(sql)?;
    if let Some(aside) = &report.moved_aside {
        let salvaged = super::salvage::salvage(aside, &mut conn).map_err(sql)?;
        salvage_alarm(&conn, aside, salvaged).map_err(sql)?;
    } else {
        let highest = mark::highest_row(&conn).map_err(sql)?;
        if let Some(message) = mark::judge(previous.as_ref(), &outbox_id, created_now, highest) {
            tracing::error!("{message}");
            conn.execute(RAISE, params![alarm::OUTBOX_RESET, message, now_ms()])
                .map_err(sql)?;
        }
    }
    Ok((conn, report, outbox_id))
}

/// Replaces the `database-corrupt` alarm with what the salvage of the moved-aside file got.
fn salvage_alarm(
    conn: &Connection,
    aside: &Path,
    salvaged: super::salvage::Salvaged,
) -> rusqlite::Result<()> {
    let what = if salvaged.unopenable {
        "nothing could be read from it: readings in it that were not yet sent are lost".to_owned()
    } else {
        format!(
            "{} readings not yet sent were recovered from it and will be sent; {} rows could not \
             be read",
            salvaged.recovered, salvaged.unreadable
        )
    };
    let message = format!(
        "the outbox database was unreadable at start; it was moved to {} for inspection and a \
         fresh outbox opened: {what}.",
        aside.display()
    );
    tracing::error!(
        recovered = salvaged.recovered,
        unreadable = salvaged.unreadable,
        "corrupt outbox salvaged"
    );
    conn.execute(
        "INSERT OR REPLACE INTO alarms (kind, message, raised_at_ms) VALUES (?1, ?2, ?3)",
        params![alarm::DATABASE_CORRUPT, message, now_ms()],
    )?;
    Ok(())
}

/// Bytes a stashed item is expected to take on disk (payload plus row overhead).
fn stashed_size(item: &Stashable) -> usize {
    match item {
        Stashable::Reading(r) => 400 + r.raw.len() * 2 + r.components.len() * 80,
        Stashable::Quarantined(q) => 200 + q.raw.len() + q.error.len(),
    }
}
