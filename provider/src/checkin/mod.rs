//! The patient's daily check-in: a page on the patient's phone or tablet, reached through a
//! personal link (or its QR code) the nurse hands over at setup ([`crate::enroll::checkin`]),
//! with no login.
//! It asks the carepath's symptoms ([`crate::symptom::codes`]) with their severities, in the
//! patient's language (the one the nurse chose, or `?lang=nl|fr|en`), and stores each answer
//! as a [`SymptomAnswer`] of the session ([`crate::store::checkin`]); the session updater then
//! publishes them with the next attachment set and triage judges them.
//!
//! Routes: `GET /checkin/{token}` (the form) and `POST /checkin/{token}` (its answers,
//! `application/x-www-form-urlencoded`: `s_<symptom code>=<severity code>` per answered
//! symptom, plus the page's `submission`, `opened` and `lang`).
//!
//! - The link is a bearer secret (256 random bits): answers are refused (410, nothing stored)
//!   once it is revoked or the session has ended, and a form posted from another site is
//!   refused (403). Every answer is told apart by the check-in's `submission` id, so a form
//!   sent twice stores nothing twice.
//! - Malformed answers (a symptom or severity not in the ValueSets, a symptom answered twice,
//!   a bad `submission`) get a 400 that names the field; nothing of that form is stored.
//! - The pages are `no-store`, send no referrer (the token is in the URL), cannot be framed,
//!   run no script and load nothing from elsewhere.
//! - Logs count answers; they never name the session, the patient or an answer.

pub mod page;

use std::collections::HashSet;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SubsecRound as _, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::http::Routes;
use crate::http::access::cross_site;
use crate::http::unavailable::Unavailable;
use crate::outputs::Language;
use crate::publish::updater::UpdateNotifier;
use crate::store::Store;
use crate::store::checkin::{CheckinLink, Saved, token_hash};
use crate::symptom::codes::symptom;
use crate::symptom::{Severity, SymptomAnswer};

/// The patient's page (axum syntax).
pub const PAGE_ROUTE: &str = "/checkin/{token}";

/// The carepaths whose symptoms the check-in asks: heart failure, the one the IG gives a
/// symptom ValueSet.
pub const CAREPATHS: &[&str] = &[crate::triage::settings::HEART_FAILURE];

/// How long before sending a page may have been opened and still count as the answers'
/// start; a page left open longer counts from when it was sent.
const OPEN_AT_MOST_MS: i64 = 12 * 3600 * 1000;

/// The check-in's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Checkin {
    /// The store.
    pub store: Store,
    /// The patients' time zone (the answers' times carry its offset).
    pub tz: Tz,
    /// Tells the session updater that a session has new answers.
    pub updates: Option<UpdateNotifier>,
}

impl Checkin {
    /// The patient's page and its form.
    pub fn routes(&self) -> Routes {
        Routes::new()
            .get(PAGE_ROUTE, show)
            .post(PAGE_ROUTE, send)
            .map_router(|r| r.with_state(self.clone()))
    }
}

/// A fresh check-in id: 128 random bits, hex.
fn new_submission() -> String {
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .expect("system randomness");
    hex::encode(raw)
}

