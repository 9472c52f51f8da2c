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

/// Which store the benchmark's provider keeps its readings in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderStore {
    /// A SQLite file in the run's directory.
    Sqlite,
    /// A PostgreSQL database of its own, on a private server (`tm_testkit::postgres`).
    Postgres,
}

impl ProviderStore {
    /// The name figures are prefixed with.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The provider and the gateway's files of one run; stopped when dropped.
pub struct Loopback {
    /// Holds everything of the run; removed when dropped.
    pub dir: tempfile::TempDir,
    /// The gateway's state directory.
    pub state: PathBuf,
    /// The gateway's configuration file.
    pub config: PathBuf,
    /// The provider's store.
    pub store: tm_provider::store::Store,
    cancel: tokio_util::sync::CancellationToken,
    _broker: Option<Mosquitto>,
    _database: Option<tm_testkit::postgres::Database>,
}

impl Loopback {
    /// Sets up the gateway's files (with `extra` appended to its configuration), and the
    /// provider for `transport`, serving. `before_serving` gets the outbox's path once the
    /// gateway's state directory and key exist, before the provider listens (a benchmark fills
    /// the outbox there); what it returns is returned.
    pub async fn start<T, F: std::future::Future<Output = T>>(
        transport: Transport,
        backend: ProviderStore,
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

        let (store, provider_key, database) =
            provider_store(dir.path(), "provider", backend, &gw, &gw_key).await;
        let ingest = tm_provider::ingest::Ingest::new(store.clone(), provider_key.clone());
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
                        persistent_session: true,
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
                store,
                cancel,
                _broker: broker,
                _database: database,
            },
            before,
        )
    }

    /// Readings the provider has stored.
    pub async fn stored(&self) -> i64 {
        stored(&self.store).await
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Readings `store` holds.
pub async fn stored(store: &tm_provider::store::Store) -> i64 {
    if let Some(pg) = store.postgres() {
        let client = pg.client().await.unwrap();
        return client
            .query_one("SELECT count(*) FROM readings", &[])
            .await
            .unwrap()
            .get(0);
    }
    store
        .sqlite()
        .expect("a SQLite store")
        .read(|c| c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0)))
        .await
        .unwrap()
}

/// A provider store (`{name}.db` in `dir`, or a PostgreSQL database named after `name`; its key
/// `{name}.key` in `dir`) with one accepted session, `tm-1`, and the gateway `gw` registered on
/// it with `gw_key`. The PostgreSQL database lives as long as the returned handle.
pub async fn provider_store(
    dir: &std::path::Path,
    name: &str,
    backend: ProviderStore,
    gw: &GatewayId,
    gw_key: &SigningKey,
) -> (
    tm_provider::store::Store,
    Arc<SigningKey>,
    Option<tm_testkit::postgres::Database>,
) {
    let key = tm_provider::keys::load_or_create(&dir.join(format!("{name}.key"))).unwrap();
    let (gw, public) = (gw.clone(), gw_key.verifying_key());
    if backend == ProviderStore::Sqlite {
        let store = tm_provider::store::Store::open(&dir.join(format!("{name}.db"))).unwrap();
        store
            .sqlite()
            .expect("a SQLite store")
            .write(move |c| {
                tm_testkit::store::accepted_session(c, "tm-1")?;
                tm_provider::store::sqlite::gateways::insert(c, &gw, &public, "tm-1")
            })
            .await
            .unwrap();
        return (store, Arc::new(key), None);
    }
    let db = tm_testkit::postgres::Database::create(&name.replace('-', "_"));
    let settings = tm_provider::store::settings::PostgresSettings::new(
        format!("{}?sslmode=disable", db.url()),
        Some(db.password_file()),
        None,
        Some(16),
    )
    .unwrap();
    let store =
        tm_provider::store::Store::connect(&tm_provider::store::Database::Postgres(settings))
            .await
            .unwrap();
    let client = store
        .postgres()
        .expect("PostgreSQL")
        .client()
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, status, \
             created_at, updated_at) VALUES ('tm-1', 'p-1', 'rx-1', 'accepted', now(), now())",
            &[],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO gateways (gateway_id, public_key, telemonitoring_id, state, enrolled_at) \
             VALUES ($1, $2, 'tm-1', 'active', now())",
            &[&gw.as_str(), &public.as_bytes().as_slice()],
        )
        .await
        .unwrap();
    (store, Arc::new(key), Some(db))
}

/// Peak resident memory of process `pid` (VmHWM), in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    status_kib(pid, "VmHWM:") / 1024.0
}

/// Resident memory of process `pid` now (VmRSS), in MB.
pub fn rss_mb(pid: u32) -> f64 {
    status_kib(pid, "VmRSS:") / 1024.0
}

/// Of the resident memory of process `pid` (MB): its own pages (heap, stacks) and the pages
/// mapped from files (the binary's code and the shared libraries, which the kernel can take
/// back and read again).
pub fn rss_split_mb(pid: u32) -> (f64, f64) {
    (
        status_kib(pid, "RssAnon:") / 1024.0,
        status_kib(pid, "RssFile:") / 1024.0,
    )
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
