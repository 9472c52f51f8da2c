//! The MQTT transport (rumqttc, QoS 1).
//!
//! rumqttc's event loop runs in its own actor ([`MqttEventLoop::run`]) and is never blocked: it
//! hands receipts to the batch waiting for them and keeps reconnecting with jittered backoff
//! (rumqttc has none of its own). On every CONNACK it re-subscribes to the gateway's receipt
//! and command topics and publishes the retained `online` status; the last-will publishes
//! `offline`. Both are [`tm_protocol::Status`] frames signed with the gateway key and name the
//! same connection number, chosen before each connection attempt (and the last-will of the
//! CONNECT set to it): the gateway's clock in milliseconds, and always above the previous
//! number of this process, so the provider can ignore a replayed last-will of an older
//! connection and nobody without the key can flip the gateway's liveness. After a reboot with a
//! clock set back, statuses look older than the last one the provider saw and are ignored
//! until the clock passes it; liveness then follows heartbeats alone. Command frames are handed, unverified, to the command actor
//! ([`super::commands`]), which verifies them exactly as it verifies polled ones. The session
//! is persistent (`clean_session = false`), so the broker keeps commands published while the
//! gateway was offline and delivers them when it reconnects.
//!
//! rumqttc cannot say which publish a PUBACK belongs to, and drops its in-memory queue when the
//! broker has no session, so neither PUBACK nor `session_present` means anything here: a batch
//! is settled only by the provider's receipt. When the connection drops, every batch waiting
//! for a receipt fails at once and its rows are leased again. A batch whose receipt does not
//! come in time while the connection stayed up fails as [`SendError::Unanswered`]: the provider
//! sends no receipt for a batch it refuses (e.g. an unknown gateway), and the syncer raises the
//! `provider-refuses-gateway` alarm after a few of them in a row.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport};
use tm_protocol::routes::mqtt as topics;
use tm_protocol::{BatchId, GatewayId, LinkState, Receipt, SigningKey, VerifyingKey};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::config::SyncConfig;
use super::{Backoff, LinkError, SendError, open_receipt};

type Waiters = Arc<Mutex<HashMap<BatchId, oneshot::Sender<Receipt>>>>;

/// The broker connection as the event loop sees it: up or not, and how many times it was lost,
/// so a batch can tell a missing receipt on a live connection (the provider did not answer)
/// from one lost with the connection.
#[derive(Debug, Default)]
struct Connection {
    /// Set at each CONNACK, cleared when the event loop reports an error. Written only by the
    /// event loop; read by every batch sender.
    up: AtomicBool,
    /// Connections lost since start, incremented with `up` cleared: a batch compares it before
    /// and after its wait to know whether the connection stayed the same.
    losses: AtomicU64,
}

impl Connection {
    /// The loss count when the connection is up now.
    fn up_since(&self) -> Option<u64> {
        self.up
            .load(Ordering::SeqCst)
            .then(|| self.losses.load(Ordering::SeqCst))
    }
}

/// Receipts nobody waits for (late, duplicated): settled by the syncer. When full, the extra
/// receipt is dropped: its rows are simply sent again and de-duplicated by the provider.
pub const ORPHAN_RECEIPTS_CAPACITY: usize = 64;

/// The publishing side, cloned into each batch sender.
#[derive(Debug, Clone)]
pub struct MqttLink {
    /// rumqttc's request queue into the event loop (capacity twice `in_flight_batches` plus 8).
    client: AsyncClient,
    /// Batch id -> the sender its receipt is handed to; shared with the event loop, which
    /// clears it when the connection drops (failing every waiting batch at once).
    waiters: Waiters,
    /// The event loop's view of the broker connection (see [`Connection`]).
    connection: Arc<Connection>,
    /// `tm/v1/gw/{id}/readings`.
    readings_topic: String,
    /// `tm/v1/gw/{id}/heartbeat`.
    heartbeat_topic: String,
    /// `tm/v1/gw/{id}/command-results`.
    command_results_topic: String,
    /// `receipt_timeout_ms`: the whole wait of one batch, publishing included.
    receipt_timeout: Duration,
}

