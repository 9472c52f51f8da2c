//! The session updater: the actor that turns committed readings into HUB updates.
//!
//! Ingest commits a batch, then sends the session's id on a bounded channel
//! ([`UpdateNotifier::notify`]); nothing else happens on the ingest path. The actor looks at
//! the session ([`next_update`]):
//! - **accepted** with pending readings: its first readings; move it to in-progress with its
//!   attachments at once;
//! - **in-progress** with pending readings: re-send in-progress (an idempotent update) with
//!   the new attachment set, but no sooner than the carepath allows (heart failure: at most 5
//!   updates a day, so 4.8 h apart); readings arriving meanwhile are batched into that update;
//! - anything else: nothing (a stop publishes the final set itself, in the same commit).
//!
//! Pending work is derived from the store (readings above the published snapshot), not kept
//! in memory: at start, and every `sweep_every`, the actor scans for it, so a restart or a
//! dropped notification loses nothing. A store failure never ends the actor: it pauses, then
//! starts over with a sweep.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::Publisher;
use crate::hub::contract::Status;
use crate::lease::Leader;
use crate::store::leases::Duty;
use crate::store::snapshots::PublishOutcome;
use crate::store::{Store, StoreError};

/// Capacity of the notification channel. When full, a notification is dropped (never
/// blocking ingest): the session's readings are committed, and the next sweep finds them.
pub const NOTIFICATION_CAPACITY: usize = 1024;

/// First pause after a store failure, before the actor starts over.
pub const STORE_RETRY: Duration = Duration::from_secs(1);
/// Longest pause after repeated store failures.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(30);

/// How often the actor scans the store for pending sessions by default.
pub const DEFAULT_SWEEP: Duration = Duration::from_secs(60);

/// The sending side, held by ingest: carries session ids (`telemonitoring_id`), never
/// readings; losing one loses nothing but time (the sweep finds the session).
#[derive(Debug, Clone)]
pub struct UpdateNotifier(mpsc::Sender<String>);

impl UpdateNotifier {
    /// Tells the updater that `session` got new readings (committed already).
    pub fn notify(&self, session: &str) {
        if self.0.try_send(session.to_owned()).is_err() {
            tracing::debug!("updater busy; the next sweep picks the session up");
        }
    }
}

/// A notifier and the receiver the [`SessionUpdater`] owns.
pub fn channel() -> (UpdateNotifier, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel(NOTIFICATION_CAPACITY);
    (UpdateNotifier(tx), rx)
}

/// When the session should next be published, if at all: `None` when nothing is pending or
/// the status takes no update; otherwise the earliest time (possibly in the past: now).
pub fn next_update(
    status: Status,
    pending: bool,
    last_published: Option<DateTime<Utc>>,
    min_interval: Duration,
) -> Option<DateTime<Utc>> {
    if !pending {
        return None;
    }
    match status {
        Status::Accepted => Some(DateTime::UNIX_EPOCH),
        Status::InProgress => Some(last_published.map_or(DateTime::UNIX_EPOCH, |t| {
            t + chrono::Duration::from_std(min_interval).unwrap_or(chrono::Duration::MAX)
        })),
        Status::Requested | Status::Completed | Status::Cancelled => None,
    }
}

/// The actor. One runs per provider; the only in-memory state is when each pending session is
/// next due, rebuilt from the store by every sweep.
#[derive(Debug)]
pub struct SessionUpdater {
    /// The provider store: pending work is read from it (readings above the published
    /// snapshot), and each update is one write transaction (snapshot, status, HUB row).
    pub store: Store,
    /// Builds and announces attachment sets; shared with the Portal, whose stops publish the
    /// final set through it.
    pub publisher: Arc<Publisher>,
    /// Session ids from ingest after commits that stored new readings (at most
    /// [`NOTIFICATION_CAPACITY`] waiting). Once closed, the updater goes on with sweeps only.
    pub notifications: mpsc::Receiver<String>,
    /// Shared with the HUB outbox actor: notified after each update is queued, so it is sent
    /// without waiting for the outbox's idle poll.
    pub wake_outbox: Arc<Notify>,
    /// How often the store is scanned for pending sessions ([`DEFAULT_SWEEP`]); bounds the
    /// delay of an update whose notification was dropped.
    pub sweep_every: Duration,
}

