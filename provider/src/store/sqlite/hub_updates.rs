//! An operator's re-queueing of a held HUB update on SQLite: the outbox's statement and the
//! audit entry, in one transaction.

use chrono::Utc;
use rusqlite::Connection;

use super::audit;
use super::hub_outbox as queue;
use crate::store::audit::AuditAction;
use crate::store::hub_outbox::Requeued;

/// Re-queues held row `seq` for `actor` and records it in the audit log, in one transaction;
/// `None` (rolled back, nothing changed) when `seq` is not held.
pub fn requeue(conn: &mut Connection, seq: i64, actor: &str) -> rusqlite::Result<Option<Requeued>> {
    let tx = conn.transaction()?;
    let Some(r) = queue::requeue(&tx, seq)? else {
        return Ok(None);
    };
    let detail = format!(
        "HUB update #{} ({}) re-queued after {}; {} held update(s) released",
        r.seq,
        r.status,
        r.last_error.as_deref().unwrap_or("no answer recorded"),
        r.rows
    );
    audit::record(
        &tx,
        Utc::now(),
        actor,
        AuditAction::HubUpdateRequeued,
        r.gateway_id.as_deref().unwrap_or(""),
        Some(&r.telemonitoring_id),
        None,
        &detail,
    )?;
    tx.commit()?;
    Ok(Some(r))
}
