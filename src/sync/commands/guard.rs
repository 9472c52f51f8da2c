//! Admission of command frames: signature, gateway, expiry, and the ids seen before.
//!
//! A command is admitted only if, in this order: the frame is signed by `provider` and the
//! signature verifies against the provider key from the enrollment (so an unsigned or forged
//! frame is refused); it decodes; it names this gateway; it has not expired; and its id was not
//! seen before. Seen ids are kept in `commands-seen.json` in the state directory (written
//! atomically, before the command runs: at most once, even across a restart and whichever path
//! delivered it) until their expiry, after which the expiry check refuses them anyway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tm_protocol::{Command, Frame, GatewayId, MessageKind, VerifyingKey};

/// File of seen command ids in the state directory.
pub const SEEN_FILE: &str = "commands-seen.json";
/// The signer name of provider frames.
const PROVIDER_SIGNER: &str = "provider";

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefused {
    /// Not a frame, or not signed by the provider.
    #[error("unsigned or malformed command frame: {0}")]
    Unsigned(String),
    /// The signature does not verify against the enrolled provider key.
    #[error("forged command: {0}")]
    Forged(String),
    /// The payload is not a command.
    #[error("malformed command: {0}")]
    Malformed(String),
    /// For another gateway.
    #[error("command for another gateway")]
    WrongGateway,
    /// Past its expiry.
    #[error("command expired at {0}")]
    Expired(DateTime<Utc>),
    /// Already executed (a replay, or the same command by the other delivery path).
    #[error("command {0} already executed")]
    Replayed(tm_protocol::CommandId),
    /// The seen-ids file cannot be written: not executed, so it cannot run twice.
    #[error("cannot record the command id: {0}")]
    Store(String),
}

/// Verifies commands and remembers the ids it admitted.
#[derive(Debug)]
pub struct CommandGuard {
    /// The provider key from the enrollment: the only key a command may be signed with.
    provider: VerifyingKey,
    /// This gateway: a command naming another is refused.
    gateway: GatewayId,
    /// `commands-seen.json` in the state directory, replaced atomically at each admission.
    path: PathBuf,
    /// Admitted command id -> its expiry (Unix ms). Ids past their expiry are dropped at the
    /// next admission: an expired command is refused anyway. Starts empty when the file is
    /// missing or unreadable.
    seen: BTreeMap<String, i64>,
}

impl CommandGuard {
    /// A guard for `gateway`, keeping its seen ids in `state_dir`.
    pub fn open(provider: VerifyingKey, gateway: GatewayId, state_dir: &Path) -> Self {
        let path = state_dir.join(SEEN_FILE);
        let seen = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            provider,
            gateway,
            path,
            seen,
        }
    }

    /// Admits a command frame at `now`, recording its id.
    pub fn admit(&mut self, bytes: &[u8], now: DateTime<Utc>) -> Result<Command, CommandRefused> {
        let frame = Frame::parse(bytes).map_err(|e| CommandRefused::Unsigned(e.to_string()))?;
        if frame.signer() != PROVIDER_SIGNER {
            return Err(CommandRefused::Unsigned(
                "not signed by the provider".into(),
            ));
        }
        let payload = frame
            .verify(MessageKind::Command, &self.provider)
            .map_err(|e| CommandRefused::Forged(e.to_string()))?;
        let command: Command =
            tm_protocol::decode(payload).map_err(|e| CommandRefused::Malformed(e.to_string()))?;
        if command.gateway_id != self.gateway {
            return Err(CommandRefused::WrongGateway);
        }
        if command.expires_at <= now {
            return Err(CommandRefused::Expired(command.expires_at));
        }
        if self.seen.contains_key(command.command_id.as_str()) {
            return Err(CommandRefused::Replayed(command.command_id));
        }
        let now_ms = now.timestamp_millis();
        self.seen.retain(|_, expires| *expires > now_ms);
        self.seen.insert(
            command.command_id.to_string(),
            command.expires_at.timestamp_millis(),
        );
        self.save().map_err(|e| {
            self.seen.remove(command.command_id.as_str());
            CommandRefused::Store(e.to_string())
        })?;
        Ok(command)
    }

    fn save(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.seen)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}
