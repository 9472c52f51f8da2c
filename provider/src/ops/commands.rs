//! Remote commands: the provider signs a [`Command`] for one gateway with its key (the one the
//! gateway received at enrollment), stores the sealed frame, and delivers it two ways:
//!
//! - **MQTT push**: when the provider runs its MQTT connection, the frame is published once on
//!   the gateway's command topic (`tm/v1/gw/{id}/commands`, QoS 1, not retained). A gateway on
//!   MQTT subscribes with a persistent session, so the broker keeps the frame while it is
//!   offline. Not retained: a retained topic holds one message, so a second command would
//!   overwrite a first one the gateway has not read yet. A gateway on HTTPS never subscribes,
//!   and the broker drops the frame.
//! - **HTTPS poll**: every gateway polls `GET /api/v1/gateways/{gateway_id}/commands` (JSON
//!   `{"frames": [base64 frame, ...]}`) and gets every unexpired frame without a result yet.
//!   This also covers a push that was lost (broker restarted without persistence, provider not
//!   connected when the command was issued).
//!
//! The frames are signed and name their gateway, so neither path needs further
//! authentication: a frame read by someone else executes nowhere but on its gateway, once (the
//! agent refuses a command id it has seen, so a frame arriving by both paths runs once), and
//! only until it expires.
//!
//! The agent reports each executed command with a signed [`CommandResult`] over its own
//! transport (MQTT or HTTPS, see [`crate::ingest`]); [`record_result`] keeps the first report
//! of each command, after which the poll stops serving it. [`list`] shows each command's state
//! to the operator (`GET /ops/api/gateways/{id}/commands`).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;
use tm_protocol::{
    Command, CommandAction, CommandId, CommandResult, CommandStatus, GatewayId, MessageKind,
    SigningKey,
};

use crate::db::{Db, DbError};

/// Why a command was not issued.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such gateway, or not active.
    #[error("no active gateway {0}")]
    UnknownGateway(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] DbError),
}

fn new_command_id() -> CommandId {
    let mut b = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system random source works");
    CommandId::new(format!("cmd-{}", hex::encode(b))).expect("a valid slug")
}

/// Signs and stores a command for `gateway`; returns it with its frame.
#[tracing::instrument(name = "ops", skip_all)]
pub async fn issue(
    db: &Db,
    key: &SigningKey,
    gateway: GatewayId,
    action: CommandAction,
    ttl: chrono::Duration,
    issued_by: &str,
    now: DateTime<Utc>,
) -> Result<(Command, Vec<u8>), CommandError> {
    let command = Command {
        v: tm_protocol::PROTOCOL_VERSION,
        command_id: new_command_id(),
        gateway_id: gateway,
        issued_at: now,
        expires_at: now + ttl,
        action,
    };
    let frame = tm_protocol::seal(
        MessageKind::Command,
        crate::keys::PROVIDER_SIGNER,
        &tm_protocol::encode(&command),
        key,
    );
    let (c, f, by) = (command.clone(), frame.clone(), issued_by.to_owned());
    let stored = db
        .write(move |conn| {
            let active: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM gateways WHERE gateway_id = ?1 AND state = 'active')",
                params![c.gateway_id.as_str()],
                |r| r.get(0),
            )?;
            if !active {
                return Ok(false);
            }
            conn.execute(
                "INSERT INTO ops_commands (command_id, gateway_id, action, issued_by, issued_at, \
                 expires_at_ms, frame) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    c.command_id.as_str(),
                    c.gateway_id.as_str(),
                    serde_json::to_string(&c.action).unwrap_or_default(),
                    by,
                    c.issued_at.to_rfc3339(),
                    c.expires_at.timestamp_millis(),
                    f
                ],
            )?;
            Ok(true)
        })
        .await?;
    if !stored {
        return Err(CommandError::UnknownGateway(command.gateway_id.to_string()));
    }
    tracing::info!(gateway = %command.gateway_id, command = %command.command_id, "command issued");
    Ok((command, frame))
}

