//! Sessions and the Portal's writes on PostgreSQL.
//!
//! Several provider instances change the same sessions, so every status change is a
//! read-modify-write under the session's row lock: [`transition`] reads the row with
//! `SELECT ... FOR UPDATE` (a no-op when its transaction holds the lock already), checks the
//! move against [`Status::may_become`], updates the row and queues the HUB update in the same
//! transaction ([`super::hub_outbox::enqueue`]), so two instances moving one session at once
//! are serialized: the second sees the first's status, and the outbox rows of the session
//! (`seq`, an identity) are in the order of the status changes. The session row is the first
//! lock any transaction here takes; whatever else it writes (outbox rows, gateways, snapshot)
//! comes after.
//!
//! A prescription creates its session with `INSERT ... ON CONFLICT DO NOTHING`: when two
//! instances record the same telemonitoringId at once, the second waits for the first's
//! commit, finds the row and answers as for a repeat.

use std::sync::Arc;

use tokio_postgres::{GenericClient, Row};

use super::{PgStore, gateways, hub_outbox};
use crate::hub::contract::{Action, ActionOutcome, Carepath, Status, StatusUpdate};
use crate::store::StoreError;
use crate::store::sessions::{
    NewPrescription, PrescriptionOutcome, Session, SessionActionOutcome, TransitionError,
};
use crate::store::snapshots::Announcer;

const SELECT: &str = "SELECT telemonitoring_id, patient_id, prescriber_id, status, carepath_id, \
    carepath_version FROM sessions WHERE telemonitoring_id = $1";
/// [`SELECT`], locking the row until the transaction ends.
const SELECT_FOR_UPDATE: &str = "SELECT telemonitoring_id, patient_id, prescriber_id, status, \
    carepath_id, carepath_version FROM sessions WHERE telemonitoring_id = $1 FOR UPDATE";
const INSERT: &str = "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, status, \
    created_at, updated_at) VALUES ($1, $2, $3, 'requested', $4, $4) \
    ON CONFLICT (telemonitoring_id) DO NOTHING";
const UPDATE: &str = "UPDATE sessions SET status = $2, carepath_id = $3, carepath_version = $4, \
    updated_at = $5 WHERE telemonitoring_id = $1";
const SELECT_PAGE: &str = "SELECT page_token FROM prescriptions WHERE telemonitoring_id = $1";
const INSERT_PRESCRIPTION: &str =
    "INSERT INTO prescriptions (telemonitoring_id, patient_fields, page_token) VALUES ($1, $2, $3)";

fn session(r: &Row) -> Result<Session, tokio_postgres::Error> {
    Ok(Session::from_columns(
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get(2)?,
        r.try_get::<_, &str>(3)?,
        r.try_get(4)?,
        r.try_get(5)?,
    ))
}

