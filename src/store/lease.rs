//! Leasing batches and settling them from receipts.
//!
//! A lease picks pending rows (a few newest first, then the oldest) and marks them leased under
//! a fresh batch id. A receipt names reading ids; finding a row by its id goes through the
//! UNIQUE index on `reading_id`, and since ids are hashes every lookup lands on a random page of
//! a large index. So the outbox remembers the row ids of its recent leases ([`LeaseBook`]) and
//! settles a receipt's rows by row id: the rows of one batch are neighbours in the table, and a
//! batch settles by rewriting a few contiguous pages. The row's `reading_id` is still compared
//! in the update, and anything not found that way (a receipt for a batch leased before a
//! restart, a duplicate receipt) falls back to the lookup by `reading_id`, so the outcome is the
//! same either way.
//!
//! A reading the receipt names as a duplicate (the provider already had it for this gateway's
//! session) is also in `accepted` and settles as acknowledged; [`SettleOutcome::duplicates`]
//! counts them so the sync log can say how many were sent twice.
//!
//! Lease and receipt bookkeeping commits with `synchronous=NORMAL` (see [`Outbox::relaxed`]).

use std::collections::VecDeque;
use std::hash::{Hash as _, Hasher as _};

use rusqlite::params;
use tm_protocol::{BatchId, Receipt};

use super::outbox::SET_META;
use super::{Outbox, StoreError, now_ms};

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
    /// Of the rows newly acknowledged, those the provider already had (a reading sent twice:
    /// the receipt names it as a duplicate). Settled like the others.
    pub duplicates: usize,
}

/// Leases remembered for settling by row id; older ones are forgotten (their receipts settle
/// through the `reading_id` index). Bounded: above the most batches in flight.
const REMEMBERED_LEASES: usize = 128;

/// The row ids of recent leases, keyed by a hash of each reading id (16 bytes a row).
#[derive(Debug, Default)]
pub(super) struct LeaseBook {
    leases: VecDeque<(BatchId, Vec<(u64, i64)>)>,
}

impl LeaseBook {
    fn remember(&mut self, batch: BatchId, mut rows: Vec<(u64, i64)>) {
        rows.sort_unstable();
        if self.leases.len() >= REMEMBERED_LEASES {
            self.leases.pop_front();
        }
        self.leases.push_back((batch, rows));
    }

