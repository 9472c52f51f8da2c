//! [`Outbox`]: the synchronous operations on the outbox database. Owned by the writer thread
//! ([`super::writer`]); every method is one transaction.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::{BatchId, Receipt};

use super::schema::{self, OpenReport};
use super::{OutboxStatus, QUOTA_ALARM_PERCENT, RowState, StoreError, alarm, now_ms};
use crate::stash::{StashError, StashOutcome, Stashable};

/// Bounds of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseLimits {
    /// Most readings in one batch.
    pub max_readings: usize,
    /// Most bytes of reading JSON in one batch (the frame adds a small envelope).
    pub max_bytes: usize,
    /// Readings taken newest-first (the live lane) before the oldest-first backlog fills the
    /// rest, so a reading just taken is not stuck behind a week of backlog.
    pub live_lane: usize,
}

/// Readings leased for one shipment, in capture order (per-device order kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedBatch {
    /// The batch id (also the HTTP `Idempotency-Key`).
    pub batch_id: BatchId,
    /// Each reading's JSON exactly as stored.
    pub readings: Vec<Vec<u8>>,
}

/// What a receipt changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SettleOutcome {
    /// Rows newly acknowledged.
    pub acknowledged: usize,
    /// Rows newly rejected.
    pub rejected: usize,
}

/// The outbox database, opened for writing.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    quota_bytes: u64,
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
const NEWEST_PENDING: &str =
    "SELECT id, payload FROM readings WHERE state = 0 ORDER BY id DESC LIMIT ?1";
const OLDEST_PENDING: &str =
    "SELECT id, payload FROM readings WHERE state = 0 ORDER BY id ASC LIMIT ?1";
const MARK_LEASED: &str =
    "UPDATE readings SET state = 1, batch_id = ?2, attempts = attempts + 1 WHERE id = ?1";
const ACKNOWLEDGE: &str = "UPDATE readings SET state = 2, settled_at_ms = ?2, batch_id = NULL \
    WHERE reading_id = ?1 AND state IN (0, 1)";
const REJECT_ONE: &str = "UPDATE readings SET state = 3, settled_at_ms = ?2, reason = ?3, \
    batch_id = NULL WHERE reading_id = ?1 AND state IN (0, 1)";
const REJECT_BATCH: &str = "UPDATE readings SET state = 3, settled_at_ms = ?2, reason = ?3, \
    batch_id = NULL WHERE batch_id = ?1 AND state = 1";
const RELEASE_BATCH: &str =
    "UPDATE readings SET state = 0, batch_id = NULL WHERE batch_id = ?1 AND state = 1";
const RELEASE_ALL: &str = "UPDATE readings SET state = 0, batch_id = NULL WHERE state = 1";
const PRUNE: &str = "DELETE FROM readings WHERE state = 2 AND settled_at_ms <= ?1";
const EVICT_ACKNOWLEDGED: &str = "DELETE FROM readings WHERE state = 2";
const SET_META: &str = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)";
const RAISE: &str =
    "INSERT OR IGNORE INTO alarms (kind, message, raised_at_ms) VALUES (?1, ?2, ?3)";
const CLEAR: &str = "DELETE FROM alarms WHERE kind = ?1";
const HIGH_WATER: &str = "SELECT last_sequence FROM device_marks WHERE device_address = ?1";

/// JSON bytes of the envelope around the readings (ids, time, brackets), generously counted.
const ENVELOPE_BYTES: usize = 512;

