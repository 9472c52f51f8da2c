//! Leasing batches and settling them from receipts. Leases live in memory only.
//!
//! A lease picks pending rows (a few newest first, then the oldest) for one shipment under a
//! fresh batch id, and writes nothing: which rows are in flight is known only to the running
//! agent ([`Leases`]). A lease is lost with the process anyway (a batch in flight when the agent
//! died is sent again and de-duplicated by the provider), so recording it in the database would
//! only cost writes: two row updates per reading shipped, and on a full disk the writes that
//! could not be made. Only a receipt changes a row (to acknowledged or rejected).
//!
//! A receipt names reading ids; finding a row by its id goes through the UNIQUE index on
//! `reading_id`, and since ids are hashes every lookup lands on a random page of a large index.
//! So a lease keeps the row ids of its readings and a receipt settles them by row id: the rows
//! of one batch are neighbours in the table, and a batch settles by rewriting a few contiguous
//! pages. The row's `reading_id` is still compared in the update, and anything not found that
//! way (a receipt for a batch leased before a restart, a duplicate receipt) falls back to the
//! lookup by `reading_id`, so the outcome is the same either way.
//!
//! A reading the receipt names as a duplicate (the provider already had it for this gateway's
//! session) is also in `accepted` and settles as acknowledged; [`SettleOutcome::duplicates`]
//! counts them so the sync log can say how many were sent twice. On a full disk an acknowledged
//! row is deleted at once instead of updated ([`super::diskfull`]): that frees pages instead of
//! writing them.
//!
//! Receipt bookkeeping commits with `synchronous=NORMAL` (see [`Outbox::relaxed`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash as _, Hasher as _};

use rusqlite::{OptionalExtension as _, params};
use tm_protocol::{BatchId, Receipt};

use super::outbox::SET_META;
use super::{Outbox, StoreError, mark, now_ms};

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

/// Released batches remembered so a late receipt still settles by row id; older ones settle
/// through the `reading_id` index.
const REMEMBERED_RELEASES: usize = 128;

/// A batch's rows: (hash of the reading id, row id), sorted by hash (16 bytes a row).
type Rows = Vec<(u64, i64)>;

/// The leases of this run. Invariant: every pending row with an id below `oldest_from` is in
/// `leased`, so the oldest-first scan starts there instead of stepping over the rows in flight.
#[derive(Debug, Default)]
pub(super) struct Leases {
    /// Batches in flight (sent, no receipt yet).
    in_flight: HashMap<BatchId, Rows>,
    /// Row ids of the batches in flight: not leased again until released or settled.
    leased: HashSet<i64>,
    /// Where the oldest-first scan starts.
    oldest_from: i64,
    /// Batches released without a receipt, newest last.
    released: VecDeque<(BatchId, Rows)>,
}

impl Leases {
    /// Rows in flight.
    pub(super) fn count(&self) -> usize {
        self.leased.len()
    }

    /// Whether row `id` is in flight.
    pub(super) fn is_leased(&self, id: i64) -> bool {
        self.leased.contains(&id)
    }

    /// Rows from `first_row` up may be pending and not in flight (new rows: ids are reused
    /// after the newest rows were pruned; rows a receipt did not name): the oldest-first scan
    /// must see them.
    pub(super) fn pending_from(&mut self, first_row: i64) {
        self.oldest_from = self.oldest_from.min(first_row);
    }

    /// Rows settled through another batch's receipt are no longer in flight.
    fn settled_elsewhere(&mut self, rows: &[i64]) {
        for id in rows {
            self.leased.remove(id);
        }
    }

    fn start(&mut self, batch: BatchId, mut rows: Rows) {
        rows.sort_unstable();
        self.leased.extend(rows.iter().map(|(_, id)| *id));
        self.in_flight.insert(batch, rows);
    }

    /// Ends a batch in flight: its rows may be leased again.
    fn end(&mut self, batch: &BatchId) -> Option<Rows> {
        let rows = self.in_flight.remove(batch)?;
        for (_, id) in &rows {
            self.leased.remove(id);
        }
        Some(rows)
    }

