//! The outbox rows of each session, as the outbox actor and operations see them: plain SQL on
//! the caller's connection (inside its transaction when it writes).
//!
//! What it guarantees:
//! - **per-session order**: [`next_due`] returns a row only when it is its session's oldest
//!   undelivered row (pending or held) and its `next_attempt_at_ms` has come, so a session's
//!   updates reach the HUB in the order they happened, and a session that waits (backing off
//!   after a refusal, or held) never delays another session;
//! - **bounded retries of refusals**: [`refused`] schedules the next attempt of a row the HUB
//!   refused (4xx) with delays doubling from the first retry delay up to the longest one,
//!   counted from the row's first refusal; once the refusal window has passed, the next
//!   refusal holds the row (state held) until an operator re-queues it ([`requeue`]);
//! - **restarts**: the first refusal, the number of refusals, the next attempt and the hold are
//!   columns of the row, so a restarted provider resumes the same schedule and held rows stay
//!   held;
//! - a row that was held keeps `held_at_ms` until it is delivered: [`flagged`] lists the
//!   sessions that have such a row (the `hub-update-held` alert holds while one exists).

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

use crate::db::{Db, DbError};
use crate::hub::contract::StatusUpdate;

/// Persisted row states (explicit discriminants; never renumber).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum RowState {
    /// Waiting to be sent: due now, backing off after a refusal, or behind an earlier row of
    /// its session.
    Pending = 0,
    /// The HUB answered 2xx.
    Delivered = 1,
    /// The HUB kept refusing it (4xx) past the refusal window (earlier versions: refused once):
    /// it and its session's later rows wait for an operator to re-queue it.
    Held = 2,
}

const INSERT: &str =
    "INSERT INTO hub_outbox (telemonitoring_id, body, state, created_at) VALUES (?1, ?2, 0, ?3)";
const COUNT_PENDING: &str = "SELECT COUNT(*) FROM hub_outbox WHERE state = 0";
const COUNT_HELD: &str = "SELECT COUNT(*) FROM hub_outbox WHERE state = 2";

/// Queues an update (call inside the status change's transaction).
pub fn enqueue(conn: &rusqlite::Connection, update: &StatusUpdate) -> rusqlite::Result<()> {
    let body = serde_json::to_string(update).expect("a status update always serializes");
    conn.execute(
        INSERT,
        params![
            update.telemonitoring_id,
            body,
            chrono::Utc::now().to_rfc3339()
        ],
    )?;
    Ok(())
}

/// Rows not yet delivered and not held.
pub async fn pending(db: &Db) -> Result<i64, DbError> {
    db.read(|c| c.query_row(COUNT_PENDING, [], |r| r.get(0)))
        .await
}

/// Rows held for an operator.
pub async fn held(db: &Db) -> Result<i64, DbError> {
    db.read(|c| c.query_row(COUNT_HELD, [], |r| r.get(0))).await
}

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

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
}

/// The `status` field of a stored update body.
fn status_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("status")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A row to send now: the oldest undelivered row of its session, its retry time come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Row id: grows with each queued update, so it orders a session's updates.
    pub seq: i64,
    /// Its session (the Portal's `telemonitoringId`).
    pub telemonitoring_id: String,
    /// The PUT body, JSON exactly as queued with the status change; sent unchanged on every
    /// attempt.
    pub body: String,
    /// Whether it was held before (an operator re-queued it): its delivery may resolve the
    /// session's `hub-update-held` alert.
    pub was_held: bool,
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
    conn.execute(DELIVERED, params![seq, chrono::Utc::now().to_rfc3339()])?;
    Ok(())
}

/// A temporary failure (5xx, timeout): counted, the row stays as it is.
pub fn failed_attempt(conn: &Connection, seq: i64, reason: &str) -> rusqlite::Result<()> {
    conn.execute(FAILED_ATTEMPT, params![seq, reason])?;
    Ok(())
}

