//! Routes: the dashboard (`/ops`, `/ops/gateways/{id}`), the JSON API (`/ops/api/...`) and
//! `/metrics`, all behind the ops token; and the gateways' command poll (signed frames only).
//!
//! JSON API:
//! - `GET /ops/api/gateways`: every gateway with its health, devices and alerts (`last_seen`);
//! - `GET /ops/api/gateways/{id}`: one gateway, plus its audit trail;
//! - `GET /ops/api/alerts[?all=1]`: unresolved alerts first (all with `all=1`);
//! - `POST /ops/api/alerts/{id}/ack`: acknowledge an open alert (409 if not open);
//! - `POST /ops/api/gateways/{id}/commands` with `{"type": "resync-now"}` (or
//!   `{"type": "set-log-level", "level": "debug"}`, `{"type": "reread-devices"}`): issue a
//!   signed command (201 with the command); pushed over MQTT when the provider runs its MQTT
//!   connection, and served to the gateway's poll until it has a result or expires. The body
//!   must be sent as `Content-Type: application/json` (otherwise 415); refusals of the body
//!   (415, 400) are `{"message": ...}`;
//! - `GET /ops/api/gateways/{id}/commands`: the gateway's latest commands, newest first, each
//!   with its `state` (`pending`, `expired`, or the gateway's report: `done`, `not-available`,
//!   `failed`) and `detail`;
//! - `POST /ops/api/gateways/{id}/release` (`{"force": bool}` optional): release the gateway
//!   from its session with a signed `Release` command ([`super::release`]); a `release` is
//!   refused as a plain command;
//! - `GET /ops/api/audit[?gateway=ID]`: the audit log, newest first;
//! - `GET /ops/api/hub-updates`, `POST /ops/api/hub-updates/{seq}/requeue`: HUB status updates
//!   not delivered, and the re-queueing of a held one ([`super::hub_updates`]).

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use tm_protocol::{CommandAction, GatewayId};

use super::auth::{self, Operator};
use super::{Ops, commands, views};
use crate::http::Routes;
use crate::http::access::is_json;
use crate::http::unavailable::Unavailable;

/// The routes.
pub fn routes(ops: Ops) -> Routes {
    let authenticated = Routes::new()
        .get("/ops", super::dashboard::overview)
        .get("/ops/gateways/{gateway_id}", super::dashboard::gateway)
        .get("/ops/api/gateways", list_gateways)
        .get("/ops/api/gateways/{gateway_id}", one_gateway)
        .post("/ops/api/gateways/{gateway_id}/commands", issue_command)
        .get("/ops/api/gateways/{gateway_id}/commands", list_commands)
        .post(
            "/ops/api/gateways/{gateway_id}/release",
            super::release::release,
        )
        .get("/ops/api/alerts", list_alerts)
        .post("/ops/api/alerts/{alert_id}/ack", ack)
        .get("/ops/api/audit", list_audit)
        .get("/ops/api/hub-updates", super::hub_updates::list)
        .post(
            "/ops/api/hub-updates/{seq}/requeue",
            super::hub_updates::requeue_api,
        )
        .post(
            "/ops/hub-updates/{seq}/requeue",
            super::hub_updates::requeue_form,
        )
        .get("/metrics", super::metrics::metrics)
        .map_router(|router| {
            router.route_layer(axum::middleware::from_fn_with_state(
                ops.clone(),
                auth::require,
            ))
        });
    authenticated
        .get(tm_protocol::routes::http::COMMANDS, poll)
        .map_router(|router| router.with_state(ops))
}

async fn list_gateways(State(ops): State<Ops>) -> Result<Response, Unavailable> {
    let t = ops.thresholds.clone();
    let now = chrono::Utc::now();
    let gateways = views::gateways(ops.store.gateway_rows(None).await?, now, &t);
    Ok(Json(json!({ "gateways": gateways })).into_response())
}

