//! `POST /api/v1/enroll`: the gateway's enrollment.
//!
//! The body is an `EnrollmentRequest` frame signed by the new gateway key; the key is inside
//! the request, so the signature proves possession of it. In one transaction the code is
//! consumed, the gateway registered and bound to the session, and the session moved to
//! accepted with its carepath (which queues the HUB update). The answer is an
//! `EnrollmentResponse` frame signed by the provider's key.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tm_protocol::routes::http::FRAME_CONTENT_TYPE;
use tm_protocol::{
    EnrollmentRequest, EnrollmentResponse, Frame, GatewayId, MessageKind, SyncSettings, Transport,
    VerifyingKey,
};

use crate::portal::request::Refusal;
use crate::portal::state::AppState;
use crate::store::enrollment::{EnrollmentOutcome, now_ms};

/// The signer id of provider frames.
pub const PROVIDER_SIGNER: &str = "provider";

pub(super) fn bad(message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, message)
}

pub use crate::store::gateways::gateway_id_for;

/// `POST /api/v1/enroll`.
pub async fn enroll(State(app): State<AppState>, body: Body) -> Response {
    match handle(&app, body).await {
        Ok(frame) => ([(header::CONTENT_TYPE, FRAME_CONTENT_TYPE)], frame).into_response(),
        Err(r) => r.into_response(),
    }
}

/// A store failure: 500, logged.
pub(super) fn store_failure(e: crate::store::StoreError) -> Refusal {
    tracing::error!(error = %e, "store failure");
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error, try again",
    )
}

#[tracing::instrument(name = "enroll", skip_all)]
async fn handle(app: &AppState, body: Body) -> Result<Vec<u8>, Refusal> {
    let portal = &app.portal;
    let limit = portal.enrollment.failed_attempts_per_minute;
    let allowed = app
        .store
        .enrollment_attempt_allowed(limit, now_ms())
        .await
        .map_err(store_failure)?;
    if !allowed {
        return Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed enrollment attempts; wait a minute",
        ));
    }
    let bytes = crate::http::body::read_limited(body, tm_protocol::limits::MAX_FRAME_BYTES).await?;
    let frame = Frame::parse(&bytes).map_err(|e| bad(e.to_string()))?;
    let request: EnrollmentRequest =
        tm_protocol::decode(frame.unverified_payload()).map_err(|e| bad(e.to_string()))?;
    let key = VerifyingKey::from_bytes(&request.public_key).map_err(|e| bad(e.to_string()))?;
    frame
        .verify(MessageKind::EnrollmentRequest, &key)
        .map_err(|e| Refusal::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let gateway_id = gateway_id_for(&key);
    let outcome = app
        .store
        .enroll_gateway(request.code, gateway_id.clone(), key)
        .await
        .map_err(store_failure)?;
    let conflict = |message: String| Err(Refusal::new(StatusCode::CONFLICT, message));
    match outcome {
        EnrollmentOutcome::BadCode => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "the enrollment code is unknown, used or expired; issue a new one on the enrollment page",
        )),
        EnrollmentOutcome::AlreadyEnrolled => conflict("this gateway is already enrolled".into()),
        EnrollmentOutcome::NotWaiting => {
            conflict("the session is no longer waiting for enrollment".into())
        }
        EnrollmentOutcome::NotAccepted(e) => conflict(e.to_string()),
        EnrollmentOutcome::Enrolled => {
            portal.wake_outbox.notify_one();
            tracing::info!(gateway = %gateway_id, "gateway enrolled");
            Ok(enrollment_response(portal, gateway_id))
        }
    }
}

/// The signed `EnrollmentResponse` frame for `gateway_id`: what `/api/v1/enroll` answers, and
/// what a claimed gateway's next hello gets ([`super::hello`]).
pub fn enrollment_response(portal: &crate::portal::Portal, gateway_id: GatewayId) -> Vec<u8> {
    let settings = &portal.enrollment;
    let response = EnrollmentResponse {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id,
        provider_public_key: portal.provider_key.verifying_key().as_bytes().to_vec(),
        sync: SyncSettings {
            transport: if settings.transport == "mqtt" {
                Transport::Mqtt
            } else {
                Transport::Https
            },
            https_url: portal.public_url.clone(),
            mqtt_url: settings.mqtt_url.clone(),
            heartbeat_interval_s: settings.heartbeat_interval_s,
        },
    };
    let payload = tm_protocol::encode(&response);
    tm_protocol::seal(
        MessageKind::EnrollmentResponse,
        PROVIDER_SIGNER,
        &payload,
        &portal.provider_key,
    )
}
