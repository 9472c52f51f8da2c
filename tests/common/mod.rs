//! Test harness for the data path: a real mosquitto on an ephemeral loopback port with its own
//! config, the real provider ingest and operations routes in-process (HTTP on 127.0.0.1:0, MQTT
//! subscriber), and the real `tm-gateway` binary as a child process. Every process is stopped
//! by the PID we spawned.
#![allow(dead_code)]

pub mod soak;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tm_protocol::{GatewayId, SigningKey, SyncSettings, Transport};
use tokio_util::sync::CancellationToken;

// Every test binary includes this module; each uses some of these.
#[allow(unused_imports)]
pub use tm_testkit::{
    mosquitto::Mosquitto,
    net::{free_port, wait_for_port},
    pki,
    process::Spawned,
    wait::eventually,
};

/// A mosquitto with one plain loopback listener and queues deep enough for a gateway's backlog.
pub fn mosquitto(dir: &Path) -> Mosquitto {
    Mosquitto::builder()
        .config("max_queued_messages 100000")
        .config("max_inflight_messages 64")
        .start(dir)
}

/// The operations token of [`ProviderSide`].
pub const OPS_TOKEN: &str = "ops-token-for-tests";

/// The provider's store, key, ingest and operations (commands), with a gateway registered on a
/// session.
pub struct ProviderSide {
    pub store: tm_provider::store::Store,
    pub ingest: tm_provider::ingest::Ingest,
    pub ops: tm_provider::ops::Ops,
    pub key: Arc<SigningKey>,
}

impl ProviderSide {
    pub async fn new(dir: &Path, gateway: &GatewayId, gateway_key: &SigningKey) -> Self {
        let store = tm_provider::store::Store::open(&dir.join("provider.db")).unwrap();
        let key = Arc::new(tm_provider::keys::load_or_create(&dir.join("provider.key")).unwrap());
        let gw = gateway.clone();
        let public = gateway_key.verifying_key();
        store
            .sqlite()
            .expect("a SQLite store")
            .write(move |c| {
                tm_testkit::store::accepted_session(c, "tm-1")?;
                tm_provider::store::sqlite::gateways::insert(c, &gw, &public, "tm-1")
            })
            .await
            .unwrap();
        let ingest = tm_provider::ingest::Ingest::new(store.clone(), key.clone());
        let token_file = dir.join("ops-token");
        std::fs::write(&token_file, OPS_TOKEN).unwrap();
        let section = tm_provider::ops::OpsSection {
            token_file: Some(token_file),
            ..Default::default()
        };
        let ops = tm_provider::ops::Ops::new(store.clone(), section, key.clone())
            .unwrap()
            .with_mqtt(ingest.mqtt_publisher());
        Self {
            store,
            ingest,
            ops,
            key,
        }
    }

    /// Sets the registered gateway `id` to `state` (a revoked gateway is refused).
    pub async fn set_gateway_state(
        &self,
        id: &GatewayId,
        state: tm_provider::store::gateways::GatewayState,
    ) {
        let id = id.clone();
        self.store
            .sqlite()
            .expect("a SQLite store")
            .write(move |c| tm_provider::store::sqlite::gateways::set_state(c, &id, state))
            .await
            .unwrap();
    }

    /// The MQTT status the provider stored for `gw` and its connection number.
    pub async fn mqtt_status(&self, gw: &GatewayId) -> (Option<String>, Option<i64>) {
        let id = gw.to_string();
        self.store
            .sqlite()
            .expect("a SQLite store")
            .read(move |c| tm_testkit::store::mqtt_status(c, &id))
            .await
            .unwrap()
    }

    /// Readings stored, and the number of distinct simulated sequences among them.
    pub async fn readings(&self) -> (u64, Vec<u32>) {
        self.store
            .sqlite()
            .expect("a SQLite store")
            .read(|c| {
                let mut stmt = c.prepare("SELECT payload FROM readings")?;
                let seqs = stmt
                    .query_map([], |r| r.get::<_, String>(0))?
                    .map(|p| {
                        let r: tm_protocol::Reading = serde_json::from_str(&p.unwrap()).unwrap();
                        r.sequence.unwrap()
                    })
                    .collect::<Vec<_>>();
                Ok((u64::try_from(seqs.len()).unwrap(), seqs))
            })
            .await
            .unwrap()
    }

