//! The ingest tables: `readings` (one row per session and `reading_id`: the UNIQUE key keeps a
//! reading once per session, so the same id under another session is another patient's
//! reading and is stored there; the key is ordered by [`record_order`]) and
//! `gateway_heartbeats`.
//!
//! Times the gateway sends are checked against the provider's clock: a reading received
//! before the gateway's enrollment or more than [`FUTURE_SKEW_MS`] ahead of the provider's
//! clock is rejected in the receipt (the gateway's clock was wrong when it received it); a
//! device time (`effective_time`) far in the future is stored, like a device time far in the
//! past, because it is what the device measured and its `time_quality` says how far it can be
//! trusted, and counted in the batch's log line.
//!
//! A heartbeat replaces the gateway's stored one unless it was sent before it (by the
//! gateway's clock) and within [`REORDER_WINDOW_US`] of it: such a heartbeat arrived late and
//! changes nothing. One sent much earlier than the stored one means the gateway's clock was set
//! back, and is taken.

use chrono::Utc;
use serde_json::value::RawValue;
use tm_protocol::received::ReceivedBatch;
use tm_protocol::{GatewayId, Heartbeat, Reading, ReadingBatch, Receipt};

use super::{Backend, Store, StoreError, postgres, sqlite};

/// How much older than the stored heartbeat a late one may be and still be taken as late (not
/// as a clock set back): ten minutes, ten heartbeat intervals.
pub const REORDER_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// How far ahead of the provider's clock a gateway's receive time may be. Gateways keep their
/// clock with NTP and the provider too, so a few seconds is normal; ten minutes also covers a
/// gateway that has not synchronised yet since boot. A reading received later than that cannot
/// have been received yet: the gateway's clock is wrong, and stored it would sort after every
/// real reading of the session and end its monitoring period in the future.
pub const FUTURE_SKEW_MS: i64 = 10 * 60 * 1000;

/// Clock skew tolerated between the gateway's receive time and its enrollment.
pub const ENROLLMENT_SKEW_MS: i64 = 5 * 60 * 1000;

/// The receipt's reason for a reading received in the future.
pub const RECEIVED_IN_FUTURE: &str = "received in the future: the gateway's clock was \
    more than 10 minutes ahead of the provider's when it received the reading";

/// Why a reading of a batch is refused, if it is: received before its gateway was enrolled on
/// the session (`enrolled_ms`, with [`ENROLLMENT_SKEW_MS`] of slack), or after `future_ms` (the
/// provider's clock plus [`FUTURE_SKEW_MS`]). The same rule on both backends.
pub(crate) fn refusal(
    r: &tm_protocol::Reading,
    enrolled_ms: i64,
    future_ms: i64,
) -> Option<tm_protocol::Rejection> {
    let received = r.received_at.timestamp_millis();
    let reason = if received < enrolled_ms.saturating_sub(ENROLLMENT_SKEW_MS) {
        "outside the gateway's session: received before the gateway was enrolled on it"
    } else if received > future_ms {
        RECEIVED_IN_FUTURE
    } else {
        return None;
    };
    Some(tm_protocol::Rejection {
        reading_id: r.reading_id.clone(),
        reason: reason.into(),
    })
}

/// Where a reading sorts among its device's records, in seconds: the device's own timestamp
/// (its wall time read as UTC) when the reading has one, else its record sequence number, else
/// the gateway's receive time. The store's key is (session, this order, reading id) rather than
/// (session, reading id): a reading id is a hash, and a key that starts with it puts every new
/// row on a random page of the index, where an order puts a device's new records on its last
/// pages (a group commit then writes a few index pages instead of one per reading).
///
/// De-duplication is the same: the order is made of the fields the reading id hashes (the
/// payload's timestamp or sequence number, the receive time only when the payload has neither),
/// so a record sent again has the same id and the same order, and the key still refuses it.
/// Migrations 14 (SQLite) and 3 (PostgreSQL) compute it in SQL for the rows stored before, to
/// the same second.
pub fn record_order(r: &Reading) -> i64 {
    r.device_time
        .map(|t| t.and_utc().timestamp())
        .or(r.sequence.map(i64::from))
        .unwrap_or_else(|| r.received_at.timestamp())
}

