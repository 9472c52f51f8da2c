//! The HUB outbox's statements on SQLite: plain SQL on the caller's connection (inside its
//! transaction when it writes), and the outbox actor's transactions around them.

use crate::store::hub_outbox::{rfc3339, status_of};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::hub::contract::StatusUpdate;
use crate::store::hub_outbox::{
    Due, FlaggedSession, OutboxRow, RefusalPolicy, Refused, Requeued, RowState, Standing, now_ms,
};

const INSERT: &str =
    "INSERT INTO hub_outbox (telemonitoring_id, body, state, created_at) VALUES (?1, ?2, 0, ?3)";
const COUNT_PENDING: &str = "SELECT COUNT(*) FROM hub_outbox WHERE state = 0";
const COUNT_HELD: &str = "SELECT COUNT(*) FROM hub_outbox WHERE state = 2";
/// A session's oldest undelivered row, due now. Pending is state 0, held is state 2.
const NEXT_DUE: &str = "SELECT o.seq, o.telemonitoring_id, o.body, o.held_at_ms IS NOT NULL \
    FROM hub_outbox o WHERE o.state = 0 AND o.next_attempt_at_ms <= ?1 AND NOT EXISTS \
    (SELECT 1 FROM hub_outbox e WHERE e.telemonitoring_id = o.telemonitoring_id \
     AND e.state IN (0, 2) AND e.seq < o.seq) ORDER BY o.seq LIMIT 1";
/// When the earliest session head that waits becomes due.
const NEXT_DEADLINE: &str = "SELECT MIN(o.next_attempt_at_ms) FROM hub_outbox o WHERE o.state = 0 \
    AND NOT EXISTS (SELECT 1 FROM hub_outbox e WHERE e.telemonitoring_id = o.telemonitoring_id \
    AND e.state IN (0, 2) AND e.seq < o.seq)";
const DELIVERED: &str = "UPDATE hub_outbox SET state = 1, attempts = attempts + 1, \
    last_error = NULL, done_at = ?2 WHERE seq = ?1";
const REFUSAL_OF: &str = "SELECT first_refused_at_ms, refusals FROM hub_outbox WHERE seq = ?1";
const RETRY_LATER: &str = "UPDATE hub_outbox SET attempts = attempts + 1, refusals = ?2, \
    first_refused_at_ms = ?3, last_error = ?4, next_attempt_at_ms = ?5 WHERE seq = ?1";
const HOLD: &str = "UPDATE hub_outbox SET state = 2, attempts = attempts + 1, refusals = ?2, \
    first_refused_at_ms = ?3, last_error = ?4, held_at_ms = ?5 WHERE seq = ?1";
const FAILED_ATTEMPT: &str =
    "UPDATE hub_outbox SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1";
/// Rows that are held, or were held and re-queued but not yet delivered.
const FLAGGED: &str = "SELECT o.seq, o.telemonitoring_id, o.body, o.last_error, \
    (SELECT g.gateway_id FROM gateways g WHERE g.telemonitoring_id = o.telemonitoring_id \
     ORDER BY g.enrolled_at DESC LIMIT 1) \
    FROM hub_outbox o WHERE (?1 IS NULL OR o.telemonitoring_id = ?1) \
    AND (o.state = 2 OR (o.state = 0 AND o.held_at_ms IS NOT NULL)) ORDER BY o.seq";
const HELD_ROW: &str = "SELECT o.telemonitoring_id, o.body, o.last_error, \
    (SELECT g.gateway_id FROM gateways g WHERE g.telemonitoring_id = o.telemonitoring_id \
     ORDER BY g.enrolled_at DESC LIMIT 1) \
    FROM hub_outbox o WHERE o.seq = ?1 AND o.state = 2";
const REQUEUE: &str = "UPDATE hub_outbox SET state = 0, next_attempt_at_ms = 0, \
    first_refused_at_ms = NULL, refusals = 0 WHERE telemonitoring_id = ?1 AND state = 2 AND seq >= ?2";
