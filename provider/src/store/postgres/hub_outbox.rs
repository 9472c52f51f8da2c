//! The HUB outbox on PostgreSQL: status updates in per-session order.
//!
//! The statements mirror `store/sqlite/hub_outbox.rs` and return the same records; what the
//! SQLite side gets from its single writer, they get from the database:
//! - **enqueue**: a row is inserted in the transaction of the status change it reports, under
//!   the session's row lock ([`super::sessions::transition`]), so a session's rows get their
//!   `seq` (an identity) in the order of its status changes, and a change is never committed
//!   without its row, nor a row without its change;
//! - **delivery**: which row is due is one statement (the oldest due row among the sessions'
//!   oldest undelivered rows), and each outcome is one statement on that row (delivered, a
//!   temporary failure counted); a refusal reads the row's refusal window under its row lock
//!   (`FOR UPDATE`) before scheduling the next attempt or holding it. One deliverer runs at a
//!   time (its lease is taken elsewhere): row locks alone (`SKIP LOCKED`) would let a second
//!   deliverer send a session's next row while its head is still in flight, out of order;
//! - **holds**: holding a row opens the session's `hub-update-held` alert, and delivering the
//!   last held or re-queued row of a session resolves it, each in the transaction that changes
//!   the row (the alert's statements are here, as on SQLite: an open is an
//!   `INSERT ... ON CONFLICT DO NOTHING` against the one-open-alert-per-key index);
//! - **re-queue** ([`requeue`]): the held row is locked (`FOR UPDATE`) before its session's
//!   held rows are released, so two operators re-queueing the same row release it once.
//!
//! `created_at` and `done_at` are `timestamptz`; a row hands `created_at` back as
//! [`time_text`] renders it, the text the SQLite side stores for the same instant. Backoff
//! times stay milliseconds since the epoch, as on SQLite.

use crate::store::hub_outbox::{rfc3339, status_of};
use tokio_postgres::{GenericClient, Row};

mod delivery;

pub use delivery::{failed_attempt, mark_delivered, next_deadline, next_due, record_refusal};

use super::PgStore;
use crate::store::hub_outbox::{FlaggedSession, OutboxRow, Requeued, RowState, Standing};
use crate::store::{StoreError, time_text};

const INSERT: &str = "INSERT INTO hub_outbox (telemonitoring_id, body, state, created_at) \
    VALUES ($1, $2, 0, $3)";
const COUNT_PENDING: &str = "SELECT COUNT(*) FROM hub_outbox WHERE state = 0";
const COUNT_HELD: &str = "SELECT COUNT(*) FROM hub_outbox WHERE state = 2";
/// The held row, locked: a concurrent re-queue of it waits, then finds it no longer held.
const HELD_ROW: &str = "SELECT o.telemonitoring_id, o.body, o.last_error, \
    (SELECT g.gateway_id FROM gateways g WHERE g.telemonitoring_id = o.telemonitoring_id \
     ORDER BY g.enrolled_at DESC LIMIT 1) \
    FROM hub_outbox o WHERE o.seq = $1 AND o.state = 2 FOR UPDATE OF o";
const REQUEUE: &str = "UPDATE hub_outbox SET state = 0, next_attempt_at_ms = 0, \
    first_refused_at_ms = NULL, refusals = 0 \
    WHERE telemonitoring_id = $1 AND state = 2 AND seq >= $2";

/// Rows that are held, or were held and re-queued but not yet delivered, with the session's
/// most recently enrolled gateway.
const FLAGGED: &str = "SELECT o.seq, o.telemonitoring_id, o.body, o.last_error, \
    (SELECT g.gateway_id FROM gateways g WHERE g.telemonitoring_id = o.telemonitoring_id \
     ORDER BY g.enrolled_at DESC LIMIT 1) \
    FROM hub_outbox o WHERE ($1::text IS NULL OR o.telemonitoring_id = $1::text) \
    AND (o.state = 2 OR (o.state = 0 AND o.held_at_ms IS NOT NULL)) ORDER BY o.seq";
const UNDELIVERED: &str = "SELECT o.seq, o.telemonitoring_id, o.body, o.state, o.attempts, \
    o.refusals, o.last_error, o.created_at, o.first_refused_at_ms, o.next_attempt_at_ms, \
    o.held_at_ms, EXISTS (SELECT 1 FROM hub_outbox e WHERE e.telemonitoring_id = o.telemonitoring_id \
    AND e.state IN (0, 2) AND e.seq < o.seq) \
    FROM hub_outbox o WHERE o.state IN (0, 2) ORDER BY o.seq LIMIT $1";

async fn flagged_where(
    c: &impl GenericClient,
    session: Option<&str>,
) -> Result<Vec<FlaggedSession>, tokio_postgres::Error> {
    let rows = c.query(FLAGGED, &[&session]).await?;
    let mut seen = std::collections::HashSet::new();
    let mut flagged = Vec::new();
    for r in rows {
        let body: String = r.try_get(2)?;
        let f = FlaggedSession {
            seq: r.try_get(0)?,
            telemonitoring_id: r.try_get(1)?,
            status: status_of(&body),
            last_error: r.try_get(3)?,
            gateway_id: r.try_get(4)?,
        };
        if seen.insert(f.telemonitoring_id.clone()) {
            flagged.push(f);
        }
    }
    Ok(flagged)
}

