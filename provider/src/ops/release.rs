//! `POST /ops/api/gateways/{id}/release` (body optional, `{"force": bool}`): operations release
//! a gateway from its session so it can go to another home.
//!
//! The provider signs a `Release` command for the gateway, and in one store transaction
//! ([`crate::store::Store::release_gateway`]) stores it and marks the gateway released: bound
//! to no session, its frames refused as an unknown gateway's. The command is pushed over MQTT
//! when the provider runs its connection and served on the gateway's poll until it expires
//! (the poll serves signed frames whatever the gateway's state). The gateway then forgets its
//! enrollment and announces itself unclaimed again with the same key and claim code; a nurse
//! can claim it for the next patient.
//!
//! A gateway whose latest heartbeat shows readings not yet confirmed is not released (409)
//! unless `force` is set: those readings would then reach nobody's session. Released is
//! audited with the operator's name. Answers: 200 `{"gateway_id", "command"}`; 404 no gateway
//! to release; 409 `{"message"}` backlog or revoked; 400 bad body; 415 a body not sent as
//! JSON.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tm_protocol::{CommandAction, GatewayId};

use super::Ops;
use super::auth::Operator;
use crate::http::access::is_json;
use crate::http::unavailable::Unavailable;
use crate::store::claims::{ReleaseOutcome, ReleaseRequest};

/// The body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    /// Release even with readings not yet confirmed.
    #[serde(default)]
    force: bool,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "message": message.into() }))).into_response()
}

/// `POST /ops/api/gateways/{id}/release`.
pub(super) async fn release(
    State(ops): State<Ops>,
    Extension(who): Extension<Operator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Unavailable> {
    let body = if body.is_empty() {
        ReleaseBody::default()
    } else if !is_json(&headers) {
        return Ok(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return Ok(refuse(
                    StatusCode::BAD_REQUEST,
                    format!("invalid body: {e}"),
                ));
            }
        }
    };
    let Ok(gateway) = GatewayId::new(id) else {
        return Ok(refuse(StatusCode::NOT_FOUND, "no gateway to release"));
    };
    let now = chrono::Utc::now();
    let ttl = chrono::Duration::seconds(i64::try_from(ops.section.command_ttl_s).unwrap_or(900));
    let (command, frame) =
        super::commands::sign(&ops.key, gateway, CommandAction::Release, ttl, now);
    let outcome = ops
        .store
        .release_gateway(ReleaseRequest {
            command: command.clone(),
            frame: frame.clone(),
            issued_by: format!("operator:{}", who.0),
            force: body.force,
            now,
        })
        .await?;
    Ok(match outcome {
        ReleaseOutcome::Released { .. } => {
            tracing::info!(gateway = %command.gateway_id, command = %command.command_id, force = body.force, "gateway released");
            ops.mqtt.publish_command(&command.gateway_id, frame);
            Json(json!({ "gateway_id": command.gateway_id, "command": command })).into_response()
        }
        ReleaseOutcome::Backlog(depth) => refuse(
            StatusCode::CONFLICT,
            format!(
                "the gateway's latest heartbeat shows {depth} readings not yet confirmed: let it \
                 send them first, or release with {{\"force\": true}} (they would reach no session)"
            ),
        ),
        ReleaseOutcome::Unknown => refuse(StatusCode::NOT_FOUND, "no gateway to release"),
        ReleaseOutcome::Revoked => refuse(
            StatusCode::CONFLICT,
            "the gateway is revoked: a revoked gateway is not released",
        ),
    })
}