    pub async fn count(&self) -> u64 {
        self.store
            .sqlite()
            .expect("a SQLite store")
            .read(|c| c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|n| u64::try_from(n).unwrap())
            .unwrap()
    }

    /// Serves the HTTPS ingest routes, the command poll and the operations API (plain HTTP on
    /// loopback) until the token is cancelled.
    pub async fn serve_http(&self, addr: SocketAddr) -> (SocketAddr, CancellationToken) {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let bound = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let router = tm_provider::ingest::http::routes(self.ingest.clone())
            .merge(self.ops.routes())
            .into_router();
        tokio::spawn(tm_provider::http::serve(listener, router, cancel.clone()));
        (bound, cancel)
    }

    /// Runs the MQTT ingest against `broker_port` (plain TCP) until the token is cancelled.
    pub fn serve_mqtt(&self, broker_port: u16) -> CancellationToken {
        self.serve_mqtt_with(tm_provider::ingest::mqtt::MqttIngestConfig {
            host: "127.0.0.1".into(),
            port: broker_port,
            client_id: "tm-provider-test".into(),
            credentials: None,
            tls: None,
            persistent_session: true,
        })
    }

    /// Runs the MQTT ingest with `[mqtt]` settings written as in the provider's configuration
    /// file (validated and loaded as `tm-provider serve` does) until the token is cancelled.
    pub fn serve_mqtt_configured(&self, mqtt_section: &str) -> CancellationToken {
        let file: tm_provider::config::MqttFile = toml::from_str(mqtt_section).unwrap();
        let settings = tm_provider::config::MqttSettings::try_from(file).unwrap();
        let cfg = tm_provider::ingest::mqtt::MqttIngestConfig::load(&settings).unwrap();
        self.serve_mqtt_with(cfg)
    }

    fn serve_mqtt_with(
        &self,
        cfg: tm_provider::ingest::mqtt::MqttIngestConfig,
    ) -> CancellationToken {
        let cancel = CancellationToken::new();
        tokio::spawn(tm_provider::ingest::mqtt::run(
            self.ingest.clone(),
            cfg,
            cancel.clone(),
        ));
        cancel
    }
}

/// A gateway's state directory, configuration and enrollment.
pub struct GatewaySide {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub id: GatewayId,
    pub key: SigningKey,
}

