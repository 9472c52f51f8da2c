//! The Portal-facing endpoints (docs/portal-hub.md §2): the prescription URI and the Action URI.
//!
//! Both check the provider's fixed headers first, then read the body (bounded), validate it
//! ([`request`]), check that the prescriber activated us (its specific headers, its signed
//! data-processing agreement), and answer with one of the contract's three answers: 200 with
//! an empty body, 200 with `{"url": ...}` (the nurse's enrollment page), or a 4xx with
//! `{"message": ...}`. A repeated request for a known telemonitoringId gets the same answer.

pub mod request;
pub mod settings;
pub mod state;

pub use state::{AppState, Portal};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension as _, params};
use serde_json::json;

use crate::http::Routes;
use crate::hub::contract::{ActionOutcome, Status};
use crate::sessions;
use request::Refusal;

/// The Portal endpoints and the enrollment page and API, sharing `state`.
pub fn routes(state: AppState) -> Routes {
    Routes::new()
        .post(PRESCRIPTION_ROUTE, prescription)
        .post(ACTION_ROUTE, action)
        .get(crate::enroll::PAGE_ROUTE, crate::enroll::page::show)
        .post(crate::enroll::PAGE_ROUTE, crate::enroll::page::issue)
        .post(
            tm_protocol::routes::http::ENROLL,
            crate::enroll::api::enroll,
        )
        .map_router(|router| router.with_state(state))
}

/// The prescription URI declared to the Portal.
pub const PRESCRIPTION_ROUTE: &str = "/portal/v1/prescriptions";
/// The Action URI declared to the Portal.
pub const ACTION_ROUTE: &str = "/portal/v1/actions";

fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "store failure");
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error, try again",
    )
}

/// Checks the prescriber's activation and its specific headers.
fn check_prescriber(
    app: &AppState,
    headers: &HeaderMap,
    prescriber_id: &str,
    need_dpa: bool,
) -> Result<(), Refusal> {
    let Some(p) = app
        .portal
        .section
        .prescribers
        .iter()
        .find(|p| p.id == prescriber_id)
    else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "unknown prescriber: this hospital has not activated the provider",
        ));
    };
    request::check_headers(headers, &p.headers)?;
    if need_dpa && !p.dpa_signed {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "DPA has not been signed yet",
        ));
    }
    Ok(())
}

const SELECT_PAGE: &str = "SELECT page_token FROM prescriptions WHERE telemonitoring_id = ?1";
const INSERT_PRESCRIPTION: &str =
    "INSERT INTO prescriptions (telemonitoring_id, patient_fields, page_token) VALUES (?1, ?2, ?3)";

/// `POST /portal/v1/prescriptions`.
pub async fn prescription(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match prescribe(&app, &headers, body).await {
        Ok(None) => StatusCode::OK.into_response(),
        Ok(Some(url)) => Json(json!({ "url": url })).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn prescribe(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Option<String>, Refusal> {
    let portal = &app.portal;
    request::check_headers(headers, &portal.section.fixed_headers)?;
    let bytes = crate::http::body::read_limited(body, portal.section.max_body_bytes).await?;
    let rx = request::parse_prescription(&bytes, &portal.section.patient_fields)?;
    check_prescriber(app, headers, &rx.prescriber_id, true)?;
    let fields = serde_json::to_string(&rx.kept_fields).map_err(internal)?;
    let new_token = crate::enroll::random_token();
    let answer = app
        .db
        .write(move |c| {
            let tx = c.transaction()?;
            let answer = match sessions::find(&tx, &rx.telemonitoring_id)? {
                Some(s) if s.patient_id != rx.patient_id || s.prescriber_id != rx.prescriber_id => {
                    Err(Refusal::new(
                        StatusCode::CONFLICT,
                        "this telemonitoringId is already used for another prescription",
                    ))
                }
                Some(s) if s.status == Status::Requested => {
                    let token: Option<String> = tx
                        .query_row(SELECT_PAGE, params![rx.telemonitoring_id], |r| r.get(0))
                        .optional()?;
                    Ok(token)
                }
                Some(_) => Ok(None),
                None => {
                    sessions::insert_requested(
                        &tx,
                        &rx.telemonitoring_id,
                        &rx.patient_id,
                        &rx.prescriber_id,
                    )?;
                    tx.execute(
                        INSERT_PRESCRIPTION,
                        params![rx.telemonitoring_id, fields, new_token],
                    )?;
                    Ok(Some(new_token))
                }
            };
            tx.commit()?;
            Ok(answer)
        })
        .await
        .map_err(internal)??;
    Ok(answer.map(|token| format!("{}/enroll/{token}", portal.public_url)))
}

/// `POST /portal/v1/actions`.
pub async fn action(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match act(&app, &headers, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(r) => r.into_response(),
    }
}

async fn act(app: &AppState, headers: &HeaderMap, body: Body) -> Result<(), Refusal> {
    let portal = &app.portal;
    request::check_headers(headers, &portal.section.fixed_headers)?;
    let bytes = crate::http::body::read_limited(body, portal.section.max_body_bytes).await?;
    let a = request::parse_action(&bytes)?;
    check_prescriber(app, headers, &a.prescriber_id, false)?;
    let publisher = portal.publisher.clone();
    let moved = app
        .db
        .write(move |c| {
            let tx = c.transaction()?;
            let result = match sessions::find(&tx, &a.telemonitoring_id)? {
                Some(s) if s.prescriber_id == a.prescriber_id => match a.action.outcome(s.status) {
                    ActionOutcome::AlreadyThere => Ok(false),
                    ActionOutcome::Refused(m) => Err(Refusal::new(StatusCode::CONFLICT, m)),
                    ActionOutcome::MoveTo(to) => {
                        let now = chrono::Utc::now();
                        match publisher.transition(&tx, &a.telemonitoring_id, to, None, now)? {
                            Ok(_) => Ok(true),
                            Err(e) => Err(Refusal::new(StatusCode::CONFLICT, e.to_string())),
                        }
                    }
                },
                _ => Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    "unknown telemonitoringId",
                )),
            };
            tx.commit()?;
            Ok(result)
        })
        .await
        .map_err(internal)??;
    if moved {
        portal.wake_outbox.notify_one();
    }
    Ok(())
}
