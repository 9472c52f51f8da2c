//! The audit log: who enrolled, paired, unpaired or replaced which device on which gateway for
//! which session, which operator re-queued which held HUB update, and when. Append-only: the
//! table's triggers refuse every UPDATE and DELETE, so not even a bug in this crate can rewrite
//! history.
//!
//! Enrollment is recorded in the enrollment transaction; device events are derived from the
//! device lists of consecutive heartbeats ([`super::observe`]); an operator action in the
//! transaction that makes it ([`super::hub_updates`]). An entry about a session that never had
//! a gateway has an empty `gateway_id`.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// A gateway was enrolled on a session.
    Enrolled,
    /// A device appeared in a gateway's paired list.
    Paired,
    /// A device left the list.
    Unpaired,
    /// A device left the list and another of the same model took its place.
    Replaced,
    /// An operator re-queued a HUB status update that was held.
    HubUpdateRequeued,
}

impl AuditAction {
    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolled => "enrolled",
            Self::Paired => "paired",
            Self::Unpaired => "unpaired",
            Self::Replaced => "replaced",
            Self::HubUpdateRequeued => "hub-update-requeued",
        }
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Order of insertion.
    pub seq: i64,
    /// When.
    pub at: String,
    /// Who (`nurse:enrollment-code`, `gateway:<id>`, `operator:<name>`).
    pub actor: String,
    /// What.
    pub action: String,
    /// On which gateway.
    pub gateway_id: String,
    /// For which session.
    pub telemonitoring_id: Option<String>,
    /// Which device (address and model).
    pub device: Option<String>,
    /// Anything else (carepath, the replaced device).
    pub detail: String,
}

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
            at.to_rfc3339(),
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
pub fn enrolled(
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
