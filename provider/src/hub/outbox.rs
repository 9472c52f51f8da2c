//! The durable outbox of HUB status updates, and the actor that drains it.
//!
//! A row is written in the same transaction as the status change it reports
//! ([`crate::sessions::transition`]). The actor sends rows strictly in `seq` order (so every
//! session's updates arrive in the order they happened), deletes nothing: a row becomes
//! `delivered` only after the HUB's 2xx. 5xx, timeouts and connection errors are retried with
//! doubling backoff (capped); a 4xx other than 401 means the HUB refuses the update for good:
//! the row is marked `rejected` and logged at ERROR, because an operator must look at it. Rows
//! survive a restart: the actor picks up the oldest pending row when it starts. A store failure
//! never ends the actor: it is logged, and the actor starts over after a pause.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension as _, params};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::{Db, DbError};
use crate::hub::client::{HubClient, PutError};
use crate::hub::contract::StatusUpdate;

/// Persisted row states (explicit discriminants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum RowState {
    /// Waiting to be sent (or being retried).
    Pending = 0,
    /// The HUB answered 2xx.
    Delivered = 1,
    /// The HUB refused it with a 4xx; an operator must act.
    Rejected = 2,
}

const INSERT: &str =
    "INSERT INTO hub_outbox (telemonitoring_id, body, state, created_at) VALUES (?1, ?2, 0, ?3)";
const NEXT: &str = "SELECT seq, body FROM hub_outbox WHERE state = 0 ORDER BY seq LIMIT 1";
const FINISH: &str = "UPDATE hub_outbox SET state = ?2, attempts = attempts + 1, last_error = ?3, \
                      done_at = ?4 WHERE seq = ?1";
const FAILED_ATTEMPT: &str =
    "UPDATE hub_outbox SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1";
const COUNT_PENDING: &str = "SELECT COUNT(*) FROM hub_outbox WHERE state = 0";

/// When idle, the actor looks at the table this often even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// First pause after a store failure, before the actor starts over.
pub const STORE_RETRY: Duration = Duration::from_secs(1);
/// Longest pause after repeated store failures.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

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

/// Rows not yet delivered.
pub async fn pending(db: &Db) -> Result<i64, DbError> {
    db.read(|c| c.query_row(COUNT_PENDING, [], |r| r.get(0)))
        .await
}

/// The actor's settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First retry delay.
    pub initial: Duration,
    /// Longest retry delay.
    pub max: Duration,
}

/// The actor that delivers the outbox to the HUB.
#[derive(Debug)]
pub struct OutboxActor {
    /// The store.
    pub db: Db,
    /// The HUB client.
    pub client: HubClient,
    /// Woken when a row is queued.
    pub wake: Arc<Notify>,
    /// Retry delays.
    pub backoff: Backoff,
}

impl OutboxActor {
    /// Runs until `shutdown` is cancelled; stops only between calls or while waiting. A store
    /// failure (the database cannot be opened, out of file descriptors, disk full) is logged
    /// and the actor starts over after a pause ([`STORE_RETRY`], doubling up to
    /// [`STORE_RETRY_MAX`]): no row is lost, since rows stay pending until marked. An update
    /// the HUB accepted but whose row could not be marked delivered is sent again (the HUB's
    /// updates are idempotent).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut pause = STORE_RETRY;
        loop {
            let started = tokio::time::Instant::now();
            match self.deliver(&shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    if started.elapsed() > STORE_RETRY_MAX {
                        pause = STORE_RETRY;
                    }
                    tracing::error!(stage = "hub", error = %e,
                        retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        "outbox store failure; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return,
            }
            pause = (pause * 2).min(STORE_RETRY_MAX);
        }
    }

    /// Delivers rows until shutdown (`Ok`) or a store failure.
    async fn deliver(&self, shutdown: &CancellationToken) -> Result<(), DbError> {
        let mut delay = self.backoff.initial;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let next: Option<(i64, String)> = self
                .db
                .read(|c| {
                    c.query_row(NEXT, [], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .await?;
            let Some((seq, body)) = next else {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                continue;
            };
            let result = tokio::select! {
                r = self.client.put(&body) => r,
                () = shutdown.cancelled() => return Ok(()),
            };
            match result {
                Ok(()) => {
                    self.finish(seq, RowState::Delivered, None).await?;
                    delay = self.backoff.initial;
                    tracing::info!(stage = "hub", seq, "status update delivered");
                }
                Err(PutError::Rejected { status, message }) => {
                    tracing::error!(stage = "hub", seq, status, %message,
                        "the HUB refused a status update; it will not be retried");
                    self.finish(
                        seq,
                        RowState::Rejected,
                        Some(format!("{status}: {message}")),
                    )
                    .await?;
                }
                Err(PutError::Retryable(reason)) => {
                    tracing::warn!(stage = "hub", seq, %reason, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "status update not delivered; retrying");
                    self.db
                        .write(move |c| c.execute(FAILED_ATTEMPT, params![seq, reason]))
                        .await?;
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                    delay = (delay * 2).min(self.backoff.max);
                }
            }
        }
    }

    async fn finish(
        &self,
        seq: i64,
        state: RowState,
        error: Option<String>,
    ) -> Result<(), DbError> {
        self.db
            .write(move |c| {
                c.execute(
                    FINISH,
                    params![seq, state as i64, error, chrono::Utc::now().to_rfc3339()],
                )
            })
            .await?;
        Ok(())
    }
}