/// Looks a session up (no lock).
pub async fn find(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<Session>, tokio_postgres::Error> {
    c.query_opt(SELECT, &[&id])
        .await?
        .as_ref()
        .map(session)
        .transpose()
}

/// Looks a session up and locks its row until the transaction ends (`FOR UPDATE`): the first
/// lock of every transaction that changes the session.
pub async fn lock(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<Session>, tokio_postgres::Error> {
    c.query_opt(SELECT_FOR_UPDATE, &[&id])
        .await?
        .as_ref()
        .map(session)
        .transpose()
}

/// Creates a session in `requested`; false when a session of that id exists (then nothing is
/// written).
pub async fn insert_requested(
    c: &impl GenericClient,
    id: &str,
    patient_id: &str,
    prescriber_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            INSERT,
            &[&id, &patient_id, &prescriber_id, &chrono::Utc::now()],
        )
        .await?;
    Ok(n == 1)
}

/// Moves a session to `to` (or re-sends its status as an update) under its row lock, queueing
/// the HUB PUT, in the caller's transaction. `carepath` replaces the stored one when given;
/// every PUT carries the session's carepath. A final move unbinds the session's gateways.
pub async fn transition(
    pg: &PgStore,
    c: &impl GenericClient,
    id: &str,
    to: Status,
    carepath: Option<Carepath>,
    attachments: Option<Vec<serde_json::Value>>,
) -> Result<Result<Session, TransitionError>, StoreError> {
    let Some(session) = lock(c, id).await.map_err(pg.sql())? else {
        return Ok(Err(TransitionError::Unknown));
    };
    let session = match session.moved_to(to, carepath) {
        Ok(session) => session,
        Err(e) => return Ok(Err(e)),
    };
    let (carepath_id, carepath_version) = session
        .carepath
        .as_ref()
        .map(|c| (c.id.as_str(), c.version.as_str()))
        .unzip();
    c.execute(
        UPDATE,
        &[
            &id,
            &to.as_str(),
            &carepath_id,
            &carepath_version,
            &chrono::Utc::now(),
        ],
    )
    .await
    .map_err(pg.sql())?;
    let update = StatusUpdate {
        telemonitoring_id: id.to_owned(),
        status: to,
        provider_context: None,
        carepath: session.carepath.clone(),
        attachments,
    };
    let body = serde_json::to_string(&update)
        .map_err(|e| pg.error(format!("a status update does not serialize: {e}")))?;
    hub_outbox::enqueue(c, id, &body).await.map_err(pg.sql())?;
    if to.is_final() {
        gateways::unbind_session(c, id).await.map_err(pg.sql())?;
    }
    Ok(Ok(session))
}

/// The answer to a prescription for a session that exists.
async fn repeat_answer(
    c: &impl GenericClient,
    s: &Session,
    rx: &NewPrescription,
) -> Result<PrescriptionOutcome, tokio_postgres::Error> {
    if s.patient_id != rx.patient_id || s.prescriber_id != rx.prescriber_id {
        return Ok(PrescriptionOutcome::Conflict);
    }
    if s.status != Status::Requested {
        return Ok(PrescriptionOutcome::Known);
    }
    let page_token = c
        .query_opt(SELECT_PAGE, &[&rx.telemonitoring_id])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    Ok(PrescriptionOutcome::Waiting { page_token })
}

/// Records a prescription in one transaction (see
/// [`crate::store::Store::record_prescription`]).
pub async fn record_prescription(
    pg: &PgStore,
    rx: &NewPrescription,
) -> Result<PrescriptionOutcome, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let id = rx.telemonitoring_id.as_str();
    let existing = match lock(&*tx, id).await.map_err(pg.sql())? {
        Some(s) => Some(s),
        None if insert_requested(&*tx, id, &rx.patient_id, &rx.prescriber_id)
            .await
            .map_err(pg.sql())? =>
        {
            None
        }
        // Another instance created it meanwhile (and committed: the insert waited for it).
        None => Some(
            lock(&*tx, id)
                .await
                .map_err(pg.sql())?
                .ok_or_else(|| pg.error("a session created concurrently is not found"))?,
        ),
    };
    let answer = match existing {
        Some(s) => repeat_answer(&*tx, &s, rx).await.map_err(pg.sql())?,
        None => {
            tx.execute(
                INSERT_PRESCRIPTION,
                &[&rx.telemonitoring_id, &rx.patient_fields, &rx.page_token],
            )
            .await
            .map_err(pg.sql())?;
            PrescriptionOutcome::Created {
                page_token: rx.page_token.clone(),
            }
        }
    };
    tx.commit().await.map_err(pg.sql())?;
    Ok(answer)
}

/// Applies a Portal action in one transaction, under the session's row lock (see
/// [`crate::store::Store::act_on_session`]).
pub async fn act_on_session(
    pg: &PgStore,
    telemonitoring_id: &str,
    prescriber_id: &str,
    action: Action,
    announcer: Arc<dyn Announcer>,
) -> Result<SessionActionOutcome, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let result = match lock(&*tx, telemonitoring_id).await.map_err(pg.sql())? {
        Some(s) if s.prescriber_id == prescriber_id => match action.outcome(s.status) {
            ActionOutcome::AlreadyThere => SessionActionOutcome::AlreadyThere,
            ActionOutcome::Refused(m) => SessionActionOutcome::Refused(m),
            ActionOutcome::MoveTo(to) => {
                let moved = super::snapshots::transition_with_outputs(
                    pg,
                    &*tx,
                    announcer.as_ref(),
                    telemonitoring_id,
                    to,
                    None,
                    chrono::Utc::now(),
                )
                .await?;
                match moved {
                    Ok(_) => SessionActionOutcome::Moved,
                    Err(e) => SessionActionOutcome::NotMoved(e),
                }
            }
        },
        _ => SessionActionOutcome::Unknown,
    };
    tx.commit().await.map_err(pg.sql())?;
    Ok(result)
}
