//! The outbox writer: one dedicated thread owns the [`Outbox`] (the only writer connection) and
//! serves requests from a bounded channel. Async code talks to it through [`OutboxHandle`];
//! nothing on the async runtime ever blocks on SQLite.
//!
//! Stash requests are group-committed: when several are queued, they share one transaction
//! (one fsync), and each caller is answered after that commit.
//!
//! After a stash commit that stored new rows the writer wakes the syncer
//! ([`OutboxHandle::committed`]): an idle syncer sleeps until then instead of polling.
//!
//! Every other write goes through [`Outbox::retrying`]: when it fails for lack of space, the
//! disk reserve is released (the `disk-full` alarm raised) and the write tried once more
//! ([`super::diskfull`]). An error is answered to the caller, never ends the thread: the thread
//! stops only when every handle is dropped.

use std::collections::VecDeque;
use std::sync::Arc;

use tm_protocol::{BatchId, Receipt};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{LeaseLimits, LeasedBatch, Outbox, OutboxStatus, SettleOutcome, StoreError};
use crate::stash::{StashError, StashRequest};

/// Capacity of the writer's request channel; when full, callers wait (back-pressure).
pub const WRITER_CHANNEL_CAPACITY: usize = 256;

/// Most stash requests committed in one transaction.
const GROUP_COMMIT_MAX: usize = 64;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

