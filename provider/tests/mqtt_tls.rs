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

mod mqtt_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mqtt_support::{Gateway, Provider, ProviderSetup, register, stored};
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tm_protocol::{GatewayId, SigningKey};
use tm_testkit::mosquitto::Mosquitto;
use tm_testkit::net::free_port;
use tm_testkit::pki::TestCa;
use tm_testkit::process::Spawned;

/// The files of one test: two CAs, the broker's certificate, the clients' certificates.
struct Pki {
    dir: PathBuf,
    right_ca: PathBuf,
    wrong_ca: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let (right, wrong) = (TestCa::new(dir, "right-ca"), TestCa::new(dir, "wrong-ca"));
        right
            .server()
            .write(&dir.join("broker.pem"), &dir.join("broker.key"));
        right.client_cert(dir, "provider");
        right.client_cert(dir, "gateway");
        Self {
            dir: dir.to_path_buf(),
            right_ca: right.pem_file.clone(),
            wrong_ca: wrong.pem_file.clone(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// mosquitto with one TLS listener requiring client certificates of the right CA.
fn broker(pki: &Pki) -> Mosquitto {
    Mosquitto::builder()
        .without_plain()
        .tls(&pki.file("broker.pem"), &pki.file("broker.key"))
        .client_ca(&pki.right_ca)
        .start(&pki.dir)
}

/// Writes the provider's configuration for the broker on `broker_port`; `mqtt` ends the
/// `[mqtt]` section.
fn provider_config(dir: &Path, broker_port: u16, mqtt: &str) -> ProviderSetup {
    let config = dir.join("provider.toml");
    let http_port = free_port();
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
             key_file = \"{key}\"\n{store}\
             [attachments]\nkey_file = \"{uri_key}\"\n\
             [mqtt]\nurl = \"mqtts://127.0.0.1:{broker}\"\nclient_id = \"tm-provider-tls\"\n{mqtt}",
            port = http_port,
            store = tm_testkit::backend::TestStore::in_dir(dir).setting(),
            key = dir.join("provider-signing.key").display(),
            uri_key = dir.join("attachments.key").display(),
            broker = broker_port,
        ),
    )
    .unwrap();
    ProviderSetup { config, http_port }
}

/// The TLS transport of a gateway trusting the right CA and presenting its own certificate.
fn gateway_tls(pki: &Pki) -> Transport {
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
    Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls)))
}

const BATCH_1: &str = "tls-batch-1";
const BATCH_2: &str = "tls-batch-2";
const BATCH_3: &str = "tls-batch-3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_ingests_over_mutual_tls_and_refuses_a_broker_of_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = broker(&pki);
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
        broker.tls_port(),
        &format!("ca_file = \"{}\"\n{identity}", pki.right_ca.display()),
    );
    let provider = Provider::start(&config, dir.path().join("provider-1.log"));
    provider.wait_for_log("MQTT ingest connected").await;
    let mut gw =
        Gateway::connect_over(broker.tls_port(), gateway_tls(&pki), gateway, gateway_key).await;
    let (frame, sent) = gw.batch(BATCH_1, 1, 5);
    let receipt = gw
        .deliver(&frame, &provider_key, Duration::from_secs(20))
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
        broker.tls_port(),
        &format!("ca_file = \"{}\"\n{identity}", pki.wrong_ca.display()),
    );
    let provider = Provider::start(&config, dir.path().join("provider-2.log"));
    provider
        .wait_for_log("MQTT ingest connection failed: TLS refused")
        .await;
    assert!(
        gw.deliver(
            &gw.batch(BATCH_2, 2, 5).0,
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
        broker.tls_port(),
        &format!("ca_file = \"{}\"\n", pki.right_ca.display()),
    );
    let provider = Provider::start(&config, dir.path().join("provider-3.log"));
    provider
        .wait_for_log("MQTT ingest connection failed: TLS refused")
        .await;
    assert!(
        gw.deliver(
            &gw.batch(BATCH_3, 3, 5).0,
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
    let mut child = Spawned::start(
        "tm-provider",
        Command::new(env!("CARGO_BIN_EXE_tm-provider"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    let exited = child.wait_exit(Duration::from_secs(20));
    drop(child);
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
    let (ok, stderr) = start_outcome(&config.config);
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
    let (ok, stderr) = start_outcome(&config.config);
    assert!(!ok && stderr.contains("mqtt.client_key_file"), "{stderr}");

    let config = provider_config(
        dir.path(),
        port,
        &format!(
            "ca_file = \"{}\"\n",
            dir.path().join("absent.pem").display()
        ),
    );
    let (ok, stderr) = start_outcome(&config.config);
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
    let (ok, stderr) = start_outcome(&config.config);
    assert!(
        !ok && stderr.contains("mqtt.client_key_file")
            && stderr.contains("readable by other users"),
        "{stderr}"
    );
}
