//! The HUB's provider-facing API: `POST /auth/providers` and `PUT /prescription`.
//!
//! Every violation is answered with a 4xx and `{"message": ...}` and recorded. Faults queued by
//! the control API are applied before a call is looked at: a 5xx or a timeout leaves the call
//! unprocessed, so a provider that does not retry loses the update and the tests see it. A
//! refusal set for a session (`/control/refuse`) answers its 4xx to that session's PUTs, after
//! the token check, without applying them.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::rules;
use crate::state::{EventKind, Fault};
use crate::{AppState, ehr};

/// How long a "timeout" fault holds a call before dropping it; far longer than any client
/// timeout a test configures.
const TIMEOUT_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

fn message(code: StatusCode, text: impl Into<String>) -> Response {
    (code, Json(json!({ "message": text.into() }))).into_response()
}

/// Applies the next queued fault; `Some(response)` ends the call unprocessed.
async fn apply_fault(app: &AppState) -> Option<Response> {
    let fault = app.hub.with(|s| s.faults.pop_front());
    match fault? {
        Fault::Status { code } => Some(message(
            StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "injected fault",
        )),
        Fault::Timeout => {
            tokio::select! {
                () = tokio::time::sleep(TIMEOUT_HOLD) => {}
                () = app.shutdown.cancelled() => {}
            }
            Some(message(StatusCode::GATEWAY_TIMEOUT, "injected timeout"))
        }
        Fault::Slow { ms } => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            None
        }
    }
}

/// `POST /auth/providers`: Basic `client:secret` -> a bearer token.
pub async fn auth(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = apply_fault(&app).await {
        return r;
    }
    let expected = format!("{}:{}", app.config.client_id, app.config.client_secret);
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        });
    if given.as_deref() != Some(expected.as_bytes()) {
        app.hub.with(|s| {
            s.violations
                .push((String::new(), "bad client credentials".into()))
        });
        return message(StatusCode::UNAUTHORIZED, "invalid client credentials");
    }
    let mut raw = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .expect("system randomness");
    let token = hex_token(&raw);
    let ttl = app.hub.with(|s| {
        s.tokens.insert(token.clone(), Instant::now() + s.token_ttl);
        s.token_requests += 1;
        s.token_ttl
    });
    Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": ttl.as_secs(),
    }))
    .into_response()
}

fn hex_token(raw: &[u8]) -> String {
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_valid(app: &AppState, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    // docs/portal-hub.md §5: "Bearer <token>" and the bare token are both accepted.
    let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    app.hub.with(|s| {
        s.tokens
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    })
}

/// `PUT /prescription`: a status update.
pub async fn put_prescription(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = apply_fault(&app).await {
        return r;
    }
    if !token_valid(&app, &headers) {
        // Not a violation: tokens expire and get revoked; the provider must re-authenticate.
        return message(
            StatusCode::UNAUTHORIZED,
            "missing, unknown or expired token",
        );
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            app.hub.with(|s| {
                s.violations
                    .push((String::new(), format!("invalid JSON: {e}")))
            });
            return message(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}"));
        }
    };
    let id = parsed
        .get("telemonitoringId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let status = parsed
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(code) = app.hub.refusal(&id, status) {
        let code = StatusCode::from_u16(code).unwrap_or(StatusCode::NOT_FOUND);
        app.hub.record(
            &id,
            EventKind::StatusPut {
                body: parsed,
                answer: code.as_u16(),
            },
        );
        return message(code, "injected refusal");
    }
    let known = app.hub.with(|s| s.sessions.contains_key(&id));
    if !known {
        app.hub.with(|s| {
            s.violations
                .push((id.clone(), "unknown telemonitoringId".into()))
        });
        return message(StatusCode::NOT_FOUND, "unknown telemonitoringId");
    }
    let (code, answer) = match rules::check_status_put(&parsed) {
        Err(problems) => {
            for p in &problems {
                app.hub
                    .record(&id, EventKind::Violation { message: p.clone() });
            }
            (StatusCode::BAD_REQUEST, problems.join("; "))
        }
        Ok(put) => apply_put(&app, put),
    };
    app.hub.record(
        &id,
        EventKind::StatusPut {
            body: parsed,
            answer: code.as_u16(),
        },
    );
    if code.is_success() {
        (code, Json(json!({}))).into_response()
    } else {
        message(code, answer)
    }
}

fn apply_put(app: &AppState, put: rules::AcceptedPut) -> (StatusCode, String) {
    let outcome = app.hub.with(|s| {
        let session = s.sessions.get_mut(&put.telemonitoring_id)?;
        let from = session.status.clone();
        if !rules::transition_allowed(&from, &put.status) {
            return Some(Err(format!("illegal transition {from} -> {}", put.status)));
        }
        session.status.clone_from(&put.status);
        if let Some(c) = &put.carepath {
            session.carepath = Some(c.clone());
        }
        if let Some(a) = &put.attachments {
            session.attachments.clone_from(a);
        }
        Some(Ok(from))
    });
    match outcome {
        None => (StatusCode::NOT_FOUND, "unknown telemonitoringId".into()),
        Some(Err(violation)) => {
            app.hub.record(
                &put.telemonitoring_id,
                EventKind::Violation {
                    message: violation.clone(),
                },
            );
            (StatusCode::CONFLICT, violation)
        }
        Some(Ok(from)) => {
            for w in &put.warnings {
                app.hub.record(
                    &put.telemonitoring_id,
                    EventKind::Warning { message: w.clone() },
                );
            }
            if from != put.status {
                app.hub.record(
                    &put.telemonitoring_id,
                    EventKind::StatusChanged {
                        from,
                        to: put.status.clone(),
                    },
                );
            }
            if let Some(attachments) = put.attachments {
                ehr::download_all(app.clone(), put.telemonitoring_id, attachments);
            }
            (StatusCode::OK, String::new())
        }
    }
}
