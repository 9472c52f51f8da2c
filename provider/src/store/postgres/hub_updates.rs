//! Re-queueing a held HUB update, with its audit entry, on PostgreSQL.
//!
//! One transaction: the held row is locked and released with its session's later held rows
//! ([`super::hub_outbox::requeue`]), and the operator's action is appended to the audit log
//! ([`super::audit::record`]) before the commit, so the audit trail names every re-queue that
//! took effect and no other. When the row is not held (never was, or another operator or
//! instance re-queued it first: the row lock makes the second one wait and find it released),
//! nothing is written and `None` is returned.

use chrono::Utc;

use super::{PgStore, audit, hub_outbox};
use crate::store::StoreError;
use crate::store::audit::AuditAction;
use crate::store::hub_outbox::Requeued;

/// The audit entry's detail for re-queue `r`.
fn detail(r: &Requeued) -> String {
    format!(
        "HUB update #{} ({}) re-queued after {}; {} held update(s) released",
        r.seq,
        r.status,
        r.last_error.as_deref().unwrap_or("no answer recorded"),
        r.rows
    )
}

/// Re-queues held row `seq` for `actor` and records it in the audit log, in one transaction;
/// `None` (rolled back, nothing changed) when `seq` is not held.
pub async fn requeue(pg: &PgStore, seq: i64, actor: &str) -> Result<Option<Requeued>, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let Some(r) = hub_outbox::requeue(&*tx, seq).await.map_err(pg.sql())? else {
        return Ok(None);
    };
    audit::record(
        &*tx,
        Utc::now(),
        actor,
        AuditAction::HubUpdateRequeued,
        r.gateway_id.as_deref().unwrap_or(""),
        Some(&r.telemonitoring_id),
        None,
        &detail(&r),
    )
    .await
    .map_err(pg.sql())?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(Some(r))
}
