//! The HUB outbox's delivery on PostgreSQL: which row is due, and what each answer does to it.
//!
//! Every outcome is one statement on the row, or one transaction when it also changes the
//! session's `hub-update-held` alert. A refusal is a read-modify-write of the row's refusal
//! window, made under the row's lock (`FOR UPDATE`). Per-session order comes from the due
//! query (only a session's oldest undelivered row is ever due) and from there being one
//! deliverer at a time (its lease is taken elsewhere).

use tokio_postgres::GenericClient;

use super::flagged_session;
use crate::store::StoreError;
use crate::store::alerts::{AlertKind, hub_update_held};
use crate::store::hub_outbox::{Due, FlaggedSession, RefusalPolicy, Refused, now_ms};
use crate::store::postgres::PgStore;

/// A session's oldest undelivered row, due now. Pending is state 0, held is state 2.
const NEXT_DUE: &str = "SELECT o.seq, o.telemonitoring_id, o.body, o.held_at_ms IS NOT NULL \
    FROM hub_outbox o WHERE o.state = 0 AND o.next_attempt_at_ms <= $1 AND NOT EXISTS \
    (SELECT 1 FROM hub_outbox e WHERE e.telemonitoring_id = o.telemonitoring_id \
     AND e.state IN (0, 2) AND e.seq < o.seq) ORDER BY o.seq LIMIT 1";
/// When the earliest session head that waits becomes due.
const NEXT_DEADLINE: &str = "SELECT MIN(o.next_attempt_at_ms) FROM hub_outbox o WHERE o.state = 0 \
    AND NOT EXISTS (SELECT 1 FROM hub_outbox e WHERE e.telemonitoring_id = o.telemonitoring_id \
    AND e.state IN (0, 2) AND e.seq < o.seq)";
const DELIVERED: &str = "UPDATE hub_outbox SET state = 1, attempts = attempts + 1, \
    last_error = NULL, done_at = $2 WHERE seq = $1";
/// The row's refusal window, locked until the refusal is recorded.
const REFUSAL_OF: &str =
    "SELECT first_refused_at_ms, refusals FROM hub_outbox WHERE seq = $1 FOR UPDATE";
const RETRY_LATER: &str = "UPDATE hub_outbox SET attempts = attempts + 1, refusals = $2, \
    first_refused_at_ms = $3, last_error = $4, next_attempt_at_ms = $5 WHERE seq = $1";
const HOLD: &str = "UPDATE hub_outbox SET state = 2, attempts = attempts + 1, refusals = $2, \
    first_refused_at_ms = $3, last_error = $4, held_at_ms = $5 WHERE seq = $1";
const FAILED_ATTEMPT: &str =
    "UPDATE hub_outbox SET attempts = attempts + 1, last_error = $2 WHERE seq = $1";
const OPEN_ALERT: &str = "INSERT INTO ops_alerts (kind, subject, gateway_id, telemonitoring_id, \
    state, detail, opened_at) VALUES ($1, $2, $3, $4, 'open', $5, $6) ON CONFLICT DO NOTHING";
const RESOLVE_ALERT: &str = "UPDATE ops_alerts SET state = 'resolved', resolved_at = $3 \
    WHERE kind = $1 AND subject = $2 AND state <> 'resolved'";

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The oldest row, among the sessions' oldest undelivered rows, that is due at `now_ms`.
pub async fn next_due(pg: &PgStore, now_ms: i64) -> Result<Option<Due>, StoreError> {
    let c = pg.client().await?;
    let stmt = c.prepare_cached(NEXT_DUE).await.map_err(pg.sql())?;
    let Some(r) = c.query_opt(&stmt, &[&now_ms]).await.map_err(pg.sql())? else {
        return Ok(None);
    };
    let due = || {
        Ok::<_, tokio_postgres::Error>(Due {
            seq: r.try_get(0)?,
            telemonitoring_id: r.try_get(1)?,
            body: r.try_get(2)?,
            was_held: r.try_get(3)?,
        })
    };
    due().map(Some).map_err(pg.sql())
}

/// When the next session head waiting for its retry time becomes due (none: nothing waits).
pub async fn next_deadline(pg: &PgStore) -> Result<Option<i64>, StoreError> {
    let c = pg.client().await?;
    let stmt = c.prepare_cached(NEXT_DEADLINE).await.map_err(pg.sql())?;
    let row = c.query_one(&stmt, &[]).await.map_err(pg.sql())?;
    row.try_get(0).map_err(pg.sql())
}

