//! `POST /api/v1/claims/hello`: an unenrolled gateway announces itself
//! ([`tm_protocol::setup`]).
//!
//! The body (at most a frame's size) is a `ClaimHello` frame signed as
//! [`HELLO_SIGNER`] by the key the hello carries, so the signature proves possession of it.
//! Refused: a malformed frame or hello (400), a signature that does not verify (401), a
//! `sent_at` more than [`HELLO_SKEW_S`] from the provider's clock (400: a recorded hello cannot
//! be replayed for long, and a gateway with a wrong clock is told so), a key operations
//! revoked (403), and a new key while the provider keeps its maximum of unclaimed gateways
//! (503, retry later).
//!
//! When the key's gateway is enrolled and active (a nurse claimed it), the answer is 200 with
//! the signed `EnrollmentResponse` `/api/v1/enroll` answers; otherwise the hello is stored
//! (or refreshed) and the answer is 202 `{"state": "unclaimed"}`. Nothing about the hello is
//! logged beyond the outcome: the claim code is on the box, but it says which box is where.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tm_protocol::routes::http::FRAME_CONTENT_TYPE;
use tm_protocol::setup::{ClaimHello, HELLO_SIGNER, HELLO_SKEW_S};
use tm_protocol::{Frame, MessageKind, VerifyingKey};

use super::api::{bad, enrollment_response, store_failure};
use crate::portal::request::Refusal;
use crate::portal::state::AppState;
use crate::store::claims::{Hello, HelloOutcome};

/// What the hello handler decided.
enum Answer {
    /// 200 with the enrollment frame.
    Enrolled(Vec<u8>),
    /// 202 `{"state": "unclaimed"}`.
    Unclaimed,
}

/// `POST /api/v1/claims/hello`.
pub async fn hello(State(app): State<AppState>, body: Body) -> Response {
    match handle(&app, body).await {
        Ok(Answer::Enrolled(frame)) => {
            ([(header::CONTENT_TYPE, FRAME_CONTENT_TYPE)], frame).into_response()
        }
        Ok(Answer::Unclaimed) => {
            (StatusCode::ACCEPTED, Json(json!({ "state": "unclaimed" }))).into_response()
        }
        Err(r) if r.status == StatusCode::SERVICE_UNAVAILABLE => {
            (r.status, [(header::RETRY_AFTER, "60")], r).into_response()
        }
        Err(r) => r.into_response(),
    }
}

#[tracing::instrument(name = "claim_hello", skip_all)]
async fn handle(app: &AppState, body: Body) -> Result<Answer, Refusal> {
    let bytes = crate::http::body::read_limited(body, tm_protocol::limits::MAX_FRAME_BYTES).await?;
    let frame = Frame::parse(&bytes).map_err(|e| bad(e.to_string()))?;
    if frame.signer() != HELLO_SIGNER {
        return Err(bad(format!("a claim hello is signed as {HELLO_SIGNER:?}")));
    }
    // Strict: its version, its fields (unknown ones refused), its sizes.
    let hello: ClaimHello =
        tm_protocol::decode(frame.unverified_payload()).map_err(|e| bad(e.to_string()))?;
    let key = VerifyingKey::from_bytes(&hello.public_key).map_err(|e| bad(e.to_string()))?;
    frame
        .verify(MessageKind::ClaimHello, &key)
        .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let now = chrono::Utc::now();
    let skew = (hello.sent_at - now).num_seconds();
    if skew.abs() > HELLO_SKEW_S {
        tracing::warn!(skew_s = skew, "claim hello refused: clock skew");
        return Err(bad(format!(
            "the hello was sent {} s {} the provider's clock (at most {HELLO_SKEW_S} s): set the \
             gateway's clock (NTP) and try again",
            skew.abs(),
            if skew < 0 { "behind" } else { "ahead of" }
        )));
    }
    let outcome = app
        .store
        .record_claim_hello(Hello {
            public_key: key,
            agent_version: hello.agent_version,
            at_ms: now.timestamp_millis(),
        })
        .await
        .map_err(store_failure)?;
    match outcome {
        HelloOutcome::Enrolled(gateway_id) => {
            tracing::info!(gateway = %gateway_id, "claimed gateway fetched its enrollment");
            Ok(Answer::Enrolled(enrollment_response(
                &app.portal,
                gateway_id,
            )))
        }
        HelloOutcome::Unclaimed => Ok(Answer::Unclaimed),
        HelloOutcome::Revoked => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "this gateway was withdrawn by operations",
        )),
        HelloOutcome::Full => {
            tracing::warn!(
                "claim hello refused: the provider keeps its maximum of unclaimed gateways"
            );
            Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many unclaimed gateways are waiting; try again later",
            ))
        }
    }
}