#[derive(Debug)]
enum Op {
    Stash(StashRequest),
    Lease(LeaseLimits, Reply<Option<LeasedBatch>>),
    Settle(Box<Receipt>, Reply<SettleOutcome>),
    Release(BatchId, Reply<usize>),
    ReleaseAll(Reply<usize>),
    Reject(BatchId, String, Reply<usize>),
    Prune(i64, Reply<usize>),
    LastError(Option<String>, Reply<()>),
    HighWater(String, Reply<Option<u32>>),
    Alarm(&'static str, Option<String>, Reply<()>),
    Status(Reply<OutboxStatus>),
}

/// Async handle to the writer thread; cheap to clone (the syncer, heartbeat, BLE side and
/// stash forwarder each hold one). Requests are served one at a time, in order; a call fails
/// with [`StoreError::Closed`] only when the thread is gone. The thread stops when every handle
/// (and the stash forwarder) is dropped.
#[derive(Debug, Clone)]
pub struct OutboxHandle {
    tx: mpsc::Sender<Op>,
    /// Notified (one stored permit, so none is lost while nobody waits) after each stash
    /// commit that stored a new row.
    committed: Arc<Notify>,
}

/// Starts the writer thread owning `outbox`.
pub fn spawn(outbox: Outbox) -> (OutboxHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(WRITER_CHANNEL_CAPACITY);
    let committed = Arc::new(Notify::new());
    let wake = committed.clone();
    let thread = std::thread::Builder::new()
        .name("outbox-writer".into())
        .spawn(move || run(outbox, rx, &wake))
        .expect("spawning the outbox writer thread");
    (OutboxHandle { tx, committed }, thread)
}

fn run(mut outbox: Outbox, mut rx: mpsc::Receiver<Op>, committed: &Notify) {
    let _span = tracing::info_span!("outbox").entered();
    let mut deferred: VecDeque<Op> = VecDeque::new();
    loop {
        let op = match deferred.pop_front() {
            Some(op) => op,
            None => match rx.blocking_recv() {
                Some(op) => op,
                None => {
                    outbox.refresh_mark(true);
                    return;
                }
            },
        };
        match op {
            Op::Stash(first) => {
                let mut group = vec![first];
                while group.len() < GROUP_COMMIT_MAX {
                    match rx.try_recv() {
                        Ok(Op::Stash(more)) => group.push(more),
                        Ok(other) => {
                            deferred.push_back(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let items: Vec<&[_]> = group.iter().map(|r| r.items.as_slice()).collect();
                match outbox.stash(&items) {
                    Ok(outcomes) => {
                        if outcomes.iter().any(|o| o.inserted > 0) {
                            committed.notify_one();
                        }
                        for (req, out) in group.into_iter().zip(outcomes) {
                            let _ = req.reply.send(Ok(out));
                        }
                    }
                    Err(e) => {
                        for req in group {
                            let _ = req.reply.send(Err(e.clone()));
                        }
                    }
                }
            }
            Op::Lease(limits, reply) => {
                let _ = reply.send(outbox.retrying(|o| o.lease(limits)));
            }
            Op::Settle(receipt, reply) => {
                let _ = reply.send(outbox.retrying(|o| o.settle(&receipt)));
            }
            Op::Release(batch, reply) => {
                let _ = reply.send(Ok(outbox.release(&batch)));
            }
            Op::ReleaseAll(reply) => {
                let _ = reply.send(Ok(outbox.release_all()));
            }
            Op::Reject(batch, reason, reply) => {
                let _ = reply.send(outbox.retrying(|o| o.reject_batch(&batch, &reason)));
            }
            Op::Prune(before, reply) => {
                let _ = reply.send(outbox.retrying(|o| o.prune(before)));
            }
            Op::LastError(e, reply) => {
                let _ = reply.send(outbox.retrying(|o| o.set_last_error(e.as_deref())));
            }
            Op::HighWater(device, reply) => {
                let _ = reply.send(outbox.high_water(&device));
            }
            Op::Alarm(kind, message, reply) => {
                let _ = reply.send(outbox.retrying(|o| o.set_alarm(kind, message.as_deref())));
            }
            Op::Status(reply) => {
                let _ = reply.send(outbox.status());
            }
        }
        outbox.refresh_mark(false);
    }
}

impl OutboxHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Forwards the capture side's stash requests to the writer until the stash channel closes.
    pub async fn serve_stash(self, mut requests: mpsc::Receiver<StashRequest>) {
        while let Some(req) = requests.recv().await {
            if let Err(mpsc::error::SendError(Op::Stash(req))) = self.tx.send(Op::Stash(req)).await
            {
                let _ = req.reply.send(Err(StashError::Closed));
            }
        }
    }

    /// Returns after a stash commit that stored new rows (at once when one happened since the
    /// last call).
    pub async fn committed(&self) {
        self.committed.notified().await;
    }

    /// Leases the next batch within `limits`; `None` when no pending row is left out of a
    /// batch in flight.
    pub async fn lease(&self, limits: LeaseLimits) -> Result<Option<LeasedBatch>, StoreError> {
        self.ask(|r| Op::Lease(limits, r)).await
    }

    /// Applies a verified receipt (its batch may be in flight, released or from an earlier
    /// run); rows it does not name stay pending.
    pub async fn settle(&self, receipt: Receipt) -> Result<SettleOutcome, StoreError> {
        self.ask(|r| Op::Settle(Box::new(receipt), r)).await
    }

    /// Returns a batch's rows to pending; the number of rows released. The last 128 released
    /// batches are remembered, so a late receipt still settles their rows by row id.
    pub async fn release(&self, batch: BatchId) -> Result<usize, StoreError> {
        self.ask(|r| Op::Release(batch, r)).await
    }

    /// Returns every leased row to pending.
    pub async fn release_all(&self) -> Result<usize, StoreError> {
        self.ask(Op::ReleaseAll).await
    }

    /// Marks a batch's rows rejected with `reason`.
    pub async fn reject(&self, batch: BatchId, reason: String) -> Result<usize, StoreError> {
        self.ask(|r| Op::Reject(batch, reason, r)).await
    }

    /// Deletes acknowledged rows settled at or before `settled_before_ms`.
    pub async fn prune(&self, settled_before_ms: i64) -> Result<usize, StoreError> {
        self.ask(|r| Op::Prune(settled_before_ms, r)).await
    }

    /// Records (or clears) the last sync error.
    pub async fn set_last_error(&self, error: Option<String>) -> Result<(), StoreError> {
        self.ask(|r| Op::LastError(error, r)).await
    }

    /// Highest record sequence committed for a device (by its address); `None` when it never
    /// sent a sequenced record.
    pub async fn high_water(&self, device: String) -> Result<Option<u32>, StoreError> {
        self.ask(|r| Op::HighWater(device, r)).await
    }

    /// Raises an alarm (`Some(message)`, kept while it stays raised) or clears it (`None`).
    pub async fn set_alarm(
        &self,
        kind: &'static str,
        message: Option<String>,
    ) -> Result<(), StoreError> {
        self.ask(|r| Op::Alarm(kind, message, r)).await
    }

    /// Current status, with the rows in flight counted as `leased`.
    pub async fn status(&self) -> Result<OutboxStatus, StoreError> {
        self.ask(Op::Status).await
    }
}
