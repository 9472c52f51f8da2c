//! The ingest tables' statements on SQLite: the group commit of reading batches and the
//! latest heartbeat of each gateway.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::{Heartbeat, PROTOCOL_VERSION, Receipt};

use crate::store::readings::{
    BatchJob, BatchOutcome, FUTURE_SKEW_MS, REORDER_WINDOW_US, Stored, record_order, refusal,
};
use crate::store::time_text;

/// Stores the reading unless the session already has it: one affected row means stored, none
/// means duplicate (the UNIQUE key on (telemonitoring_id, record_order, reading_id) decides, in
/// the store; see [`crate::store::readings::record_order`]).
const INSERT_READING: &str = "INSERT INTO readings (reading_id, gateway_id, \
    telemonitoring_id, batch_id, kind, effective_time, received_at, ingested_at, payload, \
    record_order) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
    ON CONFLICT (telemonitoring_id, record_order, reading_id) DO NOTHING";
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

/// Session states in which a gateway's readings are no longer taken.
const ENDED: &[&str] = &["completed", "cancelled"];

/// Inserts the batches in one transaction (one fsync for all of them) and commits; the
/// outcomes are in the order of `jobs`.
pub fn commit_batches(
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
        ..
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
    for (r, payload) in job.readings() {
        if let Some(refusal) = refusal(r, enrolled_ms, future_ms) {
            rejected.push(refusal);
            continue;
        }
        accepted.push(r.reading_id.clone());
        let stored = s.insert.execute(params![
            r.reading_id.as_str(),
            gateway.as_str(),
            session,
            batch.batch_id.as_str(),
            r.kind.wire_name(),
            r.effective_time.to_rfc3339(),
            r.received_at.to_rfc3339(),
            ingested_at,
            payload,
            record_order(r)
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

/// Stores a verified heartbeat as the gateway's latest and, when it was taken, what it changes
/// for operations ([`super::fleet::record_heartbeat`]), in one transaction; false when it
/// arrived after a newer one and changed neither.
pub fn save_heartbeat(
    conn: &mut Connection,
    heartbeat: &Heartbeat,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    let applied = upsert_heartbeat(&tx, heartbeat, now)?;
    if applied {
        super::fleet::record_heartbeat(&tx, heartbeat, now)?;
    }
    tx.commit()?;
    Ok(applied)
}

/// Stores a verified heartbeat as the gateway's latest (inside the caller's transaction);
/// false when it arrived after a newer one and changed nothing.
fn upsert_heartbeat(
    conn: &Connection,
    heartbeat: &Heartbeat,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let payload = tm_protocol::encode(heartbeat);
    let changed = conn.execute(
        UPSERT_HEARTBEAT,
        params![
            heartbeat.gateway_id.as_str(),
            time_text(now),
            String::from_utf8_lossy(&payload),
            heartbeat.sent_at.timestamp_micros(),
            REORDER_WINDOW_US
        ],
    )?;
    Ok(changed == 1)
}

#[cfg(test)]
mod tests {
    use tm_protocol::{BatchId, GatewayId, ReadingBatch, SigningKey};

    use super::*;
    use crate::store::Store;

    fn job(gateway: &str, session: &str, batch: &str) -> BatchJob {
        let gateway = GatewayId::new(gateway).unwrap();
        BatchJob::encoded(
            gateway.clone(),
            session.to_owned(),
            ReadingBatch {
                v: PROTOCOL_VERSION,
                gateway_id: gateway,
                batch_id: BatchId::new(batch).unwrap(),
                created_at: Utc::now(),
                readings: Vec::new(),
            },
        )
    }

    #[tokio::test]
    async fn a_batch_is_taken_only_from_a_gateway_bound_to_a_live_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        let public = [(); 2].map(|()| SigningKey::generate().unwrap().0.verifying_key());
        store
            .sqlite()
            .expect("a SQLite store")
            .write(move |c| {
                for (session, status) in [("tm-1", "in-progress"), ("tm-2", "completed")] {
                    c.execute(
                        "INSERT INTO sessions VALUES (?1,'p','rx',?2,NULL,NULL,'t','t')",
                        params![session, status],
                    )?;
                }
                crate::store::sqlite::gateways::insert(
                    c,
                    &GatewayId::new("gw-1").unwrap(),
                    &public[0],
                    "tm-1",
                )?;
                crate::store::sqlite::gateways::insert(
                    c,
                    &GatewayId::new("gw-2").unwrap(),
                    &public[1],
                    "tm-2",
                )
            })
            .await
            .unwrap();
        let outcomes = store
            .commit_reading_batches(vec![
                job("gw-1", "tm-1", "b-1"),
                job("gw-1", "tm-2", "b-2"),
                job("gw-2", "tm-2", "b-3"),
            ])
            .await
            .unwrap();
        let stored = outcomes[0].as_ref().unwrap();
        assert_eq!(stored.receipt.batch_id.as_str(), "b-1");
        assert_eq!(stored.inserted, 0);
        assert_eq!(outcomes[1].as_ref().unwrap_err(), &"unbound");
        assert_eq!(
            outcomes[2].as_ref().unwrap_err(),
            &"bound to an ended session"
        );
    }
}
