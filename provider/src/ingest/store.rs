//! The ingest tables: `readings` (one row per session and `reading_id`: the UNIQUE key of
//! migration 10 keeps a reading once per session, so the same id under another session is
//! another patient's reading and is stored there) and `gateway_heartbeats`.
//!
//! Times the gateway sends are checked against the provider's clock: a reading received
//! before the gateway's enrollment or more than [`FUTURE_SKEW_MS`] ahead of the provider's
//! clock is rejected in the receipt (the gateway's clock was wrong when it received it); a
//! device time (`effective_time`) far in the future is stored, like a device time far in the
//! past, because it is what the device measured and its `time_quality` says how far it can be
//! trusted, and counted in the batch's log line.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::{GatewayId, Heartbeat, PROTOCOL_VERSION, ReadingBatch, Receipt, Rejection};

/// Stores the reading unless the session already has it: one affected row means stored, none
/// means duplicate (the UNIQUE key on (telemonitoring_id, reading_id) decides, in the store).
const INSERT_READING: &str = "INSERT INTO readings (reading_id, gateway_id, \
    telemonitoring_id, batch_id, kind, effective_time, received_at, ingested_at, payload) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
    ON CONFLICT (telemonitoring_id, reading_id) DO NOTHING";
const SESSION_OF: &str = "SELECT s.status, g.enrolled_at FROM gateways g \
    JOIN sessions s ON s.telemonitoring_id = g.telemonitoring_id \
    WHERE g.gateway_id = ?1 AND g.telemonitoring_id = ?2";
/// Replaces the gateway's latest heartbeat unless the stored one is newer or the same: a
/// heartbeat sent before the stored one (by the gateway's clock) and within
/// [`REORDER_WINDOW_US`] of it arrived late and changes nothing. One sent much earlier than the
/// stored one means the gateway's clock was set back, and is taken.
const UPSERT_HEARTBEAT: &str = "INSERT INTO gateway_heartbeats (gateway_id, received_at, payload, \
    sent_at_us) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(gateway_id) DO UPDATE SET \
    received_at = excluded.received_at, payload = excluded.payload, \
    sent_at_us = excluded.sent_at_us \
    WHERE gateway_heartbeats.sent_at_us IS NULL \
       OR excluded.sent_at_us > gateway_heartbeats.sent_at_us \
       OR excluded.sent_at_us < gateway_heartbeats.sent_at_us - ?5";

/// How much older than the stored heartbeat a late one may be and still be taken as late (not
/// as a clock set back): ten minutes, ten heartbeat intervals.
pub const REORDER_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// Session states in which a gateway's readings are no longer taken.
const ENDED: &[&str] = &["completed", "cancelled"];

/// Clock skew tolerated between the gateway's receive time and its enrollment.
const ENROLLMENT_SKEW_MS: i64 = 5 * 60 * 1000;

/// How far ahead of the provider's clock a gateway's receive time may be. Gateways keep their
/// clock with NTP and the provider too, so a few seconds is normal; ten minutes also covers a
/// gateway that has not synchronised yet since boot. A reading received later than that cannot
/// have been received yet: the gateway's clock is wrong, and stored it would sort after every
/// real reading of the session and end its monitoring period in the future.
pub(super) const FUTURE_SKEW_MS: i64 = 10 * 60 * 1000;

/// The receipt's reason for a reading received in the future.
pub(super) const RECEIVED_IN_FUTURE: &str = "received in the future: the gateway's clock was \
    more than 10 minutes ahead of the provider's when it received the reading";

/// A verified batch waiting to be committed.
#[derive(Debug)]
pub(super) struct BatchJob {
    /// The signer, already checked to be the gateway the batch names.
    pub gateway: GatewayId,
    /// The session (`telemonitoring_id`) the gateway was bound to at lookup; checked again in
    /// the commit's transaction, so a gateway unbound meanwhile gets its batch refused.
    pub session: String,
    /// The decoded batch, its signature already verified.
    pub batch: ReadingBatch,
}

