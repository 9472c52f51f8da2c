//! The ingest tables' statements on PostgreSQL: the group commit of reading batches and the
//! latest heartbeat of each gateway, with several provider instances writing at once.
//!
//! **Reading batches** ([`commit_batches`]): one transaction per group commit, as on SQLite, and
//! the same receipts. What the SQLite side gets from its single writer is had here from the
//! database itself:
//! - *Bound and live.* The sessions of the batches are locked `FOR SHARE`, then their gateways
//!   (each in byte-wise id order, sessions first: the order every transaction that locks both
//!   uses), and the binding is checked on the locked rows. A Portal ending a session or unbinding a gateway
//!   waits for the commit, and a commit that waited for it sees the new state: no reading is
//!   stored for a session once it has ended.
//! - *The snapshot watermark.* A reading's `seq` is drawn at insert, not at commit, so a
//!   snapshot cut at `MAX(seq)` could miss a lower `seq` still uncommitted. The publisher takes
//!   the session row `FOR UPDATE` before it cuts; that waits for every ingest holding the row
//!   `FOR SHARE`, and every later ingest waits for the cut. So when a cut is taken, every
//!   reading of the session below it has committed: the watermark is commit-ordered.
//! - *Once per session.* `UNIQUE (telemonitoring_id, record_order, reading_id)` decides (see
//!   [`crate::store::readings::record_order`]), with
//!   `INSERT ... ON CONFLICT DO NOTHING RETURNING`: a reading the statement returns was stored
//!   by this commit, any other was already there, or was stored meanwhile by another instance
//!   (which the insert waited for). Two instances committing the same batch at once store each
//!   reading once; one names it stored, the other a duplicate.
//! - *Many rows per statement.* The readings of the whole group commit go in `UNNEST`ed arrays,
//!   a few thousand per statement, sorted by (session, reading id): two commits that share
//!   readings wait for each other in the same order and cannot deadlock. A reading that comes
//!   twice in one group commit is sent once; its later copies are duplicates, as on SQLite
//!   where the first copy's insert is what the later ones collide with.
//!
//! **Heartbeats** ([`save_heartbeat`]): one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`, with
//! the SQLite side's ordering rule (a heartbeat sent before the stored one, by the gateway's
//! clock, and within [`REORDER_WINDOW_US`] of it arrived late and changes nothing; one sent much
//! earlier means the clock was set back, and is taken). The statement decides against the
//! stored row it locks, so heartbeats received out of order by two instances keep the newest;
//! the health rows it changes are written in the same transaction
//! ([`super::fleet::record_heartbeat`]), under that lock.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tm_protocol::{Heartbeat, PROTOCOL_VERSION, Reading, Receipt, Rejection};
use tokio_postgres::GenericClient;

use super::PgStore;
use crate::store::StoreError;
use crate::store::readings::{
    BatchJob, BatchOutcome, FUTURE_SKEW_MS, REORDER_WINDOW_US, Stored, record_order, refusal,
};

/// The sessions of a group commit, locked in id order for the length of the commit.
const LOCK_SESSIONS: &str = "SELECT telemonitoring_id, status FROM sessions \
    WHERE telemonitoring_id = ANY($1) ORDER BY telemonitoring_id COLLATE \"C\" FOR SHARE";
/// Their gateways, locked in id order after the sessions.
const LOCK_GATEWAYS: &str = "SELECT gateway_id, telemonitoring_id, enrolled_at FROM gateways \
    WHERE gateway_id = ANY($1) ORDER BY gateway_id COLLATE \"C\" FOR SHARE";
/// Stores the readings the session does not have yet; returns the ones it stored.
const INSERT_READINGS: &str = "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, \
    batch_id, kind, effective_time, received_at, ingested_at, payload, record_order) \
    SELECT r.reading_id, r.gateway_id, r.telemonitoring_id, r.batch_id, r.kind, \
    r.effective_time, r.received_at, $9, r.payload, r.record_order \
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
    $6::timestamptz[], $7::timestamptz[], $8::text[], $10::bigint[]) \
    AS r(reading_id, gateway_id, telemonitoring_id, batch_id, kind, effective_time, \
    received_at, payload, record_order) \
    ON CONFLICT (telemonitoring_id, record_order, reading_id) DO NOTHING \
    RETURNING telemonitoring_id, reading_id";
/// Replaces the gateway's latest heartbeat unless the stored one is newer or the same (see the
/// module documentation).
const UPSERT_HEARTBEAT: &str = "INSERT INTO gateway_heartbeats (gateway_id, received_at, payload, \
    sent_at_us) VALUES ($1, $2, $3, $4) ON CONFLICT (gateway_id) DO UPDATE SET \
    received_at = excluded.received_at, payload = excluded.payload, \
    sent_at_us = excluded.sent_at_us \
    WHERE gateway_heartbeats.sent_at_us IS NULL \
       OR excluded.sent_at_us > gateway_heartbeats.sent_at_us \
       OR excluded.sent_at_us < gateway_heartbeats.sent_at_us - $5";

