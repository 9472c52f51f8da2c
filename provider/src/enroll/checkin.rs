//! The nurse's part of the patient's check-in ([`crate::checkin`]), on the enrollment page once
//! the session is live: she
//! creates the patient's personal link in the patient's language and hands it over as a QR
//! code to scan (or print) and as text; she stops it there too, and creating a new one stops
//! the old one (a lost phone). The link is shown once: the store keeps only its hash.
//!
//! Routes, beside the enrollment page: `POST /enroll/{token}/checkin` (`language=nl|fr|en`)
//! and `POST /enroll/{token}/checkin/revoke`. Forms from another site are refused.

use std::fmt::Write as _;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use qrcode::{Color, EcLevel, QrCode};
use serde::Deserialize;

use crate::checkin::CAREPATHS;
use crate::html::escape;
use crate::http::access::cross_site;
use crate::hub::contract::Status;
use crate::outputs::Language;
use crate::portal::state::AppState;
use crate::store::checkin::{Issue, token_hash};
use crate::store::enrollment::EnrollmentPage;

/// The nurse's route that creates a link.
pub const ISSUE_ROUTE: &str = "/enroll/{token}/checkin";
/// The nurse's route that stops the session's link.
pub const REVOKE_ROUTE: &str = "/enroll/{token}/checkin/revoke";

/// Whether the check-in can be handed over in `status`.
pub fn live(status: Status) -> bool {
    matches!(status, Status::Accepted | Status::InProgress)
}

/// The check-in section of the enrollment page `token`: when the live link was handed over,
/// the language choice and the buttons.
pub fn section(token: &str, issued_at: Option<DateTime<Utc>>) -> String {
    let token = escape(token);
    let mut html = String::from("<h2>Patient's daily check-in</h2>");
    match issued_at {
        Some(at) => {
            let _ = write!(
                html,
                "<p id=\"checkin-state\">A check-in link was handed over on {} UTC. A new one \
                 stops it.</p>",
                at.format("%Y-%m-%d %H:%M")
            );
        }
        None => html.push_str(
            "<p id=\"checkin-state\">No check-in link yet. The patient reports symptoms on it, \
             with no login.</p>",
        ),
    }
    // Relative to the page's own URL (`/enroll/{token}`), so a path prefix in front of the
    // provider is kept.
    let _ = write!(
        html,
        "<form method=\"post\" action=\"{token}/checkin\" id=\"checkin-issue\">\
         <label for=\"language\">Language of the patient's page</label>\
         <select id=\"language\" name=\"language\"><option value=\"nl\">Nederlands</option>\
         <option value=\"fr\">Français</option><option value=\"en\">English</option></select>\
         <button type=\"submit\">Create the check-in link</button></form>"
    );
    if issued_at.is_some() {
        let _ = write!(
            html,
            "<form method=\"post\" action=\"{token}/checkin/revoke\" id=\"checkin-revoke\">\
             <button type=\"submit\">Stop the check-in link</button></form>"
        );
    }
    html
}

/// The page body once a link is created: the QR code and the link as text.
fn issued(url: &str) -> String {
    format!(
        "<h2>Patient's daily check-in</h2><p>Let the patient scan this code with their phone or \
         tablet now, or print this page for them. It is shown only once.</p>{}\
         <p class=\"link\"><a id=\"checkin-link\" href=\"{url}\">{url}</a></p>",
        qr_svg(url),
        url = escape(url)
    )
}

/// `url` as a QR code, an inline SVG of one path.
fn qr_svg(url: &str) -> String {
    let qr = QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M)
        .expect("a check-in URL always fits a QR code");
    let n = qr.width();
    let side = n + 8;
    let mut path = String::new();
    for (i, color) in qr.to_colors().into_iter().enumerate() {
        if color == Color::Dark {
            let _ = write!(path, "M{} {}h1v1h-1z", i % n + 4, i / n + 4);
        }
    }
    format!(
        "<svg id=\"checkin-qr\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" \
         width=\"240\" height=\"240\" role=\"img\" aria-label=\"QR code of the check-in link\" \
         shape-rendering=\"crispEdges\"><rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    )
}

fn answer(status: StatusCode, body: &str) -> Response {
    super::view::respond(status, super::frame(body))
}

/// The live session behind the enrollment page `token`, or the answer to give.
async fn live_session(
    app: &AppState,
    token: String,
    headers: &HeaderMap,
) -> Result<String, Response> {
    if cross_site(headers) {
        return Err(answer(
            StatusCode::FORBIDDEN,
            "<p>This form was not sent from its page.</p>",
        ));
    }
    match app.store.enrollment_page(token).await {
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            Err(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "<p>Internal error, try again.</p>",
            ))
        }
        Ok(None) => Err(answer(
            StatusCode::NOT_FOUND,
            "<p>This enrollment link is not valid.</p>",
        )),
        Ok(Some(EnrollmentPage {
            telemonitoring_id,
            status,
            ..
        })) if live(status) => Ok(telemonitoring_id),
        Ok(Some(_)) => Err(answer(
            StatusCode::CONFLICT,
            "<p>The check-in works while the patient is monitored: enroll the gateway first.</p>",
        )),
    }
}

/// The form creating a link.
#[derive(Debug, Deserialize)]
pub struct IssueForm {
    /// `nl`, `fr` or `en`.
    pub language: String,
}

/// `POST /enroll/{token}/checkin`.
pub async fn issue(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(f): Form<IssueForm>,
) -> Response {
    let Some(language) = Language::ALL.into_iter().find(|l| l.tag() == f.language) else {
        return answer(StatusCode::BAD_REQUEST, "<p>Unknown language.</p>");
    };
    let session = match live_session(&app, token, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let secret = format!("{}{}", super::random_token(), super::random_token());
    let hash = token_hash(&secret);
    match app
        .store
        .issue_checkin_link(session, hash, language.tag(), CAREPATHS, Utc::now())
        .await
    {
        Ok(Issue::Issued) => {
            tracing::info!(language = language.tag(), "check-in link issued");
            let base = app.portal.public_url.trim_end_matches('/');
            let url = format!(
                "{base}{}",
                crate::checkin::PAGE_ROUTE.replace("{token}", &secret)
            );
            answer(StatusCode::OK, &issued(&url))
        }
        Ok(Issue::NotLive) => answer(StatusCode::CONFLICT, "<p>The session is not monitored.</p>"),
        Ok(Issue::NoSymptoms) => answer(
            StatusCode::CONFLICT,
            "<p>This carepath asks the patient no symptoms: there is no check-in.</p>",
        ),
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "<p>Internal error, try again.</p>",
            )
        }
    }
}

/// `POST /enroll/{token}/checkin/revoke`.
pub async fn revoke(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match live_session(&app, token, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match app.store.revoke_checkin_links(session, Utc::now()).await {
        Ok(n) => {
            tracing::info!(links = n, "check-in link stopped");
            answer(
                StatusCode::OK,
                "<p id=\"checkin-state\">The check-in link is stopped: it opens nothing any more.</p>",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "<p>Internal error, try again.</p>",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_one_path_in_a_square() {
        let svg = qr_svg("https://provider.example/checkin/0123456789abcdef");
        assert!(svg.starts_with("<svg id=\"checkin-qr\""));
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(svg.contains("h1v1h-1z"));
    }
}
