//! HUB status updates that did not go through, for the operator: the undelivered rows of the
//! HUB outbox with where each stands (held, retrying after a refusal, re-queued, waiting behind
//! an earlier update of its session, pending), and the re-queueing of a held one.
//!
//! - `GET /ops/api/hub-updates`: every undelivered row in queue order;
//! - `POST /ops/api/hub-updates/{seq}/requeue`: re-queue a held row (and the later held rows
//!   of its session) with a fresh refusal window; 200 with what was re-queued, 409 when the row
//!   is not held;
//! - `POST /ops/hub-updates/{seq}/requeue`: the same from the dashboard's form (303 back to
//!   `/ops`); refused (403) when the browser says the form came from another site.
//!
//! Every re-queue is written to the audit log in the transaction that makes it, with the
//! operator's name, and wakes the outbox. The session's `hub-update-held` alert stays open
//! until the re-queued rows are delivered (the outbox resolves it then).

use std::fmt::Write as _;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Ops;
use super::auth::Operator;
use crate::html::escape as esc;
use crate::http::unavailable::Unavailable;
use crate::store::StoreError;
use crate::store::hub_outbox::{OutboxRow, Requeued, Standing};

/// Rows listed at most.
const LIST_LIMIT: u32 = 1000;

/// Re-queues held row `seq` for `who`, with its audit entry; wakes the outbox.
#[tracing::instrument(name = "ops", skip_all)]
pub async fn requeue(ops: &Ops, seq: i64, who: &str) -> Result<Option<Requeued>, StoreError> {
    let actor = format!("operator:{who}");
    let done = ops.store.requeue_hub_update(seq, actor).await?;
    if let Some(r) = &done {
        tracing::info!(seq = r.seq, rows = r.rows, "held HUB update re-queued");
        ops.hub_wake.notify_one();
    }
    Ok(done)
}

/// `GET /ops/api/hub-updates`.
pub(super) async fn list(State(ops): State<Ops>) -> Result<Response, Unavailable> {
    let rows = ops.store.undelivered_hub_updates(LIST_LIMIT).await?;
    Ok(Json(json!({ "updates": rows })).into_response())
}

/// `POST /ops/api/hub-updates/{seq}/requeue`.
pub(super) async fn requeue_api(
    State(ops): State<Ops>,
    Extension(who): Extension<Operator>,
    Path(seq): Path<i64>,
) -> Result<Response, Unavailable> {
    Ok(match requeue(&ops, seq, &who.0).await? {
        Some(r) => Json(r).into_response(),
        None => (StatusCode::CONFLICT, "no held HUB update with this seq").into_response(),
    })
}

/// `POST /ops/hub-updates/{seq}/requeue` (the dashboard's form).
pub(super) async fn requeue_form(
    State(ops): State<Ops>,
    Extension(who): Extension<Operator>,
    Path(seq): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, Unavailable> {
    if crate::http::access::cross_site(&headers) {
        return Ok((StatusCode::FORBIDDEN, "cross-site form refused").into_response());
    }
    Ok(match requeue(&ops, seq, &who.0).await? {
        Some(_) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, "/ops#hub-updates")],
        )
            .into_response(),
        None => (StatusCode::CONFLICT, "no held HUB update with this seq").into_response(),
    })
}

fn standing(s: Standing) -> &'static str {
    match s {
        Standing::Held => "held",
        Standing::Retrying => "retrying",
        Standing::Requeued => "requeued",
        Standing::Waiting => "waiting",
        Standing::Pending => "pending",
    }
}

/// The dashboard's table of the updates that need an eye: held, retrying after a refusal,
/// re-queued, and those waiting behind them; a held row has its re-queue button.
pub(super) fn render(out: &mut String, rows: &[OutboxRow]) {
    let shown: Vec<&OutboxRow> = rows
        .iter()
        .filter(|r| r.state != Standing::Pending)
        .collect();
    let held = shown.iter().filter(|r| r.state == Standing::Held).count();
    let _ = write!(
        out,
        "<h2 id=\"hub-updates\">HUB updates not delivered</h2><p><span id=\"hub-held\">Held: {held}</span></p>\
         <table class=\"hub-updates\"><tr><th>#</th><th>Session</th><th>Status</th><th>State</th>\
         <th>Attempts</th><th>HUB answer</th><th>First refused</th><th>Next attempt</th><th>Held since</th><th></th></tr>"
    );
    for r in shown {
        let button = if r.state == Standing::Held {
            format!(
                "<form method=\"post\" action=\"/ops/hub-updates/{}/requeue\"><button type=\"submit\">Re-queue</button></form>",
                r.seq
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr class=\"{state}\" data-hub-update=\"{seq}\"><td>{seq}</td><td>{session}</td><td>{status}</td>\
             <td>{state}</td><td>{attempts}</td><td>{error}</td><td>{first}</td><td>{next}</td><td>{held_at}</td><td>{button}</td></tr>",
            seq = r.seq,
            state = standing(r.state),
            session = esc(&r.telemonitoring_id),
            status = esc(&r.status),
            attempts = r.attempts,
            error = esc(r.last_error.as_deref().unwrap_or("")),
            first = esc(r.first_refused_at.as_deref().unwrap_or("")),
            next = esc(r.next_attempt_at.as_deref().unwrap_or("")),
            held_at = esc(r.held_at.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>");
}
