//! A plain-TCP mosquitto on 127.0.0.1 started by the test (its log kept, to count the
//! provider's connections), the real `tm-provider serve` subscribed to it with the ops token
//! configured and the alert evaluator running every second, a gateway enrolled in its store,
//! and MQTT clients for the gateway (over plain TCP, or TLS with [`Gateway::connect_over`]) and
//! for whoever else publishes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, Transport};
use tm_protocol::routes::mqtt as topics;
use tm_protocol::{
    Backlog, ClockState, DiskUse, GatewayId, Heartbeat, LinkState, MessageKind, Reading,
    ReadingBatch, Receipt, SigningKey, Status, TimeQuality, VerifyingKey,
};
use tm_testkit::backend::TestStore;
use tm_testkit::mosquitto::Mosquitto;
use tm_testkit::net::free_port;
use tm_testkit::process::Spawned;
use tokio::sync::mpsc;

#[path = "../fixtures/mod.rs"]
mod fixtures;
#[path = "../registry/mod.rs"]
mod registry;

pub const TOKEN: &str = "ops-poison-token";
pub const CLIENT_ID: &str = "tm-provider-poison";

/// mosquitto on one plain listener, logging everything (its log kept, to count the provider's
/// connections); `extra` is a line of its configuration (for example the documented
/// `max_packet_size`).
pub struct Broker {
    mosquitto: Mosquitto,
    pub port: u16,
}

impl Broker {
    pub fn start(dir: &Path, extra: &str) -> Self {
        let mut broker = Mosquitto::builder()
            .config("log_type all")
            .output(&dir.join("mosquitto.log"));
        if !extra.is_empty() {
            broker = broker.config(extra);
        }
        let mosquitto = broker.start(dir);
        Self {
            port: mosquitto.port(),
            mosquitto,
        }
    }

    pub fn log(&self) -> String {
        self.mosquitto.output()
    }

    /// How many times the provider connected, from the broker's own log.
    pub fn provider_connections(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("New client connected") && l.contains(CLIENT_ID))
            .count()
    }
}

/// The provider's files in `dir`, for the broker on `broker_port`.
pub struct ProviderSetup {
    pub config: PathBuf,
    pub http_port: u16,
}

impl ProviderSetup {
    /// The key files are named in `dir`: a PostgreSQL store would otherwise keep them in the
    /// working directory, shared by every test.
    pub fn new(dir: &Path, broker_port: u16) -> Self {
        let http_port = free_port();
        std::fs::write(dir.join("ops-token"), format!("{TOKEN}\n")).unwrap();
        let config = dir.join("provider.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{http_port}\"\npublic_url = \"http://127.0.0.1:{http_port}\"\n\
                 key_file = \"{key}\"\n{store}\
                 [attachments]\nkey_file = \"{uri_key}\"\n\
                 [mqtt]\nurl = \"mqtt://127.0.0.1:{broker_port}\"\nclient_id = \"{CLIENT_ID}\"\n\
                 [ops]\ntoken_file = \"{token}\"\nevaluate_interval_s = 1\n",
                store = TestStore::in_dir(dir).setting(),
                key = dir.join("provider-signing.key").display(),
                uri_key = dir.join("attachments.key").display(),
                token = dir.join("ops-token").display(),
            ),
        )
        .unwrap();
        Self { config, http_port }
    }
}

/// A running `tm-provider serve`, killed when dropped.
pub struct Provider {
    child: Spawned,
    log: PathBuf,
    base: String,
    http: reqwest::Client,
}