/// What committing one batch stored.
#[derive(Debug)]
pub(super) struct Stored {
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
pub(super) type BatchOutcome = Result<Stored, &'static str>;

/// Inserts the batches in one transaction (one fsync for all of them) and commits; the
/// outcomes are in the order of `jobs`. Nothing is answered before this returns.
pub(super) fn commit_batches(
    conn: &mut Connection,
    jobs: &[BatchJob],
) -> rusqlite::Result<Vec<BatchOutcome>> {
    let tx = conn.transaction()?;
    let now = Utc::now();
    let mut outcomes = Vec::with_capacity(jobs.len());
    {
        let mut statements = Statements {
            session: tx.prepare(SESSION_OF)?,
            insert: tx.prepare(INSERT_READING)?,
        };
        for job in jobs {
            outcomes.push(insert_batch(&mut statements, job, now)?);
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

struct Statements<'c> {
    session: rusqlite::Statement<'c>,
    insert: rusqlite::Statement<'c>,
}

fn insert_batch(
    s: &mut Statements<'_>,
    job: &BatchJob,
    now: DateTime<Utc>,
) -> rusqlite::Result<BatchOutcome> {
    let BatchJob {
        gateway,
        session,
        batch,
    } = job;
    let found: Option<(String, String)> = s
        .session
        .query_row(params![gateway.as_str(), session], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((status, enrolled_at)) = found else {
        return Ok(Err("unbound"));
    };
    if ENDED.contains(&status.as_str()) {
        return Ok(Err("bound to an ended session"));
    }
    let enrolled_ms = chrono::DateTime::parse_from_rfc3339(&enrolled_at)
        .map_or(i64::MIN, |t| t.timestamp_millis());
    let future_ms = now.timestamp_millis().saturating_add(FUTURE_SKEW_MS);
    let ingested_at = now.to_rfc3339();
    let mut accepted = Vec::with_capacity(batch.readings.len());
    let mut rejected = Vec::new();
    let mut duplicates = Vec::new();
    let mut inserted = 0;
    let mut device_time_ahead = 0;
    for r in &batch.readings {
        if r.received_at.timestamp_millis() < enrolled_ms.saturating_sub(ENROLLMENT_SKEW_MS) {
            rejected.push(Rejection {
                reading_id: r.reading_id.clone(),
                reason: "outside the gateway's session: received before the gateway was \
                         enrolled on it"
                    .into(),
            });
            continue;
        }
        if r.received_at.timestamp_millis() > future_ms {
            rejected.push(Rejection {
                reading_id: r.reading_id.clone(),
                reason: RECEIVED_IN_FUTURE.into(),
            });
            continue;
        }
        accepted.push(r.reading_id.clone());
        let kind = serde_json::to_value(r.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let payload = serde_json::to_string(r)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let stored = s.insert.execute(params![
            r.reading_id.as_str(),
            gateway.as_str(),
            session,
            batch.batch_id.as_str(),
            kind,
            r.effective_time.to_rfc3339(),
            r.received_at.to_rfc3339(),
            ingested_at,
            payload
        ])?;
        if stored == 0 {
            duplicates.push(r.reading_id.clone());
            continue;
        }
        inserted += stored;
        if r.effective_time.timestamp_millis() > future_ms {
            device_time_ahead += 1;
        }
    }
    Ok(Ok(Stored {
        receipt: Receipt {
            v: PROTOCOL_VERSION,
            batch_id: batch.batch_id.clone(),
            accepted,
            rejected,
            duplicates,
        },
        inserted,
        device_time_ahead,
    }))
}

/// Keeps the latest heartbeat of the gateway.
/// Stores a verified heartbeat as the gateway's latest (inside the caller's transaction);
/// false when it arrived after a newer one and changed nothing.
pub(super) fn save_heartbeat(
    conn: &Connection,
    heartbeat: &Heartbeat,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let payload = tm_protocol::encode(heartbeat);
    let changed = conn.execute(
        UPSERT_HEARTBEAT,
        params![
            heartbeat.gateway_id.as_str(),
            now.to_rfc3339(),
            String::from_utf8_lossy(&payload),
            heartbeat.sent_at.timestamp_micros(),
            REORDER_WINDOW_US
        ],
    )?;
    Ok(changed == 1)
}