/// Every session with a held row or a re-queued row not yet delivered, in row order.
pub async fn flagged(c: &impl GenericClient) -> Result<Vec<FlaggedSession>, tokio_postgres::Error> {
    flagged_where(c, None).await
}

/// The session's oldest held or re-queued row, if it has one.
pub async fn flagged_session(
    c: &impl GenericClient,
    telemonitoring_id: &str,
) -> Result<Option<FlaggedSession>, tokio_postgres::Error> {
    Ok(flagged_where(c, Some(telemonitoring_id))
        .await?
        .into_iter()
        .next())
}

/// Where a row stands: held, behind an earlier row of its session, retrying after a refusal,
/// re-queued by an operator, or simply pending.
fn standing(state: i16, behind: bool, first: Option<i64>, held: Option<i64>) -> Standing {
    if i64::from(state) == RowState::Held as i64 {
        Standing::Held
    } else if behind {
        Standing::Waiting
    } else if first.is_some() {
        Standing::Retrying
    } else if held.is_some() {
        Standing::Requeued
    } else {
        Standing::Pending
    }
}

fn outbox_row(r: &Row) -> Result<OutboxRow, tokio_postgres::Error> {
    let first: Option<i64> = r.try_get(8)?;
    let next: i64 = r.try_get(9)?;
    let held: Option<i64> = r.try_get(10)?;
    let state = standing(r.try_get(3)?, r.try_get(11)?, first, held);
    let body: String = r.try_get(2)?;
    let created_at: chrono::DateTime<chrono::Utc> = r.try_get(7)?;
    Ok(OutboxRow {
        seq: r.try_get(0)?,
        telemonitoring_id: r.try_get(1)?,
        status: status_of(&body),
        state,
        attempts: i64::from(r.try_get::<_, i32>(4)?),
        refusals: i64::from(r.try_get::<_, i32>(5)?),
        last_error: r.try_get(6)?,
        created_at: time_text(created_at),
        first_refused_at: first.and_then(rfc3339),
        next_attempt_at: (state == Standing::Retrying)
            .then(|| rfc3339(next))
            .flatten(),
        held_at: held.and_then(rfc3339),
    })
}

/// Undelivered rows in queue order (at most `limit`).
pub async fn undelivered(
    c: &impl GenericClient,
    limit: u32,
) -> Result<Vec<OutboxRow>, tokio_postgres::Error> {
    let rows = c.query(UNDELIVERED, &[&i64::from(limit)]).await?;
    rows.iter().map(outbox_row).collect()
}

/// Queues an update whose PUT body is `body` (call inside the status change's transaction,
/// under the session's row lock).
pub async fn enqueue(
    c: &impl GenericClient,
    telemonitoring_id: &str,
    body: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute(INSERT, &[&telemonitoring_id, &body, &chrono::Utc::now()])
        .await?;
    Ok(())
}

async fn count(pg: &PgStore, sql: &str) -> Result<i64, StoreError> {
    let c = pg.client().await?;
    let row = c.query_one(sql, &[]).await.map_err(pg.sql())?;
    row.try_get(0).map_err(pg.sql())
}

/// Rows not yet delivered and not held.
pub async fn count_pending(pg: &PgStore) -> Result<i64, StoreError> {
    count(pg, COUNT_PENDING).await
}

/// Rows held for an operator.
pub async fn count_held(pg: &PgStore) -> Result<i64, StoreError> {
    count(pg, COUNT_HELD).await
}

/// Re-queues a held row, and the later held rows of its session, with a fresh refusal window
/// (due now), in the caller's transaction. `None` when `seq` is not a held row.
pub async fn requeue(
    c: &impl GenericClient,
    seq: i64,
) -> Result<Option<Requeued>, tokio_postgres::Error> {
    let Some(r) = c.query_opt(HELD_ROW, &[&seq]).await? else {
        return Ok(None);
    };
    let telemonitoring_id: String = r.try_get(0)?;
    let body: String = r.try_get(1)?;
    let rows = c.execute(REQUEUE, &[&telemonitoring_id, &seq]).await?;
    Ok(Some(Requeued {
        seq,
        status: status_of(&body),
        telemonitoring_id,
        last_error: r.try_get(2)?,
        gateway_id: r.try_get(3)?,
        rows: usize::try_from(rows).unwrap_or(usize::MAX),
    }))
}

/// Every session with a held row or a re-queued row not yet delivered, on a pooled connection.
pub async fn flagged_sessions(pg: &PgStore) -> Result<Vec<FlaggedSession>, StoreError> {
    let c = pg.client().await?;
    flagged(&**c).await.map_err(pg.sql())
}

/// Undelivered rows in queue order (at most `limit`), on a pooled connection.
pub async fn undelivered_rows(pg: &PgStore, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
    let c = pg.client().await?;
    undelivered(&**c, limit).await.map_err(pg.sql())
}
