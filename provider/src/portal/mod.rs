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
use serde_json::json;

use crate::http::Routes;
use crate::store::sessions::{NewPrescription, PrescriptionOutcome, SessionActionOutcome};
use request::Refusal;

/// The Portal endpoints, the enrollment page and API, the claim hello and the setup pages,
/// sharing `state`.
pub fn routes(state: AppState) -> Routes {
    Routes::new()
        .post(PRESCRIPTION_ROUTE, prescription)
        .post(ACTION_ROUTE, action)
        .get(crate::enroll::PAGE_ROUTE, crate::enroll::page::show)
        .post(crate::enroll::PAGE_ROUTE, crate::enroll::page::issue)
        .post(
            crate::enroll::checkin::ISSUE_ROUTE,
            crate::enroll::checkin::issue,
        )
        .post(
            crate::enroll::checkin::REVOKE_ROUTE,
            crate::enroll::checkin::revoke,
        )
        .post(
            tm_protocol::routes::http::ENROLL,
            crate::enroll::api::enroll,
        )
        .post(
            tm_protocol::routes::http::CLAIM_HELLO,
            crate::enroll::hello::hello,
        )
        .post(crate::enroll::claim::ROUTE, crate::enroll::claim::claim)
        .get(
            crate::enroll::setup::STATE_ROUTE,
            crate::enroll::setup::state,
        )
        .post(crate::enroll::setup::PAIR_ROUTE, crate::enroll::setup::pair)
        .post(
            crate::enroll::setup::SECRET_ROUTE,
            crate::enroll::setup::relay_secret,
        )
        .post(
            crate::enroll::setup::UNPAIR_ROUTE,
            crate::enroll::setup::unpair,
        )
        .post(crate::enroll::setup::DONE_ROUTE, crate::enroll::setup::done)
        .get(
            crate::enroll::assets::SCRIPT_ROUTE,
            crate::enroll::assets::script,
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
    let prescription = NewPrescription {
        telemonitoring_id: rx.telemonitoring_id,
        patient_id: rx.patient_id,
        prescriber_id: rx.prescriber_id,
        patient_fields: fields,
        page_token: crate::enroll::random_token(),
    };
    let answer = match app
        .store
        .record_prescription(prescription)
        .await
        .map_err(internal)?
    {
        PrescriptionOutcome::Created { page_token } => Some(page_token),
        PrescriptionOutcome::Waiting { page_token } => page_token,
        PrescriptionOutcome::Known => None,
        PrescriptionOutcome::Conflict => {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "this telemonitoringId is already used for another prescription",
            ));
        }
    };
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
    let outcome = app
        .store
        .act_on_session(
            a.telemonitoring_id,
            a.prescriber_id,
            a.action,
            portal.publisher.clone(),
        )
        .await
        .map_err(internal)?;
    let moved = match outcome {
        SessionActionOutcome::Moved => true,
        SessionActionOutcome::AlreadyThere => false,
        SessionActionOutcome::Refused(m) => return Err(Refusal::new(StatusCode::CONFLICT, m)),
        SessionActionOutcome::NotMoved(e) => {
            return Err(Refusal::new(StatusCode::CONFLICT, e.to_string()));
        }
        SessionActionOutcome::Unknown => {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "unknown telemonitoringId",
            ));
        }
    };
    if moved {
        portal.wake_outbox.notify_one();
    }
    Ok(())
}
