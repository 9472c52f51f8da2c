//! Telemonitoring sessions: the provider owns their status (docs/portal-hub.md §3).
//!
//! The Portal creates a session with its prescription ([`Store::record_prescription`]) and ends
//! it with an action ([`Store::act_on_session`]); enrollment accepts it
//! ([`Store::enroll_gateway`]) and the publisher moves it on with its outputs.
//!
//! Every status change goes through one transition, inside the caller's transaction
//! ([`sqlite::sessions::transition`] on SQLite, [`postgres::sessions::transition`] under the
//! session's row lock on PostgreSQL): it checks the move against
//! [`Status::may_become`], updates the row, queues the HUB update in the durable outbox in the
//! same commit (so a change is never made without its PUT, nor a PUT sent for a change that was
//! rolled back), and unbinds the session's gateways when it ends.

use std::sync::Arc;

use crate::hub::contract::{Action, Carepath, Status};

use super::{Backend, Store, StoreError, postgres, sqlite};

/// A session row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The Portal's id.
    pub telemonitoring_id: String,
    /// The hospital's pseudonymous patient id.
    pub patient_id: String,
    /// The prescriber (hospital).
    pub prescriber_id: String,
    /// Current status.
    pub status: Status,
    /// The carepath, once chosen.
    pub carepath: Option<Carepath>,
}

impl Session {
    /// The session moved to `to` (with `carepath` when one is chosen), or why it may not move
    /// ([`Status::may_become`]); the same rule on both backends.
    pub(crate) fn moved_to(
        mut self,
        to: Status,
        carepath: Option<Carepath>,
    ) -> Result<Self, TransitionError> {
        if !self.status.may_become(to) {
            return Err(TransitionError::Illegal {
                from: self.status,
                to,
            });
        }
        if carepath.is_some() {
            self.carepath = carepath;
        }
        self.status = to;
        Ok(self)
    }

    /// A session from its stored columns (either backend): the status as stored text (only
    /// the store writes it, always from `Status::as_str`; anything else reads as cancelled), the
    /// carepath when both its id and version are set.
    pub(crate) fn from_columns(
        telemonitoring_id: String,
        patient_id: String,
        prescriber_id: String,
        status: &str,
        carepath_id: Option<String>,
        carepath_version: Option<String>,
    ) -> Self {
        let carepath = match (carepath_id, carepath_version) {
            (Some(id), Some(version)) => Some(Carepath { id, version }),
            _ => None,
        };
        Self {
            telemonitoring_id,
            patient_id,
            prescriber_id,
            status: Status::parse(status).unwrap_or(Status::Cancelled),
            carepath,
        }
    }
}

/// Why a status change is not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// No such session.
    #[error("unknown session")]
    Unknown,
    /// The move is not legal.
    #[error("a session cannot go from {} to {}", from.as_str(), to.as_str())]
    Illegal {
        /// Current status.
        from: Status,
        /// Requested status.
        to: Status,
    },
}

/// A prescription the Portal sent, validated, as it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPrescription {
    /// The Portal's session id.
    pub telemonitoring_id: String,
    /// Pseudonymous patient id.
    pub patient_id: String,
    /// Prescriber (hospital) id.
    pub prescriber_id: String,
    /// The declared patient fields that were present, as a JSON object.
    pub patient_fields: String,
    /// The enrollment page token to give a new session.
    pub page_token: String,
}

/// What recording a prescription did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrescriptionOutcome {
    /// A new session, in `requested`, with the page token it was given.
    Created {
        /// The new enrollment page token.
        page_token: String,
    },
    /// A repeat for a session still waiting for enrollment: its page token, if it has one.
    Waiting {
        /// The session's enrollment page token.
        page_token: Option<String>,
    },
    /// A repeat for a session past enrollment: nothing to answer but 200.
    Known,
    /// The telemonitoringId is already used with another patient or prescriber.
    Conflict,
}

/// What a Portal action did to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionActionOutcome {
    /// The session moved (its HUB update is queued).
    Moved,
    /// The session already is where the action leads.
    AlreadyThere,
    /// The action is refused in the session's status (the message says why).
    Refused(&'static str),
    /// The transition was not made.
    NotMoved(TransitionError),
    /// No such session for this prescriber.
    Unknown,
}

impl Store {
    /// Records a Portal prescription in one transaction: a new session in `requested` with its
    /// prescription row, or the answer for a repeat of a known telemonitoringId.
    pub async fn record_prescription(
        &self,
        prescription: NewPrescription,
    ) -> Result<PrescriptionOutcome, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::sessions::record_prescription(pg, &prescription).await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::sessions::record_prescription(c, &prescription))
                    .await
            }
        }
    }

    /// Applies a Portal action (stop, cancel) to a session of `prescriber_id` in one
    /// transaction; a move cuts the session's snapshot and asks `announcer` for the final
    /// outputs announced with it.
    pub async fn act_on_session(
        &self,
        telemonitoring_id: String,
        prescriber_id: String,
        action: Action,
        announcer: Arc<dyn super::snapshots::Announcer>,
    ) -> Result<SessionActionOutcome, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::sessions::act_on_session(
                    pg,
                    &telemonitoring_id,
                    &prescriber_id,
                    action,
                    announcer,
                )
                .await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| {
                    sqlite::sessions::act_on_session(
                        c,
                        &telemonitoring_id,
                        &prescriber_id,
                        action,
                        announcer.as_ref(),
                    )
                })
                .await
            }
        }
    }
}
