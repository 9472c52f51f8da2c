//! The alerts' statements on PostgreSQL: the rows of `ops_alerts`, their transitions, and the
//! evaluation's transaction.
//!
//! Several provider instances evaluate on one database. Two things keep that to one evaluator's
//! worth of alerts:
//! - **One evaluation at a time.** [`evaluate`] takes a transaction-level advisory lock
//!   ([`EVALUATION_LOCK`]) before it reads: an evaluation that starts while another runs waits
//!   for its commit, then reads what it wrote (each statement of a READ COMMITTED transaction
//!   sees what committed before it), so it decides on the alerts the first one opened or
//!   resolved, as the second of two evaluations does on SQLite's single writer.
//! - **The constraint.** The partial unique index `ops_alerts_one_open` on `(kind, subject)`
//!   over unresolved rows makes a second open row impossible in any case (the HUB outbox opens
//!   `hub-update-held` outside the evaluation): an open is
//!   `INSERT ... ON CONFLICT (kind, subject) WHERE state <> 'resolved' DO NOTHING`, SQLite's
//!   `INSERT OR IGNORE`.
//!
//! Resolving and acknowledging are single conditional `UPDATE`s (`state <> 'resolved'`,
//! `state = 'open'`): of two operators acknowledging at once, one is told it was not open.
//! Times are `timestamptz`, handed back as RFC 3339 text (`+00:00`, to the microsecond) as the
//! SQLite side writes them.

use crate::store::time_text;
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::{PgStore, adherence, fleet, hub_outbox};
use crate::store::StoreError;
use crate::store::alerts::{AlertInputs, AlertRow, OpenAlert, Transition};

/// Key of the transaction-level advisory lock an evaluation holds: evaluations of all instances
/// run one after the other.
pub const EVALUATION_LOCK: i64 = super::locks::EVALUATION;

const ALERT_COLUMNS: &str = "SELECT alert_id, kind, subject, gateway_id, telemonitoring_id, state, \
    detail, opened_at, acknowledged_at, acknowledged_by, resolved_at FROM ops_alerts";
/// Unresolved first (open before acknowledged), then newest first.
const ALERT_ORDER: &str = "ORDER BY CASE state WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 \
    ELSE 2 END, alert_id DESC";
const OPEN_ALERTS: &str =
    "SELECT alert_id, kind, subject FROM ops_alerts WHERE state <> 'resolved' ORDER BY alert_id";
const OPEN: &str = "INSERT INTO ops_alerts (kind, subject, gateway_id, telemonitoring_id, state, \
    detail, opened_at) VALUES ($1, $2, $3, $4, 'open', $5, $6) \
    ON CONFLICT (kind, subject) WHERE state <> 'resolved' DO NOTHING";
const RESOLVE_ROW: &str = "UPDATE ops_alerts SET state = 'resolved', resolved_at = $2 \
    WHERE alert_id = $1 AND state <> 'resolved'";
const ACKNOWLEDGE: &str = "UPDATE ops_alerts SET state = 'acknowledged', acknowledged_at = $2, \
    acknowledged_by = $3 WHERE alert_id = $1 AND state = 'open'";

/// Reads what the alert rules judge at `now` (inside a transaction or not).
pub async fn inputs(
    c: &impl GenericClient,
    now: DateTime<Utc>,
) -> Result<AlertInputs, tokio_postgres::Error> {
    Ok(AlertInputs {
        gateways: fleet::load(c, None).await?,
        sessions: adherence::load(c, now).await?,
        held_updates: hub_outbox::flagged(c).await?,
        open: open_alerts(c).await?,
    })
}

/// One evaluation at `now` in one transaction, after every other instance's: reads the
/// [`inputs`], applies the transitions `decide` returns for them, commits, and returns the
/// transitions.
pub async fn evaluate(
    pg: &PgStore,
    now: DateTime<Utc>,
    decide: impl FnOnce(AlertInputs) -> Vec<Transition>,
) -> Result<Vec<Transition>, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&EVALUATION_LOCK])
        .await
        .map_err(pg.sql())?;
    let transitions = decide(inputs(&*tx, now).await.map_err(pg.sql())?);
    apply(&*tx, &transitions, now).await.map_err(pg.sql())?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(transitions)
}

/// Alerts not yet resolved.
pub async fn open_alerts(c: &impl GenericClient) -> Result<Vec<OpenAlert>, tokio_postgres::Error> {
    c.query(OPEN_ALERTS, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(OpenAlert {
                alert_id: r.try_get(0)?,
                kind: r.try_get(1)?,
                subject: r.try_get(2)?,
            })
        })
        .collect()
}

/// Applies transitions (inside the caller's transaction). An open that collides with an
/// unresolved row of the same key is ignored.
pub async fn apply(
    c: &impl GenericClient,
    transitions: &[Transition],
    now: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    if transitions.is_empty() {
        return Ok(());
    }
    let open = c.prepare(OPEN).await?;
    let resolve = c.prepare(RESOLVE_ROW).await?;
    for t in transitions {
        match t {
            Transition::Open(a) => {
                c.execute(
                    &open,
                    &[
                        &a.kind.as_str(),
                        &a.subject,
                        &a.gateway_id,
                        &a.telemonitoring_id,
                        &a.detail,
                        &now,
                    ],
                )
                .await?;
            }
            Transition::Resolve(a) => {
                c.execute(&resolve, &[&a.alert_id, &now]).await?;
            }
        }
    }
    Ok(())
}

fn alert_row(r: &tokio_postgres::Row) -> Result<AlertRow, tokio_postgres::Error> {
    let text = |t: Option<DateTime<Utc>>| t.map(time_text);
    Ok(AlertRow {
        alert_id: r.try_get(0)?,
        kind: r.try_get(1)?,
        subject: r.try_get(2)?,
        gateway_id: r.try_get(3)?,
        telemonitoring_id: r.try_get(4)?,
        state: r.try_get(5)?,
        detail: r.try_get(6)?,
        opened_at: time_text(r.try_get::<_, DateTime<Utc>>(7)?),
        acknowledged_at: text(r.try_get(8)?),
        acknowledged_by: r.try_get(9)?,
        resolved_at: text(r.try_get(10)?),
    })
}

/// Alerts, unresolved first; `gateway` restricts to one gateway, `unresolved` drops resolved.
pub async fn list(
    c: &impl GenericClient,
    gateway: Option<&str>,
    unresolved: bool,
    limit: u32,
) -> Result<Vec<AlertRow>, tokio_postgres::Error> {
    let sql = format!(
        "{ALERT_COLUMNS} WHERE ($1::text IS NULL OR gateway_id = $1::text) \
         AND (NOT $2::boolean OR state <> 'resolved') {ALERT_ORDER} LIMIT $3"
    );
    c.query(&sql, &[&gateway, &unresolved, &i64::from(limit)])
        .await?
        .iter()
        .map(alert_row)
        .collect()
}

/// [`list`] on a pooled connection.
pub async fn alerts(
    pg: &PgStore,
    gateway: Option<&str>,
    unresolved: bool,
    limit: u32,
) -> Result<Vec<AlertRow>, StoreError> {
    let client = pg.client().await?;
    list(&**client, gateway, unresolved, limit)
        .await
        .map_err(pg.sql())
}

/// Acknowledges open alert `alert_id` for `by` at `now`, in one statement; false when it is
/// not open.
pub async fn acknowledge(
    pg: &PgStore,
    alert_id: i64,
    by: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let client = pg.client().await?;
    let n = client
        .execute(ACKNOWLEDGE, &[&alert_id, &now, &by])
        .await
        .map_err(pg.sql())?;
    Ok(n == 1)
}
