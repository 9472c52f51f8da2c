//! [`Outbox`]: the synchronous operations on the outbox database. Owned by the writer thread
//! ([`super::writer`]); every method is one transaction. Opening, stashing, the quota and
//! status are here; leasing and settling batches are in [`super::lease`].

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::lease::LeaseBook;
use super::schema::{self, OpenReport};
use super::{OutboxStatus, QUOTA_ALARM_PERCENT, RowState, StoreError, alarm, now_ms};
use crate::stash::{StashError, StashOutcome, Stashable};

/// The outbox database, opened for writing.
#[derive(Debug)]
pub struct Outbox {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    quota_bytes: u64,
    /// Row ids of recently leased batches, so their receipts settle rows by row id.
    pub(super) leases: LeaseBook,
}

const INSERT_READING: &str = "INSERT OR IGNORE INTO readings \
    (reading_id, device_address, received_at_ms, payload, state) VALUES (?1, ?2, ?3, ?4, 0)";
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
const EVICT_ACKNOWLEDGED: &str = "DELETE FROM readings WHERE state = 2";
pub(super) const SET_META: &str = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)";
const RAISE: &str =
    "INSERT OR IGNORE INTO alarms (kind, message, raised_at_ms) VALUES (?1, ?2, ?3)";
const CLEAR: &str = "DELETE FROM alarms WHERE kind = ?1";
const HIGH_WATER: &str = "SELECT last_sequence FROM device_marks WHERE device_address = ?1";