impl Outbox {
    /// Opens (or creates) the outbox at `path`, resets leases left by a previous run.
    pub fn open(path: &Path, quota_bytes: u64) -> Result<(Self, OpenReport), StoreError> {
        let (conn, report) = schema::open_writer(path)?;
        let outbox = Self {
            conn,
            path: path.to_path_buf(),
            quota_bytes,
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

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
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

    /// Leases the next batch, or `None` when nothing is pending.
    pub fn lease(&mut self, limits: LeaseLimits) -> Result<Option<LeasedBatch>, StoreError> {
        self.relaxed(|o| o.lease_inner(limits))
    }

    /// Runs `f` with `synchronous=NORMAL`: for lease and receipt bookkeeping only. Losing such a
    /// commit in a power cut is harmless (leases are reset at start; an unrecorded receipt means
    /// the rows are sent again and the provider de-duplicates them); readings themselves are
    /// always committed with `FULL`.
    fn relaxed<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(self.err())?;
        let result = f(self);
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(self.err())?;
        result
    }

    fn lease_inner(&mut self, limits: LeaseLimits) -> Result<Option<LeasedBatch>, StoreError> {
        let path = self.path.clone();
        let err = move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&err)?;
        let mut picked: Vec<(i64, Vec<u8>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut bytes = ENVELOPE_BYTES;
        {
            let mut take = |sql: &str, limit: usize| -> rusqlite::Result<()> {
                let mut stmt = tx.prepare(sql)?;
                let mut rows = stmt.query([i64::try_from(limit).unwrap_or(i64::MAX)])?;
                while let Some(row) = rows.next()? {
                    let id: i64 = row.get(0)?;
                    if picked.len() >= limits.max_readings {
                        break;
                    }
                    if !seen.insert(id) {
                        continue;
                    }
                    let payload: Vec<u8> = row.get(1)?;
                    if bytes + payload.len() + 1 > limits.max_bytes && !picked.is_empty() {
                        break;
                    }
                    bytes += payload.len() + 1;
                    picked.push((id, payload));
                }
                Ok(())
            };
            take(NEWEST_PENDING, limits.live_lane.min(limits.max_readings)).map_err(&err)?;
            take(OLDEST_PENDING, limits.max_readings).map_err(&err)?;
        }
        if picked.is_empty() {
            return Ok(None);
        }
        picked.sort_unstable_by_key(|(id, _)| *id);
        let batch_id = new_batch_id(picked[0].0);
        {
            let mut mark = tx.prepare(MARK_LEASED).map_err(&err)?;
            for (id, _) in &picked {
                mark.execute(params![id, batch_id.as_str()]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        Ok(Some(LeasedBatch {
            batch_id,
            readings: picked.into_iter().map(|(_, p)| p).collect(),
        }))
    }

    /// Applies a verified receipt. Idempotent: a receipt seen twice changes nothing the second
    /// time, and a late receipt settles rows even after they were released.
    pub fn settle(&mut self, receipt: &Receipt) -> Result<SettleOutcome, StoreError> {
        self.relaxed(|o| o.settle_inner(receipt))
    }

    fn settle_inner(&mut self, receipt: &Receipt) -> Result<SettleOutcome, StoreError> {
        let now = now_ms();
        let path = self.path.clone();
        let err = move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&err)?;
        let mut out = SettleOutcome::default();
        {
            let mut ack = tx.prepare(ACKNOWLEDGE).map_err(&err)?;
            for id in &receipt.accepted {
                out.acknowledged += ack.execute(params![id.as_str(), now]).map_err(&err)?;
            }
            let mut reject = tx.prepare(REJECT_ONE).map_err(&err)?;
            for r in &receipt.rejected {
                out.rejected += reject
                    .execute(params![r.reading_id.as_str(), now, r.reason])
                    .map_err(&err)?;
            }
            // Rows of this batch the receipt did not name go back to pending.
            tx.execute(RELEASE_BATCH, [receipt.batch_id.as_str()])
                .map_err(&err)?;
            tx.execute(
                SET_META,
                params!["last_sync_at", chrono::Utc::now().to_rfc3339()],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        Ok(out)
    }

    /// Puts a batch's rows back to pending (send failed, no receipt in time).
    pub fn release(&mut self, batch_id: &BatchId) -> Result<usize, StoreError> {
        self.conn
            .execute(RELEASE_BATCH, [batch_id.as_str()])
            .map_err(self.err())
    }

    /// Puts every leased row back to pending (start, reconnect).
    pub fn release_all(&self) -> Result<usize, StoreError> {
        self.conn.execute(RELEASE_ALL, []).map_err(self.err())
    }

    /// Marks a batch's rows rejected for good (the provider refused the whole batch).
    pub fn reject_batch(&mut self, batch_id: &BatchId, reason: &str) -> Result<usize, StoreError> {
        self.conn
            .execute(REJECT_BATCH, params![batch_id.as_str(), now_ms(), reason])
            .map_err(self.err())
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

/// A fresh batch id: the first row id and 64 random bits, so retries of different leases never
/// collide at the provider's idempotency cache.
fn new_batch_id(first_row: i64) -> BatchId {
    let mut rnd = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd)
        .expect("the system random source works");
    BatchId::new(format!("b{first_row}-{}", hex_lower(&rnd))).expect("batch id is a slug")
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
