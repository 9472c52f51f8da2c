//! Gateway ingest: readings, heartbeats and command results arriving over HTTPS ([`http`]) or
//! MQTT ([`mqtt`]). Heartbeats and command results are verified like batches (steps 1 to 3)
//! and stored; they get no receipt.
//!
//! For every reading batch, in this order:
//! 1. parse the frame structure (size, magic, kind) and look its signer up in the gateway
//!    registry ([`crate::store::gateways`]); unknown, revoked, unbound or released gateways are
//!    refused (a released one as unknown);
//! 2. verify the Ed25519 signature over the exact bytes received, *before* parsing the JSON;
//! 3. decode the batch strictly (limits, unknown fields) and check it names its signer; each
//!    reading's JSON text is kept as received, and is what its row stores;
//! 4. per reading: refuse readings outside the gateway's session (received before the gateway
//!    was enrolled on it) and readings received in the future (more than ten minutes ahead of
//!    the provider's clock); insert the rest unless the gateway's session already has their
//!    `reading_id` (a UNIQUE key per session in the store: a replayed batch or a re-sent
//!    reading changes nothing, and an id stored under another session hides nothing there);
//!    a device time far in the future is stored and counted in a warning (see
//!    [`crate::store::readings`]);
//! 5. commit (WAL, `synchronous=FULL`; batches arriving during a commit share the next one,
//!    see [`group_commit`]), and only then build the receipt, signed with the provider key,
//!    naming every reading accepted (new or already stored), which of those were already
//!    stored (`duplicates`), and every reading rejected with its reason;
//! 6. when new readings were stored, notify the session updater ([`crate::publish::updater`]):
//!    a non-blocking send of the session id; the status and attachments follow there.
//!
//! Errors are typed ([`IngestError`]) and map to a clear HTTP status; nothing here panics on
//! input.

pub mod counters;
mod group_commit;
pub mod http;
pub mod mqtt;

pub use counters::IngestCounters;

use std::sync::Arc;

use tm_protocol::{CommandResult, Frame, FrameError, Heartbeat, MessageKind, SigningKey, Status};

use crate::store::gateways::GatewayState;
use crate::store::readings::{BatchJob, Stored};
use crate::store::{Store, StoreError};

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Not a well-formed frame or message.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Larger than the frame limit.
    #[error("frame too large: {0} bytes (limit {max})", max = tm_protocol::limits::MAX_FRAME_BYTES)]
    TooLarge(usize),
    /// The signer is not an enrolled gateway.
    #[error("unknown gateway")]
    UnknownGateway,
    /// The gateway is revoked or no longer bound to a session.
    #[error("gateway is {0}: its frames are refused")]
    NotActive(&'static str),
    /// The signature does not verify against the enrolled key.
    #[error("signature does not verify against the enrolled gateway key")]
    BadSignature,
    /// The batch names another gateway than its signer, or another batch than its key.
    #[error("mismatch: {0}")]
    Mismatch(String),
    /// The store failed; the sender should retry.
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
    /// The commit of a group of batches failed; the sender should retry.
    #[error("store unavailable: {0}")]
    Commit(String),
}

/// The ingest service; cheap to clone. The HTTPS handlers and the MQTT ingest loop share one
/// instance (clones share the commit queue, the MQTT connection and the counters).
#[derive(Debug, Clone)]
pub struct Ingest {
    /// The provider store: gateway lookups read it, batches are committed through its one
    /// writer connection.
    store: Store,
    /// The provider key, shared with the rest of the provider; signs every receipt, only after
    /// the commit of the readings it names.
    key: Arc<SigningKey>,
    /// Told about sessions with newly committed readings (outputs and status follow); a full
    /// channel drops the notice, the updater's sweep finds the session anyway. `None`: nobody
    /// is told (export and tests).
    updates: Option<crate::publish::updater::UpdateNotifier>,
    /// The queue that lets batches verified during a commit share the next transaction.
    commits: group_commit::GroupCommit,
    /// The MQTT connection while [`mqtt::run`] runs (commands to gateways go out on it); holds
    /// no client without `[mqtt]` or once that loop returned.
    mqtt: mqtt::MqttPublisher,
    /// What this instance stored since it started (`/metrics`); zero at every start.
    counters: Arc<IngestCounters>,
}

