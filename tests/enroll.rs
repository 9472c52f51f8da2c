//! `tm-gateway enroll` (the real binary) against a real provider and the Portal/HUB emulator:
//! the nurse's code enrolls the gateway, its enrollment file is saved, and the HUB sees the
//! session accepted. Over plain HTTP, and over HTTPS with a certificate from a private CA: the
//! gateway trusts it only through `[sync] ca_file`, and a refused handshake leaves the code
//! unused.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::pki::TestCa;
use serde_json::json;
use tm_provider::app::Assembly;
use tm_provider::http::tls::{Certificates, TlsSection};
use tm_sim_hub::{SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

const HEART_FAILURE_FORM: &str =
    "carepath=https%3A%2F%2Fhl7belgium.org%2Ffhir%2Fpatient-monitoring%2Fcarepath%2Fheart-failure";

/// The emulator and an in-process provider on loopback, over HTTPS when `ca` is given (its
/// certificate signed by `ca`, which the emulator and the test's client trust).
struct Setup {
    provider: String,
    sim: SimHandle,
    assembly: Assembly,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Setup {
    async fn start(dir: &Path, ca: Option<&TestCa>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let scheme = if ca.is_some() { "https" } else { "http" };
        let provider = format!("{scheme}://{addr}");
        let sim = tm_sim_hub::spawn(
            sim_listener,
            SimConfig {
                client_id: "prov".into(),
                client_secret: "s3cret".into(),
                provider_url: Some(format!(
                    "{provider}{}",
                    tm_provider::portal::PRESCRIPTION_ROUTE
                )),
                action_url: None,
                fixed_headers: vec![],
                token_ttl: Duration::from_secs(3600),
                ca_file: ca.map(|c| c.pem_file.clone()),
            },
        )
        .unwrap();
        std::fs::write(dir.join("secret"), "s3cret").unwrap();
        let text = format!(
            "listen = \"{addr}\"\npublic_url = \"{provider}\"\ndatabase = \"{store}\"\n\
             [[portal.prescribers]]\nid = \"rx-1\"\ndpa_signed = true\n\
             [hub]\nurl = \"{hub}\"\nclient_id = \"prov\"\nclient_secret_file = \"{secret}\"\nretry_initial_ms = 20\nretry_max_ms = 100\n",
            store = dir.join("p.db").display(),
            hub = sim.url(),
            secret = dir.join("secret").display(),
        );
        let file: tm_provider::config::ConfigFile = toml::from_str(&text).unwrap();
        let mut assembly = tm_provider::app::assemble(file.try_into().unwrap())
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(assembly.outbox.take().unwrap().run(shutdown.clone()));
        let router = tm_provider::portal::routes(assembly.state.clone()).into_router();
        let certificates = ca.map(|ca| {
            let (cert_file, key_file) = ca.server_cert(dir);
            Certificates::load(TlsSection {
                cert_file,
                key_file,
            })
            .unwrap()
        });
        tokio::spawn(tm_provider::http::serve_with(
            listener,
            certificates,
            router,
            shutdown.clone(),
        ));
        let mut http = reqwest::Client::builder();
        if let Some(ca) = ca {
            let pem = std::fs::read(&ca.pem_file).unwrap();
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        Self {
            provider,
            sim,
            assembly,
            http: http.build().unwrap(),
            shutdown,
        }
    }

    /// The physician prescribes `id`; the nurse keeps the carepath and reads the one-time code.
    async fn code(&self, id: &str) -> String {
        let answer: serde_json::Value = self
            .http
            .post(format!("{}/control/prescribe", self.sim.url()))
            .json(&json!({"telemonitoringId": id, "patientId": "pat-g", "prescriberId": "rx-1"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = answer["body"]["url"]
            .as_str()
            .unwrap_or_else(|| panic!("no enrollment page: {answer}"))
            .to_owned();
        assert!(url.starts_with(&self.provider), "{url}");
        let html = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(HEART_FAILURE_FORM)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let start = html.find("id=\"code\">").unwrap() + 10;
        html[start..start + 8].to_owned()
    }

    /// Waits until the HUB saw session `id` accepted, with no violation.
    async fn assert_accepted(&self, id: &str) {
        let status = || {
            self.sim
                .hub
                .with(|h| h.sessions.get(id).map(|s| s.status.clone()))
        };
        for _ in 0..500 {
            if status().as_deref() == Some("accepted") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(status().as_deref(), Some("accepted"));
        assert!(self.sim.hub.with(|h| h.violations.is_empty()));
    }

    fn provider_key(&self) -> Vec<u8> {
        self.assembly
            .state
            .portal
            .provider_key
            .verifying_key()
            .as_bytes()
            .to_vec()
    }

    fn stop(&self) {
        self.shutdown.cancel();
        self.sim.shutdown.cancel();
    }
}

/// A gateway's state directory and configuration file (`sync_section` ends the file).
fn gateway_config(dir: &Path, sync_section: &str) -> (PathBuf, PathBuf) {
    let state_dir = dir.join("gw");
    std::fs::create_dir_all(&state_dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nlog_level = \"info\"\n[ble]\nadapter = \"hci0\"\n{sync_section}",
            state_dir.display()
        ),
    )
    .unwrap();
    (state_dir, config)
}

/// `tm-gateway --config CONFIG enroll --provider PROVIDER --code CODE`.
async fn enroll(config: &Path, provider: &str, code: &str) -> Output {
    let (config, provider, code) = (config.to_owned(), provider.to_owned(), code.to_owned());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
            .arg("--config")
            .arg(&config)
            .args(["enroll", "--provider", &provider, "--code", &code])
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_gateway_enrolls_with_the_nurses_code() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::start(dir.path(), None).await;
    let code = setup.code("tm-g").await;
    let (state_dir, config) = gateway_config(dir.path(), "");

    let out = enroll(&config, &setup.provider, &code).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enrollment = tm_gateway::enrollment::Enrollment::load(&state_dir).unwrap();
    assert_eq!(enrollment.provider_public_key, setup.provider_key());
    // The code is single use: a second run is refused as bad input.
    let again = enroll(&config, &setup.provider, &code).await;
    assert_eq!(again.status.code(), Some(2));

    setup.assert_accepted("tm-g").await;
    setup.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_gateway_trusts_the_provider_through_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "provider-ca");
    let setup = Setup::start(dir.path(), Some(&ca)).await;
    assert!(setup.provider.starts_with("https://"), "{}", setup.provider);
    let code = setup.code("tm-tls").await;

    // Without the CA the handshake is refused: nothing is saved, the reason and the setting
    // that fixes it are named, and the code is still unused.
    let (state_dir, config) = gateway_config(dir.path(), "");
    let refused = enroll(&config, &setup.provider, &code).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(stderr.contains("ca_file"), "{stderr}");
    assert!(!state_dir.join(tm_gateway::enrollment::FILE_NAME).exists());

    // With `[sync] ca_file` the same code enrolls the gateway.
    let (state_dir, config) = gateway_config(
        dir.path(),
        &format!("[sync]\nca_file = \"{}\"\n", ca.pem_file.display()),
    );
    let out = enroll(&config, &setup.provider, &code).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enrollment = tm_gateway::enrollment::Enrollment::load(&state_dir).unwrap();
    assert_eq!(enrollment.provider_public_key, setup.provider_key());
    assert_eq!(enrollment.provider_url, setup.provider);
    assert_eq!(enrollment.sync.https_url, setup.provider);

    setup.assert_accepted("tm-tls").await;
    setup.stop();
}
