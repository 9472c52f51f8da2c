//! The ingest tables: `readings` (one row per `reading_id`, kept unique here: the table's
//! index is on a prefix of the id, see migration 6) and `gateway_heartbeats`.

use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::{GatewayId, Heartbeat, PROTOCOL_VERSION, ReadingBatch, Receipt, Rejection};

use crate::db::{Db, DbError};

/// The id is looked up through the compact prefix index, then compared whole.
const EXISTS: &str = "SELECT 1 FROM readings \
    WHERE substr(reading_id, 1, 16) = substr(?1, 1, 16) AND reading_id = ?1";
const INSERT_READING: &str = "INSERT INTO readings (reading_id, gateway_id, \
    telemonitoring_id, batch_id, kind, effective_time, received_at, ingested_at, payload) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const SESSION_OF: &str = "SELECT s.status, g.enrolled_at FROM gateways g \
    JOIN sessions s ON s.telemonitoring_id = g.telemonitoring_id \
    WHERE g.gateway_id = ?1 AND g.telemonitoring_id = ?2";
const UPSERT_HEARTBEAT: &str = "INSERT INTO gateway_heartbeats (gateway_id, received_at, payload) \
    VALUES (?1, ?2, ?3) ON CONFLICT(gateway_id) DO UPDATE SET \
    received_at = excluded.received_at, payload = excluded.payload";

/// Session states in which a gateway's readings are no longer taken.
const ENDED: &[&str] = &["completed", "cancelled"];

/// Clock skew tolerated between the gateway's receive time and its enrollment.
const ENROLLMENT_SKEW_MS: i64 = 5 * 60 * 1000;

/// A verified batch waiting to be committed.
#[derive(Debug)]
pub(super) struct BatchJob {
    /// The signer.
    pub gateway: GatewayId,
    /// The session the gateway is bound to.
    pub session: String,
    /// The decoded batch.
    pub batch: ReadingBatch,
}

/// What committing one batch gave: the receipt and how many readings were new, or why the
/// gateway's readings are no longer taken.
pub(super) type BatchOutcome = Result<(Receipt, usize), &'static str>;

/// Inserts the batches in one transaction (one fsync for all of them) and commits; the
/// outcomes are in the order of `jobs`. Nothing is answered before this returns.
pub(super) fn commit_batches(
    conn: &mut Connection,
    jobs: &[BatchJob],
) -> rusqlite::Result<Vec<BatchOutcome>> {
    let tx = conn.transaction()?;
    let now = chrono::Utc::now().to_rfc3339();
    let mut outcomes = Vec::with_capacity(jobs.len());
    {
        let mut statements = Statements {
            session: tx.prepare(SESSION_OF)?,
            exists: tx.prepare(EXISTS)?,
            insert: tx.prepare(INSERT_READING)?,
        };
        for job in jobs {
            outcomes.push(insert_batch(&mut statements, job, &now)?);
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

struct Statements<'c> {
    session: rusqlite::Statement<'c>,
    exists: rusqlite::Statement<'c>,
    insert: rusqlite::Statement<'c>,
}

fn insert_batch(
    s: &mut Statements<'_>,
    job: &BatchJob,
    now: &str,
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
    let mut accepted = Vec::with_capacity(batch.readings.len());
    let mut rejected = Vec::new();
    let mut inserted = 0;
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
        accepted.push(r.reading_id.clone());
        if s.exists.exists([r.reading_id.as_str()])? {
            continue;
        }
        let kind = serde_json::to_value(r.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let payload = serde_json::to_string(r)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        inserted += s.insert.execute(params![
            r.reading_id.as_str(),
            gateway.as_str(),
            session,
            batch.batch_id.as_str(),
            kind,
            r.effective_time.to_rfc3339(),
            r.received_at.to_rfc3339(),
            now,
            payload
        ])?;
    }
    Ok(Ok((
        Receipt {
            v: PROTOCOL_VERSION,
            batch_id: batch.batch_id.clone(),
            accepted,
            rejected,
        },
        inserted,
    )))
}

/// Keeps the latest heartbeat of the gateway.
pub(super) async fn save_heartbeat(db: &Db, heartbeat: Heartbeat) -> Result<(), DbError> {
    let payload = tm_protocol::encode(&heartbeat);
    db.write(move |conn| {
        conn.execute(
            UPSERT_HEARTBEAT,
            params![
                heartbeat.gateway_id.as_str(),
                chrono::Utc::now().to_rfc3339(),
                String::from_utf8_lossy(&payload)
            ],
        )?;
        Ok(())
    })
    .await
}