impl Provider {
    pub fn start(setup: &ProviderSetup, log: PathBuf) -> Self {
        tm_provider::install_crypto_provider();
        let child = Spawned::start(
            "tm-provider",
            Command::new(env!("CARGO_BIN_EXE_tm-provider"))
                .arg("--config")
                .arg(&setup.config)
                .arg("serve")
                .env("TM_LOG", "info")
                .env("NO_COLOR", "1")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
        );
        Self {
            child,
            log,
            base: format!("http://127.0.0.1:{}", setup.http_port),
            http: reqwest::Client::new(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 20 s) until the log holds `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the provider's log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.unwrap()
    }

    /// The value of one metric line (`name` with its labels, as printed).
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
            .parse()
            .unwrap()
    }

    /// `tm_mqtt_messages_refused_total{reason="..."}`.
    pub async fn refused(&self, reason: &str) -> u64 {
        self.metric(&format!(
            "tm_mqtt_messages_refused_total{{reason=\"{reason}\"}}"
        ))
        .await
    }

    /// The kinds of the unresolved alerts.
    pub async fn open_alerts(&self) -> Vec<(String, String)> {
        let v: serde_json::Value = self.get("/ops/api/alerts").await.json().await.unwrap();
        let list = v.as_array().or_else(|| v["alerts"].as_array()).cloned();
        list.unwrap_or_default()
            .iter()
            .map(|a| {
                (
                    a["kind"].as_str().unwrap_or_default().to_owned(),
                    a["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Waits (up to 10 s) until an alert of `kind` is open.
    pub async fn wait_for_alert(&self, kind: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let open = self.open_alerts().await;
            if open.iter().any(|(k, s)| k == kind && s == "open") {
                return;
            }
            assert!(Instant::now() < deadline, "no open {kind} alert: {open:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The gateway's liveness as the ops API shows it.
    pub async fn liveness(&self, gateway: &GatewayId) -> String {
        let v: serde_json::Value = self
            .get(&format!("/ops/api/gateways/{gateway}"))
            .await
            .json()
            .await
            .unwrap();
        v["gateway"]["liveness"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Enrolls `gateway` with `key` on an accepted session in the provider's store; returns the
/// provider's key (created here, read by the provider at start).
pub async fn register(dir: &Path, gateway: &GatewayId, key: &SigningKey) -> VerifyingKey {
    registry::register(&TestStore::in_dir(dir), gateway, &key.verifying_key()).await;
    tm_provider::keys::load_or_create(&dir.join("provider-signing.key"))
        .unwrap()
        .verifying_key()
}

/// Readings stored by the provider.
pub async fn stored(dir: &Path) -> i64 {
    TestStore::in_dir(dir)
        .value("SELECT COUNT(*) FROM readings")
        .parse()
        .unwrap()
}

/// An MQTT client publishing whatever it is given (up to 64 MiB), QoS 1; `will` is its
/// last-will on `topic`, retained.
pub struct Publisher {
    pub client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
    pub disconnected: mpsc::Receiver<String>,
    acked: mpsc::Receiver<()>,
}

impl Publisher {
    pub async fn connect(port: u16, id: &str, will: Option<(String, Vec<u8>)>) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(64 << 20, 64 << 20);
        if let Some((topic, payload)) = will {
            options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
        }
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let (connected_tx, mut connected) = mpsc::channel(1);
        let (disconnected_tx, disconnected) = mpsc::channel(16);
        let (acked_tx, acked) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = connected_tx.try_send(());
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = acked_tx.try_send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = disconnected_tx.try_send(e.to_string());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connected.recv())
            .await
            .expect("the test client connected");
        Self {
            client,
            task,
            disconnected,
            acked,
        }
    }

    /// Publishes and waits (up to 10 s) for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.acked.recv())
            .await
            .expect("the broker acknowledged the publish");
    }

    /// Drops the connection without DISCONNECT: the broker publishes the last-will.
    pub fn vanish(self) {
        self.task.abort();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The enrolled gateway at the protocol level: its key, its receipts.
pub struct Gateway {
    pub id: GatewayId,
    pub key: SigningKey,
    client: AsyncClient,
    receipts: mpsc::Receiver<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub async fn connect(port: u16, id: GatewayId, key: SigningKey) -> Self {
        Self::connect_over(port, Transport::Tcp, id, key).await
    }

    /// Connects to the broker's listener on `port` with `transport` (plain TCP, or TLS with the
    /// gateway's own client certificate) and subscribes to the receipts.
    pub async fn connect_over(
        port: u16,
        transport: Transport,
        id: GatewayId,
        key: SigningKey,
    ) -> Self {
        let mut options = MqttOptions::new(id.as_str(), "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(topics::MAX_PACKET_BYTES, topics::MAX_PACKET_BYTES)
            .set_transport(transport);
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let (receipts_tx, receipts) = mpsc::channel(16);
        let (subscribed_tx, mut subscribed) = mpsc::channel(1);
        let receipts_topic = topics::receipts(&id);
        let subscriber = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = subscriber.try_subscribe(&receipts_topic, QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.try_send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == receipts_topic => {
                        let _ = receipts_tx.send(p.payload.to_vec()).await;
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed.recv())
            .await
            .expect("the test gateway subscribed to its receipts");
        Self {
            id,
            key,
            client,
            receipts,
            task,
        }
    }

    /// A signed batch of `n` readings.
    pub fn batch(&self, batch_id: &str, series: u8, n: u8) -> (Vec<u8>, Vec<Reading>) {
        batch_frame(&self.id, &self.key, batch_id, series, n)
    }

    /// Publishes `frame` on its readings topic, again every 2 s (as a gateway does until it
    /// has a receipt) for up to `limit`; returns the receipt, verified.
    pub async fn deliver(
        &mut self,
        frame: &[u8],
        provider: &VerifyingKey,
        limit: Duration,
    ) -> Option<Receipt> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            self.client
                .publish(
                    topics::readings(&self.id),
                    QoS::AtLeastOnce,
                    false,
                    frame.to_vec(),
                )
                .await
                .unwrap();
            let wait = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_secs(2));
            if let Ok(Some(bytes)) = tokio::time::timeout(wait, self.receipts.recv()).await {
                let frame = tm_protocol::Frame::parse(&bytes).unwrap();
                let payload = frame.verify(MessageKind::Receipt, provider).unwrap();
                return Some(tm_protocol::decode::<Receipt>(payload).unwrap());
            }
        }
        None
    }

    /// Publishes `payload` on `topic` as this gateway (QoS 1).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// A signed heartbeat frame sent now.
    pub fn heartbeat(&self) -> Vec<u8> {
        let hb = Heartbeat {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: self.id.clone(),
            sent_at: Utc::now(),
            version: "test".into(),
            uptime_s: 5,
            backlog: Backlog {
                depth: 0,
                oldest_age_s: None,
                rejected: 0,
            },
            devices_unreadable: false,
            devices: vec![],
            clock: ClockState::Synchronized,
            disk: DiskUse {
                used_bytes: 1,
                quota_bytes: 100,
            },
            last_error: None,
            setup: None,
        };
        tm_protocol::seal(
            MessageKind::Heartbeat,
            self.id.as_str(),
            &tm_protocol::encode(&hb),
            &self.key,
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A batch of `n` readings of `gateway`, signed with `key` (the gateway's, or a forger's).
pub fn batch_frame(
    gateway: &GatewayId,
    key: &SigningKey,
    batch_id: &str,
    series: u8,
    n: u8,
) -> (Vec<u8>, Vec<Reading>) {
    let readings: Vec<Reading> = (0..n)
        .map(|i| {
            fixtures::reading(
                "2A35",
                &fixtures::bp_frame(110 + i, 70 + series, 90, 60 + series),
                fixtures::omron_cuff(),
                Utc::now().fixed_offset(),
                TimeQuality::DeviceSynced,
            )
        })
        .collect();
    let batch = ReadingBatch {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gateway.clone(),
        batch_id: batch_id.parse().unwrap(),
        created_at: Utc::now(),
        readings: readings.clone(),
    };
    let frame = tm_protocol::seal(
        MessageKind::ReadingBatch,
        gateway.as_str(),
        &tm_protocol::encode(&batch),
        key,
    );
    (frame, readings)
}

/// A status frame of `gateway` signed with `key` (the gateway's, or a forger's).
pub fn status(gateway: &GatewayId, key: &SigningKey, state: LinkState, connection: u64) -> Vec<u8> {
    let status = Status {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gateway.clone(),
        state,
        connection,
    };
    tm_protocol::seal(
        MessageKind::Status,
        gateway.as_str(),
        &tm_protocol::encode(&status),
        key,
    )
}

/// Waits (up to 10 s, polling every 100 ms) until `f` holds; panics naming `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tm_testkit::wait::until(what, Duration::from_secs(10), Duration::from_millis(100), f).await;
}
