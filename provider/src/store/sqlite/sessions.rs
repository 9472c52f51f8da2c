//! The sessions' statements on SQLite, and the Portal's transactions over them (prescriptions,
//! actions).

use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::GatewayId;

use crate::hub::contract::{Action, ActionOutcome, Carepath, Status, StatusUpdate};
use crate::store::gateways::GatewayState;
use crate::store::sessions::{
    NewPrescription, PrescriptionOutcome, Session, SessionActionOutcome, TransitionError,
};

const SELECT: &str = "SELECT telemonitoring_id, patient_id, prescriber_id, status, carepath_id, \
                      carepath_version FROM sessions WHERE telemonitoring_id = ?1";
const INSERT: &str = "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, status, \
                      created_at, updated_at) VALUES (?1, ?2, ?3, 'requested', ?4, ?4)";
const UPDATE: &str = "UPDATE sessions SET status = ?2, carepath_id = ?3, carepath_version = ?4, \
                      updated_at = ?5 WHERE telemonitoring_id = ?1";
const BOUND_GATEWAYS: &str =
    "SELECT gateway_id FROM gateways WHERE telemonitoring_id = ?1 AND state = 'active'";
const SELECT_PAGE: &str = "SELECT page_token FROM prescriptions WHERE telemonitoring_id = ?1";
const INSERT_PRESCRIPTION: &str =
    "INSERT INTO prescriptions (telemonitoring_id, patient_fields, page_token) VALUES (?1, ?2, ?3)";

/// Looks a session up.
pub fn find(conn: &Connection, id: &str) -> rusqlite::Result<Option<Session>> {
    conn.query_row(SELECT, params![id], |r| {
        Ok(Session::from_columns(
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            &r.get::<_, String>(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .optional()
}

/// Creates a session in `requested` (the Portal created it at the HUB with that status).
pub fn insert_requested(
    conn: &Connection,
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

/// Moves a session to `to` (or re-sends its status as an update), queueing the HUB PUT, in the
/// caller's transaction. `carepath` replaces the stored one when given; every PUT carries the
/// session's carepath.
pub fn transition(
    conn: &Connection,
    id: &str,
    to: Status,
    carepath: Option<Carepath>,
    attachments: Option<Vec<serde_json::Value>>,
) -> rusqlite::Result<Result<Session, TransitionError>> {
    let Some(session) = find(conn, id)? else {
        return Ok(Err(TransitionError::Unknown));
    };
    let session = match session.moved_to(to, carepath) {
        Ok(session) => session,
        Err(e) => return Ok(Err(e)),
    };
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
    crate::store::sqlite::hub_outbox::enqueue(
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
            super::gateways::set_state(conn, &gw, GatewayState::Unbound)?;
        }
    }
    Ok(Ok(session))
}

/// Records a prescription, in its own transaction (see
/// [`crate::store::Store::record_prescription`]).
pub fn record_prescription(
    c: &mut Connection,
    rx: &NewPrescription,
) -> rusqlite::Result<PrescriptionOutcome> {
    let tx = c.transaction()?;
    let answer = match find(&tx, &rx.telemonitoring_id)? {
        Some(s) if s.patient_id != rx.patient_id || s.prescriber_id != rx.prescriber_id => {
            PrescriptionOutcome::Conflict
        }
        Some(s) if s.status == Status::Requested => {
            let page_token: Option<String> = tx
                .query_row(SELECT_PAGE, params![rx.telemonitoring_id], |r| r.get(0))
                .optional()?;
            PrescriptionOutcome::Waiting { page_token }
        }
        Some(_) => PrescriptionOutcome::Known,
        None => {
            insert_requested(
                &tx,
                &rx.telemonitoring_id,
                &rx.patient_id,
                &rx.prescriber_id,
            )?;
            tx.execute(
                INSERT_PRESCRIPTION,
                params![rx.telemonitoring_id, rx.patient_fields, rx.page_token],
            )?;
            PrescriptionOutcome::Created {
                page_token: rx.page_token.clone(),
            }
        }
    };
    tx.commit()?;
    Ok(answer)
}

/// Applies a Portal action, in its own transaction (see
/// [`crate::store::Store::act_on_session`]).
pub fn act_on_session(
    c: &mut Connection,
    telemonitoring_id: &str,
    prescriber_id: &str,
    action: Action,
    announcer: &dyn crate::store::snapshots::Announcer,
) -> rusqlite::Result<SessionActionOutcome> {
    let tx = c.transaction()?;
    let result = match find(&tx, telemonitoring_id)? {
        Some(s) if s.prescriber_id == prescriber_id => match action.outcome(s.status) {
            ActionOutcome::AlreadyThere => SessionActionOutcome::AlreadyThere,
            ActionOutcome::Refused(m) => SessionActionOutcome::Refused(m),
            ActionOutcome::MoveTo(to) => {
                let now = chrono::Utc::now();
                let moved = super::snapshots::transition_with_outputs(
                    &tx,
                    announcer,
                    telemonitoring_id,
                    to,
                    None,
                    now,
                )?;
                match moved {
                    Ok(_) => SessionActionOutcome::Moved,
                    Err(e) => SessionActionOutcome::NotMoved(e),
                }
            }
        },
        _ => SessionActionOutcome::Unknown,
    };
    tx.commit()?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn prescription(id: &str, patient: &str, token: &str) -> NewPrescription {
        NewPrescription {
            telemonitoring_id: id.into(),
            patient_id: patient.into(),
            prescriber_id: "rx-1".into(),
            patient_fields: "{}".into(),
            page_token: token.into(),
        }
    }

    #[tokio::test]
    async fn a_prescription_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        let first = store
            .record_prescription(prescription("tm-1", "p-1", "t-1"))
            .await
            .unwrap();
        assert_eq!(
            first,
            PrescriptionOutcome::Created {
                page_token: "t-1".into()
            }
        );
        let again = store
            .record_prescription(prescription("tm-1", "p-1", "t-2"))
            .await
            .unwrap();
        assert_eq!(
            again,
            PrescriptionOutcome::Waiting {
                page_token: Some("t-1".into())
            }
        );
        let other = store
            .record_prescription(prescription("tm-1", "p-2", "t-3"))
            .await
            .unwrap();
        assert_eq!(other, PrescriptionOutcome::Conflict);
        let moved = store
            .sqlite()
            .expect("a SQLite store")
            .write(|c| transition(c, "tm-1", Status::Cancelled, None, None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.status, Status::Cancelled);
        let known = store
            .record_prescription(prescription("tm-1", "p-1", "t-4"))
            .await
            .unwrap();
        assert_eq!(known, PrescriptionOutcome::Known);
    }

    #[tokio::test]
    async fn a_transition_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        store
            .record_prescription(prescription("tm-1", "p-1", "t-1"))
            .await
            .unwrap();
        let (unknown, illegal) = store
            .sqlite()
            .expect("a SQLite store")
            .write(|c| {
                Ok((
                    transition(c, "tm-2", Status::Accepted, None, None)?,
                    transition(c, "tm-1", Status::Completed, None, None)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(unknown, Err(TransitionError::Unknown));
        assert_eq!(
            illegal,
            Err(TransitionError::Illegal {
                from: Status::Requested,
                to: Status::Completed
            })
        );
    }
}
