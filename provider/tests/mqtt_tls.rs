//! MQTT ingest over TLS, run by the real `tm-provider serve` process with `[mqtt] url =
//! "mqtts://..."`, through a mosquitto TLS listener that admits only clients presenting a
//! certificate of the test's CA (`require_certificate true`). A gateway, simulated at the
//! protocol level (its key registered at the provider, its own client certificate), publishes
//! signed reading batches and waits for the provider's signed receipt.
//!
//! - trusting the broker's CA and presenting its certificate, the provider ingests the batch
//!   and answers with a receipt naming every reading;
//! - trusting another CA, it never connects: its log says TLS refused the broker (unknown
//!   issuer), no receipt comes back and nothing is stored;
//! - without a client certificate, the broker does not admit it (its log says TLS refused:
//!   certificate required), and nothing is stored either;
//! - an `mqtts://` URL without `ca_file` stops the start with a message naming the key.

mod fixtures;
mod pki;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use pki::Ca;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tm_protocol::routes::mqtt as topics;
use tm_protocol::{
    GatewayId, MessageKind, Reading, ReadingBatch, Receipt, SigningKey, TimeQuality, VerifyingKey,
};
use tokio::sync::mpsc;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The files of one test: two CAs, the broker's certificate, the clients' certificates.
struct Pki {
    dir: PathBuf,
    right_ca: PathBuf,
    wrong_ca: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let (right, wrong) = (Ca::new("broker CA"), Ca::new("another CA"));
        let (right_ca, wrong_ca) = (dir.join("right-ca.pem"), dir.join("wrong-ca.pem"));
        right.write_pem(&right_ca);
        wrong.write_pem(&wrong_ca);
        right.issue(&dir.join("broker.pem"), &dir.join("broker.key"));
        right.issue_client(
            "tm-provider",
            &dir.join("provider.pem"),
            &dir.join("provider.key"),
        );
        right.issue_client(
            "gw-tls-1",
            &dir.join("gateway.pem"),
            &dir.join("gateway.key"),
        );
        Self {
            dir: dir.to_path_buf(),
            right_ca,
            wrong_ca,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// mosquitto with one TLS listener requiring client certificates of the right CA.
struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start(pki: &Pki) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        // mosquitto started as root reads its key only after switching to its own user.
        let key = pki.file("broker-readable.key");
        std::fs::copy(pki.file("broker.key"), &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let port = free_port();
        let conf = pki.file("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "allow_anonymous true\npersistence false\nlistener {port} 127.0.0.1\n\
                 certfile {}\nkeyfile {}\ncafile {}\nrequire_certificate true\n",
                pki.file("broker.pem").display(),
                key.display(),
                pki.right_ca.display()
            ),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed");
        wait_for_port(port);
        Self { child, port }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the provider's configuration for the broker on `broker_port`; `mqtt` ends the
/// `[mqtt]` section.
fn provider_config(dir: &Path, broker_port: u16, mqtt: &str) -> PathBuf {
    let path = dir.join("provider.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             database = \"{db}\"\nkey_file = \"{key}\"\n\
             [mqtt]\nurl = \"mqtts://127.0.0.1:{broker}\"\nclient_id = \"tm-provider-tls\"\n{mqtt}",
            port = free_port(),
            db = dir.join("provider.db").display(),
            key = dir.join("provider-signing.key").display(),
            broker = broker_port,
        ),
    )
    .unwrap();
    path
}

/// A running `tm-provider serve`, killed when dropped.
struct Provider {
    child: Child,
    log: PathBuf,
}

impl Provider {
    fn start(config: &Path, log: PathBuf) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_tm-provider"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("TM_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 20 s) until the log holds `needle`.
    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the provider's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The provider's store with a gateway enrolled on an accepted session, and the provider's
/// key (created here, read by the provider at start).
async fn register(dir: &Path, gateway: &GatewayId, key: &SigningKey) -> VerifyingKey {
    let db = tm_provider::db::Db::open(&dir.join("provider.db")).unwrap();
    let (gw, public) = (gateway.clone(), key.verifying_key());
    db.write(move |c| {
        c.execute(
            "INSERT INTO sessions VALUES ('tm-1','p-1','rx-1','accepted',NULL,NULL,'t','t')",
            [],
        )?;
        tm_provider::gateways::insert(c, &gw, &public, "tm-1")
    })
    .await
    .unwrap();
    tm_provider::keys::load_or_create(&dir.join("provider-signing.key"))
        .unwrap()
        .verifying_key()
}

async fn stored(dir: &Path) -> i64 {
    let db = tm_provider::db::Db::open(&dir.join("provider.db")).unwrap();
    db.read(|c| c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0)))
        .await
        .unwrap()
}

