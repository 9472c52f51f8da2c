//! Steps 3 to 5 of the nurse's page, once her session has its gateway: pairing the devices, a
//! first measurement with each, the summary. The page ([`super::setup_page`]) is a skeleton the
//! provider's script (`/assets/setup.js`, [`super::assets`]) fills in from
//! `GET /enroll/{token}/setup/state` ([`super::setup_state`]) every second; the nurse's
//! actions are JSON posts that become signed commands for the gateway
//! ([`crate::ops::commands::issue`], issued by [`ISSUED_BY`], valid [`COMMAND_TTL_S`]):
//!
//! - `POST /enroll/{token}/setup/pair` `{"address"}`: `Pair`;
//! - `POST /enroll/{token}/setup/secret` `{"address", "secret"}`: `PairSecret`, the PIN,
//!   passkey or `yes` the pairing waits for. The secret goes into the signed frame only: it is
//!   not logged, not audited (the relay is, without it), and the ops command list shows the
//!   action without it ([`crate::store::commands::stored_action`]);
//! - `POST /enroll/{token}/setup/unpair` `{"address"}`: `Unpair`;
//! - `POST /enroll/{token}/setup/done` (form): the setup is finished, setup mode ends.
//!
//! The state endpoint also keeps the gateway in setup mode while the page is open: when the
//! gateway's newest setup state ends in less than [`RENEW_BELOW_S`] (or it sent none) and no
//! unexpired setup command reaches further, it issues `Setup { until: now + SETUP_FOR }`; and it
//! records (and audits) each paired device's first reading the first time it shows it.
//!
//! The page token is the session's enrollment page token: unknown, 404; once the session
//! ended, 410 (nothing is commanded for an ended session). Actions from another site are
//! refused (403), bodies that are not JSON too (415).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use tm_protocol::{CommandAction, GatewayId};

use super::setup_state::state_json;
use super::view::{self, Here};
use crate::http::access::{cross_site, is_json};
use crate::hub::contract::Status;
use crate::ops::commands::{CommandError, issue};
use crate::portal::state::AppState;
use crate::store::audit::AuditAction;
use crate::store::enrollment::EnrollmentPage;
use crate::store::setup::{SetupStep, SetupView};

/// The state the script polls.
pub const STATE_ROUTE: &str = "/enroll/{token}/setup/state";
/// Pair a device.
pub const PAIR_ROUTE: &str = "/enroll/{token}/setup/pair";
/// Relay a pairing's secret.
pub const SECRET_ROUTE: &str = "/enroll/{token}/setup/secret";
/// Unpair a device.
pub const UNPAIR_ROUTE: &str = "/enroll/{token}/setup/unpair";
/// Finish the setup.
pub const DONE_ROUTE: &str = "/enroll/{token}/setup/done";

/// Who the page's commands are issued by (the ops command list shows it).
pub const ISSUED_BY: &str = "enrollment-page";
/// How long a command of the page stays valid: the page is watched while it runs, a command
/// the gateway did not fetch by then is stale.
pub const COMMAND_TTL_S: i64 = 120;
/// How far ahead one setup command puts the end of setup mode; longer than
/// [`COMMAND_TTL_S`], so a command fetched late still gives minutes of setup.
pub const SETUP_FOR_S: i64 = 300;
/// Setup mode is renewed when it would end sooner than this; shorter than `SETUP_FOR_S` minus
/// `COMMAND_TTL_S`, so one command's setup mode outlasts its own expiry.
pub const RENEW_BELOW_S: i64 = 60;

/// `?lang=` of the state.
#[derive(Debug, Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

/// A JSON answer with the pages' headers.
fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Json(body),
    )
        .into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    answer(status, json!({ "message": message }))
}

fn unavailable(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "store failure");
    refuse(StatusCode::SERVICE_UNAVAILABLE, "internal error, try again")
}

/// The live session of `token`, or the answer to give.
async fn session(app: &AppState, token: String) -> Result<EnrollmentPage, Response> {
    match app.store.enrollment_page(token).await {
        Err(e) => Err(unavailable(&e)),
        Ok(None) => Err(refuse(
            StatusCode::NOT_FOUND,
            "this enrollment link is not valid",
        )),
        Ok(Some(p)) if matches!(p.status, Status::Completed | Status::Cancelled) => Err(refuse(
            StatusCode::GONE,
            "this session has ended: its setup link no longer works",
        )),
        Ok(Some(p)) => Ok(p),
    }
}