impl Outbox {
    /// Opens (or creates) the outbox at `path`, resets leases left by a previous run.
    pub fn open(path: &Path, quota_bytes: u64) -> Result<(Self, OpenReport), StoreError> {
        let (conn, report) = schema::open_writer(path)?;
        let outbox = Self {
            conn,
            path: path.to_path_buf(),
            quota_bytes,
            leases: LeaseBook::default(),
        };
        let released = outbox.release_all()?;
        if released > 0 {
            tracing::info!(
                stage = "outbox",
                rows = released,
                "leases from the previous run reset"
            );
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
    /// request, or a refusal for all of them when the quota is reached.
    pub fn stash(&mut self, requests: &[&[Stashable]]) -> Result<Vec<StashOutcome>, StashError> {
        let incoming: usize = requests
            .iter()
            .flat_map(|r| r.iter())
            .map(stashed_size)
            .sum();
        self.make_room(incoming)?;
        let refuse = |e: rusqlite::Error| StashError::Refused(format!("outbox write failed: {e}"));
        let tx = self.conn.transaction().map_err(refuse)?;
        let mut outcomes = Vec::with_capacity(requests.len());
        {
            let mut insert = tx.prepare(INSERT_READING).map_err(refuse)?;
            let mut mark = tx.prepare(UPSERT_MARK).map_err(refuse)?;
            let mut quarantine = tx.prepare(INSERT_QUARANTINE).map_err(refuse)?;
            for items in requests {
                let mut out = StashOutcome::default();
                for item in *items {
                    match item {
                        Stashable::Reading(r) => {
                            let payload = serde_json::to_vec(r.as_ref())
                                .map_err(|e| StashError::Refused(e.to_string()))?;
                            let received = r.received_at.timestamp_millis();
                            let n = insert
                                .execute(params![
                                    r.reading_id.as_str(),
                                    r.device.address,
                                    received,
                                    payload
                                ])
                                .map_err(refuse)?;
                            if n == 1 {
                                out.inserted += 1;
                                mark.execute(params![r.device.address, r.sequence, received])
                                    .map_err(refuse)?;
                            } else {
                                out.duplicates += 1;
                            }
                        }
                        Stashable::Quarantined(q) => {
                            quarantine
                                .execute(params![
                                    q.device_address,
                                    q.characteristic,
                                    q.raw,
                                    q.received_at.timestamp_millis(),
                                    q.error
                                ])
                                .map_err(refuse)?;
                            out.inserted += 1;
                        }
                    }
                }
                outcomes.push(out);
            }
        }
        tx.commit().map_err(refuse)?;
        Ok(outcomes)
    }

    /// Keeps disk use under the quota: raises or clears the 80 % alarm, evicts acknowledged
    /// rows when `incoming` would not fit, and refuses (with an alarm) when it still does not.
    fn make_room(&mut self, incoming: usize) -> Result<(), StashError> {
        let refuse = |e: rusqlite::Error| StashError::Refused(format!("outbox write failed: {e}"));
        let incoming = u64::try_from(incoming).unwrap_or(u64::MAX);
        let mut used = schema::used_bytes(&self.conn).map_err(refuse)?;
        if used.saturating_add(incoming) > self.quota_bytes {
            let evicted = self.conn.execute(EVICT_ACKNOWLEDGED, []).map_err(refuse)?;
            if evicted > 0 {
                tracing::warn!(
                    stage = "outbox",
                    rows = evicted,
                    "quota reached: acknowledged rows evicted early"
                );
            }
            used = schema::used_bytes(&self.conn).map_err(refuse)?;
        }
        if used.saturating_add(incoming) > self.quota_bytes {
            let message = format!(
                "outbox quota of {} bytes reached ({used} used): new readings are refused and stay \
                 on the devices; restore connectivity to the provider or raise store.quota_mb",
                self.quota_bytes
            );
            tracing::error!(
                stage = "outbox",
                used,
                quota = self.quota_bytes,
                "{message}"
            );
            self.raise(alarm::QUOTA_FULL, &message).map_err(refuse)?;
            return Err(StashError::Refused(message));
        }
        self.clear(alarm::QUOTA_FULL).map_err(refuse)?;
        let high = self.quota_bytes / 100 * QUOTA_ALARM_PERCENT;
        if used.saturating_add(incoming) > high {
            let message = format!(
                "outbox uses {used} of {} bytes (over {QUOTA_ALARM_PERCENT} %)",
                self.quota_bytes
            );
            self.raise(alarm::QUOTA_HIGH, &message).map_err(refuse)?;
        } else {
            self.clear(alarm::QUOTA_HIGH).map_err(refuse)?;
        }
        Ok(())
    }

    /// Raises (`Some(message)`) or clears (`None`) an alarm of another part of the agent.
    pub fn set_alarm(&mut self, kind: &str, message: Option<&str>) -> Result<(), StoreError> {
        match message {
            Some(m) => self.raise(kind, m),
            None => self.clear(kind),
        }
        .map_err(self.err())
    }

    fn raise(&self, kind: &str, message: &str) -> rusqlite::Result<()> {
        self.conn.execute(RAISE, params![kind, message, now_ms()])?;
        Ok(())
    }

    fn clear(&self, kind: &str) -> rusqlite::Result<()> {
        self.conn.execute(CLEAR, [kind])?;
        Ok(())
    }

    /// Deletes acknowledged rows settled at or before `settled_before_ms`.
    pub fn prune(&mut self, settled_before_ms: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(PRUNE, [settled_before_ms])
            .map_err(self.err())
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
        schema::status(&self.conn, self.quota_bytes).map_err(self.err())
    }

    /// The state of one reading (tests and diagnostics).
    pub fn row_state(&self, reading_id: &str) -> Result<Option<RowState>, StoreError> {
        self.conn
            .query_row(
                "SELECT state FROM readings WHERE reading_id = ?1",
                [reading_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|s| {
                s.map(|s| match s {
                    0 => RowState::Pending,
                    1 => RowState::Leased,
                    2 => RowState::Acknowledged,
                    _ => RowState::Rejected,
                })
            })
            .map_err(self.err())
    }
}

/// Bytes a stashed item is expected to take on disk (payload plus row overhead).
fn stashed_size(item: &Stashable) -> usize {
    match item {
        Stashable::Reading(r) => 400 + r.raw.len() * 2 + r.components.len() * 80,
        Stashable::Quarantined(q) => 200 + q.raw.len() + q.error.len(),
    }
}
