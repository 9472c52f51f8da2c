//! The clinical worklist: the alerts the triage rules raised ([`crate::store::triage`]), for
//! the provider's nurses, behind a token of its own (`[triage] token_file`), separate from
//! the operations token.
//!
//! Routes:
//! - `GET /clinical`: the page ([`page`]); its forms post to
//!   `POST /clinical/alerts/{id}/acknowledge` and `.../resolve` (a note is required; a form
//!   from another site is refused) and come back to the page;
//! - `GET /clinical/api/alerts[?all=1]`: unresolved alerts in worklist order (all with
//!   `all=1`), as JSON;
//! - `POST /clinical/api/alerts/{id}/acknowledge` and `.../resolve` with `{"note": "..."}`
//!   (`Content-Type: application/json`): 204, 409 when the alert is not in a state the step
//!   starts from, 404 when there is no such alert.
//!
//! Who acted is the basic-auth user name (`token` for a bearer token). Alert counts per rule and
//! state are in `/metrics` (`tm_clinical_alerts`).

pub mod chart;
pub mod page;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use chrono::Utc;
use chrono_tz::Tz;
use serde::Deserialize;

use crate::http::Routes;
use crate::http::access::{Area, Caller, TokenError, admit, cross_site, is_json, read_token};
use crate::http::unavailable::Unavailable;
use crate::store::Store;
use crate::store::triage::{AlertStep, ClinicalAlert};
use crate::triage::Triage;
use crate::triage::rules::RuleKind;

/// Resolved alerts the page shows below the unresolved ones.
const RESOLVED_SHOWN: u32 = 50;
/// Alerts one request lists at most.
const LIST_LIMIT: u32 = 1000;
/// The longest note kept, in characters.
const NOTE_MAX: usize = 1000;

/// The worklist's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Worklist {
    store: Store,
    token: Option<Arc<str>>,
    tz: Tz,
    triage: Arc<Triage>,
}

impl Worklist {
    /// Reads the token file, if configured.
    pub fn new(store: Store, triage: Arc<Triage>, tz: Tz) -> Result<Self, TokenError> {
        let token = match &triage.token_file {
            Some(path) => Some(Arc::from(read_token(path)?)),
            None => {
                tracing::warn!("no triage.token_file configured: the clinical worklist is off");
                None
            }
        };
        Ok(Self {
            store,
            token,
            tz,
            triage,
        })
    }

    /// The page, its forms and the JSON API, all behind the worklist token.
    pub fn routes(&self) -> Routes {
        Routes::new()
            .get("/clinical", show_page)
            .post("/clinical/alerts/{alert_id}/acknowledge", acknowledge_form)
            .post("/clinical/alerts/{alert_id}/resolve", resolve_form)
            .get("/clinical/api/alerts", list)
            .post(
                "/clinical/api/alerts/{alert_id}/acknowledge",
                acknowledge_api,
            )
            .post("/clinical/api/alerts/{alert_id}/resolve", resolve_api)
            .map_router(|router| {
                router
                    .route_layer(axum::middleware::from_fn_with_state(self.clone(), require))
                    .with_state(self.clone())
            })
    }
}

const CLINICAL: Area = Area {
    realm: "tm-provider clinical",
    not_configured: "clinical worklist not configured",
    token_required: "clinical token required",
};

/// 404 when no token is configured, 401 with a challenge when the request does not carry it.
async fn require(State(w): State<Worklist>, request: Request, next: Next) -> Response {
    admit(CLINICAL, w.token.as_deref(), request, next).await
}

/// Unresolved alerts, then the latest resolved ones.
async fn worklist_alerts(w: &Worklist) -> Result<Vec<ClinicalAlert>, Unavailable> {
    let mut alerts = w.store.clinical_alerts(true, LIST_LIMIT).await?;
    let resolved = w
        .store
        .clinical_alerts(false, LIST_LIMIT + RESOLVED_SHOWN)
        .await?
        .into_iter()
        .filter(|a| a.state == "resolved")
        .take(RESOLVED_SHOWN as usize);
    alerts.extend(resolved);
    Ok(alerts)
}

