//! Telemonitoring sessions: the provider owns their status (docs/portal-hub.md §3).
//!
//! Every status change goes through [`transition`], inside the caller's transaction: it checks
//! the move against [`Status::may_become`], updates the row, queues the HUB update in the
//! durable outbox in the same commit (so a change is never made without its PUT, nor a PUT
//! sent for a change that was rolled back), and unbinds the session's gateways when it ends.

use rusqlite::{OptionalExtension as _, params};
use tm_protocol::GatewayId;

use crate::gateways::{self, GatewayState};
use crate::hub::contract::{Carepath, Status, StatusUpdate};
use crate::hub::queue;

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

const SELECT: &str = "SELECT telemonitoring_id, patient_id, prescriber_id, status, carepath_id, \
                      carepath_version FROM sessions WHERE telemonitoring_id = ?1";
const INSERT: &str = "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, status, \
                      created_at, updated_at) VALUES (?1, ?2, ?3, 'requested', ?4, ?4)";
const UPDATE: &str = "UPDATE sessions SET status = ?2, carepath_id = ?3, carepath_version = ?4, \
                      updated_at = ?5 WHERE telemonitoring_id = ?1";
const BOUND_GATEWAYS: &str =
    "SELECT gateway_id FROM gateways WHERE telemonitoring_id = ?1 AND state = 'active'";

/// Looks a session up.
pub fn find(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Session>> {
    conn.query_row(SELECT, params![id], |r| {
        let status: String = r.get(3)?;
        let carepath = match (
            r.get::<_, Option<String>>(4)?,
            r.get::<_, Option<String>>(5)?,
        ) {
            (Some(id), Some(version)) => Some(Carepath { id, version }),
            _ => None,
        };
        Ok(Session {
            telemonitoring_id: r.get(0)?,
            patient_id: r.get(1)?,
            prescriber_id: r.get(2)?,
            // Only this module writes the column, always from `Status::as_str`.
            status: Status::parse(&status).unwrap_or(Status::Cancelled),
            carepath,
        })
    })
    .optional()
}

/// Creates a session in `requested` (the Portal created it at the HUB with that status).
pub fn insert_requested(
    conn: &rusqlite::Connection,
    id: &str,
    patient_id: &str,
    prescriber_id: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        INSERT,
        params![
            id,
            patient_id,
            prescriber_id,
            chrono::Utc::now().to_rfc3339()
        ],
    )?;
    Ok(())
}

/// Moves a session to `to` (or re-sends its status as an update), queueing the HUB PUT.
/// `carepath` replaces the stored one when given; every PUT carries the session's carepath.
pub fn transition(
    conn: &rusqlite::Connection,
    id: &str,
    to: Status,
    carepath: Option<Carepath>,
    attachments: Option<Vec<serde_json::Value>>,
) -> rusqlite::Result<Result<Session, TransitionError>> {
    let Some(mut session) = find(conn, id)? else {
        return Ok(Err(TransitionError::Unknown));
    };
    if !session.status.may_become(to) {
        return Ok(Err(TransitionError::Illegal {
            from: session.status,
            to,
        }));
    }
    if carepath.is_some() {
        session.carepath = carepath;
    }
    session.status = to;
    conn.execute(
        UPDATE,
        params![
            id,
            to.as_str(),
            session.carepath.as_ref().map(|c| c.id.clone()),
            session.carepath.as_ref().map(|c| c.version.clone()),
            chrono::Utc::now().to_rfc3339()
        ],
    )?;
    queue::enqueue(
        conn,
        &StatusUpdate {
            telemonitoring_id: id.to_owned(),
            status: to,
            provider_context: None,
            carepath: session.carepath.clone(),
            attachments,
        },
    )?;
    if to.is_final() {
        let mut stmt = conn.prepare(BOUND_GATEWAYS)?;
        let ids: Vec<String> = stmt
            .query_map(params![id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for gw in ids.into_iter().filter_map(|g| GatewayId::new(g).ok()) {
            gateways::set_state(conn, &gw, GatewayState::Unbound)?;
        }
    }
    Ok(Ok(session))
}