impl GatewaySide {
    pub fn new(dir: &Path, extra_config: &str) -> Self {
        let state = dir.join("gw");
        std::fs::create_dir_all(&state).unwrap();
        let (key, _) = SigningKey::load_or_create(&state.join("gateway.key")).unwrap();
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\nlog_level = \"warn\"\n{extra_config}",
                state.display()
            ),
        )
        .unwrap();
        Self {
            dir: state,
            config,
            id: GatewayId::new("gw-test-1").unwrap(),
            key,
        }
    }

    /// Enrolls on `transport` at `url`; an MQTT gateway's command poll goes to a closed port.
    pub fn enroll(&self, provider_key: &SigningKey, transport: Transport, url: &str) {
        match transport {
            Transport::Https => self.enroll_with(provider_key, url, None),
            Transport::Mqtt => self.enroll_with(provider_key, "http://127.0.0.1:9", Some(url)),
        }
    }

    /// Enrolls with the provider's gateway API at `https_url` (command poll; readings too
    /// without a broker) and, when given, the MQTT broker at `mqtt_url`.
    pub fn enroll_with(&self, provider_key: &SigningKey, https_url: &str, mqtt_url: Option<&str>) {
        let transport = if mqtt_url.is_some() {
            Transport::Mqtt
        } else {
            Transport::Https
        };
        let (https_url, mqtt_url) = (https_url.to_owned(), mqtt_url.map(str::to_owned));
        tm_gateway::enrollment::Enrollment {
            gateway_id: self.id.clone(),
            provider_url: https_url.clone(),
            provider_public_key: provider_key.verifying_key().as_bytes().to_vec(),
            sync: SyncSettings {
                transport,
                https_url,
                mqtt_url,
                heartbeat_interval_s: 60,
            },
            enrolled_at: chrono::Utc::now(),
        }
        .save(&self.dir)
        .unwrap();
    }

    /// Starts `tm-gateway run` with the simulator feeding `count` readings at `rate`/s.
    pub fn spawn_agent(&self, count: u32, rate: u32) -> Agent {
        Agent::from(
            Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
                .arg("--config")
                .arg(&self.config)
                .args(["run", "--simulate-readings", &count.to_string()])
                .args(["--simulate-rate", &rate.to_string()])
                .env("TM_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        )
    }

    /// Starts `tm-gateway run` with its system bus at `bus` (the BlueZ simulator's private
    /// bus) and `args` after `run`.
    pub fn spawn_agent_on_bus(&self, bus: &str, args: &[&str]) -> Agent {
        Agent::from(
            Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
                .arg("--config")
                .arg(&self.config)
                .arg("run")
                .args(args)
                .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
                .env(
                    "TM_LOG",
                    std::env::var("TM_LOG").unwrap_or_else(|_| "off".into()),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        )
    }

    /// Starts `tm-gateway run` with `args` after `run`, `TM_LOG` as given and stderr written
    /// to `log` (read it with [`log_lines`]).
    pub fn spawn_agent_logged(&self, args: &[&str], tm_log: &str, log: &Path) -> Agent {
        let file = std::fs::File::create(log).unwrap();
        Agent::from(
            Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
                .arg("--config")
                .arg(&self.config)
                .arg("run")
                .args(args)
                // No BlueZ for these agents: a bus address that does not exist.
                .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
                .env("TM_LOG", tm_log)
                .env("NO_COLOR", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::from(file))
                .spawn()
                .unwrap(),
        )
    }

    /// `tm-gateway status --json` (waiting for the agent to create its outbox).
    pub fn status(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.dir.join("outbox.db").exists() {
            assert!(
                Instant::now() < deadline,
                "the agent never created its outbox"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The file appears before the agent's first schema transaction commits.
        loop {
            let out = Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
                .arg("--config")
                .arg(&self.config)
                .args(["status", "--json"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).unwrap();
            }
            assert!(
                stderr.contains("no such table") && Instant::now() < deadline,
                "{stderr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `tm-gateway status --json` output shows the alarm `kind` raised.
pub fn has_alarm(status: &serde_json::Value, kind: &str) -> bool {
    status["alarms"]
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["kind"] == kind))
}

/// The lines of an agent's log file that contain every one of `needles`.
pub fn log_lines(log: &Path, needles: &[&str]) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// The provider's operations API over HTTP, with the token of [`ProviderSide`].
pub struct OpsApi {
    pub base: String,
    pub http: reqwest::Client,
}

impl OpsApi {
    pub fn new(addr: SocketAddr) -> Self {
        tm_provider::install_crypto_provider();
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    /// Issues a command (`{"type": ...}`) to `gateway`; returns its id.
    pub async fn issue(&self, gateway: &GatewayId, body: &str) -> String {
        let r = self
            .http
            .post(format!("{}/ops/api/gateways/{gateway}/commands", self.base))
            .bearer_auth(OPS_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "issuing {body}");
        let command: serde_json::Value = r.json().await.unwrap();
        command["command_id"].as_str().unwrap().to_owned()
    }

    /// The gateway's commands as the operator sees them, newest first.
    pub async fn commands(&self, gateway: &GatewayId) -> Vec<serde_json::Value> {
        let answer: serde_json::Value = self
            .http
            .get(format!("{}/ops/api/gateways/{gateway}/commands", self.base))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["commands"].as_array().unwrap().clone()
    }

    /// One command as the operator sees it.
    pub async fn command(&self, gateway: &GatewayId, id: &str) -> serde_json::Value {
        self.commands(gateway)
            .await
            .into_iter()
            .find(|c| c["command_id"] == id)
            .unwrap_or_else(|| panic!("no command {id}"))
    }

    /// Waits (up to `limit`) until the command has a result; returns it.
    pub async fn result(
        &self,
        gateway: &GatewayId,
        id: &str,
        limit: Duration,
    ) -> serde_json::Value {
        let reported = eventually(limit, || async {
            self.command(gateway, id).await["reported_at"].is_string()
        })
        .await;
        let command = self.command(gateway, id).await;
        assert!(reported, "no result for {id}: {command}");
        command
    }

    /// The frames the gateway's poll would get now.
    pub async fn polled(&self, gateway: &GatewayId) -> usize {
        let answer: serde_json::Value = self
            .http
            .get(format!(
                "{}{}",
                self.base,
                tm_protocol::routes::http::commands(gateway)
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["frames"].as_array().unwrap().len()
    }
}

/// Asserts the provider holds exactly the sequences `0..count`, once each.
/// Waits (up to `limit`) until `count` readings are at the provider and the gateway's backlog
/// is empty, then checks that each arrived exactly once.
pub async fn assert_all_delivered(
    gw: &GatewaySide,
    provider: &ProviderSide,
    count: u32,
    limit: Duration,
) {
    let arrived = eventually(limit, || async {
        provider.count().await >= u64::from(count)
    })
    .await;
    assert!(
        arrived,
        "only {} of {count} arrived",
        provider.count().await
    );
    let drained = eventually(limit, || async { gw.status()["backlog"] == 0 }).await;
    assert!(drained, "backlog not drained: {}", gw.status());
    assert_exactly_once(provider, count).await;
}

pub async fn assert_exactly_once(provider: &ProviderSide, count: u32) {
    let (n, mut seqs) = provider.readings().await;
    seqs.sort_unstable();
    let expected: Vec<u32> = (0..count).collect();
    assert_eq!(n, u64::from(count), "row count at the provider");
    assert_eq!(seqs, expected, "every reading exactly once");
}

/// A client of the test on the broker: keeps every frame published on one topic (subscribed
/// before [`TopicClient::start`] returns, bounded), and publishes frames itself.
pub struct TopicClient {
    client: AsyncClient,
    topic: String,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TopicClient {
    pub async fn start(id: &str, port: u16, topic: String) -> Self {
        let options = MqttOptions::new(id, "127.0.0.1", port);
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let task = {
            let (client, topic, seen) = (client.clone(), topic.clone(), seen.clone());
            tokio::spawn(async move {
                let mut subscribed_tx = Some(subscribed_tx);
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            let _ = client.try_subscribe(&topic, QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(tx) = subscribed_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            seen.lock().unwrap().push(p.payload.to_vec());
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("subscribed to the topic")
            .unwrap();
        Self {
            client,
            topic,
            seen,
            task,
        }
    }

    /// Every frame published on the topic so far.
    pub fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }

    /// Publishes `frame` on the topic (QoS 1, not retained).
    pub async fn publish_here(&self, frame: Vec<u8>) {
        self.publish(&self.topic, frame, false).await;
    }

    /// Publishes `payload` on `topic` (QoS 1).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
    }
}

impl Drop for TopicClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An agent process, killed (SIGKILL, by its PID) when dropped, also when a test fails.
pub struct Agent(Spawned);

impl From<Child> for Agent {
    fn from(child: Child) -> Self {
        Self(child.into())
    }
}

impl Agent {
    /// Whether the agent process is still running.
    pub fn is_running(&mut self) -> bool {
        self.0.is_running()
    }

    /// SIGTERM to the agent we spawned, then waits (up to 15 s) for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.0
            .terminate(Duration::from_secs(15))
            .expect("the agent did not stop on SIGTERM")
    }
}

/// SIGKILL to the agent we spawned.
pub fn kill(agent: &mut Agent) {
    agent.0.kill();
}
