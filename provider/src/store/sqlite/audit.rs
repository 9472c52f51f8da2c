//! The audit log's statements on SQLite (the table is append-only: its triggers refuse every
//! UPDATE and DELETE).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use crate::store::audit::{AuditAction, AuditEntry};

/// Appends an entry (inside the caller's transaction).
#[allow(clippy::too_many_arguments)]
pub fn record(
    conn: &Connection,
    at: DateTime<Utc>,
    actor: &str,
    action: AuditAction,
    gateway_id: &str,
    telemonitoring_id: Option<&str>,
    device: Option<&str>,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO ops_audit (at, actor, action, gateway_id, telemonitoring_id, device, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            crate::store::time_text(at),
            actor,
            action.as_str(),
            gateway_id,
            telemonitoring_id,
            device,
            detail
        ],
    )?;
    Ok(())
}

/// Records an enrollment: called by the enrollment transaction.
pub fn record_enrollment(
    conn: &Connection,
    gateway_id: &str,
    telemonitoring_id: &str,
    carepath_id: &str,
) -> rusqlite::Result<()> {
    record(
        conn,
        Utc::now(),
        "nurse:enrollment-code",
        AuditAction::Enrolled,
        gateway_id,
        Some(telemonitoring_id),
        None,
        &format!("carepath {carepath_id}"),
    )
}

/// The newest entries first; `gateway` restricts to one gateway.
pub fn list(
    conn: &Connection,
    gateway: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, actor, action, gateway_id, telemonitoring_id, device, detail \
         FROM ops_audit WHERE ?1 IS NULL OR gateway_id = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    stmt.query_map(params![gateway, limit], |r| {
        Ok(AuditEntry {
            seq: r.get(0)?,
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            gateway_id: r.get(4)?,
            telemonitoring_id: r.get(5)?,
            device: r.get(6)?,
            detail: r.get(7)?,
        })
    })?
    .collect()
}
