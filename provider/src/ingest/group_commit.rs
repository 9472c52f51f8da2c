//! Group commit of reading batches: batches verified while a commit is running wait for it to
//! end and are then committed together, in one transaction and one fsync. Under load (several
//! gateways, or one gateway with several batches in flight) the fsync, not the CPU, bounds the
//! ingest rate; sharing it keeps the rate up without weakening durability: every receipt is
//! still built only after the commit that stored its readings.
//!
//! No background task: each caller queues its batch and starts a short task that takes the
//! commit lock and commits whatever is queued by then (often nothing: an earlier task took it).
//! The commit runs in a spawned task, so a caller that goes away (an HTTP client hanging up)
//! cannot abandon the batches of the others halfway.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::IngestError;
use super::store::{self, BatchJob, BatchOutcome};
use crate::db::Db;

/// Most readings committed in one transaction (a few full batches).
const MAX_GROUP_READINGS: usize = 8 * tm_protocol::limits::MAX_READINGS_PER_BATCH;

type Reply = oneshot::Sender<Result<BatchOutcome, String>>;

/// The queue of batches waiting for a commit; cheap to clone (clones share the queue, so all
/// of one provider's ingest paths group together).
#[derive(Debug, Clone, Default)]
pub(super) struct GroupCommit {
    /// Shared by every clone and by the commit tasks.
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Batches verified and not yet taken by a commit, oldest first, each with the sender its
    /// outcome goes to. Held only to push or drain, never across a commit.
    queue: Mutex<Vec<(BatchJob, Reply)>>,
    /// Held by the task committing: one group at a time, so batches queued meanwhile wait and
    /// go into the next transaction together.
    commit: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    /// Commits `job` (with whatever else is queued) and returns its outcome once committed.
    pub(super) async fn commit(&self, db: &Db, job: BatchJob) -> Result<BatchOutcome, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.inner.lock_queue().push((job, reply));
        let inner = self.inner.clone();
        let db = db.clone();
        tokio::spawn(async move {
            let _turn = inner.commit.lock().await;
            while let Some(group) = inner.take_group() {
                inner.run(&db, group).await;
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

    async fn run(&self, db: &Db, group: Vec<(BatchJob, Reply)>) {
        let (jobs, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let committed = db
            .write(move |conn| store::commit_batches(conn, &jobs))
            .await;
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