/// What [`MqttParts::new`] sets up. Nothing works until `event_loop` runs: publishes only
/// queue up, and no receipt or command arrives.
#[derive(Debug)]
pub struct MqttParts {
    /// The publishing side, wrapped in [`super::Link`] and cloned to the syncer, the heartbeat
    /// and the command reporter.
    pub link: MqttLink,
    /// The event loop actor, spawned once by the agent.
    pub event_loop: MqttEventLoop,
    /// Verified receipts no batch waited for (late or duplicated), for the syncer; at most
    /// [`ORPHAN_RECEIPTS_CAPACITY`] waiting, more are dropped.
    pub orphan_receipts: mpsc::Receiver<Receipt>,
    /// Unverified frames from the gateway's command topic, for the command actor (which
    /// verifies them); at most [`super::commands::PUSHED_CAPACITY`] waiting, more are dropped.
    pub commands: mpsc::Receiver<Vec<u8>>,
}

/// The event loop actor: the only reader of the broker connection.
pub struct MqttEventLoop {
    /// rumqttc's connection state; polled only here (its options hold the current last-will).
    eventloop: EventLoop,
    /// A clone of the links' client, for the subscriptions and status publishes at CONNACK.
    client: AsyncClient,
    /// Shared with every [`MqttLink`]: a receipt is handed to its batch's waiter, if any.
    waiters: Waiters,
    /// Written here, read by the batch senders.
    connection: Arc<Connection>,
    /// `tm/v1/gw/{id}/receipts`, subscribed at every CONNACK.
    receipts_topic: String,
    /// `tm/v1/gw/{id}/commands`, subscribed at every CONNACK.
    commands_topic: String,
    /// `tm/v1/gw/{id}/status`: retained `online` at CONNACK, `offline` at stop and as the
    /// last-will.
    status_topic: String,
    /// This gateway: the MQTT client id and the signer of its status frames.
    gateway: GatewayId,
    /// The gateway's key, shared with the syncer; signs the status frames.
    key: Arc<SigningKey>,
    /// The connection number of the last-will set for the current (or next) connection.
    status_number: u64,
    /// The provider key from the enrollment: a receipt not signed with it is dropped.
    provider_key: VerifyingKey,
    /// To the syncer's `orphan_receipts`; never waited on (a full channel drops the receipt).
    orphans: mpsc::Sender<Receipt>,
    /// To the command actor; never waited on (a full channel drops the frame, the poll gets it).
    commands: mpsc::Sender<Vec<u8>>,
    /// Reconnect pauses: `backoff_initial_ms` doubling to `backoff_max_ms` but at most 30 s,
    /// full jitter; reset at each CONNACK.
    backoff: Backoff,
}

impl std::fmt::Debug for MqttEventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttEventLoop")
            .field("receipts_topic", &self.receipts_topic)
            .finish_non_exhaustive()
    }
}

