//! The durable outbox of HUB status updates, and the actor that drains it.
//!
//! A row is written in the same transaction as the status change it reports
//! ([`crate::store::sqlite::sessions::transition`]). Per-session order is the contract (requested -> accepted
//! -> in-progress -> completed / cancelled), so the actor sends a session's rows strictly in
//! `seq` order: it only ever sends a session's oldest undelivered row
//! ([`Store::next_due_hub_update`]),
//! and a row the HUB has not taken keeps every later row of its session waiting. Sessions are
//! independent: one that waits never delays another's updates. Nothing is deleted: a row
//! becomes `delivered` only after the HUB's 2xx.
//!
//! - 5xx, timeouts, connection errors and a 401 that re-authentication did not cure say the
//!   HUB is unwell: the actor pauses every delivery with doubling backoff (capped).
//! - A 4xx says the HUB refuses this update, perhaps briefly wrongly: the row is retried with
//!   its own doubling backoff (`retry_initial_ms` .. `retry_max_ms`) for
//!   `refused_retry_window_ms` after its first refusal; a refusal after that holds it. Holding
//!   logs at ERROR (no patient id) and opens one `hub-update-held` alert for the session
//!   ([`crate::ops::alerts`]) in the same transaction. An operator sees held rows and re-queues
//!   them in `/ops` ([`crate::ops::hub_updates`]); the alert resolves when the session has no
//!   held or re-queued row left undelivered.
//! - Rows survive a restart in their state: held rows stay held, a refused row's schedule is
//!   persisted (first refusal, refusals, next attempt).
//! - A store failure (the database cannot be opened, out of file descriptors, disk full) never
//!   ends the actor: it is logged and the actor starts over after a pause; rows stay as they
//!   were, and an update the HUB took but whose row could not be marked is sent again (the
//!   HUB's updates are idempotent).
//! - Several instances on one PostgreSQL store: only the holder of the outbox's lease
//!   ([`crate::lease`]) delivers, so one deliverer keeps the order; when it dies another
//!   instance takes the lease over within seconds and goes on from the rows' stored state. A
//!   row queued by another instance wakes the holder through the lease's notification channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use tm_protocol::backoff::{Backoff, Jitter};

use crate::hub::client::{HubClient, PutError};
use crate::lease::Leader;
use crate::store::hub_outbox::{Due, RefusalPolicy, Refused, now_ms};
use crate::store::leases::Duty;
use crate::store::{Store, StoreError};

/// When idle, the actor looks at the table this often even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// First pause after a store failure, before the actor starts over.
pub const STORE_RETRY: Duration = Duration::from_secs(1);
/// Longest pause after repeated store failures.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

/// The actor's settings, from `[hub]`.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    /// First retry delay (`retry_initial_ms`): of the pause of every delivery after a
    /// retryable failure (full jitter), and of a refused row's own schedule (no jitter).
    pub initial: Duration,
    /// Longest retry delay (`retry_max_ms`) of both; at least `initial`.
    pub max: Duration,
    /// How long a refused (4xx) row is retried after its first refusal before it is held
    /// (`refused_retry_window_ms`); zero holds it at its first refusal.
    pub refused_window: Duration,
}

impl Retries {
    fn refusals(&self) -> RefusalPolicy {
        RefusalPolicy {
            initial: self.initial,
            max: self.max,
            window: self.refused_window,
        }
    }
}

