//! Remote commands: the provider signs a [`Command`] for one gateway with its key (the one the
//! gateway received at enrollment), stores the sealed frame, and serves every unexpired frame
//! to the gateway's poll (`GET /api/v1/gateways/{gateway_id}/commands`, JSON
//! `{"frames": [base64 frame, ...]}`). The frames are signed and name their gateway, so the poll
//! needs no further authentication: a frame read by someone else executes nowhere but on its
//! gateway, once (the agent refuses replays), and only until it expires.

use chrono::{DateTime, Utc};
use rusqlite::params;
use tm_protocol::{Command, CommandAction, CommandId, GatewayId, MessageKind, SigningKey};

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
    tracing::info!(stage = "ops", gateway = %command.gateway_id, command = %command.command_id, "command issued");
    Ok((command, frame))
}

/// The unexpired command frames for `gateway`, oldest first.
pub async fn pending(db: &Db, gateway: &str, now: DateTime<Utc>) -> Result<Vec<Vec<u8>>, DbError> {
    let gateway = gateway.to_owned();
    db.read(move |conn| {
        let mut stmt = conn.prepare(
            "SELECT frame FROM ops_commands WHERE gateway_id = ?1 AND expires_at_ms > ?2 \
             ORDER BY issued_at LIMIT 32",
        )?;
        stmt.query_map(params![gateway, now.timestamp_millis()], |r| r.get(0))?
            .collect()
    })
    .await
}