/// How refused rows are retried (no jitter: each row has its own schedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalPolicy {
    /// Delay after the first refusal.
    pub initial: Duration,
    /// Longest delay; an attempt is never scheduled past the end of the window either.
    pub max: Duration,
    /// How long after its first refusal a row is still retried; a refusal after that holds it.
    pub window: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl RefusalPolicy {
    /// The delay after the `n`-th refusal (1-based): `initial`, doubling, at most `max`.
    pub fn delay(&self, n: u32) -> Duration {
        tm_protocol::backoff::Backoff::new(self.initial, self.max)
            .with_jitter(tm_protocol::backoff::Jitter::None)
            .delay_at(n.saturating_sub(1))
    }
}

/// What a refusal did to a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Retried at this instant (milliseconds since the epoch).
    RetryAt {
        /// The row's next attempt, at most the end of its refusal window (stored as
        /// `next_attempt_at_ms`).
        at_ms: i64,
        /// Refusals since its first refusal, this one included.
        refusals: u32,
    },
    /// Held until an operator re-queues it.
    Held {
        /// Refusals since its first refusal, this one included.
        refusals: u32,
    },
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

/// A session with a held row, or a re-queued one not yet delivered (its oldest such row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedSession {
    /// The session; one entry per session even when several of its rows are held.
    pub telemonitoring_id: String,
    /// Its oldest held (or re-queued) row.
    pub seq: i64,
    /// The status that row sets (`status` of its body; empty when the body has none).
    pub status: String,
    /// The HUB's last answer to it (`"<code>: <message>"`), or the last temporary failure.
    pub last_error: Option<String>,
    /// The session's most recently enrolled gateway; `None` when it never had one.
    pub gateway_id: Option<String>,
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

/// What an operator re-queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requeued {
    /// The row named (it was held).
    pub seq: i64,
    /// Its session.
    pub telemonitoring_id: String,
    /// The status it sets.
    pub status: String,
    /// The HUB's last answer to it, from before the re-queue (kept until it is delivered).
    pub last_error: Option<String>,
    /// The session's most recently enrolled gateway; `None` when it never had one.
    pub gateway_id: Option<String>,
    /// Rows released: the one named and the session's later held rows (at least 1).
    pub rows: usize,
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

/// Where an undelivered row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    /// Refused past the window; waits for an operator.
    Held,
    /// Refused; retried at `next_attempt_at`.
    Retrying,
    /// Re-queued by an operator; sent next.
    Requeued,
    /// Waits behind an earlier undelivered row of its session.
    Waiting,
    /// Sent next (or being retried after a temporary failure).
    Pending,
}

/// One undelivered row, as operations show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    /// Row id (what an operator re-queues).
    pub seq: i64,
    /// The session.
    pub telemonitoring_id: String,
    /// The status the update sets.
    pub status: String,
    /// Where it stands, derived from the stored state, the hold and the session's earlier
    /// undelivered rows.
    pub state: Standing,
    /// PUTs attempted, whatever their answer (refusals and temporary failures included).
    pub attempts: i64,
    /// 4xx answers since its first refusal; reset to 0 by a re-queue.
    pub refusals: i64,
    /// The HUB's last answer or the last failure; `None` before the first failed attempt.
    pub last_error: Option<String>,
    /// When it was queued with its status change (RFC 3339).
    pub created_at: String,
    /// First refusal of the current window (RFC 3339); `None` before one, or after a re-queue.
    pub first_refused_at: Option<String>,
    /// Next attempt (RFC 3339), while retrying after a refusal.
    pub next_attempt_at: Option<String>,
    /// Held since (RFC 3339); kept after a re-queue until the row is delivered.
    pub held_at: Option<String>,
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
    use super::*;

    fn store() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.db");
        drop(crate::db::Db::open(&path).unwrap());
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

    #[test]
    fn refusal_delays_double_up_to_the_longest() {
        let p = RefusalPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            window: Duration::from_secs(3600),
        };
        let delays: Vec<u64> = (1..=9)
            .map(|n| u64::try_from(p.delay(n).as_millis()).unwrap())
            .collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]
        );
        assert_eq!(p.delay(200), Duration::from_secs(60));
    }
}
