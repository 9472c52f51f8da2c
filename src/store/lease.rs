//! Leasing batches and settling them from receipts. Leases live in memory only.
//!
//! A lease picks pending rows (a few newest first, then the oldest) for one shipment under a
//! fresh batch id, and writes nothing: which rows are in flight is known only to the running
//! agent ([`Leases`]). A lease is lost with the process anyway (a batch in flight when the agent
//! died is sent again and de-duplicated by the provider), so recording it in the database would
//! only cost writes: two row updates per reading shipped, and on a full disk the writes that
//! could not be made. Only a receipt changes a row (to acknowledged or rejected).
//!
//! A receipt names reading ids, and the table is keyed by an order in front of the id's hash
//! ([`super::key`]): a row cannot be found from its id alone without a scan. So a lease keeps
//! the row ids of its readings and a receipt settles them by row id: the rows of one batch are
//! neighbours in the table, and a batch settles by rewriting a few contiguous pages. The
//! row's hash is still compared in the update. Readings a receipt names that are not found
//! that way (a receipt for a batch leased before a restart or released long ago, a duplicate
//! receipt) are looked for in one scan of the key index (40 bytes a row), so the outcome is the
//! same either way; such receipts are rare, the scan is done at most once per receipt.
//!
//! A reading the receipt names as a duplicate (the provider already had it for this gateway's
//! session) is also in `accepted` and settles as acknowledged; [`SettleOutcome::duplicates`]
//! counts them so the sync log can say how many were sent twice. On a full disk an acknowledged
//! row is deleted at once instead of updated ([`super::diskfull`]): that frees pages instead of
//! writing them.
//!
//! Receipt bookkeeping commits with `synchronous=NORMAL` (see [`Outbox::relaxed`]).

use std::collections::{HashMap, HashSet, VecDeque};

use rusqlite::params;
use tm_protocol::{BatchId, Receipt};

use super::outbox::SET_META;
use super::{Outbox, StoreError, key, mark, now_ms};

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
/// through a scan of the key index.
const REMEMBERED_RELEASES: usize = 128;

