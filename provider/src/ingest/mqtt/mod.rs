//! MQTT ingest: a shared subscription (`$share/tm-provider/...`, so several provider instances
//! split the load) to every gateway's readings, heartbeats and command results.
//!
//! One provider (a SQLite store) keeps a persistent session, so what the broker queues while it
//! restarts waits for it. Several instances (a PostgreSQL store) each connect with a client id
//! of their own ([`connect::instance_client_id`]) and a clean session: a member's session ends
//! with its connection, so no message waits in the session of a member that died; the broker
//! gives the members still connected every new message, and what was in flight to the dead one
//! comes again from its gateway, which sends every reading it holds no receipt for.
//!
//! The event loop runs in its own task and never blocks: each publish goes to a worker through a
//! channel whose bound is the broker's in-flight window (manual acks: the broker sends at most
//! that many unacknowledged messages). The worker handles up to [`CONCURRENT_MESSAGES`] at once
//! (their batches share commits); for each it ingests, publishes the receipt to the gateway's
//! receipt topic, and only then acknowledges the message to the broker.
//! The topic's gateway id must equal the frame's signer.
//!
//! No message can stop the ingest ([`handle`]): whatever the provider cannot take (wrong topic,
//! signer not matching the topic, unknown or inactive gateway, bad signature, malformed, too
//! large, a stale status) is refused, acknowledged once like any other message, counted by
//! reason ([`stats`], `tm_mqtt_messages_refused_total` in `/metrics`) and raises the
//! `mqtt-messages-refused` ops alert; the next message is handled as usual.
//!
//! Packet size. The broker is configured to refuse packets above
//! [`topics::MAX_PACKET_BYTES`] (mosquitto `max_packet_size`, see README), so such messages
//! never reach the provider. rumqttc checks a packet's length from its fixed header and fails
//! the whole connection when it is above the read limit, before the packet id is known: such a
//! message can never be acknowledged, and with a persistent session and manual acks the broker
//! sends it again on every reconnect, forever. So the provider reads packets up to
//! [`READ_LIMIT_BYTES`] (four times the fleet's packet limit): anything a broker configured
//! within that lets through is read whole, then refused by the frame-size check above and
//! acknowledged. A broker configured without any limit may still deliver a larger packet: each
//! such failure is counted (`tm_mqtt_oversized_packets_total`), logged at ERROR naming the fix
//! (the broker's `max_packet_size`) and raises the `mqtt-packet-too-large` alert; after
//! [`SHED_AFTER`] of them within [`SHED_WINDOW`] the provider connects once with a clean
//! session, which makes the broker drop this provider's session and everything queued in it
//! (`tm_mqtt_sessions_shed_total`), then reconnects with its persistent session and
//! subscribes again. What is shed: readings (nothing is lost: a gateway keeps every reading
//! until it holds a receipt, and sends it again), heartbeats (the next one follows within a
//! minute) and command results (the command shows no result; issue it again), and whatever
//! gateways publish between the clean and the persistent connection.
//!
//! The same connection carries the provider's messages to gateways outside the ingest path:
//! [`MqttPublisher`] hands it to the command issuer (see [`crate::ops::commands`]).
//!
//! The connection is plain TCP (`mqtt://`, loopback or a TLS-terminating sidecar) or TLS
//! (`mqtts://`: rustls with ring, the broker verified against `mqtt.ca_file` only, optionally
//! with a client certificate); [`settings`] validates the `[mqtt]` section at load and
//! [`connect`] reads its files at start. A broker whose certificate does not verify is never
//! talked to: each attempt fails its handshake, is logged at ERROR with "TLS refused" (an
//! operator must fix the CA or a certificate; so is a broker refusing the provider's client
//! certificate), and is retried with the usual backoff.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, Publish, QoS, Transport};
use tm_protocol::routes::mqtt as topics;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::Ingest;

pub mod connect;
mod handle;
pub mod publisher;
pub mod settings;
pub mod stats;

pub use connect::{MqttIngestConfig, MqttSetupError};
pub use publisher::MqttPublisher;
pub use settings::{MqttFile, MqttSettings};
pub use stats::{MqttStats, Refusal};

