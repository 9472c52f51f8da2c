//! The control API under `/control`, used by tests and the demo: trigger the Portal
//! (`prescribe`, `action`), read a session's timeline and the violations, inject faults, and
//! make the HUB refuse one session's status PUTs (`refuse`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::portal::{self, Act, Prescribe};
use crate::state::{Fault, Refusal};

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
}

/// `POST /control/prescribe`: the HCP clicks "prescribe".
pub async fn prescribe(State(app): State<AppState>, Json(p): Json<Prescribe>) -> Response {
    match portal::prescribe(&app, p).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => bad_request(e),
    }
}

/// `POST /control/action`: the HCP clicks "stop" or "cancel".
pub async fn action(State(app): State<AppState>, Json(a): Json<Act>) -> Response {
    match portal::act(&app, a).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => bad_request(e),
    }
}

/// `GET /control/sessions/{id}`: status, carepath, attachments and timeline.
pub async fn session(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    match app.hub.with(|s| s.sessions.get(&id).cloned()) {
        Some(s) => Json(s).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "unknown session"})),
        )
            .into_response(),
    }
}

/// `GET /control/violations`: every violation seen, with its session.
pub async fn violations(State(app): State<AppState>) -> Response {
    let list = app.hub.with(|s| {
        s.violations
            .iter()
            .map(|(id, m)| json!({"telemonitoringId": id, "message": m}))
            .collect::<Vec<_>>()
    });
    Json(list).into_response()
}

/// `POST /control/faults`: a JSON array of faults for the next HUB calls, in order.
pub async fn faults(State(app): State<AppState>, Json(list): Json<Vec<Fault>>) -> Response {
    let n = list.len();
    app.hub.with(|s| s.faults.extend(list));
    Json(json!({ "queued": n })).into_response()
}

/// `POST /control/refuse`: `{"telemonitoringId", "code", "status"?, "times"?}`: the HUB answers
/// `code` (a 4xx) to that session's status PUTs (only those setting `status` when given),
/// `times` times or until cleared (`"times": 0`). Refused PUTs are not applied, are recorded in
/// the timeline with their answer, and are no violation.
pub async fn refuse(State(app): State<AppState>, Json(r): Json<Refusal>) -> Response {
    if !(400..500).contains(&r.code) {
        return bad_request(format!("refusal code {} is not a 4xx", r.code));
    }
    let id = r.telemonitoring_id.clone();
    let cleared = r.times == Some(0);
    app.hub.with(|s| {
        if cleared {
            s.refusals.remove(&id);
        } else {
            s.refusals.insert(id.clone(), r);
        }
    });
    Json(json!({ "telemonitoringId": id, "cleared": cleared })).into_response()
}

/// `POST /control/revoke-tokens`: every issued token becomes invalid (401 on next use).
pub async fn revoke_tokens(State(app): State<AppState>) -> Response {
    let n = app.hub.with(|s| {
        let n = s.tokens.len();
        s.tokens.clear();
        n
    });
    Json(json!({ "revoked": n })).into_response()
}

/// Body of `POST /control/token-ttl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenTtl {
    /// Lifetime of tokens issued from now on.
    pub seconds: u64,
}

/// `POST /control/token-ttl`: changes the lifetime of new tokens.
pub async fn token_ttl(State(app): State<AppState>, Json(t): Json<TokenTtl>) -> Response {
    app.hub
        .with(|s| s.token_ttl = std::time::Duration::from_secs(t.seconds));
    Json(json!({ "seconds": t.seconds })).into_response()
}

/// `GET /control/stats`: counters.
pub async fn stats(State(app): State<AppState>) -> Response {
    let (tokens, pending) = app.hub.with(|s| (s.token_requests, s.faults.len()));
    Json(json!({ "tokenRequests": tokens, "pendingFaults": pending })).into_response()
}
