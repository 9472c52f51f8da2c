//! `POST /enroll/{token}/claim` (`carepath`, `code`, `lang`): step 2 of the nurse's page, the
//! claim of the gateway whose code she typed or scanned.
//!
//! Checked in this order, each refusal a page in plain words that shows the form again with
//! what she typed:
//! 1. a form from another site: 403; an unknown page: 404; a session that ended: 410; a
//!    session that has its gateway already: 409;
//! 2. an unknown carepath: 400;
//! 3. a typo ([`ClaimCode::parse`]: length, a character that is no claim-code symbol, the
//!    check symbol): 400, naming the problem. Typos are not counted: the check symbol tells
//!    them from guesses, which must be well-formed;
//! 4. the enrollment's global failed-attempt window
//!    ([`crate::store::Store::enrollment_attempt_allowed`]) and the session's own limit of
//!    wrong codes ([`ClaimLimit`]): 429;
//! 5. no gateway with this code said hello in the last ten minutes: 404, counted against both
//!    limits; the gateway claimed or enrolled already: 409;
//! 6. otherwise the gateway is enrolled for the session with the chosen carepath, in one store
//!    transaction ([`crate::store::Store::claim_gateway`]), and the answer is 303 to the
//!    page, which goes on with the setup. The gateway learns it at its next hello.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tm_protocol::claim::{ClaimCode, ClaimCodeError};

use super::page::{ClaimForm, connect_step, known_carepath, lookup};
use super::view::{self, Here};
use super::words::{self, PageLanguage};
use crate::hub::contract::{Carepath, Status};
use crate::portal::state::AppState;
use crate::store::claims::{ClaimLimit, ClaimOutcome, ClaimRequest};

/// The claim route (axum syntax).
pub const ROUTE: &str = "/enroll/{token}/claim";

/// The claim form.
#[derive(Debug, Deserialize)]
pub struct ClaimFields {
    /// The carepath chosen in step 1.
    pub carepath: String,
    /// The claim code as typed or scanned.
    pub code: String,
    /// The page's language.
    #[serde(default)]
    pub lang: Option<String>,
}

/// A typo in plain words.
fn typo(lang: PageLanguage, e: &ClaimCodeError) -> String {
    match e {
        ClaimCodeError::Length(n) => lang.fill(words::TYPO_LENGTH, &n.to_string()),
        ClaimCodeError::Symbol(c) => lang.fill(words::TYPO_SYMBOL, &c.to_string()),
        ClaimCodeError::Check => lang.pick(words::TYPO_CHECK).to_owned(),
    }
}

/// `POST /enroll/{token}/claim`.
#[tracing::instrument(name = "claim", skip_all)]
pub async fn claim(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ClaimFields>,
) -> Response {
    let lang = view::language(f.lang.as_deref(), &headers);
    if crate::http::access::cross_site(&headers) {
        tracing::warn!("claim refused: the form came from another site");
        return view::message(StatusCode::FORBIDDEN, lang, words::CROSS_SITE, "");
    }
    let page = match lookup(&app, &token, lang).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match page.status {
        Status::Requested => {}
        Status::Completed | Status::Cancelled => {
            return view::message(StatusCode::GONE, lang, words::LINK_ENDED, "");
        }
        Status::Accepted | Status::InProgress => {
            return view::message(StatusCode::CONFLICT, lang, words::NOT_WAITING, "");
        }
    }
    let Some(known) = known_carepath(&f.carepath) else {
        return view::message(StatusCode::BAD_REQUEST, lang, words::UNKNOWN_CAREPATH, "");
    };
    let here = Here::action(&token);
    let refuse = |status: StatusCode, error: String| {
        let form = ClaimForm {
            typed: &f.code,
            error: Some(error),
        };
        let html = connect_step(lang, &here, &page.patient_id, known, &form);
        view::respond(status, view::frame(lang, &html))
    };
    let code = match ClaimCode::parse(&f.code) {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, typo(lang, &e)),
    };
    let now = chrono::Utc::now();
    let global = app.portal.enrollment.failed_attempts_per_minute;
    match app
        .store
        .enrollment_attempt_allowed(global, now.timestamp_millis())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                lang.pick(words::TOO_MANY).into(),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            return view::message(StatusCode::SERVICE_UNAVAILABLE, lang, words::INTERNAL, "");
        }
    }
    let outcome = app
        .store
        .claim_gateway(ClaimRequest {
            telemonitoring_id: page.telemonitoring_id.clone(),
            code,
            carepath: Carepath {
                id: known.id.into(),
                version: known.version.into(),
            },
            now_ms: now.timestamp_millis(),
            limit: ClaimLimit::default(),
        })
        .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "store failure");
            return view::message(StatusCode::SERVICE_UNAVAILABLE, lang, words::INTERNAL, "");
        }
    };
    match outcome {
        ClaimOutcome::Claimed(gateway_id) => {
            app.portal.wake_outbox.notify_one();
            tracing::info!(gateway = %gateway_id, "gateway claimed from the enrollment page");
            let tag = crate::http::language::Tagged::tag(lang);
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, format!("{}?lang={tag}", here.to_page)),
                    (header::CACHE_CONTROL, "no-store".into()),
                    (header::REFERRER_POLICY, "no-referrer".into()),
                ],
            )
                .into_response()
        }
        ClaimOutcome::NoGateway => {
            tracing::info!("claim refused: no gateway with this code is waiting");
            refuse(StatusCode::NOT_FOUND, lang.pick(words::NO_GATEWAY).into())
        }
        ClaimOutcome::AlreadyClaimed => refuse(
            StatusCode::CONFLICT,
            lang.pick(words::ALREADY_CLAIMED).into(),
        ),
        ClaimOutcome::RateLimited => {
            tracing::warn!("claim refused: too many wrong codes for this session");
            refuse(
                StatusCode::TOO_MANY_REQUESTS,
                lang.pick(words::TOO_MANY).into(),
            )
        }
        ClaimOutcome::NotWaiting | ClaimOutcome::NotAccepted(_) => {
            view::message(StatusCode::CONFLICT, lang, words::NOT_WAITING, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_typo_is_told_in_plain_words() {
        let nl = PageLanguage::Nl;
        assert!(typo(nl, &ClaimCodeError::Length(8)).contains("deze heeft er 8"));
        assert!(typo(PageLanguage::En, &ClaimCodeError::Symbol('#')).contains("\u{201c}#\u{201d}"));
        assert!(typo(PageLanguage::Fr, &ClaimCodeError::Check).contains("mal tapé"));
        assert!(typo(PageLanguage::De, &ClaimCodeError::Check).contains("vertauscht"));
    }
}
