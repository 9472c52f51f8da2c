//! The data path over TLS (rustls with ring on both ends), with a certificate authority made by
//! the test: HTTPS to the provider's ingest behind a TLS listener, and MQTT through a mosquitto
//! TLS listener. An agent trusting another CA refuses the server (no reading reaches the
//! provider, the rows stay in its outbox); the same agent trusting the right CA delivers every
//! reading exactly once.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::serve::Listener as _;
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tm_protocol::Transport;

const COUNT: u32 = 600;

/// A CA certificate (PEM file) and its issuer.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem_file: PathBuf,
}

fn test_ca(dir: &Path, name: &str) -> TestCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let pem_file = dir.join(format!("{name}.pem"));
    std::fs::write(&pem_file, issuer.pem()).unwrap();
    TestCa { issuer, pem_file }
}

/// A server certificate for 127.0.0.1 signed by `ca`: (certificate file, key file).
fn server_cert(dir: &Path, ca: &TestCa) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

/// Rewrites the agent's configuration to trust `ca`.
fn trust(gw: &GatewaySide, ca: &TestCa, extra: &str) {
    std::fs::write(
        &gw.config,
        format!(
            "state_dir = \"{}\"\nlog_level = \"warn\"\n[sync]\nca_file = \"{}\"\n{extra}",
            gw.dir.display(),
            ca.pem_file.display()
        ),
    )
    .unwrap();
}

/// Waits until the agent has stashed all `COUNT` readings, then checks that none reached the
/// provider for a while.
async fn assert_nothing_delivered(gw: &GatewaySide, provider: &ProviderSide) {
    let stashed = eventually(Duration::from_secs(30), || async {
        gw.status()["backlog"] == COUNT
    })
    .await;
    assert!(stashed, "readings not stashed: {}", gw.status());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        provider.count().await,
        0,
        "data went to an untrusted server"
    );
    assert_eq!(
        gw.status()["backlog"],
        COUNT,
        "rows must stay in the outbox"
    );
}

/// A TLS listener for axum: handshakes with the test's server certificate, counting failures.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    refused: Arc<AtomicUsize>,
}

impl TlsListener {
    async fn bind(cert_file: &Path, key_file: &Path) -> Self {
        let chain = CertificateDer::pem_file_iter(cert_file)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key_file).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self {
            tcp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            refused: Arc::default(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            match self.acceptor.accept(tcp).await {
                Ok(tls) => return (tls, addr),
                Err(_) => {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_trusts_only_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong) = (
        test_ca(dir.path(), "right-ca"),
        test_ca(dir.path(), "wrong-ca"),
    );
    let (cert, key) = server_cert(dir.path(), &right);
    let gw = GatewaySide::new(dir.path(), "");
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let listener = TlsListener::bind(&cert, &key).await;
    let (addr, refused) = (listener.local_addr().unwrap(), listener.refused.clone());
    let router = tm_provider::ingest::http::routes(provider.ingest.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    gw.enroll(&provider.key, Transport::Https, &format!("https://{addr}"));
    let timing = "backoff_initial_ms = 50\nbackoff_max_ms = 300\n";

    trust(&gw, &wrong, timing);
    let mut agent = gw.spawn_agent(COUNT, 0);
    assert_nothing_delivered(&gw, &provider).await;
    assert!(
        refused.load(Ordering::SeqCst) > 0,
        "the agent never tried the server"
    );
    let error = gw.status()["last_error"].as_str().unwrap_or("").to_owned();
    assert!(!error.is_empty(), "the refusal is visible in the status");
    kill(&mut agent);

    trust(&gw, &right, timing);
    let mut agent = gw.spawn_agent(COUNT, 0);
    assert_all_delivered(&gw, &provider, COUNT, Duration::from_secs(60)).await;
    kill(&mut agent);
}

/// mosquitto with a plain listener (the provider's subscriber) and a TLS listener (gateways).
struct TlsBroker {
    child: Child,
    plain_port: u16,
    tls_port: u16,
}

impl TlsBroker {
    fn start(dir: &Path, cert: &Path, key: &Path) -> Self {
        let (plain_port, tls_port) = (free_port(), free_port());
        let conf = dir.join("mosquitto-tls.conf");
        std::fs::write(
            &conf,
            format!(
                "allow_anonymous true\npersistence false\nmax_inflight_messages 64\n\
                 listener {plain_port} 127.0.0.1\n\
                 listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                cert.display(),
                key.display()
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
        wait_for_port(plain_port);
        wait_for_port(tls_port);
        Self {
            child,
            plain_port,
            tls_port,
        }
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_trusts_only_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong) = (
        test_ca(dir.path(), "right-ca"),
        test_ca(dir.path(), "wrong-ca"),
    );
    let (cert, key) = server_cert(dir.path(), &right);
    let broker = TlsBroker::start(dir.path(), &cert, &key);
    let gw = GatewaySide::new(dir.path(), "");
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let stop = provider.serve_mqtt(broker.plain_port);
    gw.enroll(
        &provider.key,
        Transport::Mqtt,
        &format!("mqtts://127.0.0.1:{}", broker.tls_port),
    );
    let timing = "backoff_initial_ms = 50\nbackoff_max_ms = 300\nreceipt_timeout_ms = 2000\n";

    trust(&gw, &wrong, timing);
    let mut agent = gw.spawn_agent(COUNT, 0);
    assert_nothing_delivered(&gw, &provider).await;
    kill(&mut agent);

    trust(&gw, &right, timing);
    let mut agent = gw.spawn_agent(COUNT, 0);
    assert_all_delivered(&gw, &provider, COUNT, Duration::from_secs(60)).await;
    kill(&mut agent);
    stop.cancel();
}