/// The unexpired command frames for `gateway` that have no result yet, oldest first.
pub async fn pending(db: &Db, gateway: &str, now: DateTime<Utc>) -> Result<Vec<Vec<u8>>, DbError> {
    let gateway = gateway.to_owned();
    db.read(move |conn| {
        let mut stmt = conn.prepare(
            "SELECT frame FROM ops_commands WHERE gateway_id = ?1 AND expires_at_ms > ?2 \
             AND result_status IS NULL ORDER BY issued_at LIMIT 32",
        )?;
        stmt.query_map(params![gateway, now.timestamp_millis()], |r| r.get(0))?
            .collect()
    })
    .await
}

/// What [`record_result`] did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The first report of this command: stored.
    Stored,
    /// The command already has a result (a report sent twice): unchanged.
    AlreadyReported,
    /// No command with this id was issued to this gateway.
    UnknownCommand,
}

fn status_text(s: CommandStatus) -> &'static str {
    match s {
        CommandStatus::Done => "done",
        CommandStatus::NotAvailable => "not-available",
        CommandStatus::Failed => "failed",
    }
}

/// Stores a verified result (its gateway is the frame's signer). The first report wins.
pub async fn record_result(
    db: &Db,
    result: CommandResult,
    now: DateTime<Utc>,
) -> Result<Recorded, DbError> {
    db.write(move |conn| {
        let changed = conn.execute(
            "UPDATE ops_commands SET result_status = ?1, result_detail = ?2, finished_at = ?3, \
             reported_at = ?4 WHERE command_id = ?5 AND gateway_id = ?6 \
             AND result_status IS NULL",
            params![
                status_text(result.status),
                result.detail,
                result.finished_at.to_rfc3339(),
                now.to_rfc3339(),
                result.command_id.as_str(),
                result.gateway_id.as_str()
            ],
        )?;
        if changed > 0 {
            return Ok(Recorded::Stored);
        }
        let known: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM ops_commands WHERE command_id = ?1 AND gateway_id = ?2)",
            params![result.command_id.as_str(), result.gateway_id.as_str()],
            |r| r.get(0),
        )?;
        Ok(if known {
            Recorded::AlreadyReported
        } else {
            Recorded::UnknownCommand
        })
    })
    .await
}

/// One command as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandView {
    /// Id.
    pub command_id: String,
    /// The action as issued (`{"type": "reread-devices"}`).
    pub action: serde_json::Value,
    /// Who issued it.
    pub issued_by: String,
    /// When.
    pub issued_at: String,
    /// Refused by the gateway after this instant.
    pub expires_at: Option<DateTime<Utc>>,
    /// `pending` (waiting for the gateway), `expired` (no result before its expiry), or the
    /// gateway's report: `done`, `not-available`, `failed`.
    pub state: String,
    /// What the gateway said it did.
    pub detail: Option<String>,
    /// When the gateway finished it.
    pub finished_at: Option<String>,
    /// When its result reached the provider.
    pub reported_at: Option<String>,
}

/// The latest `limit` commands of `gateway`, newest first.
pub fn list(
    conn: &Connection,
    gateway: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> rusqlite::Result<Vec<CommandView>> {
    let mut stmt = conn.prepare(
        "SELECT command_id, action, issued_by, issued_at, expires_at_ms, result_status, \
         result_detail, finished_at, reported_at FROM ops_commands WHERE gateway_id = ?1 \
         ORDER BY issued_at DESC, command_id LIMIT ?2",
    )?;
    stmt.query_map(params![gateway, limit], |r| {
        let expires_ms: i64 = r.get(4)?;
        let status: Option<String> = r.get(5)?;
        let state = status.unwrap_or_else(|| {
            if expires_ms > now.timestamp_millis() {
                "pending".into()
            } else {
                "expired".into()
            }
        });
        let action: String = r.get(1)?;
        Ok(CommandView {
            command_id: r.get(0)?,
            action: serde_json::from_str(&action).unwrap_or(serde_json::Value::Null),
            issued_by: r.get(2)?,
            issued_at: r.get(3)?,
            expires_at: DateTime::from_timestamp_millis(expires_ms),
            state,
            detail: r.get(6)?,
            finished_at: r.get(7)?,
            reported_at: r.get(8)?,
        })
    })?
    .collect()
}