/// A gateway's MQTT client over the broker's TLS listener, with its own certificate,
/// subscribed to its receipt topic.
struct GatewayClient {
    id: GatewayId,
    key: SigningKey,
    client: AsyncClient,
    receipts: mpsc::Receiver<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl GatewayClient {
    async fn connect(pki: &Pki, broker: &Broker, id: GatewayId, key: SigningKey) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&pki.right_ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let chain = CertificateDer::pem_file_iter(pki.file("gateway.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let private = PrivateKeyDer::from_pem_file(pki.file("gateway.key")).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private)
        .unwrap();
        let mut options = MqttOptions::new(id.as_str(), "127.0.0.1", broker.port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(topics::MAX_PACKET_BYTES, topics::MAX_PACKET_BYTES)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
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
                    Err(e) => {
                        eprintln!("test gateway: MQTT connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
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

    /// Publishes a signed batch of `readings` on the gateway's readings topic, again every 2 s
    /// (as a gateway does until it has a receipt) for up to `limit`; returns the receipt,
    /// verified against the provider's key.
    async fn deliver(
        &mut self,
        batch_id: &str,
        readings: Vec<Reading>,
        provider: &VerifyingKey,
        limit: Duration,
    ) -> Option<Receipt> {
        let batch = ReadingBatch {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: self.id.clone(),
            batch_id: batch_id.parse().unwrap(),
            created_at: Utc::now(),
            readings,
        };
        let frame = tm_protocol::seal(
            MessageKind::ReadingBatch,
            self.id.as_str(),
            &tm_protocol::encode(&batch),
            &self.key,
        );
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            self.client
                .publish(
                    topics::readings(&self.id),
                    QoS::AtLeastOnce,
                    false,
                    frame.clone(),
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
}

impl Drop for GatewayClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `n` blood-pressure readings measured now, distinct from those of other `series`.
fn readings(series: u8, n: u8) -> Vec<Reading> {
    (0..n)
        .map(|i| {
            fixtures::reading(
                "2A35",
                &fixtures::bp_frame(110 + i, 70 + series, 90, 60 + series),
                fixtures::omron_cuff(),
                Utc::now().fixed_offset(),
                TimeQuality::DeviceSynced,
            )
        })
        .collect()
}

const BATCH_1: &str = "tls-batch-1";
const BATCH_2: &str = "tls-batch-2";
const BATCH_3: &str = "tls-batch-3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_ingests_over_mutual_tls_and_refuses_a_broker_of_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = Broker::start(&pki);
    let (gateway_key, _) = SigningKey::generate().unwrap();
    let gateway = GatewayId::new("gw-tls-1").unwrap();
    let provider_key = register(dir.path(), &gateway, &gateway_key).await;
    let identity = format!(
        "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        pki.file("provider.pem").display(),
        pki.file("provider.key").display()
    );

    // Trusting the broker's CA, with its certificate: connected, the batch gets its receipt.
    let config = provider_config(
        dir.path(),
        broker.port,
        &format!("ca_file = \"{}\"\n{identity}", pki.right_ca.display()),
    );
    let provider = Provider::start(&config, dir.path().join("provider-1.log"));
    provider.wait_for_log("MQTT ingest connected");
    let mut gw = GatewayClient::connect(&pki, &broker, gateway, gateway_key).await;
    let sent = readings(1, 5);
    let receipt = gw
        .deliver(
            BATCH_1,
            sent.clone(),
            &provider_key,
            Duration::from_secs(20),
        )
        .await
        .expect("a receipt from the provider");
    assert_eq!(receipt.batch_id.to_string(), BATCH_1);
    assert!(receipt.rejected.is_empty(), "{:?}", receipt.rejected);
    let mut accepted: Vec<_> = receipt.accepted.iter().map(ToString::to_string).collect();
    let mut expected: Vec<_> = sent.iter().map(|r| r.reading_id.to_string()).collect();
    accepted.sort();
    expected.sort();
    assert_eq!(accepted, expected);
    assert_eq!(stored(dir.path()).await, 5);
    drop(provider);

    // Trusting another CA: the handshake is refused and logged; nothing arrives.
    let config = provider_config(
        dir.path(),
        broker.port,
        &format!("ca_file = \"{}\"\n{identity}", pki.wrong_ca.display()),
    );
    let provider = Provider::start(&config, dir.path().join("provider-2.log"));
    provider.wait_for_log("MQTT ingest connection failed: TLS refused");
    assert!(
        gw.deliver(
            BATCH_2,
            readings(2, 5),
            &provider_key,
            Duration::from_secs(4)
        )
        .await
        .is_none(),
        "a receipt came from a provider that must not be connected"
    );
    assert_eq!(stored(dir.path()).await, 5);
    let log = provider.log();
    assert!(!log.contains("MQTT ingest connected"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
    drop(provider);

    // The right CA but no client certificate: the broker does not admit it.
    let config = provider_config(
        dir.path(),
        broker.port,
        &format!("ca_file = \"{}\"\n", pki.right_ca.display()),
    );
    let provider = Provider::start(&config, dir.path().join("provider-3.log"));
    provider.wait_for_log("MQTT ingest connection failed: TLS refused");
    assert!(
        gw.deliver(
            BATCH_3,
            readings(3, 5),
            &provider_key,
            Duration::from_secs(4)
        )
        .await
        .is_none(),
        "a receipt came from a provider without a client certificate"
    );
    assert_eq!(stored(dir.path()).await, 5);
    let log = provider.log();
    assert!(!log.contains("MQTT ingest connected"), "{log}");
    // TLS 1.3 reports the missing certificate after the handshake, TLS 1.2 during it.
    assert!(
        log.contains("CertificateRequired") || log.contains("HandshakeFailure"),
        "{log}"
    );
}

/// Runs `tm-provider serve` with `config`: (whether it exited successfully, its stderr). A
/// provider still running after 20 s is killed and counts as a successful start.
fn start_outcome(config: &Path) -> (bool, String) {
    let log = config.with_extension("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tm-provider"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    (exited.is_none_or(|s| s.success()), stderr)
}

#[test]
fn tls_settings_that_cannot_work_stop_the_start_naming_the_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // No broker is needed: these fail before any connection.
    let port = free_port();

    let config = provider_config(dir.path(), port, "");
    let (ok, stderr) = start_outcome(&config);
    assert!(!ok && stderr.contains("mqtt.ca_file"), "{stderr}");

    let config = provider_config(
        dir.path(),
        port,
        &format!(
            "ca_file = \"{}\"\nclient_cert_file = \"{}\"\n",
            pki.right_ca.display(),
            pki.file("provider.pem").display()
        ),
    );
    let (ok, stderr) = start_outcome(&config);
    assert!(!ok && stderr.contains("mqtt.client_key_file"), "{stderr}");

    let config = provider_config(
        dir.path(),
        port,
        &format!(
            "ca_file = \"{}\"\n",
            dir.path().join("absent.pem").display()
        ),
    );
    let (ok, stderr) = start_outcome(&config);
    assert!(
        !ok && stderr.contains("mqtt.ca_file") && stderr.contains("absent.pem"),
        "{stderr}"
    );

    let key = pki.file("provider.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = provider_config(
        dir.path(),
        port,
        &format!(
            "ca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            pki.right_ca.display(),
            pki.file("provider.pem").display(),
            key.display()
        ),
    );
    let (ok, stderr) = start_outcome(&config);
    assert!(
        !ok && stderr.contains("mqtt.client_key_file")
            && stderr.contains("readable by other users"),
        "{stderr}"
    );
}