/// The chart of an alert's measurement over the week before its episode.
async fn chart(w: &Worklist, a: &ClinicalAlert) -> Result<Option<String>, Unavailable> {
    let (Some(rule), Some(code), Ok(start), Ok(last)) = (
        RuleKind::from_name(&a.rule),
        RuleKind::from_name(&a.rule).and_then(RuleKind::code),
        chrono::DateTime::parse_from_rfc3339(&a.episode_start),
        chrono::DateTime::parse_from_rfc3339(&a.episode_last),
    ) else {
        return Ok(None);
    };
    let from = start.with_timezone(&Utc) - chrono::Duration::days(7);
    let to = last.with_timezone(&Utc) + chrono::Duration::hours(1);
    let readings = w
        .store
        .session_readings_between(a.telemonitoring_id.clone(), from, to, 2000)
        .await?;
    let points: Vec<_> = readings
        .iter()
        .filter_map(crate::triage::rules::Measured::from_reading)
        .filter_map(|m| {
            let v = m.values.iter().find(|(c, _)| c == code)?.1;
            Some((m.at, v))
        })
        .collect();
    let fired: Vec<_> = a
        .evidence
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| chrono::DateTime::parse_from_rfc3339(e["at"].as_str()?).ok())
        .map(|t| t.with_timezone(&Utc))
        .collect();
    let rules = w
        .triage
        .rules_for(a.carepath_id.as_deref().unwrap_or(""), &a.patient_id);
    let range = match rule {
        RuleKind::SystolicOutOfRange => rules.and_then(|r| r.systolic),
        RuleKind::HeartRateOutOfRange => rules.and_then(|r| r.heart_rate),
        _ => None,
    };
    Ok(chart::sparkline(&points, &fired, range, rule.label()))
}

async fn show_page(State(w): State<Worklist>) -> Result<Response, Unavailable> {
    let alerts = worklist_alerts(&w).await?;
    let mut charts = HashMap::new();
    for a in alerts.iter().filter(|a| a.state != "resolved") {
        if let Some(svg) = chart(&w, a).await? {
            charts.insert(a.alert_id, svg);
        }
    }
    let html = page::render(&alerts, &charts, w.tz, Utc::now());
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                 frame-ancestors 'none'",
            ),
        ],
        Html(html),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: Option<u8>,
}

async fn list(
    State(w): State<Worklist>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Unavailable> {
    let unresolved = q.all.unwrap_or(0) == 0;
    let alerts = w.store.clinical_alerts(unresolved, LIST_LIMIT).await?;
    Ok(Json(serde_json::json!({ "alerts": alerts })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    note: String,
}

/// Applies `step` with `note`: 204, 400 for an empty or long note, 404 without such an alert,
/// 409 when it is not in a state the step starts from.
async fn apply(
    w: &Worklist,
    id: i64,
    step: AlertStep,
    who: Caller,
    note: &str,
) -> Result<Result<(), Response>, Unavailable> {
    let note = note.trim();
    if note.is_empty() || note.chars().count() > NOTE_MAX {
        return Ok(Err((
            StatusCode::BAD_REQUEST,
            format!("a note of 1 to {NOTE_MAX} characters is required"),
        )
            .into_response()));
    }
    let done = w
        .store
        .clinical_alert_step(id, step, who.0, note.to_owned(), Utc::now())
        .await?;
    if done {
        return Ok(Ok(()));
    }
    Ok(Err(match w.store.clinical_alert(id).await? {
        None => (StatusCode::NOT_FOUND, "no such alert").into_response(),
        Some(a) => (StatusCode::CONFLICT, format!("the alert is {}", a.state)).into_response(),
    }))
}

async fn step_api(
    w: Worklist,
    who: Caller,
    id: i64,
    headers: HeaderMap,
    body: axum::body::Bytes,
    step: AlertStep,
) -> Result<Response, Unavailable> {
    if !is_json(&headers) {
        return Ok((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        )
            .into_response());
    }
    let Ok(Note { note }) = serde_json::from_slice(&body) else {
        return Ok((StatusCode::BAD_REQUEST, "expected {\"note\": \"...\"}").into_response());
    };
    Ok(match apply(&w, id, step, who, &note).await? {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    })
}

async fn acknowledge_api(
    State(w): State<Worklist>,
    Extension(who): Extension<Caller>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Unavailable> {
    step_api(w, who, id, headers, body, AlertStep::Acknowledge).await
}

async fn resolve_api(
    State(w): State<Worklist>,
    Extension(who): Extension<Caller>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Unavailable> {
    step_api(w, who, id, headers, body, AlertStep::Resolve).await
}

async fn step_form(
    w: Worklist,
    who: Caller,
    id: i64,
    headers: HeaderMap,
    note: Note,
    step: AlertStep,
) -> Result<Response, Unavailable> {
    if cross_site(&headers) {
        return Ok((StatusCode::FORBIDDEN, "cross-site form refused").into_response());
    }
    Ok(match apply(&w, id, step, who, &note.note).await? {
        Ok(()) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/clinical#alert-{id}"))],
        )
            .into_response(),
        Err(r) => r,
    })
}

async fn acknowledge_form(
    State(w): State<Worklist>,
    Extension(who): Extension<Caller>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(note): Form<Note>,
) -> Result<Response, Unavailable> {
    step_form(w, who, id, headers, note, AlertStep::Acknowledge).await
}

async fn resolve_form(
    State(w): State<Worklist>,
    Extension(who): Extension<Caller>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Form(note): Form<Note>,
) -> Result<Response, Unavailable> {
    step_form(w, who, id, headers, note, AlertStep::Resolve).await
}
