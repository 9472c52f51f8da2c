//! Group commit of reading batches: batches verified while a commit is running wait for it to
//! end and are then committed together, in one transaction and one fsync. Under load (several
//! gateways, or one gateway with several batches in flight) the fsync, not the CPU, bounds the
//! ingest rate; sharing it keeps the rate up without weakening durability: every receipt is
//! still built only after the commit that stored its readings.
//!
//! No background task: each caller queues its batch and starts a short task that takes a
//! commit turn and commits whatever is queued by then (often nothing: an earlier task took it).
//! The commit runs in a spawned task, so a caller that goes away (an HTTP client hanging up)
//! cannot abandon the batches of the others halfway.
//!
//! Turns: one on SQLite (one writer), a few on PostgreSQL ([`Store::concurrent_commits`]),
//! where one group's transaction would otherwise leave the server's other cores idle while it
//! waits for its WAL flush. Groups committed at once on PostgreSQL are safe for the same
//! reasons two instances committing at once are (see `store/postgres/readings.rs`).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::IngestError;
use crate::store::Store;
use crate::store::readings::{BatchJob, BatchOutcome};

/// Most readings committed in one transaction (a few full batches).
const MAX_GROUP_READINGS: usize = 8 * tm_protocol::limits::MAX_READINGS_PER_BATCH;

type Reply = oneshot::Sender<Result<BatchOutcome, String>>;

/// The queue of batches waiting for a commit; cheap to clone (clones share the queue, so all
/// of one provider's ingest paths group together).
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    /// Shared by every clone and by the commit tasks.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Batches verified and not yet taken by a commit, oldest first, each with the sender its
    /// outcome goes to. Held only to push or drain, never across a commit.
    queue: Mutex<Vec<(BatchJob, Reply)>>,
    /// A permit per group being committed: when all are taken, batches queued meanwhile wait
    /// and go into the next transaction together.
    turns: tokio::sync::Semaphore,
}

impl GroupCommit {
    /// A queue committing up to `turns` groups at once (at least one).
    pub(super) fn new(turns: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                queue: Mutex::default(),
                turns: tokio::sync::Semaphore::new(turns.max(1)),
            }),
        }
    }

    /// Commits `job` (with whatever else is queued) and returns its outcome once committed.
    pub(super) async fn commit(
        &self,
        store: &Store,
        job: BatchJob,
    ) -> Result<BatchOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.inner.lock_queue().push((job, reply));
        let inner = self.inner.clone();
        let store = store.clone();
        tokio::spawn(async move {
            // The semaphore is never closed.
            let Ok(_turn) = inner.turns.acquire().await else {
                return;
            };
            while let Some(group) = inner.take_group() {
                inner.run(&store, group).await;
            }
        });
        answer
            .await
            .map_err(|_| IngestError::Commit("the commit task ended without an answer".into()))?
            .map_err(IngestError::Commit)
    }
}

impl Inner {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<(BatchJob, Reply)>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The oldest queued batches, up to [`MAX_GROUP_READINGS`] readings (at least one batch).
    fn take_group(&self) -> Option<Vec<(BatchJob, Reply)>> {
        let mut queue = self.lock_queue();
        if queue.is_empty() {
            return None;
        }
        let mut readings = 0;
        let mut n = 0;
        for (job, _) in queue.iter() {
            if n > 0 && readings + job.batch.readings.len() > MAX_GROUP_READINGS {
                break;
            }
            readings += job.batch.readings.len();
            n += 1;
        }
        Some(queue.drain(..n).collect())
    }

    async fn run(&self, store: &Store, group: Vec<(BatchJob, Reply)>) {
        let (jobs, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let committed = store.commit_reading_batches(jobs).await;
        match committed {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}