/// What a verified batch did. Only built after the commit, so a receipt never names a reading
/// that is not durable.
#[derive(Debug)]
pub struct Ingested {
    /// The receipt signed with the provider key: the HTTPS response body, or published on the
    /// gateway's receipt topic over MQTT before the message is acknowledged to the broker.
    pub receipt_frame: Vec<u8>,
    /// Readings newly stored by this batch (not the duplicates the receipt also accepts); 0
    /// for a batch that was a replay.
    pub inserted: usize,
}

impl Ingest {
    /// A service writing to `store` and signing receipts with `key`.
    pub fn new(store: Store, key: Arc<SigningKey>) -> Self {
        Self {
            commits: group_commit::GroupCommit::new(store.concurrent_commits()),
            store,
            key,
            updates: None,
            mqtt: mqtt::MqttPublisher::default(),
            counters: Arc::default(),
        }
    }

    /// The provider's MQTT connection for messages to gateways (set while [`mqtt::run`] runs).
    pub fn mqtt_publisher(&self) -> mqtt::MqttPublisher {
        self.mqtt.clone()
    }

    /// What this instance ingested since it started.
    pub fn counters(&self) -> Arc<IngestCounters> {
        self.counters.clone()
    }

    /// Tells `notifier` after each commit that stored new readings (the session updater).
    pub fn with_updates(mut self, notifier: crate::publish::updater::UpdateNotifier) -> Self {
        self.updates = Some(notifier);
        self
    }