/// Marks a row delivered (the HUB's 2xx).
async fn delivered(c: &impl GenericClient, seq: i64) -> Result<(), tokio_postgres::Error> {
    c.execute(DELIVERED, &[&seq, &chrono::Utc::now()]).await?;
    Ok(())
}

/// Resolves the session's `hub-update-held` alert, if one is unresolved; true when it did.
async fn resolve_held_alert(
    c: &impl GenericClient,
    telemonitoring_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            RESOLVE_ALERT,
            &[
                &AlertKind::HubUpdateHeld.as_str(),
                &telemonitoring_id,
                &chrono::Utc::now(),
            ],
        )
        .await?;
    Ok(n > 0)
}

/// Opens the `hub-update-held` alert of flagged session `f` (nothing when one is open).
async fn open_held_alert(
    c: &impl GenericClient,
    f: &FlaggedSession,
) -> Result<(), tokio_postgres::Error> {
    let condition = hub_update_held(f);
    c.execute(
        OPEN_ALERT,
        &[
            &condition.kind.as_str(),
            &condition.subject,
            &condition.gateway_id,
            &condition.telemonitoring_id,
            &condition.detail,
            &chrono::Utc::now(),
        ],
    )
    .await?;
    Ok(())
}

/// Marks `row` delivered; when it was the session's last held or re-queued row, resolves the
/// session's `hub-update-held` alert in the same transaction (returns whether it did).
pub async fn mark_delivered(pg: &PgStore, row: &Due) -> Result<bool, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    delivered(&*tx, row.seq).await.map_err(pg.sql())?;
    let resolved = row.was_held
        && flagged_session(&*tx, &row.telemonitoring_id)
            .await
            .map_err(pg.sql())?
            .is_none()
        && resolve_held_alert(&*tx, &row.telemonitoring_id)
            .await
            .map_err(pg.sql())?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(resolved)
}

/// A temporary failure (5xx, timeout): counted, the row stays as it is.
pub async fn failed_attempt(pg: &PgStore, seq: i64, reason: &str) -> Result<(), StoreError> {
    let c = pg.client().await?;
    c.execute(FAILED_ATTEMPT, &[&seq, &reason])
        .await
        .map_err(pg.sql())?;
    Ok(())
}

/// Records a refusal (`error` is `"<code>: <message>"`) at `now_ms` under the row's lock and
/// schedules the row's next attempt, or holds it when the window since its first refusal has
/// passed.
async fn refused(
    c: &impl GenericClient,
    seq: i64,
    error: &str,
    now_ms: i64,
    policy: &RefusalPolicy,
) -> Result<Refused, tokio_postgres::Error> {
    let row = c.query_one(REFUSAL_OF, &[&seq]).await?;
    let first: Option<i64> = row.try_get(0)?;
    let before: i32 = row.try_get(1)?;
    let first = first.unwrap_or(now_ms);
    let refusals = u32::try_from(before.saturating_add(1)).unwrap_or(u32::MAX);
    let stored = i32::try_from(refusals).unwrap_or(i32::MAX);
    let window_end = first.saturating_add(ms(policy.window));
    if now_ms >= window_end {
        c.execute(HOLD, &[&seq, &stored, &first, &error, &now_ms])
            .await?;
        return Ok(Refused::Held { refusals });
    }
    let at_ms = now_ms
        .saturating_add(ms(policy.delay(refusals)))
        .min(window_end);
    c.execute(RETRY_LATER, &[&seq, &stored, &first, &error, &at_ms])
        .await?;
    Ok(Refused::RetryAt { at_ms, refusals })
}

/// Records the refusal of `row` now (under its row lock) and, when it holds the row, opens the
/// session's `hub-update-held` alert, in one transaction.
pub async fn record_refusal(
    pg: &PgStore,
    row: &Due,
    error: &str,
    policy: &RefusalPolicy,
) -> Result<Refused, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let outcome = refused(&*tx, row.seq, error, now_ms(), policy)
        .await
        .map_err(pg.sql())?;
    if matches!(outcome, Refused::Held { .. })
        && let Some(f) = flagged_session(&*tx, &row.telemonitoring_id)
            .await
            .map_err(pg.sql())?
    {
        open_held_alert(&*tx, &f).await.map_err(pg.sql())?;
    }
    tx.commit().await.map_err(pg.sql())?;
    Ok(outcome)
}
