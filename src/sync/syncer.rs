//! The syncer actor: lease, seal, send, settle; keeps a bounded window of batches in flight.
//!
//! It stops only when the outbox writer is gone: an outbox that refuses a write (a full disk)
//! makes it log, keep the unrecorded receipt in memory, pause and retry, so the gateway keeps
//! shipping (and so freeing) what it holds. A provider refusing the gateway itself keeps the
//! rows pending with the `provider-refuses-gateway` alarm (see [`super`]).

use std::collections::VecDeque;
use std::time::Duration;

use tm_protocol::{BatchId, GatewayId, Receipt, SigningKey};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::SyncConfig;
use super::{Backoff, Jitter, Link, SendError, seal_batch};
use crate::store::{LeaseLimits, OutboxHandle, StoreError, alarm};

/// How often acknowledged rows past their retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// Pauses of leasing while the outbox refuses writes (a full disk): first and longest.
const STORE_RETRY_INITIAL: Duration = Duration::from_millis(200);
const STORE_RETRY_MAX: Duration = Duration::from_secs(10);
/// MQTT batches in a row without a receipt, the broker connection up all along, before the
/// `provider-refuses-gateway` alarm is raised.
pub const UNANSWERED_ALARM_AFTER: u32 = 3;

/// Ships the outbox over one link: the only actor that leases, settles, releases, rejects and
/// prunes rows, with at most `config.in_flight_batches` batches waiting for receipts at once.
#[derive(Debug)]
pub struct Syncer {
    /// Handle to the outbox writer thread, shared with the stash forwarder, the heartbeat and
    /// the BLE side. The syncer ends with an error only when this writer is gone.
    pub outbox: OutboxHandle,
    /// The enrolled transport, cloned into each in-flight send; the heartbeat and the command
    /// reporter send over clones of the same link.
    pub link: Link,
    /// Verified receipts no send was waiting for (late or duplicated, MQTT only); settled like
    /// any other. `None` on HTTPS, where each receipt is the answer to its own request.
    pub orphan_receipts: Option<mpsc::Receiver<Receipt>>,
    /// This gateway's id (from the enrollment): the signer named in every sealed batch.
    pub gateway: GatewayId,
    /// The gateway's key, shared with the heartbeat, the command reporter and the MQTT event
    /// loop; each batch is signed with it when sealed for sending, never when stored.
    pub key: std::sync::Arc<SigningKey>,
    /// The `[sync]` section: lease limits, in-flight window, backoff and the pause after the
    /// provider refused the gateway. The receipt and request timeouts are applied by the link.
    pub config: SyncConfig,
    /// Age past which acknowledged rows are pruned, checked every 30 s (`retain_acknowledged_h`
    /// in hours). Pending, leased and rejected rows are never pruned by it.
    pub retain_acknowledged: Duration,
    /// Notified by a `resync-now` command: ends the backoff pause at once.
    pub resync: std::sync::Arc<tokio::sync::Notify>,
    /// Ticked at every turn of the loop (idle turns and backoff pauses included, at least every
    /// [`crate::health::Beat::pulse`]): the systemd watchdog is pinged only while it moves
    /// ([`crate::health`]).
    pub beat: Option<crate::health::Beat>,
}

impl Syncer {
    fn limits(&self) -> LeaseLimits {
        LeaseLimits {
            max_readings: self.config.batch_max_readings,
            max_bytes: self.config.batch_max_kib * 1024,
            live_lane: self.config.live_lane,
        }
    }

