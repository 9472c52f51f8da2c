//! The audit log's statements on PostgreSQL (append-only).
//!
//! `ops_audit` refuses every `UPDATE`, `DELETE` and `TRUNCATE` by trigger (and the privileges
//! are revoked from everyone but the table's owner), so the only statement that writes it here
//! is an `INSERT`. Entries are appended on the caller's transaction: the enrollment, the
//! heartbeat or the operator's action they record commits with them or not at all. `seq` is an
//! identity column, so entries of concurrent instances never collide; the trail is listed
//! newest first by it, as on SQLite.
//!
//! `at` is a `timestamptz`; an entry hands it back as [`time_text`] renders it, the text the
//! SQLite side stores for the same instant.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::PgStore;
use crate::store::audit::{AuditAction, AuditEntry};
use crate::store::{StoreError, time_text};

const INSERT: &str = "INSERT INTO ops_audit (at, actor, action, gateway_id, telemonitoring_id, \
    device, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const LIST: &str = "SELECT seq, at, actor, action, gateway_id, telemonitoring_id, device, detail \
    FROM ops_audit WHERE $1::text IS NULL OR gateway_id = $1::text ORDER BY seq DESC LIMIT $2";

/// Appends an entry (inside the caller's transaction).
#[allow(clippy::too_many_arguments)]
pub async fn record(
    c: &impl GenericClient,
    at: DateTime<Utc>,
    actor: &str,
    action: AuditAction,
    gateway_id: &str,
    telemonitoring_id: Option<&str>,
    device: Option<&str>,
    detail: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        INSERT,
        &[
            &at,
            &actor,
            &action.as_str(),
            &gateway_id,
            &telemonitoring_id,
            &device,
            &detail,
        ],
    )
    .await?;
    Ok(())
}

/// Records an enrollment: called by the enrollment transaction.
pub async fn record_enrollment(
    c: &impl GenericClient,
    gateway_id: &str,
    telemonitoring_id: &str,
    carepath_id: &str,
) -> Result<(), tokio_postgres::Error> {
    record(
        c,
        Utc::now(),
        "nurse:enrollment-code",
        AuditAction::Enrolled,
        gateway_id,
        Some(telemonitoring_id),
        None,
        &format!("carepath {carepath_id}"),
    )
    .await
}

/// The newest entries first; `gateway` restricts to one gateway.
pub async fn list(
    c: &impl GenericClient,
    gateway: Option<&str>,
    limit: u32,
) -> Result<Vec<AuditEntry>, tokio_postgres::Error> {
    let rows = c.query(LIST, &[&gateway, &i64::from(limit)]).await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                seq: r.try_get(0)?,
                at: time_text(r.try_get::<_, DateTime<Utc>>(1)?),
                actor: r.try_get(2)?,
                action: r.try_get(3)?,
                gateway_id: r.try_get(4)?,
                telemonitoring_id: r.try_get(5)?,
                device: r.try_get(6)?,
                detail: r.try_get(7)?,
            })
        })
        .collect()
}

/// The audit trail ([`crate::store::Store::audit_trail`]) on a pooled connection.
pub async fn trail(
    pg: &PgStore,
    gateway: Option<&str>,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    let c = pg.client().await?;
    list(&**c, gateway, limit).await.map_err(pg.sql())
}
