//! Duties one provider instance at a time performs, and the lease that says which instance.
//!
//! Several instances serving one PostgreSQL store share every table, but three duties must run
//! in exactly one of them: delivering the HUB outbox (one deliverer keeps each session's
//! updates in order), evaluating fleet alerts, and sweeping the store for sessions whose
//! attachments are due. Each is a [`Duty`], held as a [`Lease`] ([`Store::take_lease`]).
//!
//! - On **SQLite** the store is one file served by one process: the lease is always granted
//!   and never lost.
//! - On **PostgreSQL** the lease is an advisory lock on a connection of its own
//!   ([`super::postgres::lease`]): released when its holder stops or dies, then taken by the
//!   next instance that asks.
//!
//! [`crate::lease::Leader`] keeps asking for a duty's lease in the background and tells the
//! duty's actor whether this instance holds it.

use std::sync::Arc;

use tokio::sync::Notify;

use super::postgres::lease::PgLease;
use super::{Backend, Store, StoreError};

/// A duty performed by one instance at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Delivering the HUB outbox.
    HubOutbox,
    /// Evaluating fleet alerts.
    AlertEvaluator,
    /// Sweeping the store for sessions whose attachment update is due.
    AttachmentSweep,
    /// Judging new readings by the carepath's triage rules.
    Triage,
}

impl Duty {
    /// Its name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HubOutbox => "hub-outbox",
            Self::AlertEvaluator => "alert-evaluator",
            Self::AttachmentSweep => "attachment-sweep",
            Self::Triage => "triage",
        }
    }

    /// The advisory lock key ([`super::postgres::locks`]).
    fn key(self) -> i64 {
        use super::postgres::locks;
        match self {
            Self::HubOutbox => locks::HUB_OUTBOX_LEASE,
            Self::AlertEvaluator => locks::ALERT_EVALUATOR_LEASE,
            Self::AttachmentSweep => locks::ATTACHMENT_SWEEP_LEASE,
            Self::Triage => locks::TRIAGE_LEASE,
        }
    }

    /// The notification channel that wakes its holder when another instance gives it work.
    pub fn channel(self) -> Option<&'static str> {
        match self {
            Self::HubOutbox => Some("tm_hub_outbox"),
            Self::AlertEvaluator | Self::AttachmentSweep | Self::Triage => None,
        }
    }
}

/// This instance's hold on a duty; dropping it gives the duty up.
#[derive(Debug)]
pub struct Lease {
    held: Held,
}

#[derive(Debug)]
enum Held {
    /// The only instance (SQLite).
    Alone,
    /// An advisory lock.
    Postgres(PgLease),
}

impl Lease {
    /// Whether the lease still holds (on PostgreSQL: its connection answers).
    pub async fn alive(&self) -> bool {
        match &self.held {
            Held::Alone => true,
            Held::Postgres(lease) => lease.alive().await,
        }
    }
}

impl Store {
    /// Takes `duty`'s lease, or `None` while another instance holds it. `wake` is notified
    /// when another instance gives the duty work (on PostgreSQL, by [`Store::wake_duty`]).
    pub async fn take_lease(
        &self,
        duty: Duty,
        wake: Option<Arc<Notify>>,
    ) -> Result<Option<Lease>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(Lease { held: Held::Alone })),
            Backend::Postgres(pg) => Ok(pg
                .take_lease(duty.key(), duty.channel(), wake)
                .await?
                .map(|lease| Lease {
                    held: Held::Postgres(lease),
                })),
        }
    }

    /// Wakes `duty`'s holder, whichever instance it is: on SQLite the holder is this process
    /// and its own wake-up suffices, so this does nothing.
    pub async fn wake_duty(&self, duty: Duty) -> Result<(), StoreError> {
        match (&self.backend, duty.channel()) {
            (Backend::Postgres(pg), Some(channel)) => pg.notify(channel).await,
            _ => Ok(()),
        }
    }

    /// Whether several instances may serve this store at once (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }
}