/// The largest packet the provider reads: well above [`topics::MAX_PACKET_BYTES`], so a
/// message a broker lets through is refused and acknowledged instead of failing the connection.
pub const READ_LIMIT_BYTES: usize = 4 * topics::MAX_PACKET_BYTES;
/// Connections lost to packets above [`READ_LIMIT_BYTES`] within [`SHED_WINDOW`] before the
/// broker's queue for this provider is shed.
pub const SHED_AFTER: u32 = 3;
/// See [`SHED_AFTER`].
pub const SHED_WINDOW: Duration = Duration::from_secs(600);

/// Publishes handed to the worker; above the broker's in-flight window, so `try_send` only
/// fails if the broker misbehaves (the message is then left unacknowledged and redelivered).
const WORK_CAPACITY: usize = 1024;

/// Runs the subscriber until `cancel`.
#[tracing::instrument(name = "mqtt", skip_all)]
pub async fn run(ingest: Ingest, cfg: MqttIngestConfig, cancel: CancellationToken) {
    let broker = format!("{}:{}", cfg.host, cfg.port);
    let client_id = cfg.client_id.clone();
    let persistent = cfg.persistent_session;
    let mut options = MqttOptions::new(cfg.client_id, cfg.host, cfg.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(!persistent)
        .set_manual_acks(true)
        .set_max_packet_size(READ_LIMIT_BYTES, topics::MAX_PACKET_BYTES);
    if let Some((user, password)) = cfg.credentials {
        options.set_credentials(user, password);
    }
    let tls = cfg.tls.is_some();
    if let Some(config) = cfg.tls {
        options.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
    tracing::info!(broker = %broker, tls, %client_id, persistent, "MQTT ingest connecting");
    let (client, mut eventloop) = AsyncClient::new(options, WORK_CAPACITY);
    // Receipts are small writes a gateway waits for: sent at once, not held by Nagle's
    // algorithm until the broker's delayed ACK.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let publisher = ingest.mqtt_publisher();
    publisher.set(Some(client.clone()));
    let (work_tx, work_rx) = mpsc::channel::<Publish>(WORK_CAPACITY);
    let worker = tokio::spawn(work(ingest, client.clone(), work_rx).in_current_span());
    let mut reconnect =
        tm_protocol::backoff::Backoff::new(Duration::from_millis(200), Duration::from_millis(6400));
    let mut oversized = Oversized::default();
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                reconnect.reset();
                publisher.stats().connected();
                if persistent && eventloop.mqtt_options.clean_session() {
                    // The broker dropped the old session and its queue: back to a persistent
                    // session, subscribed as usual.
                    tracing::warn!(
                        "MQTT ingest shed the broker's queue; reconnecting with the persistent session"
                    );
                    eventloop.mqtt_options.set_clean_session(false);
                    eventloop.clean();
                    continue;
                }
                tracing::info!("MQTT ingest connected");
                for filter in [
                    topics::ALL_READINGS,
                    topics::ALL_HEARTBEATS,
                    topics::ALL_COMMAND_RESULTS,
                ] {
                    let _ = client.try_subscribe(topics::shared(filter), QoS::AtLeastOnce);
                }
                // Not shared: every instance needs the retained status (the last-will) of all.
                let _ = client.try_subscribe(topics::ALL_STATUS, QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Err(e) = work_tx.try_send(p) {
                    tracing::error!(error = %e, "ingest queue full; message left for redelivery");
                }
            }
            Ok(_) => {}
            Err(e) => {
                // Full jitter from 200 ms to 6.4 s: every instance of every provider reconnecting
                // to one broker after its restart does not come back in the same instant.
                let delay = reconnect.next_delay();
                if is_oversized(&e) {
                    publisher.stats().oversized(chrono::Utc::now());
                    tracing::error!(error = %e, read_limit = READ_LIMIT_BYTES, "MQTT ingest connection failed: the broker delivered a packet larger than the provider reads; set the broker's max_packet_size to {} (see README)", topics::MAX_PACKET_BYTES);
                    // Without a persistent session every reconnection starts clean already.
                    if persistent && oversized.failed(std::time::Instant::now()) {
                        publisher.stats().shed();
                        tracing::error!(
                            "MQTT ingest reconnecting once with a clean session: the broker drops what it queued for this provider (gateways resend readings without a receipt)"
                        );
                        eventloop.mqtt_options.set_clean_session(true);
                    }
                } else if is_tls_refusal(&e) {
                    tracing::error!(error = %e, "MQTT ingest connection failed: TLS refused; check mqtt.ca_file against the broker's certificate, and the client certificate when the broker requires one");
                } else {
                    tracing::warn!(error = %e, "MQTT ingest connection failed");
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    publisher.set(None);
    let _ = client.try_disconnect();
    drop(work_tx);
    worker.abort();
}

/// Connection failures on packets above [`READ_LIMIT_BYTES`].
#[derive(Debug, Default)]
struct Oversized {
    since: Option<std::time::Instant>,
    count: u32,
}

impl Oversized {
    /// Counts one at `now`; true when the queue is to be shed (then starts over).
    fn failed(&mut self, now: std::time::Instant) -> bool {
        if self
            .since
            .is_none_or(|s| now.duration_since(s) > SHED_WINDOW)
        {
            *self = Self {
                since: Some(now),
                count: 0,
            };
        }
        self.count += 1;
        if self.count >= SHED_AFTER {
            *self = Self::default();
            return true;
        }
        false
    }
}

/// Whether a connection failed on a packet above the read limit.
fn is_oversized(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(_)
        ))
    )
}

/// Whether a connection failed because TLS refused it: the broker's certificate does not
/// verify, or the broker refused ours (an alert such as `CertificateRequired`). Retrying alone
/// will not help; an operator must fix a certificate. rustls's error sits inside an I/O error
/// somewhere in rumqttc's chain.
fn is_tls_refusal(e: &ConnectionError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        current = err.source();
    }
    false
}