    /// The rows of `batch` for its receipt: in flight, or released not long ago.
    fn take(&mut self, batch: &BatchId) -> Rows {
        if let Some(rows) = self.end(batch) {
            return rows;
        }
        match self.released.iter().position(|(b, _)| b == batch) {
            Some(i) => self
                .released
                .remove(i)
                .map(|(_, rows)| rows)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Puts a batch's rows back to pending; its receipt may still come. Rows released.
    fn release(&mut self, batch: &BatchId) -> usize {
        let Some(rows) = self.end(batch) else {
            return 0;
        };
        if let Some(first) = first_row(&rows) {
            self.pending_from(first);
        }
        let n = rows.len();
        if self.released.len() >= REMEMBERED_RELEASES {
            self.released.pop_front();
        }
        self.released.push_back((batch.clone(), rows));
        n
    }

    fn release_all(&mut self) -> usize {
        let batches: Vec<BatchId> = self.in_flight.keys().cloned().collect();
        batches.iter().map(|b| self.release(b)).sum()
    }
}

/// The reading id in a stored reading's JSON (for the debug trail; the JSON is ours).
fn payload_id(payload: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Id {
        reading_id: String,
    }
    serde_json::from_slice::<Id>(payload).map_or_else(|_| "?".into(), |i| i.reading_id)
}

fn first_row(rows: &[(u64, i64)]) -> Option<i64> {
    rows.iter().map(|(_, id)| *id).min()
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
    "SELECT id, reading_id, payload FROM readings WHERE state = 0 AND id >= ?1 ORDER BY id ASC";
const ACKNOWLEDGE_ROW: &str = "UPDATE readings SET state = 2, settled_at_ms = ?3 \
    WHERE id = ?1 AND reading_id = ?2 AND state = 0";
const ACKNOWLEDGE: &str = "UPDATE readings SET state = 2, settled_at_ms = ?2 \
    WHERE reading_id = ?1 AND state = 0 RETURNING id";
/// On a full disk, acknowledged rows go at once (the retention window is waived there).
const DELETE_ACKNOWLEDGED_ROW: &str =
    "DELETE FROM readings WHERE id = ?1 AND reading_id = ?2 AND state = 0";
const DELETE_ACKNOWLEDGED: &str =
    "DELETE FROM readings WHERE reading_id = ?1 AND state = 0 RETURNING id";
const REJECT_ROW: &str = "UPDATE readings SET state = 3, settled_at_ms = ?3, reason = ?4 \
    WHERE id = ?1 AND reading_id = ?2 AND state = 0";
const REJECT_ONE: &str = "UPDATE readings SET state = 3, settled_at_ms = ?2, reason = ?3 \
    WHERE reading_id = ?1 AND state = 0 RETURNING id";
const REJECT_BY_ROW: &str =
    "UPDATE readings SET state = 3, settled_at_ms = ?2, reason = ?3 WHERE id = ?1 AND state = 0";
/// Rows an earlier version left leased in the database (state 1) are pending again.
pub(super) const RESET_STORED_LEASES: &str =
    "UPDATE readings SET state = 0, batch_id = NULL WHERE state = 1";

/// JSON bytes of the envelope around the readings (ids, time, brackets), generously counted.
const ENVELOPE_BYTES: usize = 512;

/// Rows picked for a batch: (row id, hash of the reading id, payload).
type Picked = Vec<(i64, u64, Vec<u8>)>;

impl Outbox {
    /// Leases the next batch, or `None` when nothing is pending. Reads only.
    pub fn lease(&mut self, limits: LeaseLimits) -> Result<Option<LeasedBatch>, StoreError> {
        if self.stale_leases {
            self.conn
                .execute(RESET_STORED_LEASES, [])
                .map_err(self.err())?;
            self.stale_leases = false;
        }
        let picked = self.pick(limits).map_err(self.err())?;
        if picked.is_empty() {
            return Ok(None);
        }
        let batch_id = new_batch_id(picked[0].0);
        if tracing::enabled!(tracing::Level::DEBUG) {
            for (_, _, payload) in &picked {
                tracing::debug!(batch = %batch_id, reading_id = payload_id(payload), "reading leased");
            }
        }
        self.leases.start(
            batch_id.clone(),
            picked.iter().map(|(id, key, _)| (*key, *id)).collect(),
        );
        Ok(Some(LeasedBatch {
            batch_id,
            readings: picked.into_iter().map(|(_, _, p)| p).collect(),
        }))
    }

    /// Picks up to the limits of pending rows not in flight, in row order.
    fn pick(&mut self, limits: LeaseLimits) -> rusqlite::Result<Picked> {
        let mut picked: Picked = Vec::new();
        let mut seen = HashSet::new();
        let mut bytes = ENVELOPE_BYTES;
        let leases = &mut self.leases;
        // `Some(next)` when the scan stopped at row `next` (not taken), `None` when it ran out.
        let mut take =
            |rows: &mut rusqlite::Rows<'_>, quota: usize| -> rusqlite::Result<Option<i64>> {
                let mut taken = 0;
                while let Some(row) = rows.next()? {
                    let id: i64 = row.get(0)?;
                    if leases.is_leased(id) || seen.contains(&id) {
                        continue;
                    }
                    let payload: Vec<u8> = row.get(2)?;
                    if taken >= quota
                        || picked.len() >= limits.max_readings
                        || (bytes + payload.len() + 1 > limits.max_bytes && !picked.is_empty())
                    {
                        return Ok(Some(id));
                    }
                    bytes += payload.len() + 1;
                    seen.insert(id);
                    picked.push((id, id_hash(row.get_ref(1)?.as_str()?), payload));
                    taken += 1;
                }
                Ok(None)
            };
        let live = limits.live_lane.min(limits.max_readings);
        if live > 0 {
            let mut stmt = self.conn.prepare_cached(NEWEST_PENDING)?;
            // The newest rows in flight are stepped over: at most all of them.
            let limit = i64::try_from(live + leases.count()).unwrap_or(i64::MAX);
            let mut rows = stmt.query([limit])?;
            take(&mut rows, live)?;
        }
        let mut stmt = self.conn.prepare_cached(OLDEST_PENDING)?;
        let mut rows = stmt.query([leases.oldest_from])?;
        let stopped = take(&mut rows, usize::MAX)?;
        drop(rows);
        // Everything pending below where the scan stopped is now in flight.
        let top = picked.iter().map(|(id, _, _)| *id).max().unwrap_or(0);
        leases.oldest_from = match stopped {
            Some(next) => next,
            None => leases.oldest_from.max(top + 1),
        };
        picked.sort_unstable_by_key(|(id, _, _)| *id);
        Ok(picked)
    }

    /// Applies a verified receipt. Idempotent: a receipt seen twice changes nothing the second
    /// time, and a late receipt settles rows even after they were released.
    pub fn settle(&mut self, receipt: &Receipt) -> Result<SettleOutcome, StoreError> {
        let rows = self.leases.take(&receipt.batch_id);
        let result = self.relaxed(|o| o.settle_rows(receipt, &rows));
        let named = receipt.accepted.len() + receipt.rejected.len();
        if result.is_ok()
            && named < rows.len()
            && let Some(first) = first_row(&rows)
        {
            // Rows the receipt did not name are pending again.
            self.leases.pending_from(first);
        }
        if result.is_err() && !rows.is_empty() {
            // Nothing was recorded: the batch is as if released (the syncer applies the receipt
            // again later; the rows may also be sent again meanwhile).
            self.leases.start(receipt.batch_id.clone(), rows);
            self.leases.release(&receipt.batch_id);
        }
        result
    }

    /// Runs `f` with `synchronous=NORMAL`: for receipt bookkeeping only. Losing such a commit
    /// in a power cut is harmless (an unrecorded receipt means the rows are sent again and the
    /// provider de-duplicates them); readings themselves are always committed with `FULL`.
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

    /// Settles the receipt's readings: by row id for the rows of its lease (`rows`), by reading
    /// id for the others. A row settled that way may be in flight in another batch (a reading
    /// pruned, stored again and leased, then named by a late receipt): it leaves that lease.
    fn settle_rows(
        &mut self,
        receipt: &Receipt,
        rows: &[(u64, i64)],
    ) -> Result<SettleOutcome, StoreError> {
        let now = now_ms();
        let evict = self.disk.is_full();
        let path = self.path.clone();
        let err = move |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&err)?;
        let mut out = SettleOutcome::default();
        let mut by_id: Vec<i64> = Vec::new();
        let duplicates: HashSet<&str> = receipt.duplicates.iter().map(|id| id.as_str()).collect();
        {
            if evict {
                tx.execute(mark::NOTE_HIGH_ROW, []).map_err(&err)?;
            }
            let (row_sql, id_sql) = if evict {
                (DELETE_ACKNOWLEDGED_ROW, DELETE_ACKNOWLEDGED)
            } else {
                (ACKNOWLEDGE_ROW, ACKNOWLEDGE)
            };
            let mut ack_row = tx.prepare_cached(row_sql).map_err(&err)?;
            let mut ack = tx.prepare_cached(id_sql).map_err(&err)?;
            for id in &receipt.accepted {
                let id = id.as_str();
                let done = match row_of(rows, id) {
                    Some(row) if evict => ack_row.execute(params![row, id]),
                    Some(row) => ack_row.execute(params![row, id, now]),
                    None => Ok(0),
                }
                .map_err(&err)?;
                let n = if done > 0 {
                    done
                } else {
                    let found = if evict {
                        ack.query_row(params![id], |r| r.get::<_, i64>(0))
                    } else {
                        ack.query_row(params![id, now], |r| r.get::<_, i64>(0))
                    }
                    .optional()
                    .map_err(&err)?;
                    by_id.extend(found);
                    usize::from(found.is_some())
                };
                out.acknowledged += n;
                tracing::debug!(batch = %receipt.batch_id, reading_id = id, settled = n, "reading acknowledged");
                if duplicates.contains(id) {
                    out.duplicates += n;
                }
            }
            let mut reject_row = tx.prepare_cached(REJECT_ROW).map_err(&err)?;
            let mut reject = tx.prepare_cached(REJECT_ONE).map_err(&err)?;
            for r in &receipt.rejected {
                let id = r.reading_id.as_str();
                tracing::debug!(batch = %receipt.batch_id, reading_id = id, "reading rejected");
                let done = match row_of(rows, id) {
                    Some(row) => reject_row
                        .execute(params![row, id, now, r.reason])
                        .map_err(&err)?,
                    None => 0,
                };
                out.rejected += if done > 0 {
                    done
                } else {
                    let found = reject
                        .query_row(params![id, now, r.reason], |r| r.get::<_, i64>(0))
                        .optional()
                        .map_err(&err)?;
                    by_id.extend(found);
                    usize::from(found.is_some())
                };
            }
            tx.execute(
                SET_META,
                params!["last_sync_at", chrono::Utc::now().to_rfc3339()],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        self.leases.settled_elsewhere(&by_id);
        Ok(out)
    }

    /// Puts a batch's rows back to pending (send failed, no receipt in time). The lease stays
    /// remembered: a receipt arriving late still settles its rows.
    pub fn release(&mut self, batch_id: &BatchId) -> usize {
        self.leases.release(batch_id)
    }

    /// Puts every leased row back to pending (shutdown, reconnect).
    pub fn release_all(&mut self) -> usize {
        self.leases.release_all()
    }

    /// Rows in flight.
    pub fn leased_count(&self) -> usize {
        self.leases.count()
    }

    /// Whether row `id` is in flight.
    pub(super) fn is_leased(&self, id: i64) -> bool {
        self.leases.is_leased(id)
    }

    /// Marks a batch's rows rejected for good (the provider refused the whole batch). When
    /// that cannot be written the rows are released (sent again, refused again, recorded then).
    pub fn reject_batch(&mut self, batch_id: &BatchId, reason: &str) -> Result<usize, StoreError> {
        let rows = self.leases.take(batch_id);
        let now = now_ms();
        let result = (|| {
            let tx = self.conn.transaction()?;
            let mut n = 0;
            {
                let mut reject = tx.prepare_cached(REJECT_BY_ROW)?;
                for (_, id) in &rows {
                    n += reject.execute(params![id, now, reason])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })()
        .map_err(self.err());
        if result.is_err() && !rows.is_empty() {
            self.leases.start(batch_id.clone(), rows);
            self.leases.release(batch_id);
        }
        result
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

    fn batch(name: &str) -> BatchId {
        BatchId::new(name).unwrap()
    }

    #[test]
    fn rows_are_found_by_reading_id_hash() {
        let mut leases = Leases::default();
        leases.start(
            batch("b1-00"),
            vec![(id_hash("a"), 10), (id_hash("b"), 11), (id_hash("c"), 12)],
        );
        assert!(leases.is_leased(11));
        let rows = leases.take(&batch("b1-00"));
        assert_eq!(row_of(&rows, "b"), Some(11));
        assert_eq!(row_of(&rows, "a"), Some(10));
        assert_eq!(row_of(&rows, "z"), None);
        assert!(!leases.is_leased(11));
        assert!(
            leases.take(&batch("b1-00")).is_empty(),
            "a lease is taken once"
        );
    }

    #[test]
    fn a_release_lowers_the_scan_start_and_is_remembered() {
        let mut leases = Leases::default();
        leases.start(batch("b5-00"), vec![(1, 5), (2, 6)]);
        leases.oldest_from = 7;
        assert_eq!(leases.release(&batch("b5-00")), 2);
        assert_eq!(leases.oldest_from, 5);
        assert_eq!(leases.count(), 0);
        assert_eq!(
            leases.take(&batch("b5-00")).len(),
            2,
            "a late receipt finds the rows"
        );
        leases.pending_from(2);
        assert_eq!(leases.oldest_from, 2);
    }

    #[test]
    fn only_recent_releases_are_remembered() {
        let mut leases = Leases::default();
        for i in 0..=REMEMBERED_RELEASES {
            let b = batch(&format!("b{i}-00"));
            leases.start(b.clone(), vec![(1, i64::try_from(i).unwrap())]);
            leases.release(&b);
        }
        assert!(leases.take(&batch("b0-00")).is_empty());
        assert_eq!(leases.take(&batch("b1-00")), vec![(1, 1)]);
    }
}
