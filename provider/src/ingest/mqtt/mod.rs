//! MQTT ingest: a shared subscription (`$share/tm-provider/...`, so several provider instances
//! split the load) to every gateway's readings, heartbeats and command results.
//!
//! The event loop runs in its own task and never blocks: each publish goes to a worker through a
//! channel whose bound is the broker's in-flight window (manual acks: the broker sends at most
//! that many unacknowledged messages). The worker handles up to [`CONCURRENT_MESSAGES`] at once
//! (their batches share commits); for each it ingests, publishes the receipt to the gateway's
//! receipt topic, and only then acknowledges the message to the broker.
//! The topic's gateway id must equal the frame's signer.
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

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, Publish, QoS, Transport};
use tm_protocol::routes::mqtt as topics;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Ingest;

pub mod connect;
pub mod settings;

pub use connect::{MqttIngestConfig, MqttSetupError};
pub use settings::{MqttFile, MqttSettings};

/// The provider's MQTT connection as seen by code that publishes to gateways (commands). It
/// holds the client while [`run`] runs, and nothing otherwise; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MqttPublisher {
    client: Arc<RwLock<Option<AsyncClient>>>,
}

impl MqttPublisher {
    fn set(&self, client: Option<AsyncClient>) {
        *self
            .client
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
    }

    /// Publishes a signed command frame on `gateway`'s command topic (QoS 1, not retained).
    /// Never waits: returns false when the provider runs no MQTT connection or its request
    /// queue is full; the gateway's HTTPS poll serves the command anyway.
    pub fn publish_command(&self, gateway: &tm_protocol::GatewayId, frame: Vec<u8>) -> bool {
        let guard = self
            .client
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(client) = guard.as_ref() else {
            return false;
        };
        match client.try_publish(topics::commands(gateway), QoS::AtLeastOnce, false, frame) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(stage = "ops", gateway = %gateway, error = %e, "command not published over MQTT; the gateway's poll will fetch it");
                false
            }
        }
    }
}

/// Publishes handed to the worker; above the broker's in-flight window, so `try_send` only
/// fails if the broker misbehaves (the message is then left unacknowledged and redelivered).
const WORK_CAPACITY: usize = 1024;

/// Runs the subscriber until `cancel`.
pub async fn run(ingest: Ingest, cfg: MqttIngestConfig, cancel: CancellationToken) {
    let broker = format!("{}:{}", cfg.host, cfg.port);
    let mut options = MqttOptions::new(cfg.client_id, cfg.host, cfg.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(topics::MAX_PACKET_BYTES, topics::MAX_PACKET_BYTES);
    if let Some((user, password)) = cfg.credentials {
        options.set_credentials(user, password);
    }
    let tls = cfg.tls.is_some();
    if let Some(config) = cfg.tls {
        options.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
    tracing::info!(stage = "ingest", broker = %broker, tls, "MQTT ingest connecting");
    let (client, mut eventloop) = AsyncClient::new(options, WORK_CAPACITY);
    let publisher = ingest.mqtt_publisher();
    publisher.set(Some(client.clone()));
    let (work_tx, work_rx) = mpsc::channel::<Publish>(WORK_CAPACITY);
    let worker = tokio::spawn(work(ingest, client.clone(), work_rx));
    let mut failures: u32 = 0;
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break,
            e = eventloop.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!(stage = "ingest", "MQTT ingest connected");
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
                    tracing::error!(stage = "ingest", error = %e, "ingest queue full; message left for redelivery");
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures = failures.saturating_add(1);
                let ceiling = 100u64 << failures.min(6);
                let delay = Duration::from_millis(jitter(ceiling));
                if is_tls_refusal(&e) {
                    tracing::error!(stage = "ingest", error = %e, "MQTT ingest connection failed: TLS refused; check mqtt.ca_file against the broker's certificate, and the client certificate when the broker requires one");
                } else {
                    tracing::warn!(stage = "ingest", error = %e, "MQTT ingest connection failed");
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

fn jitter(ceiling_ms: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) % (ceiling_ms + 1)
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
        running.spawn(async move {
            handle(&ingest, &client, &p).await;
            let _ = client.ack(&p).await;
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

async fn handle(ingest: &Ingest, client: &AsyncClient, p: &Publish) {
    let Some((gateway, leaf)) = topics::parse(&p.topic) else {
        tracing::warn!(stage = "ingest", "message on an unexpected topic ignored");
        return;
    };
    let signer_matches = tm_protocol::Frame::parse(&p.payload)
        .map(|f| f.signer() == gateway.as_str())
        .unwrap_or(true);
    if !signer_matches {
        tracing::warn!(stage = "ingest", gateway = %gateway, "frame signed by another gateway than its topic; refused");
        return;
    }
    match leaf {
        "readings" => match ingest.readings(&p.payload, None).await {
            Ok(done) => {
                if let Err(e) = client
                    .publish(
                        topics::receipts(&gateway),
                        QoS::AtLeastOnce,
                        false,
                        done.receipt_frame,
                    )
                    .await
                {
                    tracing::warn!(stage = "ingest", error = %e, "receipt not published; the gateway will resend");
                }
            }
            Err(e) => {
                tracing::warn!(stage = "ingest", gateway = %gateway, error = %e, "batch refused")
            }
        },
        "heartbeat" => {
            if let Err(e) = ingest.heartbeat(&p.payload).await {
                tracing::warn!(stage = "ingest", gateway = %gateway, error = %e, "heartbeat refused");
            }
        }
        "command-results" => {
            if let Err(e) = ingest.command_result(&p.payload).await {
                tracing::warn!(stage = "ingest", gateway = %gateway, error = %e, "command result refused");
            }
        }
        "status" => {
            let (db, id, payload) = (ingest.db().clone(), gateway.to_string(), p.payload.clone());
            let now = chrono::Utc::now();
            if let Err(e) = db
                .write(move |c| crate::ops::health::record_status(c, &id, &payload, now))
                .await
            {
                tracing::warn!(stage = "ingest", error = %e, "gateway status not stored");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
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
