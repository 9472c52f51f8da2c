//! Leadership of a duty among the provider instances sharing a store.
//!
//! A [`Leader`] asks for a duty's lease ([`Store::take_lease`]) in the background until this
//! instance holds it, then checks it every [`CHECK_EVERY`]; when the check fails (the lease's
//! connection is gone, so another instance may hold it already) it reports the duty lost and
//! asks again every [`RETRY_EVERY`]. The duty's actor asks [`Leader::is_held`] before each unit
//! of work, or waits with [`Leader::held`] and [`Leader::lost`].
//!
//! An instance that dies gives its leases up with its connections; a waiting instance takes a
//! duty over within [`RETRY_EVERY`] of the server noticing. On SQLite the lease is held from the
//! start and never lost, and no task runs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::store::leases::Duty;

/// How often a held lease is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often an instance without the lease asks for it.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);

/// Whether this instance holds a duty; cheap to clone.
#[derive(Debug, Clone)]
pub struct Leader {
    duty: Duty,
    held: watch::Receiver<bool>,
}

impl Leader {
    /// Starts asking for `duty` on `store` until `shutdown`; `wake` is notified when another
    /// instance gives the duty work.
    pub fn start(
        store: Store,
        duty: Duty,
        wake: Option<Arc<Notify>>,
        shutdown: CancellationToken,
    ) -> Self {
        if !store.is_shared() {
            let (_, held) = watch::channel(true);
            return Self { duty, held };
        }
        let (tx, held) = watch::channel(false);
        tokio::spawn(hold(store, duty, wake, tx, shutdown));
        Self { duty, held }
    }

    /// Whether this instance holds the duty now.
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits until this instance holds the duty (at once when it does); returns `false` when
    /// the leader stopped (shutdown).
    pub async fn held(&mut self) -> bool {
        self.held.wait_for(|held| *held).await.is_ok()
    }

    /// Waits until the duty is lost (never on SQLite, nor after shutdown).
    pub async fn lost(&mut self) {
        if self.held.wait_for(|held| !*held).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The duty.
    pub fn duty(&self) -> Duty {
        self.duty
    }
}

/// Holds `duty` whenever it can until `shutdown`, publishing whether it does on `tx`.
async fn hold(
    store: Store,
    duty: Duty,
    wake: Option<Arc<Notify>>,
    tx: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let name = duty.as_str();
    loop {
        match store.take_lease(duty, wake.clone()).await {
            Ok(Some(lease)) => {
                tracing::info!(duty = name, "this instance holds the duty");
                tx.send_replace(true);
                if let Some(wake) = &wake {
                    // Work may have arrived while another instance held it.
                    wake.notify_one();
                }
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            tx.send_replace(false);
                            return;
                        }
                        () = tokio::time::sleep(CHECK_EVERY) => {}
                    }
                    if !lease.alive().await {
                        break;
                    }
                }
                tx.send_replace(false);
                tracing::warn!(
                    duty = name,
                    "the duty's lease was lost; asking for it again"
                );
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(duty = name, error = %e, "cannot ask for the duty's lease");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}
