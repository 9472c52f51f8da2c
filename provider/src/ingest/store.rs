//! The ingest tables: `readings` (one row per `reading_id`) and `gateway_heartbeats`.

use rusqlite::{OptionalExtension as _, params};
use tm_protocol::{GatewayId, Heartbeat, PROTOCOL_VERSION, ReadingBatch, Receipt, Rejection};

use crate::db::{Db, DbError};

const INSERT_READING: &str = "INSERT OR IGNORE INTO readings (reading_id, gateway_id, \
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

/// Commits the batch; `Ok(Err(_))` when the gateway's session has ended.
pub(super) async fn commit_batch(
    db: &Db,
    gateway: GatewayId,
    session: String,
    batch: ReadingBatch,
) -> Result<Result<(Receipt, usize), &'static str>, DbError> {
    db.write(move |conn| {
        let tx = conn.transaction()?;
        let found: Option<(String, String)> = tx
            .query_row(SESSION_OF, params![gateway.as_str(), session], |r| {
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
        let now = chrono::Utc::now().to_rfc3339();
        let mut accepted = Vec::with_capacity(batch.readings.len());
        let mut rejected = Vec::new();
        let mut inserted = 0;
        {
            let mut insert = tx.prepare(INSERT_READING)?;
            for r in &batch.readings {
                if r.received_at.timestamp_millis() < enrolled_ms.saturating_sub(ENROLLMENT_SKEW_MS)
                {
                    rejected.push(Rejection {
                        reading_id: r.reading_id.clone(),
                        reason: "outside the gateway's session: received before the gateway \
                                 was enrolled on it"
                            .into(),
                    });
                    continue;
                }
                let kind = serde_json::to_value(r.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let payload = serde_json::to_string(r)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                inserted += insert.execute(params![
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
                accepted.push(r.reading_id.clone());
            }
        }
        tx.commit()?;
        Ok(Ok((
            Receipt {
                v: PROTOCOL_VERSION,
                batch_id: batch.batch_id,
                accepted,
                rejected,
            },
            inserted,
        )))
    })
    .await
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
