//! The data path over TLS (rustls with ring on both ends), with a certificate authority made by
//! the test: HTTPS to the provider's own TLS listener (`[tls]`), and MQTT through a mosquitto
//! TLS listener that both the agent and the provider's subscriber (`[mqtt] url = "mqtts://..."`)
//! connect to. An agent trusting another CA refuses the server (no reading reaches the
//! provider, the rows stay in its outbox); the same agent trusting the right CA delivers every
//! reading exactly once. On the provider's side, a subscriber trusting another CA, or one
//! without a client certificate on a broker that requires one, ingests nothing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pki::TestCa;
use common::*;
use tm_protocol::Transport;
use tm_provider::http::tls::TlsSection;

const COUNT: u32 = 600;

/// The CA the servers' certificates come from, another one, and a server certificate and key
/// signed by the first.
fn two_cas(dir: &Path) -> (TestCa, TestCa, PathBuf, PathBuf) {
    let (right, wrong) = (TestCa::new(dir, "right-ca"), TestCa::new(dir, "wrong-ca"));
    let (cert, key) = right.server_cert(dir);
    (right, wrong, cert, key)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_trusts_only_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong, cert, key) = two_cas(dir.path());
    let gw = GatewaySide::new(dir.path(), "");
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    // The provider's own HTTPS listener (`[tls]`).
    let certificates = tm_provider::http::tls::Certificates::load(TlsSection {
        cert_file: cert,
        key_file: key,
    })
    .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let router = tm_provider::ingest::http::routes(provider.ingest.clone()).into_router();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tm_provider::http::serve_with(
        tcp,
        Some(certificates),
        router,
        stop.clone(),
    ));
    gw.enroll(&provider.key, Transport::Https, &format!("https://{addr}"));
    let timing = "backoff_initial_ms = 50\nbackoff_max_ms = 300\n";

    trust(&gw, &wrong, timing);
    let mut agent = gw.spawn_agent(COUNT, 0);
    assert_nothing_delivered(&gw, &provider).await;
    // The agent tried the server (it is the only one) and says why it failed.
    let error = gw.status()["last_error"].as_str().unwrap_or("").to_owned();
    assert!(!error.is_empty(), "the refusal is visible in the status");
    kill(&mut agent);

    trust(&gw, &right, timing);
    let mut agent = gw.spawn_agent(COUNT, 0);
    assert_all_delivered(&gw, &provider, COUNT, Duration::from_secs(60)).await;
    kill(&mut agent);
    stop.cancel();
}

/// mosquitto with one TLS listener presenting `cert`; with `client_ca`, it admits only clients
/// presenting a certificate issued by that CA (`require_certificate true`).
fn tls_broker(dir: &Path, cert: &Path, key: &Path, client_ca: Option<&Path>) -> Mosquitto {
    let broker = Mosquitto::builder()
        .without_plain()
        .config("max_inflight_messages 64")
        .tls(cert, key);
    match client_ca {
        Some(ca) => broker.client_ca(ca),
        None => broker,
    }
    .start(dir)
}

/// The provider's `[mqtt]` section for `broker`, trusting `ca`, with a client certificate when
/// given.
fn provider_mqtt(broker: &Mosquitto, ca: &TestCa, identity: Option<&(PathBuf, PathBuf)>) -> String {
    let mut section = format!(
        "url = \"{}\"\nclient_id = \"tm-provider-test\"\nca_file = \"{}\"\n",
        broker.tls_url(),
        ca.pem_file.display()
    );
    if let Some((cert, key)) = identity {
        section += &format!(
            "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        );
    }
    section
}

/// Both ends over the broker's TLS listener: the gateway trusting another CA delivers nothing;
/// trusting the right one, every reading reaches the provider (subscribed through the same
/// listener) exactly once, each batch settled by the provider's receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_trusts_only_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong, cert, key) = two_cas(dir.path());
    let broker = tls_broker(dir.path(), &cert, &key, None);
    let gw = GatewaySide::new(dir.path(), "");
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let stop = provider.serve_mqtt_configured(&provider_mqtt(&broker, &right, None));
    gw.enroll(&provider.key, Transport::Mqtt, &broker.tls_url());
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

/// The provider's side of a broker that requires client certificates: a provider trusting
/// another CA, and one trusting the right CA but presenting no certificate, ingest nothing
/// (the gateway's rows stay in its outbox); with the right CA and its certificate, every
/// reading arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_subscribes_over_mutual_tls_only_with_the_right_ca_and_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong, cert, key) = two_cas(dir.path());
    let broker = tls_broker(dir.path(), &cert, &key, Some(&right.pem_file));
    let provider_identity = right.client_cert(dir.path(), "provider-client");
    let (gw_cert, gw_key) = right.client_cert(dir.path(), "gateway-client");
    let gw = GatewaySide::new(dir.path(), "");
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    gw.enroll(&provider.key, Transport::Mqtt, &broker.tls_url());
    trust(
        &gw,
        &right,
        &format!(
            "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n\
             backoff_initial_ms = 50\nbackoff_max_ms = 300\nreceipt_timeout_ms = 1000\n",
            gw_cert.display(),
            gw_key.display()
        ),
    );
    let mut agent = gw.spawn_agent(COUNT, 0);

    let stop =
        provider.serve_mqtt_configured(&provider_mqtt(&broker, &wrong, Some(&provider_identity)));
    assert_nothing_delivered(&gw, &provider).await;
    stop.cancel();

    let stop = provider.serve_mqtt_configured(&provider_mqtt(&broker, &right, None));
    assert_nothing_delivered(&gw, &provider).await;
    stop.cancel();

    let stop =
        provider.serve_mqtt_configured(&provider_mqtt(&broker, &right, Some(&provider_identity)));
    assert_all_delivered(&gw, &provider, COUNT, Duration::from_secs(60)).await;
    kill(&mut agent);
    stop.cancel();
}