const UNDELIVERED: &str = "SELECT o.seq, o.telemonitoring_id, o.body, o.state, o.attempts, \
    o.refusals, o.last_error, o.created_at, o.first_refused_at_ms, o.next_attempt_at_ms, \
    o.held_at_ms, EXISTS (SELECT 1 FROM hub_outbox e WHERE e.telemonitoring_id = o.telemonitoring_id \
    AND e.state IN (0, 2) AND e.seq < o.seq) \
    FROM hub_outbox o WHERE o.state IN (0, 2) ORDER BY o.seq LIMIT ?1";

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Queues an update (call inside the status change's transaction).
pub fn enqueue(conn: &Connection, update: &StatusUpdate) -> rusqlite::Result<()> {
    let body = serde_json::to_string(update).expect("a status update always serializes");
    conn.execute(
        INSERT,
        params![
            update.telemonitoring_id,
            body,
            crate::store::time_text(chrono::Utc::now())
        ],
    )?;
    Ok(())
}

/// Rows not yet delivered and not held.
pub fn count_pending(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(COUNT_PENDING, [], |r| r.get(0))
}

/// Rows held for an operator.
pub fn count_held(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(COUNT_HELD, [], |r| r.get(0))
}

/// The oldest row, among the sessions' oldest undelivered rows, that is due at `now_ms`.
pub fn next_due(conn: &Connection, now_ms: i64) -> rusqlite::Result<Option<Due>> {
    conn.query_row(NEXT_DUE, params![now_ms], |r| {
        Ok(Due {
            seq: r.get(0)?,
            telemonitoring_id: r.get(1)?,
            body: r.get(2)?,
            was_held: r.get(3)?,
        })
    })
    .optional()
}

/// When the next session head waiting for its retry time becomes due (none: nothing waits).
pub fn next_deadline(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(NEXT_DEADLINE, [], |r| r.get(0))
}

/// Marks a row delivered (the HUB's 2xx).
pub fn delivered(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.execute(
        DELIVERED,
        params![seq, crate::store::time_text(chrono::Utc::now())],
    )?;
    Ok(())
}

/// Marks `row` delivered; when it was the session's last held or re-queued row, resolves the
/// session's `hub-update-held` alert in the same transaction (returns whether it did).
pub fn mark_delivered(conn: &mut Connection, row: &Due) -> rusqlite::Result<bool> {
    use super::alerts;
    use crate::store::alerts::AlertKind;
    let tx = conn.transaction()?;
    delivered(&tx, row.seq)?;
    let resolved = row.was_held
        && flagged_session(&tx, &row.telemonitoring_id)?.is_none()
        && alerts::resolve(
            &tx,
            AlertKind::HubUpdateHeld,
            &row.telemonitoring_id,
            chrono::Utc::now(),
        )?;
    tx.commit()?;
    Ok(resolved)
}

/// A temporary failure (5xx, timeout): counted, the row stays as it is.
pub fn failed_attempt(conn: &Connection, seq: i64, reason: &str) -> rusqlite::Result<()> {
    conn.execute(FAILED_ATTEMPT, params![seq, reason])?;
    Ok(())
}

/// Records a refusal (`error` is `"<code>: <message>"`) at `now_ms` and schedules the row's
/// next attempt, or holds it when the window since its first refusal has passed.
pub fn refused(
    conn: &Connection,
    seq: i64,
    error: &str,
    now_ms: i64,
    policy: &RefusalPolicy,
) -> rusqlite::Result<Refused> {
    let (first, before): (Option<i64>, i64) =
        conn.query_row(REFUSAL_OF, params![seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let first = first.unwrap_or(now_ms);
    let refusals = u32::try_from(before.saturating_add(1)).unwrap_or(u32::MAX);
    let window_end = first.saturating_add(ms(policy.window));
    if now_ms >= window_end {
        conn.execute(HOLD, params![seq, refusals, first, error, now_ms])?;
        return Ok(Refused::Held { refusals });
    }
    let at_ms = now_ms
        .saturating_add(ms(policy.delay(refusals)))
        .min(window_end);
    conn.execute(RETRY_LATER, params![seq, refusals, first, error, at_ms])?;
    Ok(Refused::RetryAt { at_ms, refusals })
}

/// Records the refusal of `row` now ([`refused`]) and, when it holds the row, opens the
/// session's `hub-update-held` alert, in one transaction.
pub fn record_refusal(
    conn: &mut Connection,
    row: &Due,
    error: &str,
    policy: &RefusalPolicy,
) -> rusqlite::Result<Refused> {
    use super::alerts;
    use crate::store::alerts::{Transition, hub_update_held};
    let tx = conn.transaction()?;
    let outcome = refused(&tx, row.seq, error, now_ms(), policy)?;
    if matches!(outcome, Refused::Held { .. })
        && let Some(f) = flagged_session(&tx, &row.telemonitoring_id)?
    {
        let now = chrono::Utc::now();
        alerts::apply(&tx, &[Transition::Open(hub_update_held(&f))], now)?;
    }
    tx.commit()?;
    Ok(outcome)
}

fn flagged_where(
    conn: &Connection,
    session: Option<&str>,
) -> rusqlite::Result<Vec<FlaggedSession>> {
    let mut stmt = conn.prepare(FLAGGED)?;
    let rows = stmt
        .query_map(params![session], |r| {
            Ok(FlaggedSession {
                seq: r.get(0)?,
                telemonitoring_id: r.get(1)?,
                status: status_of(&r.get::<_, String>(2)?),
                last_error: r.get(3)?,
                gateway_id: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut seen = std::collections::HashSet::new();
    Ok(rows
        .into_iter()
        .filter(|f| seen.insert(f.telemonitoring_id.clone()))
        .collect())
}

/// Every session with a held row or a re-queued row not yet delivered, in row order.
pub fn flagged(conn: &Connection) -> rusqlite::Result<Vec<FlaggedSession>> {
    flagged_where(conn, None)
}

/// The session's oldest held or re-queued row, if it has one.
pub fn flagged_session(
    conn: &Connection,
    telemonitoring_id: &str,
) -> rusqlite::Result<Option<FlaggedSession>> {
    Ok(flagged_where(conn, Some(telemonitoring_id))?
        .into_iter()
        .next())
}

/// Re-queues a held row, and the later held rows of its session, with a fresh refusal window
/// (due now). `None` when `seq` is not a held row.
pub fn requeue(conn: &Connection, seq: i64) -> rusqlite::Result<Option<Requeued>> {
    let Some((telemonitoring_id, body, last_error, gateway_id)) = conn
        .query_row(HELD_ROW, params![seq], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let rows = conn.execute(REQUEUE, params![telemonitoring_id, seq])?;
    Ok(Some(Requeued {
        seq,
        status: status_of(&body),
        telemonitoring_id,
        last_error,
        gateway_id,
        rows,
    }))
}

/// Undelivered rows in queue order (at most `limit`).
pub fn undelivered(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<OutboxRow>> {
    let mut stmt = conn.prepare(UNDELIVERED)?;
    stmt.query_map(params![limit], |r| {
        let state: i64 = r.get(3)?;
        let first: Option<i64> = r.get(8)?;
        let next: i64 = r.get(9)?;
        let held: Option<i64> = r.get(10)?;
        let behind: bool = r.get(11)?;
        let standing = if state == RowState::Held as i64 {
            Standing::Held
        } else if behind {
            Standing::Waiting
        } else if first.is_some() {
            Standing::Retrying
        } else if held.is_some() {
            Standing::Requeued
        } else {
            Standing::Pending
        };
        Ok(OutboxRow {
            seq: r.get(0)?,
            telemonitoring_id: r.get(1)?,
            status: status_of(&r.get::<_, String>(2)?),
            state: standing,
            attempts: r.get(4)?,
            refusals: r.get(5)?,
            last_error: r.get(6)?,
            created_at: r.get(7)?,
            first_refused_at: first.and_then(rfc3339),
            next_attempt_at: (standing == Standing::Retrying)
                .then(|| rfc3339(next))
                .flatten(),
            held_at: held.and_then(rfc3339),
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn store() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.db");
        drop(crate::store::Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        (dir, conn)
    }

    fn queue_row(c: &Connection, session: &str, status: &str) -> i64 {
        c.execute(
            "INSERT INTO hub_outbox (telemonitoring_id, body, state, created_at) \
             VALUES (?1, ?2, 0, 't')",
            params![session, format!("{{\"status\":\"{status}\"}}")],
        )
        .unwrap();
        c.last_insert_rowid()
    }

    const POLICY: RefusalPolicy = RefusalPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        window: Duration::from_millis(1000),
    };

    #[test]
    fn a_refused_row_keeps_its_session_back_but_not_the_others() {
        let (_dir, c) = store();
        let a1 = queue_row(&c, "a", "accepted");
        let a2 = queue_row(&c, "a", "completed");
        let b1 = queue_row(&c, "b", "accepted");
        let now = 1_000_000;
        assert_eq!(next_due(&c, now).unwrap().unwrap().seq, a1);
        // Refused: a1 backs off, a2 waits behind it, b1 goes first.
        let r = refused(&c, a1, "404: no", now, &POLICY).unwrap();
        assert_eq!(
            r,
            Refused::RetryAt {
                at_ms: now + 100,
                refusals: 1
            }
        );
        assert_eq!(next_due(&c, now).unwrap().unwrap().seq, b1);
        delivered(&c, b1).unwrap();
        assert_eq!(next_due(&c, now).unwrap(), None);
        assert_eq!(next_deadline(&c).unwrap(), Some(now + 100));
        // Doubling delays, clamped to the window's end; a refusal after it holds the row.
        let r = refused(&c, a1, "404: no", now + 100, &POLICY).unwrap();
        assert_eq!(
            r,
            Refused::RetryAt {
                at_ms: now + 300,
                refusals: 2
            }
        );
        let r = refused(&c, a1, "404: no", now + 900, &POLICY).unwrap();
        assert_eq!(
            r,
            Refused::RetryAt {
                at_ms: now + 1000,
                refusals: 3
            }
        );
        let r = refused(&c, a1, "404: no", now + 1000, &POLICY).unwrap();
        assert_eq!(r, Refused::Held { refusals: 4 });
        assert_eq!(next_due(&c, now + 10_000).unwrap(), None);
        assert_eq!(next_deadline(&c).unwrap(), None);
        let rows = undelivered(&c, 10).unwrap();
        let states: Vec<_> = rows.iter().map(|r| (r.seq, r.state)).collect();
        assert_eq!(states, [(a1, Standing::Held), (a2, Standing::Waiting)]);
        assert_eq!(flagged(&c).unwrap()[0].status, "accepted");
        // Re-queued: due at once with a fresh window, still flagged until delivered.
        assert_eq!(requeue(&c, a2).unwrap(), None);
        let r = requeue(&c, a1).unwrap().unwrap();
        assert_eq!((r.rows, r.telemonitoring_id.as_str()), (1, "a"));
        let due = next_due(&c, now + 10_000).unwrap().unwrap();
        assert_eq!((due.seq, due.was_held), (a1, true));
        assert_eq!(undelivered(&c, 10).unwrap()[0].state, Standing::Requeued);
        let r = refused(&c, a1, "404: no", now + 20_000, &POLICY).unwrap();
        assert_eq!(
            r,
            Refused::RetryAt {
                at_ms: now + 20_100,
                refusals: 1
            }
        );
        delivered(&c, a1).unwrap();
        assert!(flagged_session(&c, "a").unwrap().is_none());
        assert_eq!(next_due(&c, now + 20_000).unwrap().unwrap().seq, a2);
    }

    #[test]
    fn a_zero_window_holds_at_the_first_refusal() {
        let (_dir, c) = store();
        let a1 = queue_row(&c, "a", "accepted");
        let policy = RefusalPolicy {
            window: Duration::ZERO,
            ..POLICY
        };
        assert_eq!(
            refused(&c, a1, "409: no", 5, &policy).unwrap(),
            Refused::Held { refusals: 1 }
        );
    }
}