/// The page's headers: never cached, no referrer, not framed, nothing but inline style.
fn respond(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

fn gone() -> Response {
    respond(StatusCode::GONE, page::gone())
}

/// `?lang=`.
#[derive(Debug, Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

/// The page's language: the one asked for, else the link's, else English
/// ([`crate::http::language::negotiate`]; the patient's browser is not asked: the nurse chose).
fn language(tag: Option<&str>, link: &CheckinLink) -> Language {
    crate::http::language::negotiate(
        &Language::ALL,
        &[tag, Some(&link.language)],
        None,
        Language::En,
    )
}

async fn live_link(store: &Store, token: &str) -> Result<Option<CheckinLink>, Unavailable> {
    Ok(store.checkin_link(token_hash(token)).await?)
}

/// `GET /checkin/{token}`.
async fn show(
    State(c): State<Checkin>,
    Path(token): Path<String>,
    Query(q): Query<LangQuery>,
) -> Result<Response, Unavailable> {
    let Some(link) = live_link(&c.store, &token).await? else {
        return Ok(gone());
    };
    let state = page::FormState {
        submission: new_submission(),
        opened_ms: Utc::now().timestamp_millis(),
        selected: Vec::new(),
        error: None,
    };
    let lang = language(q.lang.as_deref(), &link);
    Ok(respond(StatusCode::OK, page::form(lang, &state)))
}

/// What a posted form says, checked.
#[derive(Debug, PartialEq, Eq)]
struct Posted {
    submission: String,
    opened_ms: Option<i64>,
    lang: Option<String>,
    answers: Vec<(&'static crate::symptom::Symptom, Severity)>,
}

/// Checks the form's fields; the error names the field.
fn parse(fields: Vec<(String, String)>) -> Result<Posted, String> {
    let mut posted = Posted {
        submission: String::new(),
        opened_ms: None,
        lang: None,
        answers: Vec::new(),
    };
    let mut seen = HashSet::new();
    for (name, value) in fields {
        match name.as_str() {
            "submission" => posted.submission = value,
            "opened" => posted.opened_ms = value.parse().ok(),
            "lang" => posted.lang = Some(value),
            _ => {
                let Some(code) = name.strip_prefix("s_") else {
                    return Err(format!("unknown field {name:?}"));
                };
                let Some(s) = symptom(code) else {
                    return Err(format!("{name}: not a symptom of the carepath"));
                };
                let Some(severity) = Severity::from_code(&value) else {
                    return Err(format!("{name}: not a severity of symptom-severity"));
                };
                if !seen.insert(s.code) {
                    return Err(format!("{name}: answered twice"));
                }
                posted.answers.push((s, severity));
            }
        }
    }
    let s = &posted.submission;
    if s.len() != 32
        || !s
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err("submission: not the page's check-in id".into());
    }
    Ok(posted)
}

/// When the answers start: when the page was opened, unless that is in the future or longer
/// ago than [`OPEN_AT_MOST_MS`].
fn start_of(opened_ms: Option<i64>, now: DateTime<Utc>) -> DateTime<Utc> {
    opened_ms
        .filter(|&o| o <= now.timestamp_millis() && now.timestamp_millis() - o <= OPEN_AT_MOST_MS)
        .and_then(DateTime::from_timestamp_millis)
        .map_or(now, |t| t.trunc_subsecs(0))
}

/// `POST /checkin/{token}`.
async fn send(
    State(c): State<Checkin>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, Unavailable> {
    let Some(link) = live_link(&c.store, &token).await? else {
        return Ok(gone());
    };
    if cross_site(&headers) {
        tracing::warn!("check-in refused: the form came from another site");
        let html = page::refused(
            language(None, &link),
            "This form was not sent from its page.",
        );
        return Ok(respond(StatusCode::FORBIDDEN, html));
    }
    let posted = match parse(fields) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(problem = %why, "check-in refused: malformed form");
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                page::refused(language(None, &link), &why),
            ));
        }
    };
    let lang = language(posted.lang.as_deref(), &link);
    if posted.answers.is_empty() {
        let state = page::FormState {
            submission: posted.submission,
            opened_ms: posted
                .opened_ms
                .unwrap_or_else(|| Utc::now().timestamp_millis()),
            selected: Vec::new(),
            error: Some(page::NO_ANSWER),
        };
        return Ok(respond(StatusCode::BAD_REQUEST, page::form(lang, &state)));
    }
    let now = Utc::now().trunc_subsecs(0);
    let local = |t: DateTime<Utc>| t.with_timezone(&c.tz).fixed_offset();
    let (start, end) = (local(start_of(posted.opened_ms, now)), local(now));
    let answers: Vec<SymptomAnswer> = posted
        .answers
        .iter()
        .map(|&(s, severity)| {
            SymptomAnswer::new(
                &link.telemonitoring_id,
                &posted.submission,
                s,
                severity,
                start,
                end,
            )
        })
        .collect();
    let saved = c
        .store
        .save_checkin(
            token_hash(&token),
            link.telemonitoring_id.clone(),
            answers.clone(),
            Utc::now(),
        )
        .await?;
    let Saved::Stored { inserted } = saved else {
        return Ok(gone());
    };
    tracing::info!(answers = answers.len(), new = inserted, "check-in stored");
    if inserted > 0
        && let Some(updates) = &c.updates
    {
        updates.notify(&link.telemonitoring_id);
    }
    let at = end.format("%H:%M").to_string();
    Ok(respond(
        StatusCode::OK,
        page::thanks(lang, &answers, inserted, &at),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_form_is_checked_field_by_field() {
        let ok = parse(fields(&[
            ("submission", ID),
            ("opened", "5"),
            ("lang", "fr"),
            ("s_267036007", "24484000"),
            ("s_901000172101", "2667000"),
        ]))
        .unwrap();
        assert_eq!(ok.answers.len(), 2);
        assert_eq!(ok.answers[0].1, Severity::Severe);
        assert_eq!(ok.opened_ms, Some(5));
        let refused = |pairs: &[(&str, &str)]| parse(fields(pairs)).unwrap_err();
        assert!(refused(&[("submission", ID), ("s_1", "2667000")]).starts_with("s_1:"));
        assert!(refused(&[("submission", ID), ("s_84229001", "9")]).contains("severity"));
        assert!(
            refused(&[
                ("submission", ID),
                ("s_84229001", "2667000"),
                ("s_84229001", "24484000")
            ])
            .contains("twice")
        );
        assert!(
            refused(&[("submission", "x"), ("s_84229001", "2667000")]).starts_with("submission")
        );
        assert!(refused(&[("submission", ID), ("note", "hi")]).contains("unknown field"));
    }

    #[test]
    fn the_start_is_when_the_page_opened_within_reason() {
        let now = DateTime::parse_from_rfc3339("2026-03-29T08:00:00Z")
            .unwrap()
            .to_utc();
        let opened = now - chrono::Duration::minutes(4);
        assert_eq!(start_of(Some(opened.timestamp_millis()), now), opened);
        assert_eq!(start_of(Some(now.timestamp_millis() + 1), now), now);
        assert_eq!(start_of(Some(0), now), now);
        assert_eq!(start_of(None, now), now);
    }
}