/// A verified batch waiting to be committed.
#[derive(Debug)]
pub struct BatchJob {
    /// The signer, already checked to be the gateway the batch names.
    pub gateway: GatewayId,
    /// The session (`telemonitoring_id`) the gateway was bound to at lookup; checked again in
    /// the commit's transaction, so a gateway unbound meanwhile gets its batch refused.
    pub session: String,
    /// The decoded batch, its signature already verified.
    pub batch: ReadingBatch,
    /// `texts[i]` is what the `payload` column stores for `batch.readings[i]`: the JSON text
    /// the gateway signed, as received ([`tm_protocol::received`]). Nothing is encoded again
    /// at the commit: the single writer only checks and inserts.
    pub texts: Vec<Box<RawValue>>,
}

impl BatchJob {
    /// A batch as received from `gateway`, bound to `session`.
    pub fn received(gateway: GatewayId, session: String, received: ReceivedBatch) -> Self {
        Self {
            gateway,
            session,
            batch: received.batch,
            texts: received.texts,
        }
    }

    /// A batch built in process (tools, tests): each reading's text is its encoding.
    pub fn encoded(gateway: GatewayId, session: String, batch: ReadingBatch) -> Self {
        let texts = batch
            .readings
            .iter()
            .map(|r| {
                serde_json::value::to_raw_value(r).expect("protocol messages always serialize")
            })
            .collect();
        Self {
            gateway,
            session,
            batch,
            texts,
        }
    }

    /// The batch's readings, each with the text its row stores.
    pub(crate) fn readings(&self) -> impl Iterator<Item = (&Reading, &str)> {
        self.batch
            .readings
            .iter()
            .zip(self.texts.iter().map(|t| t.get()))
    }
}

/// What committing one batch stored.
#[derive(Debug)]
pub struct Stored {
    /// The receipt to sign: every reading in `accepted` (new or already stored) or `rejected`,
    /// never both; `duplicates` is the part of `accepted` the session already had.
    pub receipt: Receipt,
    /// Readings newly stored: `accepted` minus `duplicates`.
    pub inserted: usize,
    /// Of the readings newly stored, those whose device time is more than [`FUTURE_SKEW_MS`]
    /// ahead of the provider's clock (stored anyway, only logged).
    pub device_time_ahead: usize,
}

/// What committing one batch gave, or why the gateway's readings are no longer taken.
pub type BatchOutcome = Result<Stored, &'static str>;

impl Store {
    /// Inserts the batches in one transaction (one fsync for all of them) and commits; the
    /// outcomes are in the order of `jobs`. Per batch: the gateway must still be bound to its
    /// session and the session not ended; per reading: refused when received before the
    /// gateway's enrollment or in the future, otherwise stored unless the session already
    /// has it. Nothing is answered before this returns.
    pub async fn commit_reading_batches(
        &self,
        jobs: Vec<BatchJob>,
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::readings::commit_batches(pg, &jobs).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::readings::commit_batches(c, &jobs))
                    .await
            }
        }
    }

    /// Stores a verified heartbeat as the gateway's latest and, when it was taken, what it
    /// changes for operations, in one transaction; false when it arrived after a newer one
    /// and changed nothing.
    pub async fn save_heartbeat(&self, heartbeat: Heartbeat) -> Result<bool, StoreError> {
        // To the microsecond, as both backends keep it (the audit entries' time among others).
        let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        match &self.backend {
            Backend::Postgres(pg) => postgres::readings::save_heartbeat(pg, &heartbeat, now).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::readings::save_heartbeat(c, &heartbeat, now))
                    .await
            }
        }
    }

    /// Records a gateway's signed MQTT status (`online`, or its last-will `offline`) received
    /// at `now`; false when it belongs to an older connection than the latest status stored.
    pub async fn record_gateway_status(
        &self,
        status: tm_protocol::Status,
        now: chrono::DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::fleet::record_status(pg, &status, now).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::fleet::record_status(c, &status, now))
                    .await
            }
        }
    }
}