fn parse_url(url: &str) -> Result<(bool, String, u16), LinkError> {
    let bad = |reason: &str| LinkError::Url {
        url: url.into(),
        reason: reason.into(),
    };
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(bad("must start with mqtts:// or mqtt://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((tls, host.to_owned(), port))
}

impl MqttParts {
    /// Sets up the client for `url` (from the enrollment). Nothing connects until the event
    /// loop actor runs.
    pub fn new(
        url: &str,
        gateway: &GatewayId,
        key: Arc<SigningKey>,
        provider_key: VerifyingKey,
        cfg: &SyncConfig,
    ) -> Result<Self, LinkError> {
        let (tls, host, port) = parse_url(url)?;
        let mut options = MqttOptions::new(gateway.as_str(), host, port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_max_packet_size(topics::MAX_PACKET_BYTES, topics::MAX_PACKET_BYTES)
            .set_inflight(u16::try_from(cfg.in_flight_batches * 2 + 8).unwrap_or(100));
        let status_number = next_connection(0);
        options.set_last_will(LastWill::new(
            topics::status(gateway),
            status_frame(gateway, &key, LinkState::Offline, status_number),
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &cfg.mqtt_username {
            let password = match &cfg.mqtt_password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|source| LinkError::Credential {
                        path: path.clone(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                None => String::new(),
            };
            options.set_credentials(user, password);
        }
        if tls {
            let config = super::tls::mqtt_client_config(cfg)?;
            options.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(config),
            ));
        }
        let (client, mut eventloop) = AsyncClient::new(options, cfg.in_flight_batches * 2 + 8);
        // A batch or a receipt is one small write waiting for its answer: without TCP_NODELAY
        // Nagle's algorithm holds it until the peer's delayed ACK (about 40 ms a round trip).
        let mut network = rumqttc::NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let waiters: Waiters = Arc::default();
        let connection: Arc<Connection> = Arc::default();
        let (orphans_tx, orphans_rx) = mpsc::channel(ORPHAN_RECEIPTS_CAPACITY);
        let (commands_tx, commands_rx) = mpsc::channel(super::commands::PUSHED_CAPACITY);
        let link = MqttLink {
            client: client.clone(),
            waiters: waiters.clone(),
            connection: connection.clone(),
            readings_topic: topics::readings(gateway),
            heartbeat_topic: topics::heartbeat(gateway),
            command_results_topic: topics::command_results(gateway),
            receipt_timeout: cfg.receipt_timeout(),
        };
        let event_loop = MqttEventLoop {
            eventloop,
            client,
            waiters,
            connection,
            receipts_topic: topics::receipts(gateway),
            commands_topic: topics::commands(gateway),
            status_topic: topics::status(gateway),
            gateway: gateway.clone(),
            key,
            status_number,
            provider_key,
            orphans: orphans_tx,
            commands: commands_tx,
            backoff: Backoff::new(
                Duration::from_millis(cfg.backoff_initial_ms),
                Duration::from_millis(cfg.backoff_max_ms.min(30_000)),
            ),
        };
        Ok(Self {
            link,
            event_loop,
            orphan_receipts: orphans_rx,
            commands: commands_rx,
        })
    }
}

impl MqttLink {
    pub(super) async fn send_batch(
        &self,
        batch_id: &BatchId,
        frame: Vec<u8>,
    ) -> Result<Receipt, SendError> {
        let (tx, rx) = oneshot::channel();
        let up_since = self.connection.up_since();
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(batch_id.clone(), tx);
        let attempt = async {
            self.client
                .publish(&self.readings_topic, QoS::AtLeastOnce, false, frame)
                .await
                .map_err(|e| SendError::Retry(format!("MQTT publish: {e}")))?;
            rx.await
                .map_err(|_| SendError::Retry("MQTT connection lost before the receipt".into()))
        };
        let result = match tokio::time::timeout(self.receipt_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => {
                let message = format!("no receipt within {} ms", self.receipt_timeout.as_millis());
                if up_since.is_some() && self.connection.up_since() == up_since {
                    Err(SendError::Unanswered(message))
                } else {
                    Err(SendError::Retry(message))
                }
            }
        };
        if result.is_err() {
            self.waiters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(batch_id);
        }
        result
    }

    pub(super) async fn send_heartbeat(&self, frame: Vec<u8>) -> Result<(), SendError> {
        self.client
            .try_publish(&self.heartbeat_topic, QoS::AtLeastOnce, false, frame)
            .map_err(|e| SendError::Retry(format!("MQTT heartbeat: {e}")))
    }

    /// Queues a command result (QoS 1); never waits on a full request queue.
    pub(super) fn send_command_result(&self, frame: Vec<u8>) -> Result<(), SendError> {
        self.client
            .try_publish(&self.command_results_topic, QoS::AtLeastOnce, false, frame)
            .map_err(|e| SendError::Retry(format!("MQTT command result: {e}")))
    }
}

impl MqttEventLoop {
    /// Polls the connection until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => break,
                e = self.eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    tracing::info!("connected to the MQTT broker");
                    self.backoff.reset();
                    self.connection.up.store(true, Ordering::SeqCst);
                    // try_*: never block the event loop on its own request channel.
                    let _ = self
                        .client
                        .try_subscribe(&self.receipts_topic, QoS::AtLeastOnce);
                    let _ = self
                        .client
                        .try_subscribe(&self.commands_topic, QoS::AtLeastOnce);
                    let _ = self.client.try_publish(
                        &self.status_topic,
                        QoS::AtLeastOnce,
                        true,
                        self.status(LinkState::Online),
                    );
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == self.receipts_topic => {
                    self.on_receipt(&p.payload);
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == self.commands_topic => {
                    if self.commands.try_send(p.payload.to_vec()).is_err() {
                        tracing::warn!(
                            "command actor busy: pushed command dropped; the poll will fetch it"
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.connection.losses.fetch_add(1, Ordering::SeqCst);
                    self.connection.up.store(false, Ordering::SeqCst);
                    self.fail_waiters();
                    self.next_connection();
                    let delay = self.backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis(), "MQTT connection failed");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        let _ = self.client.try_publish(
            &self.status_topic,
            QoS::AtLeastOnce,
            true,
            self.status(LinkState::Offline),
        );
        let _ = self.client.try_disconnect();
        // Flush the offline status and DISCONNECT, briefly.
        let _ = tokio::time::timeout(Duration::from_millis(300), async {
            while self.eventloop.poll().await.is_ok() {}
        })
        .await;
    }

    /// This connection's signed status.
    fn status(&self, state: LinkState) -> Vec<u8> {
        status_frame(&self.gateway, &self.key, state, self.status_number)
    }

    /// Numbers the next connection attempt and sets its last-will to match.
    fn next_connection(&mut self) {
        self.status_number = next_connection(self.status_number);
        let will = LastWill::new(
            &self.status_topic,
            self.status(LinkState::Offline),
            QoS::AtLeastOnce,
            true,
        );
        self.eventloop.mqtt_options.set_last_will(will);
    }

    fn on_receipt(&self, bytes: &[u8]) {
        let receipt = match open_receipt(bytes, &self.provider_key) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "receipt refused");
                return;
            }
        };
        let waiter = self
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&receipt.batch_id);
        let unsent = match waiter {
            Some(w) => w.send(receipt).err(),
            None => Some(receipt),
        };
        if let Some(r) = unsent {
            let _ = self.orphans.try_send(r);
        }
    }

    fn fail_waiters(&self) {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

/// A connection number above `previous`: the clock in milliseconds when it is ahead.
fn next_connection(previous: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    now.max(previous.saturating_add(1))
}

/// A signed status frame of `gateway`.
pub fn status_frame(
    gateway: &GatewayId,
    key: &SigningKey,
    state: LinkState,
    connection: u64,
) -> Vec<u8> {
    let status = tm_protocol::Status {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gateway.clone(),
        state,
        connection,
    };
    tm_protocol::seal(
        tm_protocol::MessageKind::Status,
        gateway.as_str(),
        &tm_protocol::encode(&status),
        key,
    )
}

#[cfg(test)]
mod tests {
    use super::{next_connection, parse_url};

    #[test]
    fn connection_numbers_always_grow() {
        let first = next_connection(0);
        assert!(first > 1_700_000_000_000, "the clock in milliseconds");
        assert!(next_connection(first) > first);
        // Ahead of the clock (set back): still above the previous one.
        assert_eq!(next_connection(u64::MAX - 1), u64::MAX);
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_url("mqtts://b.example:8884").unwrap(),
            (true, "b.example".into(), 8884)
        );
        assert_eq!(
            parse_url("mqtt://127.0.0.1").unwrap(),
            (false, "127.0.0.1".into(), 1883)
        );
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("mqtt://:1").is_err());
    }
}