/// The session's gateway, or the answer to give (409 while it has none).
async fn gateway_of(
    app: &AppState,
    page: &EnrollmentPage,
    now: DateTime<Utc>,
) -> Result<SetupView, Response> {
    match app
        .store
        .setup_view(page.telemonitoring_id.clone(), now)
        .await
    {
        Err(e) => Err(unavailable(&e)),
        Ok(None) => Err(refuse(
            StatusCode::CONFLICT,
            "the session has no gateway yet: connect one first",
        )),
        Ok(Some(v)) => Ok(v),
    }
}

/// Issues `action` to `gateway` for the page (pushed over MQTT too); the command id.
async fn command(
    app: &AppState,
    gateway: GatewayId,
    action: CommandAction,
    now: DateTime<Utc>,
) -> Result<String, Response> {
    let key = &app.portal.provider_key;
    let ttl = Duration::seconds(COMMAND_TTL_S);
    match issue(&app.store, key, gateway, action, ttl, ISSUED_BY, now).await {
        Ok((command, frame)) => {
            app.portal.mqtt.publish_command(&command.gateway_id, frame);
            Ok(command.command_id.to_string())
        }
        Err(CommandError::UnknownGateway(_)) => Err(refuse(
            StatusCode::CONFLICT,
            "the session's gateway is no longer active",
        )),
        Err(CommandError::Store(e)) => Err(unavailable(&e)),
    }
}

/// Keeps the gateway in setup mode while the page polls (see the module documentation).
async fn keep_in_setup(app: &AppState, view: &SetupView, now: DateTime<Utc>) {
    let reported = view
        .heartbeat
        .as_ref()
        .and_then(|(_, h)| h.setup.as_ref().map(|s| s.until));
    let ahead = reported.max(view.commanded_until);
    if ahead.is_some_and(|until| until - now >= Duration::seconds(RENEW_BELOW_S)) {
        return;
    }
    let until = now + Duration::seconds(SETUP_FOR_S);
    let action = CommandAction::Setup { until };
    if command(app, view.gateway_id.clone(), action, now)
        .await
        .is_ok()
    {
        tracing::info!(gateway = %view.gateway_id, "setup mode renewed");
    }
}

/// Records (and audits) the first reading shown of each paired device.
async fn record_first_readings(
    app: &AppState,
    session: &str,
    view: &SetupView,
    now: DateTime<Utc>,
) {
    for r in view.readings.iter().filter(|r| !r.recorded) {
        let step = SetupStep {
            telemonitoring_id: session.to_owned(),
            gateway_id: view.gateway_id.clone(),
            action: AuditAction::FirstReadingShown,
            device: Some(r.address.clone()),
            // The kind of reading, never its values.
            detail: serde_json::to_value(r.reading.kind)
                .ok()
                .and_then(|k| k.as_str().map(str::to_owned))
                .unwrap_or_default(),
        };
        let id = r.reading.reading_id.to_string();
        if let Err(e) = app.store.record_first_reading(step, id, now).await {
            tracing::error!(error = %e, "store failure");
        }
    }
}

/// `GET /enroll/{token}/setup/state?lang=`.
pub async fn state(
    State(app): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    let lang = view::language(q.lang.as_deref(), &headers);
    let page = match session(&app, token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = Utc::now();
    let view = match app
        .store
        .setup_view(page.telemonitoring_id.clone(), now)
        .await
    {
        Ok(v) => v,
        Err(e) => return unavailable(&e),
    };
    if let Some(v) = view.as_ref().filter(|v| v.setup_done_at.is_none()) {
        record_first_readings(&app, &page.telemonitoring_id, v, now).await;
        keep_in_setup(&app, v, now).await;
    }
    let state = state_json(page.status, view.as_ref(), lang, app.portal.tz, now);
    answer(StatusCode::OK, state)
}

/// The body of an action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    address: String,
    #[serde(default)]
    secret: Option<String>,
}

/// A Bluetooth address as the gateway writes it (upper case), if `text` is one.
fn address(text: &str) -> Option<String> {
    let upper = text.trim().to_ascii_uppercase();
    let parts: Vec<&str> = upper.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then_some(upper)
}