impl SessionUpdater {
    /// Runs until `shutdown`. A store failure is logged and the actor starts over after a
    /// pause (doubling from [`STORE_RETRY`] up to [`STORE_RETRY_MAX`]) with a sweep, which
    /// finds again whatever the failed step left pending.
    #[tracing::instrument(name = "publish", skip_all)]
    pub async fn run(mut self, shutdown: CancellationToken) {
        let leader = Leader::start(
            self.store.clone(),
            Duty::AttachmentSweep,
            None,
            shutdown.clone(),
        );
        let mut due: HashMap<String, DateTime<Utc>> = HashMap::new();
        let mut open = true;
        let mut retry = tm_protocol::backoff::Backoff::new(STORE_RETRY, STORE_RETRY_MAX)
            .with_jitter(tm_protocol::backoff::Jitter::None);
        loop {
            let started = tokio::time::Instant::now();
            match self.work(&mut due, &mut open, &leader, &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    if started.elapsed() > STORE_RETRY_MAX {
                        retry.reset();
                    }
                    let pause = retry.next_delay();
                    tracing::error!(error = %e,
                        retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        "updater store failure; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Sweeps, then publishes what is due until shutdown (`Ok`) or a store failure.
    async fn work(
        &mut self,
        due: &mut HashMap<String, DateTime<Utc>>,
        open: &mut bool,
        leader: &Leader,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        let mut leading = leader.is_held();
        self.sweep(due, leader).await?;
        let mut next_sweep = tokio::time::Instant::now() + self.sweep_every;
        loop {
            // An instance that just took the sweep over sweeps at once.
            if leader.is_held() && !leading {
                self.sweep(due, leader).await?;
                next_sweep = tokio::time::Instant::now() + self.sweep_every;
            }
            leading = leader.is_held();
            let now = Utc::now();
            let ready: Vec<String> = due
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in ready {
                due.remove(&id);
                if let Some(later) = self.publish(&id).await? {
                    due.insert(id, later);
                }
            }
            let until_due = due
                .values()
                .min()
                .map(|t| (*t - Utc::now()).to_std().unwrap_or(Duration::ZERO));
            let until_sweep = next_sweep.saturating_duration_since(tokio::time::Instant::now());
            let mut wait = until_due.map_or(until_sweep, |d| d.min(until_sweep));
            if !leading {
                // Looks again soon whether this instance took the sweep over.
                wait = wait.min(crate::lease::RETRY_EVERY);
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                message = self.notifications.recv(), if *open => match message {
                    Some(id) => self.schedule(due, id).await?,
                    None => *open = false,
                },
                () = tokio::time::sleep(wait) => {}
            }
            if tokio::time::Instant::now() >= next_sweep {
                self.sweep(due, leader).await?;
                next_sweep = tokio::time::Instant::now() + self.sweep_every;
            }
        }
    }

    /// Schedules every session with pending readings; with several instances on one store,
    /// only the holder of [`Duty::AttachmentSweep`] sweeps (each instance still publishes the
    /// sessions its own ingest notified).
    async fn sweep(
        &self,
        due: &mut HashMap<String, DateTime<Utc>>,
        leader: &Leader,
    ) -> Result<(), StoreError> {
        if !leader.is_held() {
            return Ok(());
        }
        let ids = self.store.sessions_with_pending_readings().await?;
        for id in ids {
            self.schedule(due, id).await?;
        }
        Ok(())
    }

    /// Looks at one session and records when it is due.
    async fn schedule(
        &self,
        due: &mut HashMap<String, DateTime<Utc>>,
        id: String,
    ) -> Result<(), StoreError> {
        let when = self
            .store
            .next_session_update(&id, self.publisher.clone())
            .await?;
        if let Some(t) = when {
            let entry = due.entry(id).or_insert(t);
            *entry = (*entry).min(t);
        }
        Ok(())
    }

    /// Publishes `id` if it is still due; returns a later time when the carepath's limit says
    /// to wait.
    async fn publish(&self, id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let outcome = self
            .store
            .publish_due_update(id, self.publisher.clone())
            .await?;
        match outcome {
            Ok(PublishOutcome::Later(when)) => Ok(Some(when)),
            Ok(PublishOutcome::NotDue) => {
                self.wake_outbox.notify_one();
                Ok(None)
            }
            Ok(PublishOutcome::Published { attachments }) => {
                tracing::info!(attachments, "attachments updated");
                self.wake_outbox.notify_one();
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "session not updated");
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heart_failure_session_is_updated_at_most_five_times_a_day() {
        let interval = Duration::from_secs(86_400 / 5);
        let t0 = DateTime::parse_from_rfc3339("2026-05-01T07:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // First readings of an accepted session: at once.
        assert_eq!(
            next_update(Status::Accepted, true, None, interval),
            Some(DateTime::UNIX_EPOCH)
        );
        // A reading every 10 minutes for a day: count the updates the rule lets through.
        let mut last = t0;
        let mut updates = 1;
        for minute in (10..24 * 60).step_by(10) {
            let now = t0 + chrono::Duration::minutes(minute);
            let due = next_update(Status::InProgress, true, Some(last), interval).unwrap();
            if due <= now {
                updates += 1;
                last = now;
            }
        }
        assert_eq!(updates, 5);
        // Nothing pending, or an ended session: no update.
        assert_eq!(
            next_update(Status::InProgress, false, Some(t0), interval),
            None
        );
        assert_eq!(
            next_update(Status::Completed, true, Some(t0), interval),
            None
        );
        assert_eq!(next_update(Status::Requested, true, None, interval), None);
    }
}