/// Readings per insert statement.
const ROWS_PER_STATEMENT: usize = 4096;

/// Session states in which a gateway's readings are no longer taken.
const ENDED: &[&str] = &["completed", "cancelled"];

/// Inserts the batches in one transaction and commits; the outcomes are in the order of
/// `jobs`.
pub async fn commit_batches(
    pg: &PgStore,
    jobs: &[BatchJob],
) -> Result<Vec<BatchOutcome>, StoreError> {
    let now = Utc::now();
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let bindings = lock_bindings(&*tx, jobs).await.map_err(pg.sql())?;
    let mut rows = Rows::default();
    let mut plans = Vec::with_capacity(jobs.len());
    for job in jobs {
        plans.push(match bindings.enrolled_at(job) {
            Ok(enrolled_at) => Ok(plan(job, enrolled_at, now, &mut rows)),
            Err(refusal) => Err(refusal),
        });
    }
    let stored = rows.insert(&tx, now).await.map_err(pg.sql())?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(plans
        .into_iter()
        .map(|plan| plan.map(|p| p.outcome(&stored)))
        .collect())
}

/// The locked sessions and gateways of a group commit.
struct Bindings {
    /// Session id to status.
    sessions: HashMap<String, String>,
    /// Gateway id to its session (while bound) and enrollment time.
    gateways: HashMap<String, (Option<String>, DateTime<Utc>)>,
}

impl Bindings {
    /// The gateway's enrollment time when it is bound to the job's session and that session
    /// takes readings; otherwise why the batch is refused.
    fn enrolled_at(&self, job: &BatchJob) -> Result<DateTime<Utc>, &'static str> {
        let Some((Some(bound), enrolled_at)) = self.gateways.get(job.gateway.as_str()) else {
            return Err("unbound");
        };
        let Some(status) = self
            .sessions
            .get(&job.session)
            .filter(|_| *bound == job.session)
        else {
            return Err("unbound");
        };
        if ENDED.contains(&status.as_str()) {
            return Err("bound to an ended session");
        }
        Ok(*enrolled_at)
    }
}

/// Locks the jobs' sessions, then their gateways (`FOR SHARE`, each in id order).
async fn lock_bindings(
    c: &impl GenericClient,
    jobs: &[BatchJob],
) -> Result<Bindings, tokio_postgres::Error> {
    let mut session_ids: Vec<&str> = jobs.iter().map(|j| j.session.as_str()).collect();
    session_ids.sort_unstable();
    session_ids.dedup();
    let mut gateway_ids: Vec<&str> = jobs.iter().map(|j| j.gateway.as_str()).collect();
    gateway_ids.sort_unstable();
    gateway_ids.dedup();
    let sessions = c
        .query(LOCK_SESSIONS, &[&session_ids])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let gateways = c
        .query(LOCK_GATEWAYS, &[&gateway_ids])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(Bindings { sessions, gateways })
}

/// What one batch's accepted readings became, before the insert says which were stored.
struct Plan {
    batch_id: tm_protocol::BatchId,
    rejected: Vec<Rejection>,
    /// Every accepted reading, in the batch's order.
    accepted: Vec<Accepted>,
}

struct Accepted {
    reading_id: tm_protocol::ReadingId,
    /// Its row in the insert; `None` for a copy of a reading already sent in this commit.
    row: Option<usize>,
    /// Its device time is more than [`FUTURE_SKEW_MS`] ahead of the provider's clock.
    device_time_ahead: bool,
}

impl Plan {
    /// The receipt and counts once `stored` (the rows the insert stored) is known.
    fn outcome(self, stored: &HashSet<usize>) -> Stored {
        let mut duplicates = Vec::new();
        let mut inserted = 0;
        let mut device_time_ahead = 0;
        let mut accepted = Vec::with_capacity(self.accepted.len());
        for a in self.accepted {
            if a.row.is_some_and(|row| stored.contains(&row)) {
                inserted += 1;
                device_time_ahead += usize::from(a.device_time_ahead);
            } else {
                duplicates.push(a.reading_id.clone());
            }
            accepted.push(a.reading_id);
        }
        Stored {
            receipt: Receipt {
                v: PROTOCOL_VERSION,
                batch_id: self.batch_id,
                accepted,
                rejected: self.rejected,
                duplicates,
            },
            inserted,
            device_time_ahead,
        }
    }
}

/// Sorts the batch's readings into rejected and accepted (the SQLite side's rules: received
/// before the gateway's enrollment, or in the future, is rejected) and adds the accepted ones
/// to `rows`.
fn plan<'j>(
    job: &'j BatchJob,
    enrolled_at: DateTime<Utc>,
    now: DateTime<Utc>,
    rows: &mut Rows<'j>,
) -> Plan {
    let enrolled_ms = enrolled_at.timestamp_millis();
    let future_ms = now.timestamp_millis().saturating_add(FUTURE_SKEW_MS);
    let mut rejected = Vec::new();
    let mut accepted = Vec::with_capacity(job.batch.readings.len());
    for (r, text) in job.readings() {
        if let Some(refusal) = refusal(r, enrolled_ms, future_ms) {
            rejected.push(refusal);
            continue;
        }
        accepted.push(Accepted {
            reading_id: r.reading_id.clone(),
            row: rows.add(job, r, text),
            device_time_ahead: r.effective_time.timestamp_millis() > future_ms,
        });
    }
    Plan {
        batch_id: job.batch.batch_id.clone(),
        rejected,
        accepted,
    }
}