    /// The store the service writes to (the same one the rest of the provider uses).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Authenticates a frame of `kind`: parse, look the signer up, verify. Returns the gateway
    /// and the verified payload.
    async fn open<'a>(
        &self,
        bytes: &'a [u8],
        kind: MessageKind,
    ) -> Result<(crate::store::gateways::Gateway, &'a [u8]), IngestError> {
        let frame = Frame::parse(bytes).map_err(|e| match e {
            FrameError::TooLarge(n) => IngestError::TooLarge(n),
            other => IngestError::Malformed(other.to_string()),
        })?;
        let gateway = self
            .store
            .gateway(frame.signer())
            .await?
            .ok_or(IngestError::UnknownGateway)?;
        match gateway.state {
            GatewayState::Active => {}
            GatewayState::Revoked => return Err(IngestError::NotActive("revoked")),
            GatewayState::Unbound => return Err(IngestError::NotActive("unbound")),
            // Released for another home: its key is nobody's until it is claimed again.
            GatewayState::Released => return Err(IngestError::UnknownGateway),
        }
        let payload = frame
            .verify(kind, &gateway.public_key)
            .map_err(|e| match e {
                FrameError::BadSignature(_) => IngestError::BadSignature,
                other => IngestError::Malformed(other.to_string()),
            })?;
        Ok((gateway, payload))
    }

    /// Ingests a reading-batch frame; `idempotency_key`, when given, must equal the batch id.
    #[tracing::instrument(name = "ingest", skip_all, fields(gateway = tracing::field::Empty, batch = tracing::field::Empty))]
    pub async fn readings(
        &self,
        bytes: &[u8],
        idempotency_key: Option<&str>,
    ) -> Result<Ingested, IngestError> {
        let (gateway, payload) = self.open(bytes, MessageKind::ReadingBatch).await?;
        let received = tm_protocol::received::decode_received(payload)
            .map_err(|e| IngestError::Malformed(e.to_string()))?;
        let batch = &received.batch;
        if batch.gateway_id != gateway.gateway_id {
            return Err(IngestError::Mismatch(
                "the batch names another gateway than its signer".into(),
            ));
        }
        let span = tracing::Span::current();
        span.record("gateway", tracing::field::display(&gateway.gateway_id));
        span.record("batch", tracing::field::display(&batch.batch_id));
        if idempotency_key.is_some_and(|k| k != batch.batch_id.as_str()) {
            return Err(IngestError::Mismatch(
                "Idempotency-Key differs from the batch id".into(),
            ));
        }
        let session = gateway
            .telemonitoring_id
            .clone()
            .ok_or(IngestError::NotActive("unbound"))?;
        let job = BatchJob::received(gateway.gateway_id, session.clone(), received);
        let Stored {
            receipt,
            inserted,
            device_time_ahead,
        } = self
            .commits
            .commit(&self.store, job)
            .await?
            .map_err(IngestError::NotActive)?;
        if !receipt.duplicates.is_empty() || !receipt.rejected.is_empty() || device_time_ahead > 0 {
            tracing::info!(
                inserted,
                duplicates = receipt.duplicates.len(),
                rejected = receipt.rejected.len(),
                device_time_ahead,
                "batch stored in part"
            );
        }
        if device_time_ahead > 0 {
            tracing::warn!(
                readings = device_time_ahead,
                "stored readings whose device time is more than 10 minutes ahead of the provider's clock; check the device clock"
            );
        }
        self.counters
            .readings
            .inc_by(u64::try_from(inserted).unwrap_or(u64::MAX));
        if tracing::enabled!(tracing::Level::DEBUG) {
            trail(&receipt);
        }
        if inserted > 0
            && let Some(updates) = &self.updates
        {
            updates.notify(&session);
        }
        let receipt_frame = tm_protocol::seal(
            MessageKind::Receipt,
            crate::keys::PROVIDER_SIGNER,
            &tm_protocol::encode(&receipt),
            &self.key,
        );
        Ok(Ingested {
            receipt_frame,
            inserted,
        })
    }

    /// Stores a heartbeat frame as the gateway's latest.
    #[tracing::instrument(name = "ingest", skip_all)]
    pub async fn heartbeat(&self, bytes: &[u8]) -> Result<(), IngestError> {
        let (gateway, payload) = self.open(bytes, MessageKind::Heartbeat).await?;
        let heartbeat: Heartbeat =
            tm_protocol::decode(payload).map_err(|e| IngestError::Malformed(e.to_string()))?;
        if heartbeat.gateway_id != gateway.gateway_id {
            return Err(IngestError::Mismatch(
                "the heartbeat names another gateway than its signer".into(),
            ));
        }
        // The latest heartbeat and what it changes for operations, in one transaction: a
        // heartbeat that arrived after a newer one changes neither.
        let gateway_id = heartbeat.gateway_id.clone();
        let applied = self.store.save_heartbeat(heartbeat).await?;
        if applied {
            self.counters.heartbeats.inc();
        } else {
            tracing::debug!(gateway = %gateway_id, "heartbeat older than the stored one: ignored");
        }
        Ok(())
    }

    /// Records a gateway's signed MQTT status (`online`, or its last-will `offline`). Returns
    /// false when it belongs to an older connection than the latest status stored: a replayed
    /// last-will, which changes nothing.
    #[tracing::instrument(name = "ingest", skip_all)]
    pub async fn status(&self, bytes: &[u8]) -> Result<bool, IngestError> {
        let (gateway, payload) = self.open(bytes, MessageKind::Status).await?;
        let status: Status =
            tm_protocol::decode(payload).map_err(|e| IngestError::Malformed(e.to_string()))?;
        if status.gateway_id != gateway.gateway_id {
            return Err(IngestError::Mismatch(
                "the status names another gateway than its signer".into(),
            ));
        }
        let now = chrono::Utc::now();
        Ok(self.store.record_gateway_status(status, now).await?)
    }

    /// Records a command result frame (the first report of each command is kept).
    #[tracing::instrument(name = "ingest", skip_all)]
    pub async fn command_result(&self, bytes: &[u8]) -> Result<(), IngestError> {
        let (gateway, payload) = self.open(bytes, MessageKind::CommandResult).await?;
        let result: CommandResult =
            tm_protocol::decode(payload).map_err(|e| IngestError::Malformed(e.to_string()))?;
        if result.gateway_id != gateway.gateway_id {
            return Err(IngestError::Mismatch(
                "the command result names another gateway than its signer".into(),
            ));
        }
        let command = result.command_id.clone();
        let status = result.status;
        match crate::ops::commands::record_result(&self.store, result, chrono::Utc::now()).await? {
            crate::ops::commands::Recorded::Stored => {
                tracing::info!(gateway = %gateway.gateway_id, %command, ?status, "command result");
            }
            crate::ops::commands::Recorded::AlreadyReported => {
                tracing::debug!(%command, "command result reported again; kept the first");
            }
            crate::ops::commands::Recorded::UnknownCommand => {
                tracing::warn!(gateway = %gateway.gateway_id, %command, "result of a command this gateway was never sent; ignored");
            }
        }
        Ok(())
    }
}

/// The debug trail of a committed batch: each reading by its id (no value, no patient).
fn trail(receipt: &tm_protocol::Receipt) {
    let duplicates: std::collections::HashSet<&str> =
        receipt.duplicates.iter().map(|id| id.as_str()).collect();
    for id in &receipt.accepted {
        if duplicates.contains(id.as_str()) {
            tracing::debug!(reading_id = %id, "reading already stored");
        } else {
            tracing::debug!(reading_id = %id, "reading stored");
        }
    }
    for r in &receipt.rejected {
        tracing::debug!(reading_id = %r.reading_id, reason = %r.reason, "reading rejected");
    }
}