async fn one_gateway(
    State(ops): State<Ops>,
    Path(id): Path<String>,
) -> Result<Response, Unavailable> {
    let t = ops.thresholds.clone();
    let now = chrono::Utc::now();
    let detail = ops.store.gateway_detail(id, 200).await?;
    let (gateways, trail) = (views::gateways(detail.rows, now, &t), detail.audit);
    Ok(match gateways.into_iter().next() {
        Some(g) => Json(json!({ "gateway": g, "audit": trail })).into_response(),
        None => (StatusCode::NOT_FOUND, "no such gateway").into_response(),
    })
}

#[derive(Debug, Deserialize)]
struct AlertQuery {
    #[serde(default)]
    all: Option<u8>,
}

async fn list_alerts(
    State(ops): State<Ops>,
    Query(q): Query<AlertQuery>,
) -> Result<Response, Unavailable> {
    let unresolved = q.all.unwrap_or(0) == 0;
    let alerts = ops.store.list_alerts(None, unresolved, 1000).await?;
    Ok(Json(json!({ "alerts": alerts })).into_response())
}

async fn ack(
    State(ops): State<Ops>,
    Extension(who): Extension<Operator>,
    Path(id): Path<i64>,
) -> Result<Response, Unavailable> {
    let now = chrono::Utc::now();
    let done = ops.store.acknowledge_alert(id, who.0, now).await?;
    Ok(if done {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::CONFLICT, "no open alert with this id").into_response()
    })
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    gateway: Option<String>,
}

async fn list_audit(
    State(ops): State<Ops>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, Unavailable> {
    let entries = ops.store.audit_trail(q.gateway, 1000).await?;
    Ok(Json(json!({ "audit": entries })).into_response())
}

/// A refusal of the JSON API: `{"message": ...}`.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "message": message.into() }))).into_response()
}

async fn issue_command(
    State(ops): State<Ops>,
    Extension(who): Extension<Operator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Unavailable> {
    if !is_json(&headers) {
        return Ok(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    let action: CommandAction = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return Ok(refuse(
                StatusCode::BAD_REQUEST,
                format!("invalid command: {e}"),
            ));
        }
    };
    if action == CommandAction::Release {
        return Ok(refuse(
            StatusCode::BAD_REQUEST,
            "a release is not a plain command: POST /ops/api/gateways/{id}/release",
        ));
    }
    if let CommandAction::SetLogLevel { level } = &action
        && (level.is_empty() || level.len() > 200)
    {
        return Ok(refuse(StatusCode::BAD_REQUEST, "invalid log level"));
    }
    let Ok(gateway) = GatewayId::new(id) else {
        return Ok((StatusCode::NOT_FOUND, "no such gateway").into_response());
    };
    let ttl = chrono::Duration::seconds(i64::try_from(ops.section.command_ttl_s).unwrap_or(900));
    match commands::issue(
        &ops.store,
        &ops.key,
        gateway,
        action,
        ttl,
        &who.0,
        chrono::Utc::now(),
    )
    .await
    {
        Ok((command, frame)) => {
            ops.mqtt.publish_command(&command.gateway_id, frame);
            Ok((StatusCode::CREATED, Json(command)).into_response())
        }
        Err(commands::CommandError::UnknownGateway(_)) => {
            Ok((StatusCode::NOT_FOUND, "no active gateway with this id").into_response())
        }
        Err(commands::CommandError::Store(e)) => Err(e.into()),
    }
}

async fn list_commands(
    State(ops): State<Ops>,
    Path(id): Path<String>,
) -> Result<Response, Unavailable> {
    let now = chrono::Utc::now();
    let commands = ops.store.gateway_commands(id, now, 100).await?;
    Ok(Json(json!({ "commands": commands })).into_response())
}

async fn poll(State(ops): State<Ops>, Path(id): Path<String>) -> Result<Response, Unavailable> {
    let frames = ops
        .store
        .pending_command_frames(id, chrono::Utc::now())
        .await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let frames: Vec<String> = frames.iter().map(|f| b64.encode(f)).collect();
    Ok(Json(json!({ "frames": frames })).into_response())
}
