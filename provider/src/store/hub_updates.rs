//! HUB status updates that did not go through, as operations see them: the undelivered rows of
//! the HUB outbox, and an operator's re-queueing of a held one, written to the audit log in the
//! transaction that makes it. The outbox's own rows and statements are in
//! [`super::hub_outbox`].

use super::hub_outbox::Requeued;
use super::{Backend, Store, StoreError, postgres, sqlite};

impl Store {
    /// Re-queues held row `seq` (and the later held rows of its session) for `actor`, with its
    /// audit entry, in one transaction; `None`, changing nothing, when `seq` is not held.
    pub async fn requeue_hub_update(
        &self,
        seq: i64,
        actor: String,
    ) -> Result<Option<Requeued>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::hub_updates::requeue(pg, seq, &actor).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::hub_updates::requeue(c, seq, &actor))
                    .await
            }
        }
    }
}
