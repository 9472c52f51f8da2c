//! Strict decoding and canonical encoding of the messages.
//!
//! Decoding runs in a fixed order so the error names the first real problem:
//! 1. the byte length against [`MAX_FRAME_BYTES`] (before any parsing or allocation);
//! 2. the `v` field alone, so a message from a newer peer reports "unsupported version" rather
//!    than a confusing unknown-field error;
//! 3. the full, strict parse (unknown fields are errors);
//! 4. the per-message limits (readings per batch, payload bytes, text lengths).
//!
//! Encoding is `serde_json` of the typed value: field order follows the struct declaration,
//! so the same value always encodes to the same bytes. Signatures never depend on that,
//! though: they cover the exact bytes sent (see [`crate::frame`]).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::*;
use crate::messages::*;

/// Why bytes could not be decoded into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A size limit was hit; `limit` names it.
    #[error("{message}: {limit} exceeded ({actual} > {max})")]
    Limit {
        /// Which message was being decoded.
        message: &'static str,
        /// The limit's name, as in `tm_protocol::limits`.
        limit: &'static str,
        /// What was found.
        actual: usize,
        /// What is allowed.
        max: usize,
    },
    /// The `v` field is missing or not a number.
    #[error("{message}: missing or malformed protocol version field `v`")]
    MissingVersion {
        /// Which message was being decoded.
        message: &'static str,
    },
    /// The peer speaks another protocol version.
    #[error("{message}: unsupported protocol version {found} (this build speaks {supported})")]
    UnsupportedVersion {
        /// Which message was being decoded.
        message: &'static str,
        /// The version in the message.
        found: u64,
        /// The version this build speaks.
        supported: u16,
    },
    /// The JSON does not match the message shape (unknown field, wrong type, bad id, ...).
    #[error("{message}: malformed: {source}")]
    Malformed {
        /// Which message was being decoded.
        message: &'static str,
        /// The parser's description, with line and column.
        #[source]
        source: serde_json::Error,
    },
}

/// A top-level message of the protocol.
pub trait Message: Serialize + DeserializeOwned {
    /// Name used in error messages.
    const NAME: &'static str;

    /// Checks the per-message size limits after parsing.
    fn check_limits(&self) -> Result<(), DecodeError> {
        Ok(())
    }
}

fn limit(message: &'static str, limit: &'static str, actual: usize, max: usize) -> DecodeError {
    DecodeError::Limit {
        message,
        limit,
        actual,
        max,
    }
}

fn check_text(message: &'static str, field: &'static str, s: &str) -> Result<(), DecodeError> {
    if s.len() > MAX_TEXT_BYTES {
        return Err(limit(message, field, s.len(), MAX_TEXT_BYTES));
    }
    Ok(())
}

fn check_opt_text(
    message: &'static str,
    field: &'static str,
    s: &Option<String>,
) -> Result<(), DecodeError> {
    s.as_deref()
        .map_or(Ok(()), |s| check_text(message, field, s))
}

impl Message for ReadingBatch {
    const NAME: &'static str = "reading batch";

    fn check_limits(&self) -> Result<(), DecodeError> {
        let m = Self::NAME;
        if self.readings.len() > MAX_READINGS_PER_BATCH {
            return Err(limit(
                m,
                "MAX_READINGS_PER_BATCH",
                self.readings.len(),
                MAX_READINGS_PER_BATCH,
            ));
        }
        for r in &self.readings {
            if r.raw.len() > MAX_RAW_PAYLOAD_BYTES {
                return Err(limit(
                    m,
                    "MAX_RAW_PAYLOAD_BYTES",
                    r.raw.len(),
                    MAX_RAW_PAYLOAD_BYTES,
                ));
            }
            let components = r.components.len() + r.missing.len();
            if components > MAX_COMPONENTS_PER_READING {
                return Err(limit(
                    m,
                    "MAX_COMPONENTS_PER_READING",
                    components,
                    MAX_COMPONENTS_PER_READING,
                ));
            }
            check_text(m, "MAX_TEXT_BYTES (characteristic)", &r.characteristic)?;
            check_text(m, "MAX_TEXT_BYTES (device address)", &r.device.address)?;
            check_opt_text(m, "MAX_TEXT_BYTES (manufacturer)", &r.device.manufacturer)?;
            check_opt_text(m, "MAX_TEXT_BYTES (model)", &r.device.model)?;
            check_opt_text(m, "MAX_TEXT_BYTES (serial)", &r.device.serial)?;
            check_opt_text(m, "MAX_TEXT_BYTES (firmware)", &r.device.firmware)?;
            check_opt_text(m, "MAX_TEXT_BYTES (catalog model)", &r.device.catalog_model)?;
            for f in &r.flags {
                check_text(m, "MAX_TEXT_BYTES (flag)", f)?;
            }
        }
        Ok(())
    }
}

impl Message for Receipt {
    const NAME: &'static str = "receipt";

    fn check_limits(&self) -> Result<(), DecodeError> {
        let n = self.accepted.len() + self.rejected.len();
        if n > MAX_READINGS_PER_BATCH {
            return Err(limit(
                Self::NAME,
                "MAX_READINGS_PER_BATCH",
                n,
                MAX_READINGS_PER_BATCH,
            ));
        }
        for r in &self.rejected {
            check_text(Self::NAME, "MAX_TEXT_BYTES (reason)", &r.reason)?;
        }
        Ok(())
    }
}