/// The actor that delivers the outbox to the HUB: exactly one runs per provider, which is
/// what keeps each session's updates in order. Absent without `[hub]` (rows then wait).
#[derive(Debug)]
pub struct OutboxActor {
    /// The provider store: rows are read from `hub_outbox`, and each outcome is written
    /// back in its own transaction (with the session's alert when a row is held).
    pub store: Store,
    /// The HUB client (its own token and timeout); used by this actor only.
    pub client: HubClient,
    /// Shared with the Portal, the session updater and operations, which notify it when they
    /// queue or re-queue a row; without a wake-up the table is still looked at every 5 s.
    pub wake: Arc<Notify>,
    /// Retry delays of temporary failures and of refused rows.
    pub backoff: Retries,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl OutboxActor {
    /// Runs until `shutdown` is cancelled; stops only between calls or while waiting. A store
    /// failure is logged and the actor starts over after a pause ([`STORE_RETRY`], doubling up
    /// to [`STORE_RETRY_MAX`]).
    ///
    /// With several instances on one store, only the one holding the outbox's lease
    /// ([`Duty::HubOutbox`]) delivers; the others wait to take it over.
    #[tracing::instrument(name = "hub", skip_all)]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut leader = Leader::start(
            self.store.clone(),
            Duty::HubOutbox,
            Some(self.wake.clone()),
            shutdown.clone(),
        );
        loop {
            tokio::select! {
                held = leader.held() => if !held { return },
                () = shutdown.cancelled() => return,
            }
            tokio::select! {
                () = self.deliver_while_held(&shutdown) => return,
                () = leader.lost() => {
                    tracing::warn!("outbox lease lost: another instance delivers now");
                }
            }
        }
    }

    /// Delivers until shutdown, starting over after store failures.
    async fn deliver_while_held(&self, shutdown: &CancellationToken) {
        let mut retry = Backoff::new(STORE_RETRY, STORE_RETRY_MAX).with_jitter(Jitter::None);
        loop {
            let started = tokio::time::Instant::now();
            match self.deliver(shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    if started.elapsed() > STORE_RETRY_MAX {
                        retry.reset();
                    }
                    let pause = retry.next_delay();
                    tracing::error!(error = %e, retry_in_ms = millis(pause),
                        "outbox store failure; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Delivers rows until shutdown (`Ok`) or a store failure.
    async fn deliver(&self, shutdown: &CancellationToken) -> Result<(), StoreError> {
        // Full jitter: many providers' outboxes retrying one HUB do not come back together.
        let mut retry = Backoff::new(self.backoff.initial, self.backoff.max);
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let next = self.store.next_due_hub_update(now_ms()).await?;
            let Some(row) = next else {
                let deadline = self.store.next_hub_update_deadline().await?;
                let wait = deadline.map_or(IDLE_POLL, |at| {
                    let left = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                    Duration::from_millis(left).min(IDLE_POLL)
                });
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                continue;
            };
            let result = tokio::select! {
                r = self.client.put(&row.body) => r,
                () = shutdown.cancelled() => return Ok(()),
            };
            let seq = row.seq;
            match result {
                Ok(()) => {
                    retry.reset();
                    if self.delivered(row).await? {
                        tracing::info!(seq, "held update delivered; alert resolved");
                    }
                    tracing::info!(seq, "status update delivered");
                }
                Err(PutError::Rejected { status, message }) => {
                    retry.reset();
                    self.refused(row, status, &message).await?;
                }
                Err(PutError::Retryable(reason)) => {
                    let delay = retry.next_delay();
                    tracing::warn!(seq, %reason, retry_in_ms = millis(delay),
                        "status update not delivered; retrying");
                    self.store.record_hub_update_failure(seq, reason).await?;
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
    }

    /// Marks `row` delivered; when it was the session's last held or re-queued row, resolves
    /// the session's alert in the same transaction (returns whether it did).
    async fn delivered(&self, row: Due) -> Result<bool, StoreError> {
        self.store.mark_hub_update_delivered(row).await
    }

    /// Records a 4xx: schedules the row's retry, or holds it and opens the session's alert.
    async fn refused(&self, row: Due, status: u16, message: &str) -> Result<(), StoreError> {
        let seq = row.seq;
        let error = format!("{status}: {message}");
        let policy = self.backoff.refusals();
        let outcome = self
            .store
            .record_hub_update_refusal(row, error, policy)
            .await?;
        match outcome {
            Refused::RetryAt { at_ms, refusals } => {
                let retry_in_ms = u64::try_from(at_ms.saturating_sub(now_ms())).unwrap_or(0);
                tracing::warn!(
                    seq,
                    status,
                    refusals,
                    retry_in_ms,
                    "the HUB refused a status update; retrying it, later updates of its session wait"
                );
            }
            Refused::Held { refusals } => {
                tracing::error!(seq, status, refusals, %message,
                    "the HUB kept refusing a status update; it is held with the later updates of its session until an operator re-queues it in /ops");
            }
        }
        Ok(())
    }
}
