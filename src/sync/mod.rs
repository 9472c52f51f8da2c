//! Sync: ships the outbox to the provider and settles rows from the provider's receipts.
//!
//! The [`Syncer`] actor leases batches from the outbox ([`crate::store`]), seals each into a
//! frame signed with the gateway key, and sends it over the enrolled transport ([`Link`]: MQTT
//! or HTTPS), keeping up to `in_flight_batches` batches waiting for receipts. Per batch:
//!
//! - a receipt verified against the provider's key (from the enrollment) settles the rows it
//!   names (acknowledged or rejected); rows it does not name go back to pending;
//! - a retryable failure (connection lost, timeout, HTTP 5xx, no receipt in time) puts the rows
//!   back to pending and pauses sending with exponential backoff and full jitter (or for the
//!   server's `Retry-After` on 429/503);
//! - the provider refusing the gateway itself (HTTP 401/403/404: bad signature, unknown,
//!   revoked or unbound gateway, e.g. after the provider's registry was reset) is not a verdict
//!   on the readings: the rows go back to pending, the `provider-refuses-gateway` alarm is raised
//!   (`tm-gateway status`, the heartbeat) and sending pauses for `refused_retry_ms` before it
//!   tries again; the first verified receipt clears the alarm. Over MQTT the provider answers a
//!   refused batch with no receipt at all: after [`syncer::UNANSWERED_ALARM_AFTER`] batches in a
//!   row that timed out while the broker connection stayed up, the same alarm is raised;
//! - only a refusal of the content is final: a receipt's `rejected` list (per reading), and the
//!   batch-level content refusals HTTP 400 (malformed frame), 413 (too large) and 422 and any
//!   other 4xx, which mark the batch's rows rejected with the reason (`tm-gateway status`). A
//!   batch the provider cannot parse would be refused again unchanged, so retrying it would only
//!   stall the readings behind it.
//!
//! A PUBACK or a TCP write proves nothing: only the receipt does. Duplicates caused by
//! re-sending are expected; the provider de-duplicates by `reading_id`.
//!
//! Remote commands from the provider (re-sync now, log level, re-read devices) are polled over
//! HTTPS and, on the MQTT transport, pushed on the gateway's command topic; one actor verifies
//! and executes them and reports each result over the link ([`commands`]).

pub mod commands;
pub mod config;
mod frame;
pub mod heartbeat;
mod https;
mod mqtt;
mod syncer;
mod tls;

pub use frame::seal_batch;
pub use https::HttpsLink;
pub use mqtt::{MqttLink, MqttParts};
pub use syncer::Syncer;
pub use tls::{
    https_client_builder, install_ring_provider, mqtt_client_config as tls_client_config,
};

use std::time::Duration;

use tm_protocol::{Receipt, VerifyingKey};

/// Why a batch was not settled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again after the backoff (network, timeout, 5xx, missing receipt).
    #[error("retryable: {0}")]
    Retry(String),
    /// Try again after the server's `Retry-After`.
    #[error("provider busy, retry after {0:?}: {1}")]
    RetryAfter(Duration, String),
    /// Refused for good: the rows are rejected with this reason.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The provider refuses this gateway (authentication, enrollment, unknown gateway): not a
    /// verdict on the readings. The rows stay pending and sending pauses for the long backoff.
    #[error("provider refuses this gateway: {0}")]
    GatewayRefused(String),
    /// The batch was published and the connection stayed up, but no receipt came in time
    /// (MQTT: the provider sends none for a batch it refuses). Retried like [`Self::Retry`].
    #[error("retryable: {0}")]
    Unanswered(String),
}

/// Why a link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A URL in the enrollment is unusable: the agent cannot start until it enrolls again.
    #[error("invalid sync URL {url:?}: {reason}")]
    Url {
        /// The broker or HTTPS URL as the enrollment holds it.
        url: String,
        /// What is wrong (scheme, port, missing host).
        reason: String,
    },
    /// TLS material could not be loaded.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// A credential file could not be read (the CA file, the MQTT password file).
    #[error("cannot read {path}: {source}")]
    Credential {
        /// The file as named in `[sync]`.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The transport a gateway syncs over.
#[derive(Debug, Clone)]
pub enum Link {
    /// MQTT through a broker.
    Mqtt(MqttLink),
    /// HTTPS straight to the provider.
    Https(HttpsLink),
}

impl Link {
    /// Sends a sealed batch and waits for its verified receipt.
    pub async fn send_batch(
        &self,
        batch_id: &tm_protocol::BatchId,
        frame: Vec<u8>,
    ) -> Result<Receipt, SendError> {
        match self {
            Self::Mqtt(l) => l.send_batch(batch_id, frame).await,
            Self::Https(l) => l.send_batch(batch_id, frame).await,
        }
    }

    /// Sends a sealed heartbeat (no receipt).
    pub async fn send_heartbeat(&self, frame: Vec<u8>) -> Result<(), SendError> {
        match self {
            Self::Mqtt(l) => l.send_heartbeat(frame).await,
            Self::Https(l) => l.send_heartbeat(frame).await,
        }
    }

    /// Sends a sealed command result (no receipt).
    pub async fn send_command_result(&self, frame: Vec<u8>) -> Result<(), SendError> {
        match self {
            Self::Mqtt(l) => l.send_command_result(frame),
            Self::Https(l) => l.send_command_result(frame).await,
        }
    }
}

/// Verifies a receipt frame from the provider and decodes it.
pub fn open_receipt(bytes: &[u8], provider: &VerifyingKey) -> Result<Receipt, String> {
    let frame = tm_protocol::Frame::parse(bytes).map_err(|e| e.to_string())?;
    let payload = frame
        .verify(tm_protocol::MessageKind::Receipt, provider)
        .map_err(|e| format!("receipt signature: {e}"))?;
    tm_protocol::decode::<Receipt>(payload).map_err(|e| e.to_string())
}

/// The retry policy of the sync loops (full jitter by default: see [`tm_protocol::backoff`]).
pub use tm_protocol::backoff::{Backoff, Jitter};
