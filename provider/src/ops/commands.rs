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
//! of each command, after which the poll stops serving it.
//! [`Store::gateway_commands`] shows each command's state to the operator
//! (`GET /ops/api/gateways/{id}/commands`). The stored commands are the store's
//! ([`crate::store::commands`]).

use chrono::{DateTime, Utc};
use tm_protocol::{
    Command, CommandAction, CommandId, CommandResult, GatewayId, MessageKind, SigningKey,
};

pub use crate::store::commands::Recorded;
use crate::store::{Store, StoreError};

/// Why a command was not issued.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such gateway, or not active.
    #[error("no active gateway {0}")]
    UnknownGateway(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn new_command_id() -> CommandId {
    let mut b = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system random source works");
    CommandId::new(format!("cmd-{}", hex::encode(b))).expect("a valid slug")
}

/// A new command for `gateway`, valid `ttl` from `now`, signed with `key`: the command and
/// its sealed frame (stored by the caller).
pub fn sign(
    key: &SigningKey,
    gateway: GatewayId,
    action: CommandAction,
    ttl: chrono::Duration,
    now: DateTime<Utc>,
) -> (Command, Vec<u8>) {
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
    (command, frame)
}

/// Signs and stores a command for `gateway` (active); returns it with its frame. The log
/// line names the gateway and the command, never the action's fields (a pairing secret).
#[tracing::instrument(name = "ops", skip_all)]
pub async fn issue(
    store: &Store,
    key: &SigningKey,
    gateway: GatewayId,
    action: CommandAction,
    ttl: chrono::Duration,
    issued_by: &str,
    now: DateTime<Utc>,
) -> Result<(Command, Vec<u8>), CommandError> {
    let (command, frame) = sign(key, gateway, action, ttl, now);
    let stored = store
        .store_issued_command(command.clone(), frame.clone(), issued_by.to_owned())
        .await?;
    if !stored {
        return Err(CommandError::UnknownGateway(command.gateway_id.to_string()));
    }
    tracing::info!(gateway = %command.gateway_id, command = %command.command_id, "command issued");
    Ok((command, frame))
}

/// Stores a verified result (its gateway is the frame's signer). The first report wins.
/// Ingest calls it for every command result it verifies.
pub async fn record_result(
    store: &Store,
    result: CommandResult,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    store.record_command_result(result, now).await
}
