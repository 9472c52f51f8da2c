//! The syncer actor: lease, seal, send, settle; keeps a bounded window of batches in flight.

use std::time::Duration;

use tm_protocol::{BatchId, GatewayId, Receipt, SigningKey};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::SyncConfig;
use super::{Backoff, Link, SendError, seal_batch};
use crate::store::{LeaseLimits, OutboxHandle, StoreError};

/// How often an idle syncer looks for new pending rows.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How often acknowledged rows past their retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Ships the outbox over one link.
#[derive(Debug)]
pub struct Syncer {
    /// The outbox.
    pub outbox: OutboxHandle,
    /// The transport.
    pub link: Link,
    /// Receipts nobody waited for (MQTT late/duplicate receipts).
    pub orphan_receipts: Option<mpsc::Receiver<Receipt>>,
    /// This gateway.
    pub gateway: GatewayId,
    /// Its signing key.
    pub key: std::sync::Arc<SigningKey>,
    /// Batching and timing.
    pub config: SyncConfig,
    /// How long acknowledged rows are kept.
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

    /// Runs until `cancel`; returns an error only when the outbox is gone.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), StoreError> {
        let mut in_flight: JoinSet<(BatchId, Result<Receipt, SendError>)> = JoinSet::new();
        let mut backoff = Backoff::new(
            Duration::from_millis(self.config.backoff_initial_ms),
            Duration::from_millis(self.config.backoff_max_ms),
        );
        let mut paused_until = Instant::now();
        let mut had_error = false;
        let mut next_prune = Instant::now();
        let mut orphans = self.orphan_receipts.take();
        loop {
            if let Some(beat) = &self.beat {
                beat.tick();
            }
            if Instant::now() >= next_prune {
                let keep_ms =
                    i64::try_from(self.retain_acknowledged.as_millis()).unwrap_or(i64::MAX);
                self.outbox.prune(crate::store::now_ms() - keep_ms).await?;
                next_prune = Instant::now() + PRUNE_EVERY;
            }
            let mut idle = false;
            while in_flight.len() < self.config.in_flight_batches && Instant::now() >= paused_until
            {
                let Some(batch) = self.outbox.lease(self.limits()).await? else {
                    idle = true;
                    break;
                };
                let frame = seal_batch(&self.gateway, &self.key, &batch);
                let link = self.link.clone();
                let id = batch.batch_id;
                in_flight.spawn(async move {
                    let r = link.send_batch(&id, frame).await;
                    (id, r)
                });
            }
            let wait = if Instant::now() < paused_until {
                paused_until
            } else if idle || in_flight.len() >= self.config.in_flight_batches {
                Instant::now() + IDLE_POLL
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
                            log_settled(&self.outbox.settle(receipt).await?);
                            backoff.reset();
                            if had_error {
                                had_error = false;
                                self.outbox.set_last_error(None).await?;
                            }
                        }
                        Err(SendError::Rejected(reason)) => {
                            let rows = self.outbox.reject(batch, reason.clone()).await?;
                            tracing::error!(stage = "sync", rows, %reason, "provider refused a batch; rows kept as rejected");
                            self.outbox.set_last_error(Some(reason)).await?;
                            had_error = true;
                        }
                        Err(e) => {
                            self.outbox.release(batch).await?;
                            let delay = match &e {
                                SendError::RetryAfter(d, _) => *d,
                                _ => backoff.next_delay(),
                            };
                            tracing::warn!(stage = "sync", error = %e, retry_in_ms = delay.as_millis(), "batch not settled; will resend");
                            paused_until = paused_until.max(Instant::now() + delay);
                            self.outbox.set_last_error(Some(e.to_string())).await?;
                            had_error = true;
                        }
                    }
                }
                Some(receipt) = recv_orphan(&mut orphans) => {
                    log_settled(&self.outbox.settle(receipt).await?);
                }
                () = self.resync.notified() => {
                    tracing::info!(stage = "sync", "re-sync requested by the provider");
                    paused_until = Instant::now();
                    backoff.reset();
                }
                () = tokio::time::sleep_until(wait) => {}
            }
        }
        in_flight.abort_all();
        // Rows of aborted batches go back to pending now (they would be at the next start too).
        self.outbox.release_all().await?;
        Ok(())
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
            stage = "sync",
            acknowledged = outcome.acknowledged,
            duplicates = outcome.duplicates,
            "provider already had some readings of this batch; settled as acknowledged"
        );
    }
}
