//! The provider side of a benchmark, on loopback in this process: a store with one accepted
//! session and the gateway registered on it, the real ingest serving HTTPS on its own TLS
//! listener or subscribing to a mosquitto started for the run (the gateway on its TLS
//! listener), a CA made for the run, and the gateway's state directory, configuration and
//! enrollment written as `tm-gateway enroll` would. The agent itself is the caller's child
//! process, so its figures are its own.
//!
//! Shared by the benchmarks (`#[path]` modules): each uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use tm_protocol::{GatewayId, SigningKey, SyncSettings, Transport};
use tm_testkit::mosquitto::Mosquitto;
use tm_testkit::pki;

/// The provider and the gateway's files of one run; stopped when dropped.
pub struct Loopback {
    /// Holds everything of the run; removed when dropped.
    pub dir: tempfile::TempDir,
    /// The gateway's state directory.
    pub state: PathBuf,
    /// The gateway's configuration file.
    pub config: PathBuf,
    /// The provider's store.
    pub db: tm_provider::db::Db,
    cancel: tokio_util::sync::CancellationToken,
    _broker: Option<Mosquitto>,
}

impl Loopback {
    /// Sets up the gateway's files (with `extra` appended to its configuration), and the
    /// provider for `transport`, serving. `before_serving` gets the outbox's path once the
    /// gateway's state directory and key exist, before the provider listens (a benchmark fills
    /// the outbox there); what it returns is returned.
    pub async fn start<T, F: std::future::Future<Output = T>>(
        transport: Transport,
        extra: &str,
        before_serving: impl FnOnce(PathBuf) -> F,
    ) -> (Self, T) {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("gw");
        std::fs::create_dir_all(&state).unwrap();
        let (gw_key, _) = SigningKey::load_or_create(&state.join("gateway.key")).unwrap();
        let gw = GatewayId::new("gw-bench").unwrap();
        let ca = pki::TestCa::new(dir.path(), "bench-ca");
        let (cert_file, key_file) = ca.server_cert(dir.path());
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\nlog_level = \"warn\"\n[store]\nquota_mb = 8192\n\
                 [sync]\nca_file = \"{}\"\n{extra}",
                state.display(),
                ca.pem_file.display(),
            ),
        )
        .unwrap();

        let (db, provider_key) = provider_store(dir.path(), "provider", &gw, &gw_key).await;
        let ingest = tm_provider::ingest::Ingest::new(db.clone(), provider_key.clone());
        let cancel = tokio_util::sync::CancellationToken::new();
        let before = before_serving(state.join(tm_gateway::store::FILE_NAME)).await;

        let mut broker = None;
        let (https_url, mqtt_url) = match transport {
            Transport::Https => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let router = tm_provider::ingest::http::routes(ingest.clone()).into_router();
                let certificates = tm_provider::http::tls::Certificates::load(
                    tm_provider::http::tls::TlsSection {
                        cert_file,
                        key_file,
                    },
                )
                .unwrap();
                tokio::spawn(tm_provider::http::serve_with(
                    listener,
                    Some(certificates),
                    router,
                    cancel.clone(),
                ));
                (format!("https://{addr}"), None)
            }
            Transport::Mqtt => {
                // The provider subscribes on a loopback listener, the gateway publishes over
                // TLS.
                let mosquitto = Mosquitto::builder()
                    .config("max_inflight_messages 64")
                    .tls(&cert_file, &key_file)
                    .start(dir.path());
                let (port, tls_port) = (mosquitto.port(), mosquitto.tls_port());
                broker = Some(mosquitto);
                tokio::spawn(tm_provider::ingest::mqtt::run(
                    ingest.clone(),
                    tm_provider::ingest::mqtt::MqttIngestConfig {
                        host: "127.0.0.1".into(),
                        port,
                        client_id: "tm-provider-bench".into(),
                        credentials: None,
                        tls: None,
                    },
                    cancel.clone(),
                ));
                (
                    "http://127.0.0.1:9".into(),
                    Some(format!("mqtts://127.0.0.1:{tls_port}")),
                )
            }
        };
        tm_gateway::enrollment::Enrollment {
            gateway_id: gw,
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
        .save(&state)
        .unwrap();
        (
            Self {
                dir,
                state,
                config,
                db,
                cancel,
                _broker: broker,
            },
            before,
        )
    }

    /// Readings the provider has stored.
    pub async fn stored(&self) -> i64 {
        self.db
            .read(|c| c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0)))
            .await
            .unwrap()
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A provider store in `dir` (`{name}.db`, its key `{name}.key`) with one accepted session,
/// `tm-1`, and the gateway `gw` registered on it with `gw_key`.
pub async fn provider_store(
    dir: &std::path::Path,
    name: &str,
    gw: &GatewayId,
    gw_key: &SigningKey,
) -> (tm_provider::db::Db, Arc<SigningKey>) {
    let db = tm_provider::db::Db::open(&dir.join(format!("{name}.db"))).unwrap();
    let key = tm_provider::keys::load_or_create(&dir.join(format!("{name}.key"))).unwrap();
    let (gw, public) = (gw.clone(), gw_key.verifying_key());
    db.write(move |c| {
        tm_testkit::store::accepted_session(c, "tm-1")?;
        tm_provider::gateways::insert(c, &gw, &public, "tm-1")
    })
    .await
    .unwrap();
    (db, Arc::new(key))
}

/// Peak resident memory of process `pid` (VmHWM), in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    status_kib(pid, "VmHWM:") / 1024.0
}

/// Resident memory of process `pid` now (VmRSS), in MB.
pub fn rss_mb(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:") / 1024.0
}

fn status_kib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Bytes process `pid` ("self" for this one) caused to be written to storage so far
/// (`/proc/PID/io` `write_bytes`).
pub fn write_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: ")?.trim().parse().ok())
        .unwrap_or(0)
}