    /// Runs until `cancel`; returns an error only when the outbox writer is gone. Any other
    /// outbox error (a full disk, an I/O error) is logged and retried on a later turn: a receipt
    /// that could not be recorded is kept in memory and applied again, and leasing pauses for
    /// the store backoff.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), StoreError> {
        let mut in_flight: JoinSet<(BatchId, Result<Receipt, SendError>)> = JoinSet::new();
        let mut backoff = Backoff::new(
            Duration::from_millis(self.config.backoff_initial_ms),
            Duration::from_millis(self.config.backoff_max_ms),
        );
        let refused_ms = self.config.refused_retry_ms;
        let mut store_backoff = Backoff::new(STORE_RETRY_INITIAL, STORE_RETRY_MAX);
        let mut paused_until = Instant::now();
        let mut had_error = false;
        let mut refusal = Refusal::default();
        let mut next_prune = Instant::now();
        let mut orphans = self.orphan_receipts.take();
        let mut unsettled: VecDeque<Receipt> = VecDeque::new();
        loop {
            if let Some(beat) = &self.beat {
                beat.tick();
            }
            if !self.retry_settle(&mut unsettled).await? {
                paused_until = paused_until.max(Instant::now() + store_backoff.next_delay());
            }
            if Instant::now() >= next_prune {
                let keep_ms =
                    i64::try_from(self.retain_acknowledged.as_millis()).unwrap_or(i64::MAX);
                match self.outbox.prune(crate::store::now_ms() - keep_ms).await {
                    Ok(_) => next_prune = Instant::now() + PRUNE_EVERY,
                    Err(e) => {
                        store_failed(&e, "prune")?;
                        next_prune = Instant::now() + STORE_RETRY_MAX;
                    }
                }
            }
            let mut idle = false;
            while unsettled.is_empty()
                && in_flight.len() < self.config.in_flight_batches
                && Instant::now() >= paused_until
            {
                let batch = match self.outbox.lease(self.limits()).await {
                    Ok(Some(batch)) => batch,
                    Ok(None) => {
                        idle = true;
                        break;
                    }
                    Err(e) => {
                        store_failed(&e, "lease")?;
                        paused_until = Instant::now() + store_backoff.next_delay();
                        break;
                    }
                };
                let frame = seal_batch(&self.gateway, &self.key, &batch);
                tracing::debug!(batch = %batch.batch_id, readings = batch.readings.len(), bytes = frame.len(), "batch sent");
                let link = self.link.clone();
                let id = batch.batch_id;
                in_flight.spawn(async move {
                    let r = link.send_batch(&id, frame).await;
                    (id, r)
                });
            }
            // Idle, or the window of batches in flight is full: nothing to do until a stash
            // commits new rows, a batch ends, a receipt or command arrives, or pruning is due.
            // No polling: an idle agent sleeps.
            let wait = if Instant::now() < paused_until {
                paused_until
            } else if idle || in_flight.len() >= self.config.in_flight_batches {
                next_prune
            } else {
                Instant::now()
            };
            // A backoff pause (up to `backoff_max_ms`) is waited in turns of at most the beat's
            // pulse, so the watchdog sees the loop alive while the provider is unreachable.
            let wait = match &self.beat {
                Some(beat) => wait.min(Instant::now() + beat.pulse()),
                None => wait,
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let Ok((batch, result)) = joined else { continue };
                    match result {
                        Ok(receipt) => {
                            match self.outbox.settle(receipt.clone()).await {
                                Ok(outcome) => log_settled(&outcome),
                                Err(e) => {
                                    store_failed(&e, "settle")?;
                                    unsettled.push_back(receipt);
                                    continue;
                                }
                            }
                            store_backoff.reset();
                            backoff.reset();
                            if refusal.answered() {
                                self.alarm(None).await?;
                            }
                            if had_error {
                                had_error = false;
                                self.last_error(None).await?;
                            }
                        }
                        Err(SendError::Rejected(reason)) => {
                            match self.outbox.reject(batch.clone(), reason.clone()).await {
                                Ok(rows) => tracing::error!(rows, %reason, "provider refused a batch's content; rows kept as rejected"),
                                // Not recorded: the rows were released and are sent again.
                                Err(e) => store_failed(&e, "reject")?,
                            }
                            self.last_error(Some(reason)).await?;
                            had_error = true;
                        }
                        Err(e) => {
                            if let Err(err) = self.outbox.release(batch.clone()).await {
                                store_failed(&err, "release")?;
                            }
                            let delay = match &e {
                                SendError::RetryAfter(d, _) => *d,
                                SendError::GatewayRefused(_) => refused_delay(refused_ms),
                                _ => backoff.next_delay(),
                            };
                            if let Some(message) = refusal.failed(&e) {
                                tracing::error!(error = %e, retry_in_ms = delay.as_millis(), "the provider refuses this gateway or leaves its batches unanswered; readings kept, will resend");
                                self.alarm(Some(message)).await?;
                            } else {
                                tracing::warn!(error = %e, retry_in_ms = delay.as_millis(), "batch not settled; will resend");
                            }
                            paused_until = paused_until.max(Instant::now() + delay);
                            self.last_error(Some(e.to_string())).await?;
                            had_error = true;
                        }
                    }
                }
                Some(receipt) = recv_orphan(&mut orphans) => {
                    match self.outbox.settle(receipt.clone()).await {
                        Ok(outcome) => log_settled(&outcome),
                        Err(e) => {
                            store_failed(&e, "settle")?;
                            unsettled.push_back(receipt);
                        }
                    }
                }
                () = self.outbox.committed(), if idle && Instant::now() >= paused_until => {}
                () = self.resync.notified() => {
                    tracing::info!("re-sync requested by the provider");
                    paused_until = Instant::now();
                    backoff.reset();
                }
                () = tokio::time::sleep_until(wait) => {}
            }
        }
        in_flight.abort_all();
        // Rows of aborted batches go back to pending now (they would be at the next start too).
        if let Err(e) = self.outbox.release_all().await {
            store_failed(&e, "release")?;
        }
        Ok(())
    }

    /// Applies receipts that could not be recorded earlier. `false` while the outbox still
    /// refuses them (the caller pauses leasing).
    async fn retry_settle(&self, unsettled: &mut VecDeque<Receipt>) -> Result<bool, StoreError> {
        while let Some(receipt) = unsettled.front() {
            match self.outbox.settle(receipt.clone()).await {
                Ok(outcome) => {
                    log_settled(&outcome);
                    unsettled.pop_front();
                }
                Err(e) => {
                    store_failed(&e, "settle")?;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Raises or clears the `provider-refuses-gateway` alarm; a failed write is only logged.
    async fn alarm(&self, message: Option<String>) -> Result<(), StoreError> {
        match self
            .outbox
            .set_alarm(alarm::PROVIDER_REFUSES_GATEWAY, message)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => store_failed(&e, "alarm"),
        }
    }

    /// Records the last sync error; a failed write is only logged.
    async fn last_error(&self, error: Option<String>) -> Result<(), StoreError> {
        match self.outbox.set_last_error(error).await {
            Ok(()) => Ok(()),
            Err(e) => store_failed(&e, "last-error"),
        }
    }
}

/// `Err` only when the writer is gone (the agent stops); any other outbox error is logged and
/// the work retried later (the writer raises the `disk-full` alarm itself).
fn store_failed(e: &StoreError, what: &'static str) -> Result<(), StoreError> {
    if matches!(e, StoreError::Closed) {
        return Err(StoreError::Closed);
    }
    tracing::error!(step = what, error = %e, "outbox write failed; will retry");
    Ok(())
}

/// The pause after the provider refused the gateway: between half and all of `refused_ms`.
fn refused_delay(refused_ms: u64) -> Duration {
    let pause = Duration::from_millis(refused_ms);
    Backoff::new(pause, pause)
        .with_jitter(Jitter::Half)
        .delay_at(0)
}

/// Tracks refusals of the gateway itself, for the `provider-refuses-gateway` alarm.
#[derive(Debug, Default)]
struct Refusal {
    raised: bool,
    unanswered: u32,
}

impl Refusal {
    /// A batch failed with `e`: the alarm message when the alarm must be raised (again).
    fn failed(&mut self, e: &SendError) -> Option<String> {
        match e {
            SendError::GatewayRefused(reason) => {
                self.raised = true;
                Some(format!(
                    "the provider refuses this gateway ({reason}); readings are kept and sent \
                     again every few minutes. Check the gateway's enrollment at the provider \
                     (unknown, revoked or unbound gateway) or enroll it again."
                ))
            }
            SendError::Unanswered(_) => {
                self.unanswered = self.unanswered.saturating_add(1);
                (self.unanswered >= UNANSWERED_ALARM_AFTER).then(|| {
                    self.raised = true;
                    format!(
                        "{} batches in a row got no receipt although the broker connection \
                         stayed up: the provider may refuse this gateway (unknown, revoked or \
                         unbound) or its ingest may be down; readings are kept and sent again.",
                        self.unanswered
                    )
                })
            }
            _ => None,
        }
    }

    /// A receipt arrived: `true` when the alarm was raised and must be cleared.
    fn answered(&mut self) -> bool {
        self.unanswered = 0;
        std::mem::take(&mut self.raised)
    }
}

async fn recv_orphan(orphans: &mut Option<mpsc::Receiver<Receipt>>) -> Option<Receipt> {
    match orphans {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Says, without naming any reading, how many of a receipt's readings the provider already had.
fn log_settled(outcome: &crate::store::SettleOutcome) {
    if outcome.duplicates > 0 {
        tracing::info!(
            acknowledged = outcome.acknowledged,
            duplicates = outcome.duplicates,
            "provider already had some readings of this batch; settled as acknowledged"
        );
    }
}
