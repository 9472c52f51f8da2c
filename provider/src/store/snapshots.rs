//! Published snapshots (`session_outputs`): what the HUB announced about a session's outputs,
//! and so what the attachment routes serve. A snapshot row names
//!
//! - `published_through`: the highest `readings.rowid` included (rowids only grow: readings
//!   are never deleted), so the snapshot's readings are fixed; on PostgreSQL the highest
//!   `readings.seq`, cut under the session's row lock so that every reading below it has
//!   committed ([`postgres::snapshots`]);
//! - `published_at`: the set's `lastModified`;
//! - `period_start` / `period_end`: the monitoring period the outputs print (start: the
//!   gateway's enrollment, or the session's creation when it has no gateway; end: set when
//!   the session completes).
//!
//! A session has **pending** readings when some rowid is above its `published_through`; that
//! is derived from the store, so a restart loses nothing.
//!
//! Publishing (cutting a snapshot, describing its attachments and moving the session with
//! them) is one transaction; what to announce and when is the publisher's to say, through
//! [`Announcer`], asked inside that transaction about what it read.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use tm_protocol::Reading;

use super::{Backend, Store, StoreError, postgres, sqlite};
use crate::hub::contract::{Carepath, Status};

/// A published snapshot row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Highest reading rowid included.
    pub published_through: i64,
    /// `lastModified` of the set.
    pub published_at: DateTime<Utc>,
    /// Monitoring period start.
    pub period_start: DateTime<FixedOffset>,
    /// Monitoring period end, once completed.
    pub period_end: Option<DateTime<FixedOffset>>,
}

/// A session's published snapshot with what the outputs print: the session's identity, its
/// carepath and the snapshot's readings.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedSession {
    /// The Portal's id.
    pub telemonitoring_id: String,
    /// The hospital's pseudonymous patient id.
    pub patient_id: String,
    /// The prescriber (hospital).
    pub prescriber_id: String,
    /// The session's carepath, once chosen.
    pub carepath: Option<Carepath>,
    /// The snapshot row.
    pub snapshot: Snapshot,
    /// The snapshot's readings (rowid up to `published_through`), in rowid order.
    pub readings: Vec<Reading>,
    /// The snapshot's symptom answers, in the same order.
    pub symptoms: Vec<crate::symptom::SymptomAnswer>,
}

/// What a publishing transaction asks the publisher, about what it read: pure answers, no
/// store access.
pub trait Announcer: Send + Sync {
    /// When a session in `status` on `carepath`, last published at `last_published`, should
    /// next be published: `None` when nothing is `pending` or the status takes no update;
    /// otherwise the earliest time (possibly in the past: now).
    fn next_update(
        &self,
        status: Status,
        carepath: Option<&Carepath>,
        pending: bool,
        last_published: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>>;

    /// The attachment set of the snapshot just cut at `now`, as the HUB update carries it.
    fn describe(&self, published: PublishedSession, now: DateTime<Utc>) -> Vec<serde_json::Value>;
}

/// What [`Store::publish_due_update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Nothing to publish: no pending readings, or the session's status takes no update.
    NotDue,
    /// Not yet: the carepath's limit says to wait until then.
    Later(DateTime<Utc>),
    /// Published: the session's update is queued with this many attachments.
    Published {
        /// Attachments announced.
        attachments: usize,
    },
}

impl Store {
    /// The session's published snapshot with its session and readings: `None` when the session
    /// does not exist or has published nothing yet.
    pub async fn published_session(
        &self,
        telemonitoring_id: &str,
    ) -> Result<Option<PublishedSession>, StoreError> {
        let id = telemonitoring_id.to_owned();
        match &self.backend {
            Backend::Postgres(pg) => postgres::snapshots::read_published(pg, &id).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::snapshots::published_session(c, &id))
                    .await
            }
        }
    }

    /// Whether the session has readings its published snapshot does not include.
    pub async fn has_pending_readings(&self, telemonitoring_id: &str) -> Result<bool, StoreError> {
        let id = telemonitoring_id.to_owned();
        match &self.backend {
            Backend::Postgres(pg) => postgres::snapshots::read_has_pending(pg, &id).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::snapshots::has_pending(c, &id))
                    .await
            }
        }
    }

    /// The live sessions (accepted or in progress) with readings their published snapshot
    /// does not include.
    pub async fn sessions_with_pending_readings(&self) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::snapshots::read_pending_sessions(pg).await,
            Backend::Sqlite(db) => db.read(sqlite::snapshots::pending_sessions).await,
        }
    }

    /// When the session should next be published, as `announcer` judges what is stored: `None`
    /// for an unknown session, nothing pending, or a status that takes no update.
    pub async fn next_session_update(
        &self,
        telemonitoring_id: &str,
        announcer: Arc<dyn Announcer>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let id = telemonitoring_id.to_owned();
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::snapshots::read_when_due(pg, announcer.as_ref(), &id).await
            }
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::snapshots::when_due(c, announcer.as_ref(), &id))
                    .await
            }
        }
    }

    /// Publishes the session if it is due now, in one transaction: cuts a new snapshot, has
    /// `announcer` describe its attachments and moves the session to in-progress with them,
    /// queueing the HUB update. The inner error says why the session could not be moved.
    pub async fn publish_due_update(
        &self,
        telemonitoring_id: &str,
        announcer: Arc<dyn Announcer>,
    ) -> Result<Result<PublishOutcome, crate::store::sessions::TransitionError>, StoreError> {
        let id = telemonitoring_id.to_owned();
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::snapshots::publish_if_due(pg, announcer.as_ref(), &id).await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::snapshots::publish_if_due(c, announcer.as_ref(), &id))
                    .await
            }
        }
    }
}
