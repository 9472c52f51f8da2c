//! The nurse's enrollment page (server-rendered HTML, usable on a phone): the pseudonymous
//! patient id, the carepath choice (heart failure by default) and, after "issue code", the
//! one-time enrollment code to type on the gateway. The page is reached only through the
//! unguessable URL answered to the Portal.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{checkin, frame as page};
use crate::html::escape;
use crate::hub::contract::{CAREPATHS, Carepath, Status};
use crate::portal::state::AppState;
use crate::store::enrollment::{EnrollmentPage, IssuedCode};

#[tracing::instrument(name = "enroll", skip_all)]
async fn lookup(app: &AppState, token: String) -> Result<Option<EnrollmentPage>, Response> {
    app.store.enrollment_page(token).await.map_err(|e| {
        tracing::error!(error = %e, "store failure");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(page("<p>Internal error, try again.</p>")),
        )
            .into_response()
    })
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page("<p>This enrollment link is not valid.</p>")),
    )
        .into_response()
}

fn form(patient_id: &str) -> String {
    let options: String = CAREPATHS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                escape(c.id),
                if i == 0 { " selected" } else { "" },
                escape(c.label)
            )
        })
        .collect();
    format!(
        "<p>Patient: <strong>{}</strong></p><form method=\"post\">\
         <label for=\"carepath\">Carepath</label>\
         <select id=\"carepath\" name=\"carepath\">{options}</select>\
         <button type=\"submit\">Issue enrollment code</button></form>",
        escape(patient_id)
    )
}

/// `GET /enroll/{token}`.
pub async fn show(State(app): State<AppState>, Path(token): Path<String>) -> Response {
    match lookup(&app, token.clone()).await {
        Err(r) => r,
        Ok(None) => not_found(),
        Ok(Some(EnrollmentPage {
            patient_id: patient,
            status: Status::Requested,
            ..
        })) => Html(page(&form(&patient))).into_response(),
        Ok(Some(EnrollmentPage {
            telemonitoring_id,
            patient_id: patient,
            status,
        })) => {
            let mut body = format!(
                "<p>Patient: <strong>{}</strong></p><p>Enrollment is closed: the session is {}.</p>",
                escape(&patient),
                status.as_str()
            );
            if checkin::live(status) {
                match app.store.checkin_issued_at(telemonitoring_id).await {
                    Ok(issued) => body.push_str(&checkin::section(&token, issued)),
                    Err(e) => tracing::error!(error = %e, "store failure"),
                }
            }
            Html(page(&body)).into_response()
        }
    }
}

/// The page's form.
#[derive(Debug, Deserialize)]
pub struct IssueForm {
    /// The chosen carepath id.
    pub carepath: String,
}

/// `POST /enroll/{token}`: issues a one-time code for the chosen carepath.
#[tracing::instrument(name = "enroll", skip_all)]
pub async fn issue(
    State(app): State<AppState>,
    Path(token): Path<String>,
    Form(f): Form<IssueForm>,
) -> Response {
    let (id, patient) = match lookup(&app, token).await {
        Err(r) => return r,
        Ok(None) => return not_found(),
        Ok(Some(EnrollmentPage {
            telemonitoring_id,
            patient_id,
            status: Status::Requested,
        })) => (telemonitoring_id, patient_id),
        Ok(Some(_)) => {
            return (
                StatusCode::CONFLICT,
                Html(page("<p>Enrollment is closed for this session.</p>")),
            )
                .into_response();
        }
    };
    let Some(known) = CAREPATHS.iter().find(|c| c.id == f.carepath) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(page("<p>Unknown carepath.</p>")),
        )
            .into_response();
    };
    let carepath = Carepath {
        id: known.id.into(),
        version: known.version.into(),
    };
    let settings = &app.portal.enrollment;
    let ttl_ms = i64::try_from(settings.code_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let per_hour = settings.codes_per_session_per_hour;
    let issued = app
        .store
        .issue_enrollment_code(id, carepath, ttl_ms, per_hour)
        .await;
    match issued {
        Ok(Ok(IssuedCode {
            code,
            expires_at_ms: expires_ms,
        })) => {
            let expires = chrono::DateTime::from_timestamp_millis(expires_ms)
                .map(|t| t.format("%H:%M UTC").to_string())
                .unwrap_or_default();
            Html(page(&format!(
                "<p>Patient: <strong>{}</strong></p><p>Carepath: {}</p>\
                 <p>On the gateway run <code>tm-gateway enroll --provider URL --code CODE</code> \
                 with this one-time code (valid until {expires}):</p>\
                 <p class=\"code\" id=\"code\">{code}</p>",
                escape(&patient),
                escape(known.label)
            )))
            .into_response()
        }
        Ok(Err(why)) => (
            StatusCode::TOO_MANY_REQUESTS,
            Html(page(&format!("<p>{}</p>", escape(&why.to_string())))),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(page("<p>Internal error.</p>")),
            )
                .into_response()
        }
    }
}
