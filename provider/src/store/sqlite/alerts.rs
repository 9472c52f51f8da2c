//! The alerts' statements on SQLite: the rows of `ops_alerts`, their transitions, and the
//! evaluation's transaction.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{adherence, fleet};
use crate::store::alerts::{AlertInputs, AlertKind, AlertRow, OpenAlert, Transition};
use crate::store::time_text;

const ALERT_COLUMNS: &str = "SELECT alert_id, kind, subject, gateway_id, telemonitoring_id, state, \
    detail, opened_at, acknowledged_at, acknowledged_by, resolved_at FROM ops_alerts";
/// Unresolved first (open before acknowledged), then newest first.
const ALERT_ORDER: &str = "ORDER BY CASE state WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 \
    ELSE 2 END, alert_id DESC";

/// Reads what the alert rules judge at `now` (inside a transaction or not).
pub fn inputs(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<AlertInputs> {
    Ok(AlertInputs {
        gateways: fleet::load(conn, None)?,
        sessions: adherence::load(conn, now)?,
        held_updates: super::hub_outbox::flagged(conn)?,
        open: open_alerts(conn)?,
    })
}

/// One evaluation at `now` in one transaction: reads the [`inputs`], applies the transitions
/// `decide` returns for them, commits, and returns the transitions.
pub fn evaluate(
    conn: &mut Connection,
    now: DateTime<Utc>,
    decide: impl FnOnce(AlertInputs) -> Vec<Transition>,
) -> rusqlite::Result<Vec<Transition>> {
    let tx = conn.transaction()?;
    let transitions = decide(inputs(&tx, now)?);
    apply(&tx, &transitions, now)?;
    tx.commit()?;
    Ok(transitions)
}

/// Alerts not yet resolved.
pub fn open_alerts(conn: &Connection) -> rusqlite::Result<Vec<OpenAlert>> {
    let mut stmt = conn.prepare(
        "SELECT alert_id, kind, subject FROM ops_alerts WHERE state <> 'resolved' ORDER BY alert_id",
    )?;
    stmt.query_map([], |r| {
        Ok(OpenAlert {
            alert_id: r.get(0)?,
            kind: r.get(1)?,
            subject: r.get(2)?,
        })
    })?
    .collect()
}

/// Resolves the unresolved alert of `(kind, subject)`, if any (inside the caller's
/// transaction); true when one was resolved.
pub fn resolve(
    conn: &Connection,
    kind: AlertKind,
    subject: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE ops_alerts SET state = 'resolved', resolved_at = ?3 \
         WHERE kind = ?1 AND subject = ?2 AND state <> 'resolved'",
        params![kind.as_str(), subject, time_text(now)],
    )?;
    Ok(n > 0)
}

/// Applies transitions (inside the caller's transaction). An open that collides with an open
/// row of the same key is ignored.
pub fn apply(
    conn: &Connection,
    transitions: &[Transition],
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let now = time_text(now);
    for t in transitions {
        match t {
            Transition::Open(c) => {
                conn.execute(
                    "INSERT OR IGNORE INTO ops_alerts (kind, subject, gateway_id, telemonitoring_id, \
                     state, detail, opened_at) VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6)",
                    params![
                        c.kind.as_str(),
                        c.subject,
                        c.gateway_id,
                        c.telemonitoring_id,
                        c.detail,
                        now
                    ],
                )?;
            }
            Transition::Resolve(a) => {
                conn.execute(
                    "UPDATE ops_alerts SET state = 'resolved', resolved_at = ?2 \
                     WHERE alert_id = ?1 AND state <> 'resolved'",
                    params![a.alert_id, now],
                )?;
            }
        }
    }
    Ok(())
}

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        alert_id: r.get(0)?,
        kind: r.get(1)?,
        subject: r.get(2)?,
        gateway_id: r.get(3)?,
        telemonitoring_id: r.get(4)?,
        state: r.get(5)?,
        detail: r.get(6)?,
        opened_at: r.get(7)?,
        acknowledged_at: r.get(8)?,
        acknowledged_by: r.get(9)?,
        resolved_at: r.get(10)?,
    })
}

/// Alerts, unresolved first; `gateway` restricts to one gateway, `unresolved` drops resolved.
pub fn list(
    conn: &Connection,
    gateway: Option<&str>,
    unresolved: bool,
    limit: u32,
) -> rusqlite::Result<Vec<AlertRow>> {
    let sql = format!(
        "{ALERT_COLUMNS} WHERE (?1 IS NULL OR gateway_id = ?1) AND (?2 = 0 OR state <> 'resolved') \
         {ALERT_ORDER} LIMIT ?3"
    );
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map(params![gateway, unresolved, limit], alert_row)?
        .collect()
}

/// Acknowledges an open alert; false when it is not open.
pub fn acknowledge(
    conn: &Connection,
    alert_id: i64,
    by: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE ops_alerts SET state = 'acknowledged', acknowledged_at = ?2, acknowledged_by = ?3 \
         WHERE alert_id = ?1 AND state = 'open'",
        params![alert_id, time_text(now), by],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::alerts::Condition;

    fn condition(subject: &str) -> Condition {
        Condition {
            kind: AlertKind::BacklogStale,
            subject: subject.into(),
            gateway_id: None,
            telemonitoring_id: None,
            detail: "old".into(),
        }
    }

    #[tokio::test]
    async fn an_evaluation_applies_what_it_decides_in_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        let now = Utc::now();
        let opened = store
            .evaluate_alerts(now, |inputs| {
                assert!(inputs.open.is_empty() && inputs.gateways.is_empty());
                vec![
                    Transition::Open(condition("gw-1")),
                    Transition::Open(condition("gw-2")),
                ]
            })
            .await
            .unwrap();
        assert_eq!(opened.len(), 2);
        let rows = store.list_alerts(None, true, 10).await.unwrap();
        let gw1 = rows.iter().find(|a| a.subject == "gw-1").unwrap().alert_id;
        assert!(
            store
                .acknowledge_alert(gw1, "op".into(), now)
                .await
                .unwrap()
        );
        assert!(
            !store
                .acknowledge_alert(gw1, "op".into(), now)
                .await
                .unwrap()
        );
        // The second evaluation sees both unresolved rows and resolves one; raising the same
        // condition again while it is unresolved changes nothing.
        store
            .evaluate_alerts(now, |inputs| {
                assert_eq!(inputs.open.len(), 2);
                let gw2 = inputs
                    .open
                    .into_iter()
                    .find(|a| a.subject == "gw-2")
                    .unwrap();
                vec![
                    Transition::Resolve(gw2),
                    Transition::Open(condition("gw-1")),
                ]
            })
            .await
            .unwrap();
        let unresolved = store.list_alerts(None, true, 10).await.unwrap();
        assert_eq!(unresolved.len(), 1);
        assert_eq!(unresolved[0].subject, "gw-1");
        assert_eq!(unresolved[0].state, "acknowledged");
        assert_eq!(store.list_alerts(None, false, 10).await.unwrap().len(), 2);
    }
}