/// Messages ingested at once: batches handled together share one commit (see
/// [`super::group_commit`]).
const CONCURRENT_MESSAGES: usize = 8;

async fn work(ingest: Ingest, client: AsyncClient, mut rx: mpsc::Receiver<Publish>) {
    let mut running = tokio::task::JoinSet::new();
    while let Some(p) = rx.recv().await {
        while running.len() >= CONCURRENT_MESSAGES {
            let _ = running.join_next().await;
        }
        let (ingest, client) = (ingest.clone(), client.clone());
        running.spawn(
            async move {
                handle::handle(&ingest, &client, &p).await;
                let _ = client.ack(&p).await;
            }
            .in_current_span(),
        );
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn the_queue_is_shed_after_repeated_oversized_packets_only() {
        let t0 = std::time::Instant::now();
        let mut o = Oversized::default();
        assert!(!o.failed(t0));
        assert!(!o.failed(t0 + Duration::from_secs(1)));
        assert!(o.failed(t0 + Duration::from_secs(2)));
        // Starts over; failures far apart never shed.
        assert!(!o.failed(t0 + Duration::from_secs(3)));
        assert!(!o.failed(t0 + Duration::from_secs(700)));
        assert!(!o.failed(t0 + Duration::from_secs(1400)));
        let too_large = ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(READ_LIMIT_BYTES + 1),
        ));
        assert!(is_oversized(&too_large));
        assert!(!is_oversized(&ConnectionError::NetworkTimeout));
    }

    #[test]
    fn tls_refusals_are_told_apart_from_other_failures() {
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let required = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        // The broker's certificate, refused during the handshake.
        let handshake = ConnectionError::Tls(rumqttc::TlsError::Io(wrapped(untrusted)));
        assert!(is_tls_refusal(&handshake));
        // Our missing certificate, refused by the broker while reading its CONNACK.
        let alert = ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::Error::Io(wrapped(required)),
        ));
        assert!(is_tls_refusal(&alert));
        let refused = ConnectionError::Io(std::io::ErrorKind::ConnectionRefused.into());
        assert!(!is_tls_refusal(&refused));
        assert!(!is_tls_refusal(&ConnectionError::NetworkTimeout));
    }
}
