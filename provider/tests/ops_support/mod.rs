//! A provider on a real 127.0.0.1:0 listener with the ops token configured, and simulated
//! gateways at the protocol level: enrolled keys in the registry, posting signed heartbeats
//! and reading batches to the HTTPS ingest routes.

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use tm_protocol::{
    Backlog, ClockState, DeviceHealth, DiskUse, GatewayId, Heartbeat, MessageKind, Reading,
    ReadingBatch, SigningKey,
};
use tm_provider::ops::Ops;
use tm_provider::ops::alerts::Transition;
use tm_provider::store::Store;
use tm_testkit::backend::TestStore;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "ops-s3cret-token";
/// The clinical worklist's token.
pub const CLINICAL_TOKEN: &str = "clinical-s3cret-token";
pub const HEART_FAILURE: &str = tm_provider::ops::adherence::HEART_FAILURE;

pub struct Fleet {
    pub base: String,
    pub store: Store,
    pub ops: Ops,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
    /// The provider's store, for checks that read its tables directly.
    pub db: TestStore,
    /// The triage rules and the patients' time zone, for sweeps the test runs itself.
    pub triage: std::sync::Arc<tm_provider::triage::Triage>,
    pub tz: chrono_tz::Tz,
}

/// The provider's configuration in `dir`. Its key files are named in `dir` (where a SQLite
/// store puts them by default; a PostgreSQL store would put them in the working directory,
/// shared by every test).
pub fn config(dir: &std::path::Path, listen: &str) -> String {
    std::fs::write(dir.join("ops-token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.join("clinical-token"), format!("{CLINICAL_TOKEN}\n")).unwrap();
    format!(
        "listen = \"{listen}\"\npublic_url = \"http://{listen}\"\nkey_file = \"{key}\"\n{store}\
         [attachments]\nkey_file = \"{uri_key}\"\n\
         [ops]\ntoken_file = \"{token}\"\nevaluate_interval_s = 3600\n\
         [triage]\ntoken_file = \"{clinical}\"\ninterval_s = 3600\n",
        store = TestStore::in_dir(dir).setting(),
        key = dir.join("provider.key").display(),
        uri_key = dir.join("attachments.key").display(),
        token = dir.join("ops-token").display(),
        clinical = dir.join("clinical-token").display(),
    )
}

/// Starts (or restarts on the same directory) a provider.
pub async fn start(dir: &std::path::Path) -> Fleet {
    tm_provider::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let file: tm_provider::config::ConfigFile = toml::from_str(&config(dir, &addr)).unwrap();
    let assembly = tm_provider::app::assemble(tm_provider::config::Config::try_from(file).unwrap())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(tm_provider::http::serve(
        listener,
        assembly.router(),
        shutdown.clone(),
    ));
    Fleet {
        base: format!("http://{addr}"),
        store: assembly.state.store.clone(),
        ops: assembly.ops,
        shutdown,
        http: reqwest::Client::new(),
        db: TestStore::in_dir(dir),
        triage: assembly.triage.triage.clone(),
        tz: assembly.triage.tz,
    }
}

pub struct Gateway {
    pub id: GatewayId,
    pub key: SigningKey,
    pub session: String,
}

impl Fleet {
    /// Registers a gateway on a new accepted heart-failure session.
    pub async fn gateway(&self, n: u32) -> Gateway {
        let (key, _) = SigningKey::generate().unwrap();
        let id = GatewayId::new(format!("gw-{n}")).unwrap();
        let session = format!("tm-{n}");
        self.db.insert_session(&tm_testkit::store::Session {
            patient: "p",
            carepath: Some((HEART_FAILURE, "1")),
            ..tm_testkit::store::Session::accepted(&session)
        });
        self.db
            .insert_gateway(id.as_str(), key.verifying_key().as_bytes(), &session);
        Gateway { id, key, session }
    }

    /// Posts a signed heartbeat, healthy unless `edit` changes it; returns the HTTP status.
    pub async fn heartbeat(&self, gw: &Gateway, edit: impl FnOnce(&mut Heartbeat)) -> u16 {
        let mut hb = healthy(&gw.id);
        edit(&mut hb);
        let frame = tm_protocol::seal(
            MessageKind::Heartbeat,
            gw.id.as_str(),
            &tm_protocol::encode(&hb),
            &gw.key,
        );
        self.http
            .post(format!(
                "{}{}",
                self.base,
                tm_protocol::routes::http::HEARTBEAT
            ))
            .body(frame)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Posts a signed reading batch; returns the HTTP status.
    pub async fn readings(&self, gw: &Gateway, batch: &str, readings: Vec<Reading>) -> u16 {
        let batch = ReadingBatch {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: gw.id.clone(),
            batch_id: batch.parse().unwrap(),
            created_at: Utc::now(),
            readings,
        };
        let frame = tm_protocol::seal(
            MessageKind::ReadingBatch,
            gw.id.as_str(),
            &tm_protocol::encode(&batch),
            &gw.key,
        );
        self.http
            .post(format!(
                "{}{}",
                self.base,
                tm_protocol::routes::http::READINGS
            ))
            .body(frame)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Runs the evaluator once as if the time were `now`.
    pub async fn evaluate(&self, now: DateTime<Utc>) -> Vec<Transition> {
        tm_provider::ops::evaluator::run_once(&self.store, &self.ops.thresholds, now)
            .await
            .unwrap()
    }

    /// Runs one triage sweep as if the time were `now`.
    pub async fn triage_once(&self, now: DateTime<Utc>) -> tm_provider::triage::sweep::SweepReport {
        tm_provider::triage::sweep::run_once(&self.store, &self.triage, self.tz, now)
            .await
            .unwrap()
    }

    /// `(kind, subject, state)` of every alert row, in id order.
    pub async fn alert_rows(&self) -> Vec<(String, String, String)> {
        self.db
            .rows("SELECT kind, subject, state FROM ops_alerts ORDER BY alert_id")
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
            .collect()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// The JSON an authenticated GET of `path` answers.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
    }
}

pub fn healthy(id: &GatewayId) -> Heartbeat {
    Heartbeat {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: id.clone(),
        sent_at: Utc::now(),
        version: "0.1.0".into(),
        uptime_s: 3600,
        backlog: Backlog {
            depth: 0,
            oldest_age_s: None,
            rejected: 0,
        },
        devices_unreadable: false,
        devices: vec![device("A4:C1:38:00:00:01", "omron-bp", 90)],
        clock: ClockState::Synchronized,
        disk: DiskUse {
            used_bytes: 10 << 20,
            quota_bytes: 100 << 20,
        },
        last_error: None,
        setup: None,
    }
}

pub fn device(address: &str, model: &str, battery: u8) -> DeviceHealth {
    DeviceHealth {
        address: address.into(),
        model: Some(model.into()),
        last_seen: Some(Utc::now()),
        last_reading: Some(Utc::now()),
        battery_pct: Some(battery),
        rssi_dbm: Some(-60),
    }
}

/// Kinds and subjects of the opened transitions, sorted.
pub fn opened(t: &[Transition]) -> Vec<(String, String)> {
    let mut v: Vec<_> = t
        .iter()
        .filter_map(|t| match t {
            Transition::Open(c) => Some((c.kind.as_str().to_owned(), c.subject.clone())),
            Transition::Resolve(_) => None,
        })
        .collect();
    v.sort();
    v
}

/// Kinds and subjects of the resolved transitions, sorted.
pub fn resolved(t: &[Transition]) -> Vec<(String, String)> {
    let mut v: Vec<_> = t
        .iter()
        .filter_map(|t| match t {
            Transition::Resolve(a) => Some((a.kind.clone(), a.subject.clone())),
            Transition::Open(_) => None,
        })
        .collect();
    v.sort();
    v
}