/// The readings of a group commit to insert, one per (session, reading id), borrowed from
/// the jobs.
#[derive(Default)]
struct Rows<'j> {
    rows: Vec<Row<'j>>,
    /// (session, reading id) to its place in `rows`.
    index: HashMap<(&'j str, &'j str), usize>,
}

/// One reading's row.
struct Row<'j> {
    reading_id: &'j str,
    gateway_id: &'j str,
    telemonitoring_id: &'j str,
    batch_id: &'j str,
    kind: &'static str,
    effective_time: DateTime<Utc>,
    received_at: DateTime<Utc>,
    /// The reading's JSON text as received.
    payload: &'j str,
    record_order: i64,
}

impl<'j> Rows<'j> {
    /// Adds `r` of `job`, stored as `text`; its row, or `None` when this commit already has
    /// the reading for the session.
    fn add(&mut self, job: &'j BatchJob, r: &'j Reading, text: &'j str) -> Option<usize> {
        let key = (job.session.as_str(), r.reading_id.as_str());
        if self.index.contains_key(&key) {
            return None;
        }
        let row = self.rows.len();
        self.rows.push(Row {
            reading_id: key.1,
            gateway_id: job.gateway.as_str(),
            telemonitoring_id: key.0,
            batch_id: job.batch.batch_id.as_str(),
            kind: r.kind.wire_name(),
            effective_time: r.effective_time.with_timezone(&Utc),
            received_at: r.received_at,
            payload: text,
            record_order: record_order(r),
        });
        self.index.insert(key, row);
        Some(row)
    }

    /// Inserts the rows in (session, reading id) order, a statement per
    /// [`ROWS_PER_STATEMENT`]; the rows stored.
    async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        ingested_at: DateTime<Utc>,
    ) -> Result<HashSet<usize>, tokio_postgres::Error> {
        let mut order: Vec<(&(&str, &str), usize)> =
            self.index.iter().map(|(k, &row)| (k, row)).collect();
        order.sort_unstable();
        let mut stored = HashSet::with_capacity(order.len());
        if order.is_empty() {
            return Ok(stored);
        }
        let statement = tx.prepare_cached(INSERT_READINGS).await?;
        for chunk in order.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<&Row<'_>> = chunk.iter().map(|&(_, row)| &self.rows[row]).collect();
            let text = |column: fn(&Row<'j>) -> &'j str| -> Vec<&str> {
                rows.iter().map(|r| column(r)).collect()
            };
            let time = |column: fn(&Row<'j>) -> DateTime<Utc>| -> Vec<DateTime<Utc>> {
                rows.iter().map(|r| column(r)).collect()
            };
            let returned = tx
                .query(
                    &statement,
                    &[
                        &text(|r| r.reading_id),
                        &text(|r| r.gateway_id),
                        &text(|r| r.telemonitoring_id),
                        &text(|r| r.batch_id),
                        &text(|r| r.kind),
                        &time(|r| r.effective_time),
                        &time(|r| r.received_at),
                        &text(|r| r.payload),
                        &ingested_at,
                        &rows.iter().map(|r| r.record_order).collect::<Vec<i64>>(),
                    ],
                )
                .await?;
            for r in &returned {
                let key: (&str, &str) = (r.try_get(0)?, r.try_get(1)?);
                if let Some(&row) = self.index.get(&key) {
                    stored.insert(row);
                }
            }
        }
        Ok(stored)
    }
}

/// Stores a verified heartbeat received at `now` as the gateway's latest and, when it was
/// taken, what it changes for operations ([`super::fleet::record_heartbeat`]), in one
/// transaction; false when it arrived after a newer one and changed neither.
pub async fn save_heartbeat(
    pg: &PgStore,
    heartbeat: &Heartbeat,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let payload = tm_protocol::encode(heartbeat);
    let payload = String::from_utf8_lossy(&payload);
    let statement = tx
        .prepare_cached(UPSERT_HEARTBEAT)
        .await
        .map_err(pg.sql())?;
    let changed = tx
        .execute(
            &statement,
            &[
                &heartbeat.gateway_id.as_str(),
                &now,
                &payload.as_ref(),
                &heartbeat.sent_at.timestamp_micros(),
                &REORDER_WINDOW_US,
            ],
        )
        .await
        .map_err(pg.sql())?;
    let applied = changed == 1;
    if applied {
        super::fleet::record_heartbeat(&tx, heartbeat, now)
            .await
            .map_err(pg.sql())?;
    }
    tx.commit().await.map_err(pg.sql())?;
    Ok(applied)
}
