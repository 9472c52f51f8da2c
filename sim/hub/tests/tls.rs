//! The emulator against a provider served over HTTPS with a certificate from a private CA:
//! trusting that CA (`ca_file`), the Portal's prescription request gets the provider's answer
//! and the EHR's download matches its metadata; trusting only the system roots, both calls
//! fail and the timeline names the certificate as the cause.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tm_sim_hub::{SimConfig, SimHandle};
use tm_testkit::pki::TestCa;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const DOCUMENT: &[u8] = b"%PDF-1.7 report served over TLS";

/// A TCP listener handing axum only connections whose TLS handshake succeeded.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client refusing the certificate aborts its handshake: wait for the next one.
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Makes a CA (its certificate written to `dir/ca.pem`) and serves, over HTTPS with a
/// certificate it signs for 127.0.0.1, a prescription endpoint (`/rx`, answering with an
/// enrollment page) and a document (`/doc`, ETag `"v1"`). Returns the CA file and the base URL.
async fn https_provider(dir: &Path) -> (PathBuf, String) {
    let ca = TestCa::new(dir, "ca");
    let server = ca.server();

    tm_sim_hub::install_crypto_provider();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server.cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der)),
        )
        .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", tcp.local_addr().unwrap());
    let page = format!("{base}/enroll/1");
    let app = axum::Router::new()
        .route(
            "/rx",
            axum::routing::post(move || async move { axum::Json(json!({"url": page})) }),
        )
        .route(
            "/doc",
            axum::routing::get(|| async { ([("etag", "\"v1\"")], DOCUMENT) }),
        );
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    (ca.pem_file.clone(), base)
}

async fn start_sim(provider: &str, ca_file: Option<PathBuf>) -> SimHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = SimConfig {
        client_id: "prov".into(),
        client_secret: "s3cret".into(),
        provider_url: Some(format!("{provider}/rx")),
        action_url: None,
        fixed_headers: vec![],
        token_ttl: Duration::from_secs(3600),
        ca_file,
    };
    tm_sim_hub::spawn(listener, config).unwrap()
}

/// Prescribes `id` through the control API: the provider's answer as the Portal saw it.
async fn prescribe(sim: &SimHandle, http: &reqwest::Client, id: &str) -> Value {
    http.post(format!("{}/control/prescribe", sim.url()))
        .json(&json!({"telemonitoringId": id, "patientId": "pat-1", "prescriberId": "rx-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Announces the document as an in-progress attachment and waits for the EHR's download event.
async fn download_event(sim: &SimHandle, http: &reqwest::Client, id: &str, uri: &str) -> Value {
    let token: Value = http
        .post(format!("{}/auth/providers", sim.url()))
        .basic_auth("prov", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let carepath = json!({"id": "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure", "version": "1.0.0"});
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(DOCUMENT));
    let attachment = json!({"id": "report", "contentType": "application/pdf", "uri": uri,
        "etag": "\"v1\"", "contentMD5": md5, "contentLength": DOCUMENT.len(),
        "lastModified": "2024-09-30T07:44:17Z"});
    for body in [
        json!({"telemonitoringId": id, "status": "accepted", "carepath": carepath}),
        json!({"telemonitoringId": id, "status": "in-progress", "attachments": [attachment]}),
    ] {
        let answer = http
            .put(format!("{}/prescription", sim.url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    }
    for _ in 0..500 {
        let download = sim.hub.with(|s| {
            s.sessions[id]
                .timeline
                .iter()
                .filter_map(|e| serde_json::to_value(e).ok())
                .find(|e| e["event"] == "download")
        });
        if let Some(d) = download {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the EHR never downloaded {uri}");
}

#[tokio::test]
async fn trusting_the_ca_the_portal_and_the_ehr_reach_the_https_provider() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, provider) = https_provider(dir.path()).await;
    let sim = start_sim(&provider, Some(ca_file)).await;
    let http = reqwest::Client::new();

    let answer = prescribe(&sim, &http, "tm-tls").await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["body"]["url"], format!("{provider}/enroll/1"));

    let download = download_event(&sim, &http, "tm-tls", &format!("{provider}/doc")).await;
    assert_eq!(download["ok"], true, "{download}");
    assert!(sim.hub.with(|h| h.violations.is_empty()));
    sim.shutdown.cancel();
}

#[tokio::test]
async fn without_the_ca_both_calls_fail_on_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca_file, provider) = https_provider(dir.path()).await;
    let sim = start_sim(&provider, None).await;
    let http = reqwest::Client::new();

    let answer = prescribe(&sim, &http, "tm-untrusted").await;
    assert_eq!(
        answer["status"], 0,
        "no answer from an untrusted server: {answer}"
    );
    let why = answer["body"].as_str().unwrap_or_default();
    assert!(why.contains("certificate"), "the cause is named: {why}");

    let download = download_event(&sim, &http, "tm-untrusted", &format!("{provider}/doc")).await;
    assert_eq!(download["ok"], false, "{download}");
    let problems = download["problems"].to_string();
    assert!(problems.contains("certificate"), "{problems}");
    sim.shutdown.cancel();
}

#[tokio::test]
async fn a_ca_file_without_certificates_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let config = SimConfig {
        client_id: "prov".into(),
        client_secret: "s3cret".into(),
        provider_url: None,
        action_url: None,
        fixed_headers: vec![],
        token_ttl: Duration::from_secs(3600),
        ca_file: Some(empty.clone()),
    };
    let error = tm_sim_hub::app_state(config, tokio_util::sync::CancellationToken::new())
        .unwrap_err()
        .to_string();
    assert!(error.contains(&empty.display().to_string()), "{error}");
}
