//! The HUB outbox (`hub_outbox`): one row per status update, queued in the transaction of the
//! status change it reports, and delivered session by session by the outbox actor
//! (the HUB outbox actor, `crate::hub::outbox`); operations list the rows that did not go through and re-queue the
//! held ones.
//!
//! What it guarantees:
//! - **per-session order**: [`Store::next_due_hub_update`] returns a row only when it is its
//!   session's oldest undelivered row (pending or held) and its `next_attempt_at_ms` has come,
//!   so a session's updates reach the HUB in the order they happened, and a session that waits
//!   (backing off after a refusal, or held) never delays another session;
//! - **bounded retries of refusals**: [`Store::record_hub_update_refusal`] schedules the next
//!   attempt of a row the HUB refused (4xx) with delays doubling from the first retry delay up
//!   to the longest one, counted from the row's first refusal; once the refusal window has
//!   passed, the next refusal holds the row (state held) until an operator re-queues it
//!   ([`Store::requeue_hub_update`]);
//! - **restarts**: the first refusal, the number of refusals, the next attempt and the hold are
//!   columns of the row, so a restarted provider resumes the same schedule and held rows stay
//!   held;
//! - a row that was held keeps `held_at_ms` until it is delivered:
//!   [`Store::flagged_hub_sessions`] lists the sessions that have such a row (the
//!   `hub-update-held` alert holds while one exists).

use std::time::Duration;

use serde::Serialize;

use super::{Backend, Store, StoreError, postgres, sqlite};

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

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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

/// A time kept in milliseconds since the epoch, as RFC 3339 (both backends hand it back so).
pub(crate) fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
}

/// The `status` field of a stored update body.
pub(crate) fn status_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("status")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Store {
    /// Rows not yet delivered and not held.
    pub async fn pending_hub_updates(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::hub_outbox::count_pending(pg).await,
            Backend::Sqlite(db) => db.read(sqlite::hub_outbox::count_pending).await,
        }
    }

    /// Rows held for an operator.
    pub async fn held_hub_updates(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::hub_outbox::count_held(pg).await,
            Backend::Sqlite(db) => db.read(sqlite::hub_outbox::count_held).await,
        }
    }

    /// The oldest row, among the sessions' oldest undelivered rows, that is due at `now_ms`.
    pub async fn next_due_hub_update(&self, now_ms: i64) -> Result<Option<Due>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::hub_outbox::next_due(pg, now_ms).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::hub_outbox::next_due(c, now_ms))
                    .await
            }
        }
    }

    /// When the next session head waiting for its retry time becomes due (milliseconds since
    /// the epoch; none: nothing waits).
    pub async fn next_hub_update_deadline(&self) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::hub_outbox::next_deadline(pg).await,
            Backend::Sqlite(db) => db.read(sqlite::hub_outbox::next_deadline).await,
        }
    }

    /// Marks `row` delivered (the HUB's 2xx); when it was the session's last held or re-queued
    /// row, resolves the session's `hub-update-held` alert in the same transaction (returns
    /// whether it did).
    pub async fn mark_hub_update_delivered(&self, row: Due) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::hub_outbox::mark_delivered(pg, &row).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::hub_outbox::mark_delivered(c, &row))
                    .await
            }
        }
    }

    /// Counts a temporary failure (5xx, timeout) of row `seq`; the row stays as it is.
    pub async fn record_hub_update_failure(
        &self,
        seq: i64,
        reason: String,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::hub_outbox::failed_attempt(pg, seq, &reason).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::hub_outbox::failed_attempt(c, seq, &reason))
                    .await
            }
        }
    }

    /// Records the HUB's refusal of `row` (`error` is `"<code>: <message>"`) now, and schedules
    /// its next attempt by `policy`, or holds it when the window since its first refusal has
    /// passed and opens the session's `hub-update-held` alert, in one transaction.
    pub async fn record_hub_update_refusal(
        &self,
        row: Due,
        error: String,
        policy: RefusalPolicy,
    ) -> Result<Refused, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::hub_outbox::record_refusal(pg, &row, &error, &policy).await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::hub_outbox::record_refusal(c, &row, &error, &policy))
                    .await
            }
        }
    }

    /// Every session with a held row or a re-queued row not yet delivered, in row order.
    pub async fn flagged_hub_sessions(&self) -> Result<Vec<FlaggedSession>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::hub_outbox::flagged_sessions(pg).await,
            Backend::Sqlite(db) => db.read(sqlite::hub_outbox::flagged).await,
        }
    }

    /// Undelivered rows in queue order (at most `limit`).
    pub async fn undelivered_hub_updates(&self, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::hub_outbox::undelivered_rows(pg, limit).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::hub_outbox::undelivered(c, limit))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