/// A secret as the gateway takes it: 1 to 16 digits, or `yes`.
fn secret(text: &str) -> Option<String> {
    let t = text.trim();
    let digits = !t.is_empty() && t.len() <= 16 && t.bytes().all(|b| b.is_ascii_digit());
    (digits || t.eq_ignore_ascii_case("yes")).then(|| t.to_ascii_lowercase())
}

/// What an action asks.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Pair,
    Secret,
    Unpair,
}

async fn act(app: AppState, token: String, headers: HeaderMap, body: Bytes, ask: Ask) -> Response {
    if cross_site(&headers) {
        tracing::warn!("setup action refused: it came from another site");
        return refuse(
            StatusCode::FORBIDDEN,
            "this action was not sent from its page",
        );
    }
    if !is_json(&headers) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let Ok(body) = serde_json::from_slice::<ActionBody>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "expected {\"address\": ...}");
    };
    let Some(address) = address(&body.address) else {
        return refuse(StatusCode::BAD_REQUEST, "not a Bluetooth address");
    };
    let page = match session(&app, token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = Utc::now();
    let view = match gateway_of(&app, &page, now).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (action, audited) = match ask {
        Ask::Pair => (
            CommandAction::Pair {
                address: address.clone(),
            },
            AuditAction::PairRequested,
        ),
        Ask::Unpair => (
            CommandAction::Unpair {
                address: address.clone(),
            },
            AuditAction::UnpairRequested,
        ),
        Ask::Secret => {
            let Some(secret) = body.secret.as_deref().and_then(secret) else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "the code is 1 to 16 digits, or yes to confirm a number",
                );
            };
            (
                CommandAction::PairSecret {
                    address: address.clone(),
                    secret,
                },
                AuditAction::SecretRelayed,
            )
        }
    };
    let command_id = match command(&app, view.gateway_id.clone(), action, now).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let step = SetupStep {
        telemonitoring_id: page.telemonitoring_id,
        gateway_id: view.gateway_id.clone(),
        action: audited,
        device: Some(address),
        detail: String::new(),
    };
    if let Err(e) = app.store.audit_setup_step(step, now).await {
        return unavailable(&e);
    }
    tracing::info!(gateway = %view.gateway_id, command = %command_id, action = audited.as_str(), "setup action");
    answer(StatusCode::ACCEPTED, json!({ "command_id": command_id }))
}

/// `POST /enroll/{token}/setup/pair`.
pub async fn pair(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(app, token, headers, body, Ask::Pair).await
}

/// `POST /enroll/{token}/setup/secret`.
pub async fn relay_secret(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(app, token, headers, body, Ask::Secret).await
}

/// `POST /enroll/{token}/setup/unpair`.
pub async fn unpair(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(app, token, headers, body, Ask::Unpair).await
}

/// `POST /enroll/{token}/setup/done`: the setup is finished (audited once), setup mode ends;
/// 303 back to the page.
pub async fn done(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if cross_site(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this form was not sent from its page",
        );
    }
    let page = match session(&app, token.clone()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = Utc::now();
    let view = match gateway_of(&app, &page, now).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let step = SetupStep {
        telemonitoring_id: page.telemonitoring_id.clone(),
        gateway_id: view.gateway_id.clone(),
        action: AuditAction::SetupCompleted,
        device: None,
        detail: String::new(),
    };
    match app.store.finish_setup(step, now).await {
        Ok(true) => {
            let end = CommandAction::Setup { until: now };
            // Setup mode also ends by itself at its `until`; a failed command is not fatal.
            let _ = command(&app, view.gateway_id.clone(), end, now).await;
            tracing::info!(gateway = %view.gateway_id, "setup completed");
        }
        Ok(false) => {}
        Err(e) => return unavailable(&e),
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, Here::levels_below(&token, 2).to_page),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_secrets_are_checked_before_anything_is_signed() {
        assert_eq!(
            address("c0:ff:ee:00:00:03").as_deref(),
            Some("C0:FF:EE:00:00:03")
        );
        assert_eq!(address("C0:FF:EE:00:00"), None);
        assert_eq!(address("C0:FF:EE:00:00:0G"), None);
        assert_eq!(secret(" 123456 ").as_deref(), Some("123456"));
        assert_eq!(secret("YES").as_deref(), Some("yes"));
        assert_eq!(secret(""), None);
        assert_eq!(secret("12ab"), None);
        assert_eq!(secret(&"1".repeat(17)), None);
        const { assert!(RENEW_BELOW_S < SETUP_FOR_S - COMMAND_TTL_S) };
    }
}
