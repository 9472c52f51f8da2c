//! Remote commands as stored: the sealed frame of each command an operator issued, served to
//! its gateway's poll until it has a result or expires, and the first report of what the
//! gateway did with it (the signing and the delivery are the operations': `ops::commands`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tm_protocol::{Command, CommandAction, CommandResult};

use super::{Backend, Store, StoreError, postgres, sqlite};

/// What [`Store::record_command_result`] did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The first report of this command: stored.
    Stored,
    /// The command already has a result (a report sent twice): unchanged.
    AlreadyReported,
    /// No command with this id was issued to this gateway.
    UnknownCommand,
}

/// One command as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandView {
    /// Id.
    pub command_id: String,
    /// The action as issued (`{"type": "reread-devices"}`); a `pair-secret` without its
    /// secret ([`stored_action`]).
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

/// A command's action as the store keeps it and operators read it: the action's JSON, with
/// the secret of a `pair-secret` left out (the signed frame carries it to the gateway; nobody
/// reads it back here).
pub fn stored_action(action: &CommandAction) -> String {
    match action {
        CommandAction::PairSecret { address, .. } => {
            serde_json::json!({ "type": "pair-secret", "address": address }).to_string()
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

impl Store {
    /// Stores signed `command` (its sealed `frame`, issued by `issued_by`) when its gateway is
    /// active; false, storing nothing, when it is not (or not enrolled).
    pub async fn store_issued_command(
        &self,
        command: Command,
        frame: Vec<u8>,
        issued_by: String,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::commands::insert(pg, &command, &frame, &issued_by).await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::commands::insert(c, &command, &frame, &issued_by))
                    .await
            }
        }
    }

    /// The unexpired command frames for `gateway` that have no result yet, oldest first.
    pub async fn pending_command_frames(
        &self,
        gateway: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::commands::pending(pg, &gateway, now).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::commands::pending(c, &gateway, now))
                    .await
            }
        }
    }

    /// Stores a verified result received at `now` (its gateway is the frame's signer). The
    /// first report wins.
    pub async fn record_command_result(
        &self,
        result: CommandResult,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::commands::record_result(pg, &result, now).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::commands::record_result(c, &result, now))
                    .await
            }
        }
    }

    /// The latest `limit` commands of `gateway`, newest first, each with its state at `now`.
    pub async fn gateway_commands(
        &self,
        gateway: String,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CommandView>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::commands::gateway_commands(pg, &gateway, now, limit).await
            }
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::commands::list(c, &gateway, now, limit))
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_secret_is_stored_without_its_secret() {
        let action = CommandAction::PairSecret {
            address: "C0:FF:EE:00:00:03".into(),
            secret: "123456".into(),
        };
        let stored = stored_action(&action);
        assert_eq!(
            stored,
            r#"{"address":"C0:FF:EE:00:00:03","type":"pair-secret"}"#
        );
        assert!(!stored.contains("123456"));
        assert_eq!(
            stored_action(&CommandAction::ResyncNow),
            r#"{"type":"resync-now"}"#
        );
    }
}