    fn take(&mut self, batch: &BatchId) -> Vec<(u64, i64)> {
        match self.leases.iter().position(|(b, _)| b == batch) {
            Some(i) => self
                .leases
                .remove(i)
                .map(|(_, rows)| rows)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

fn id_hash(reading_id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    reading_id.hash(&mut h);
    h.finish()
}

/// The row of `reading_id` among a lease's rows (a hash match; the update checks the id).
fn row_of(rows: &[(u64, i64)], reading_id: &str) -> Option<i64> {
    let key = id_hash(reading_id);
    let i = rows.partition_point(|(k, _)| *k < key);
    rows.get(i).filter(|(k, _)| *k == key).map(|(_, row)| *row)
}

const NEWEST_PENDING: &str =
    "SELECT id, reading_id, payload FROM readings WHERE state = 0 ORDER BY id DESC LIMIT ?1";
const OLDEST_PENDING: &str =
    "SELECT id, reading_id, payload FROM readings WHERE state = 0 ORDER BY id ASC LIMIT ?1";
const MARK_LEASED: &str =
    "UPDATE readings SET state = 1, batch_id = ?2, attempts = attempts + 1 WHERE id = ?1";
const ACKNOWLEDGE_ROW: &str = "UPDATE readings SET state = 2, settled_at_ms = ?3, \
    batch_id = NULL WHERE id = ?1 AND reading_id = ?2 AND state IN (0, 1)";
const ACKNOWLEDGE: &str = "UPDATE readings SET state = 2, settled_at_ms = ?2, batch_id = NULL \
    WHERE reading_id = ?1 AND state IN (0, 1)";
const REJECT_ROW: &str = "UPDATE readings SET state = 3, settled_at_ms = ?3, reason = ?4, \
    batch_id = NULL WHERE id = ?1 AND reading_id = ?2 AND state IN (0, 1)";
const REJECT_ONE: &str = "UPDATE readings SET state = 3, settled_at_ms = ?2, reason = ?3, \
    batch_id = NULL WHERE reading_id = ?1 AND state IN (0, 1)";
const REJECT_BATCH: &str = "UPDATE readings SET state = 3, settled_at_ms = ?2, reason = ?3, \
    batch_id = NULL WHERE batch_id = ?1 AND state = 1";
const RELEASE_BATCH: &str =
    "UPDATE readings SET state = 0, batch_id = NULL WHERE batch_id = ?1 AND state = 1";
const RELEASE_ALL: &str = "UPDATE readings SET state = 0, batch_id = NULL WHERE state = 1";

/// JSON bytes of the envelope around the readings (ids, time, brackets), generously counted.
const ENVELOPE_BYTES: usize = 512;

impl Outbox {
    /// Leases the next batch, or `None` when nothing is pending.
    pub fn lease(&mut self, limits: LeaseLimits) -> Result<Option<LeasedBatch>, StoreError> {
        if self.stale_leases {
            self.release_all()?;
            self.stale_leases = false;
        }
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
        // (row id, hash of the reading id, payload)
        let mut picked: Vec<(i64, u64, Vec<u8>)> = Vec::new();
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
                    let payload: Vec<u8> = row.get(2)?;
                    if bytes + payload.len() + 1 > limits.max_bytes && !picked.is_empty() {
                        break;
                    }
                    bytes += payload.len() + 1;
                    let key = id_hash(row.get_ref(1)?.as_str()?);
                    picked.push((id, key, payload));
                }
                Ok(())
            };
            take(NEWEST_PENDING, limits.live_lane.min(limits.max_readings)).map_err(&err)?;
            take(OLDEST_PENDING, limits.max_readings).map_err(&err)?;
        }
        if picked.is_empty() {
            return Ok(None);
        }
        picked.sort_unstable_by_key(|(id, _, _)| *id);
        let batch_id = new_batch_id(picked[0].0);
        {
            let mut mark = tx.prepare(MARK_LEASED).map_err(&err)?;
            for (id, _, _) in &picked {
                mark.execute(params![id, batch_id.as_str()]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        let rows = picked.iter().map(|(id, key, _)| (*key, *id)).collect();
        self.leases.remember(batch_id.clone(), rows);
        Ok(Some(LeasedBatch {
            batch_id,
            readings: picked.into_iter().map(|(_, _, p)| p).collect(),
        }))
    }

    /// Applies a verified receipt. Idempotent: a receipt seen twice changes nothing the second
    /// time, and a late receipt settles rows even after they were released.
    pub fn settle(&mut self, receipt: &Receipt) -> Result<SettleOutcome, StoreError> {
        self.relaxed(|o| o.settle_inner(receipt))
    }

    fn settle_inner(&mut self, receipt: &Receipt) -> Result<SettleOutcome, StoreError> {
        let now = now_ms();
        let rows = self.leases.take(&receipt.batch_id);
        let path = self.path.clone();
        let err = move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&err)?;
        let mut out = SettleOutcome::default();
        let duplicates: std::collections::HashSet<&str> =
            receipt.duplicates.iter().map(|id| id.as_str()).collect();
        {
            let mut ack_row = tx.prepare(ACKNOWLEDGE_ROW).map_err(&err)?;
            let mut ack = tx.prepare(ACKNOWLEDGE).map_err(&err)?;
            for id in &receipt.accepted {
                let id = id.as_str();
                let by_row = match row_of(&rows, id) {
                    Some(row) => ack_row.execute(params![row, id, now]).map_err(&err)?,
                    None => 0,
                };
                let n = match by_row {
                    0 => ack.execute(params![id, now]).map_err(&err)?,
                    n => n,
                };
                out.acknowledged += n;
                if duplicates.contains(id) {
                    out.duplicates += n;
                }
            }
            let mut reject_row = tx.prepare(REJECT_ROW).map_err(&err)?;
            let mut reject = tx.prepare(REJECT_ONE).map_err(&err)?;
            for r in &receipt.rejected {
                let id = r.reading_id.as_str();
                let by_row = match row_of(&rows, id) {
                    Some(row) => reject_row
                        .execute(params![row, id, now, r.reason])
                        .map_err(&err)?,
                    None => 0,
                };
                out.rejected += match by_row {
                    0 => reject.execute(params![id, now, r.reason]).map_err(&err)?,
                    n => n,
                };
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

    /// Puts a batch's rows back to pending (send failed, no receipt in time). The lease stays
    /// remembered: a receipt arriving late still settles its rows.
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
        self.leases.take(batch_id);
        self.conn
            .execute(REJECT_BATCH, params![batch_id.as_str(), now_ms(), reason])
            .map_err(self.err())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_found_by_reading_id_hash() {
        let mut book = LeaseBook::default();
        let batch = BatchId::new("b1-00").unwrap();
        book.remember(
            batch.clone(),
            vec![(id_hash("a"), 10), (id_hash("b"), 11), (id_hash("c"), 12)],
        );
        let rows = book.take(&batch);
        assert_eq!(row_of(&rows, "b"), Some(11));
        assert_eq!(row_of(&rows, "a"), Some(10));
        assert_eq!(row_of(&rows, "z"), None);
        assert!(book.take(&batch).is_empty(), "a lease is taken once");
    }

    #[test]
    fn the_book_forgets_the_oldest_leases() {
        let mut book = LeaseBook::default();
        for i in 0..=REMEMBERED_LEASES {
            book.remember(BatchId::new(format!("b{i}-00")).unwrap(), vec![(1, 1)]);
        }
        assert!(book.take(&BatchId::new("b0-00").unwrap()).is_empty());
        assert_eq!(book.take(&BatchId::new("b1-00").unwrap()), vec![(1, 1)]);
    }
}