/// A batch's rows: (short hash of the reading id, row id), sorted by hash (16 bytes a row).
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

    /// Settled rows are in flight nowhere any more, whichever receipt settled them (a late
    /// receipt of a released batch, or one naming a reading that was pruned, stored again and
    /// leased): no batch keeps them, so releasing that batch later cannot touch a row id that
    /// pruning freed and a new reading took.
    fn settled(&mut self, rows: &[i64]) {
        if rows.is_empty() {
            return;
        }
        let rows: HashSet<i64> = rows.iter().copied().collect();
        self.leased.retain(|id| !rows.contains(id));
        for batch in self.in_flight.values_mut() {
            batch.retain(|(_, id)| !rows.contains(id));
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

/// The row of the reading with hash `hash` among a lease's rows (a short-hash match; the
/// update checks the whole hash).
fn row_of(rows: &[(u64, i64)], hash: &[u8]) -> Option<i64> {
    let short = key::short_hash(hash);
    let i = rows.partition_point(|(k, _)| *k < short);
    rows.get(i)
        .filter(|(k, _)| *k == short)
        .map(|(_, row)| *row)
}

const NEWEST_PENDING: &str =
    "SELECT id, reading_key, payload FROM readings WHERE state = 0 ORDER BY id DESC LIMIT ?1";
const OLDEST_PENDING: &str =
    "SELECT id, reading_key, payload FROM readings WHERE state = 0 AND id >= ?1 ORDER BY id ASC";
/// Every row's id and key, from the key index alone: where a receipt's unmatched ids are found.
const ALL_KEYS: &str = "SELECT id, reading_key FROM readings INDEXED BY readings_key";
const ACKNOWLEDGE_ROW: &str = "UPDATE readings SET state = 2, settled_at_ms = ?3 \
    WHERE id = ?1 AND substr(reading_key, 9) = ?2 AND state = 0";
/// On a full disk, acknowledged rows go at once (the retention window is waived there).
const DELETE_ACKNOWLEDGED_ROW: &str =
    "DELETE FROM readings WHERE id = ?1 AND substr(reading_key, 9) = ?2 AND state = 0";
const REJECT_ROW: &str = "UPDATE readings SET state = 3, settled_at_ms = ?3, reason = ?4 \
    WHERE id = ?1 AND substr(reading_key, 9) = ?2 AND state = 0";
const REJECT_BY_ROW: &str =
    "UPDATE readings SET state = 3, settled_at_ms = ?2, reason = ?3 WHERE id = ?1 AND state = 0";

/// JSON bytes of the envelope around the readings (ids, time, brackets), generously counted.
const ENVELOPE_BYTES: usize = 512;

/// Rows picked for a batch: (row id, hash of the reading id, payload).
type Picked = Vec<(i64, u64, Vec<u8>)>;

impl Outbox {
    /// Leases the next batch, or `None` when nothing is pending. Reads only.
    pub fn lease(&mut self, limits: LeaseLimits) -> Result<Option<LeasedBatch>, StoreError> {
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
                    let short = key::short_hash(key::hash_of_key(row.get_ref(1)?.as_blob()?));
                    picked.push((id, short, payload));
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

    /// Settles the receipt's readings: by row id for the rows of its lease (`rows`), the
    /// others found in one scan of the key index. A row settled that way may be in flight in
    /// another batch (a reading pruned, stored again and leased, then named by a late receipt):
    /// it leaves that lease.
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
        let duplicates: HashSet<[u8; 32]> = receipt
            .duplicates
            .iter()
            .filter_map(|id| key::id_hash(id.as_str()))
            .collect();
        // What the receipt says of each reading: `None` accepted, `Some(reason)` rejected.
        let named = receipt.accepted.iter().map(|id| (id.as_str(), None)).chain(
            receipt
                .rejected
                .iter()
                .map(|r| (r.reading_id.as_str(), Some(r.reason.as_str()))),
        );
        let tx = self.conn.transaction().map_err(&err)?;
        let mut out = SettleOutcome::default();
        let mut settled_rows: Vec<i64> = Vec::new();
        {
            if evict {
                tx.execute(mark::NOTE_HIGH_ROW, []).map_err(&err)?;
            }
            let accept_sql = if evict {
                DELETE_ACKNOWLEDGED_ROW
            } else {
                ACKNOWLEDGE_ROW
            };
            let mut accept = tx.prepare_cached(accept_sql).map_err(&err)?;
            let mut reject = tx.prepare_cached(REJECT_ROW).map_err(&err)?;
            let mut settle = |row: i64, hash: &[u8], reason: Option<&str>| match reason {
                None if evict => accept.execute(params![row, hash]),
                None => accept.execute(params![row, hash, now]),
                Some(reason) => reject.execute(params![row, hash, now, reason]),
            };
            let mut count = |hash: &[u8; 32], reason: Option<&str>, n: usize| {
                if reason.is_some() {
                    out.rejected += n;
                } else {
                    out.acknowledged += n;
                    if duplicates.contains(hash) {
                        out.duplicates += n;
                    }
                }
            };
            let trail = |id: &str, reason: Option<&str>, settled: usize| {
                let batch = &receipt.batch_id;
                match reason {
                    None => {
                        tracing::debug!(%batch, reading_id = id, settled, "reading acknowledged")
                    }
                    Some(_) => {
                        tracing::debug!(%batch, reading_id = id, settled, "reading rejected")
                    }
                }
            };
            let mut unmatched: HashMap<[u8; 32], (&str, Option<&str>)> = HashMap::new();
            for (id, reason) in named {
                let Some(hash) = key::id_hash(id) else {
                    continue;
                };
                let n = match row_of(rows, &hash) {
                    Some(row) => {
                        let n = settle(row, &hash, reason).map_err(&err)?;
                        if n > 0 {
                            settled_rows.push(row);
                        }
                        n
                    }
                    None => 0,
                };
                if n > 0 {
                    trail(id, reason, n);
                    count(&hash, reason, n);
                } else {
                    unmatched.insert(hash, (id, reason));
                }
            }
            if !unmatched.is_empty() {
                let mut found = Vec::new();
                let mut scan = tx.prepare_cached(ALL_KEYS).map_err(&err)?;
                let mut keys = scan.query([]).map_err(&err)?;
                while found.len() < unmatched.len()
                    && let Some(r) = keys.next().map_err(&err)?
                {
                    let stored = r.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(&err)?;
                    if let Ok(hash) = <[u8; 32]>::try_from(key::hash_of_key(stored))
                        && unmatched.contains_key(&hash)
                    {
                        found.push((r.get::<_, i64>(0).map_err(&err)?, hash));
                    }
                }
                drop(keys);
                for (row, hash) in found {
                    let Some((id, reason)) = unmatched.get(&hash).copied() else {
                        continue;
                    };
                    let n = settle(row, &hash, reason).map_err(&err)?;
                    if n > 0 {
                        trail(id, reason, n);
                        unmatched.remove(&hash);
                        settled_rows.push(row);
                        count(&hash, reason, n);
                    }
                }
                for (id, reason) in unmatched.values() {
                    trail(id, *reason, 0);
                }
            }
            tx.execute(
                SET_META,
                params!["last_sync_at", chrono::Utc::now().to_rfc3339()],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        self.leases.settled(&settled_rows);
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
    BatchId::new(format!("b{first_row}-{}", hex::encode(rnd))).expect("batch id is a slug")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(name: &str) -> BatchId {
        BatchId::new(name).unwrap()
    }

    #[test]
    fn rows_are_found_by_reading_id_hash() {
        let hash = |b: u8| [b; 32];
        let short = |b: u8| key::short_hash(&hash(b));
        let mut leases = Leases::default();
        leases.start(
            batch("b1-00"),
            vec![(short(0xaa), 10), (short(0x0b), 11), (short(0xc0), 12)],
        );
        assert!(leases.is_leased(11));
        let rows = leases.take(&batch("b1-00"));
        assert_eq!(row_of(&rows, &hash(0x0b)), Some(11));
        assert_eq!(row_of(&rows, &hash(0xaa)), Some(10));
        assert_eq!(row_of(&rows, &hash(0x77)), None);
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