impl Message for Heartbeat {
    const NAME: &'static str = "heartbeat";

    fn check_limits(&self) -> Result<(), DecodeError> {
        if self.devices.len() > MAX_DEVICES_PER_HEARTBEAT {
            return Err(limit(
                Self::NAME,
                "MAX_DEVICES_PER_HEARTBEAT",
                self.devices.len(),
                MAX_DEVICES_PER_HEARTBEAT,
            ));
        }
        check_text(Self::NAME, "MAX_TEXT_BYTES (version)", &self.version)?;
        check_opt_text(Self::NAME, "MAX_TEXT_BYTES (last error)", &self.last_error)?;
        if let Some(setup) = &self.setup {
            use crate::setup::{MAX_NEARBY, MAX_PAIRINGS};
            if setup.nearby.len() > MAX_NEARBY {
                return Err(limit(
                    Self::NAME,
                    "MAX_NEARBY",
                    setup.nearby.len(),
                    MAX_NEARBY,
                ));
            }
            if setup.pairings.len() > MAX_PAIRINGS {
                return Err(limit(
                    Self::NAME,
                    "MAX_PAIRINGS",
                    setup.pairings.len(),
                    MAX_PAIRINGS,
                ));
            }
            for d in &setup.nearby {
                check_text(Self::NAME, "MAX_TEXT_BYTES (address)", &d.address)?;
                check_opt_text(Self::NAME, "MAX_TEXT_BYTES (name)", &d.name)?;
                check_opt_text(Self::NAME, "MAX_TEXT_BYTES (model)", &d.model_id)?;
            }
            for p in &setup.pairings {
                check_text(Self::NAME, "MAX_TEXT_BYTES (address)", &p.address)?;
                check_opt_text(Self::NAME, "MAX_TEXT_BYTES (pairing error)", &p.error)?;
            }
        }
        Ok(())
    }
}

impl Message for Command {
    const NAME: &'static str = "command";

    fn check_limits(&self) -> Result<(), DecodeError> {
        match &self.action {
            CommandAction::SetLogLevel { level } => {
                check_text(Self::NAME, "MAX_TEXT_BYTES (level)", level)
            }
            CommandAction::Pair { address } | CommandAction::Unpair { address } => {
                check_text(Self::NAME, "MAX_TEXT_BYTES (address)", address)
            }
            CommandAction::PairSecret { address, secret } => {
                check_text(Self::NAME, "MAX_TEXT_BYTES (address)", address)?;
                check_text(Self::NAME, "MAX_TEXT_BYTES (secret)", secret)
            }
            CommandAction::ResyncNow
            | CommandAction::RereadDevices
            | CommandAction::Setup { .. }
            | CommandAction::Release => Ok(()),
        }
    }
}

impl Message for CommandResult {
    const NAME: &'static str = "command result";

    fn check_limits(&self) -> Result<(), DecodeError> {
        check_text(Self::NAME, "MAX_TEXT_BYTES (detail)", &self.detail)
    }
}

impl Message for Status {
    const NAME: &'static str = "status";
}

impl Message for EnrollmentRequest {
    const NAME: &'static str = "enrollment request";

    fn check_limits(&self) -> Result<(), DecodeError> {
        check_text(Self::NAME, "MAX_TEXT_BYTES (code)", &self.code)?;
        check_text(
            Self::NAME,
            "MAX_TEXT_BYTES (agent version)",
            &self.agent_version,
        )
    }
}

impl Message for EnrollmentResponse {
    const NAME: &'static str = "enrollment response";
}

impl Message for crate::setup::ClaimHello {
    const NAME: &'static str = "claim hello";

    fn check_limits(&self) -> Result<(), DecodeError> {
        check_text(
            Self::NAME,
            "MAX_TEXT_BYTES (agent version)",
            &self.agent_version,
        )
    }
}

#[derive(serde::Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
}

/// Decodes a message strictly (see the module documentation for the order of checks).
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    check_version::<M>(bytes)?;
    let msg: M = serde_json::from_slice(bytes).map_err(|source| DecodeError::Malformed {
        message: M::NAME,
        source,
    })?;
    msg.check_limits()?;
    Ok(msg)
}

/// Steps 1 and 2 of decoding: the byte length, then the `v` field alone.
pub(crate) fn check_version<M: Message>(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(limit(
            M::NAME,
            "MAX_FRAME_BYTES",
            bytes.len(),
            MAX_FRAME_BYTES,
        ));
    }
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|source| DecodeError::Malformed {
            message: M::NAME,
            source,
        })?;
    let found = probe
        .v
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .ok_or(DecodeError::MissingVersion { message: M::NAME })?;
    if found != u64::from(crate::PROTOCOL_VERSION) {
        return Err(DecodeError::UnsupportedVersion {
            message: M::NAME,
            found,
            supported: crate::PROTOCOL_VERSION,
        });
    }
    Ok(())
}

/// Encodes a message as compact JSON.
pub fn encode<M: Message>(msg: &M) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no custom
    // serializers that error.
    serde_json::to_vec(msg).expect("protocol messages always serialize")
}
