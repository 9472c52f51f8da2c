//! Benchmark: heartbeat ingest for a fleet of gateways reporting once a minute, on each store
//! backend.
//!
//! Registers `BENCH_GATEWAYS` (default 10,000) gateways, starts the `tm-provider` binary
//! (`TM_PROVIDER_BIN`, default `target/release/tm-provider`) as its own process(es) on loopback,
//! then sends `BENCH_ROUNDS` (default 3) rounds of one signed heartbeat per gateway (two paired
//! devices each) over HTTP with 32 concurrent clients, as fast as the provider takes them. One
//! round is one minute of the fleet's load. `BENCH_STORE` picks the backends: `sqlite` (one
//! instance on a SQLite file), `postgres` (`BENCH_INSTANCES`, default 2, instances on one
//! PostgreSQL database of a private server, the clients spread over them) or `both` (the
//! default, one after the other). Prints, per backend (`sqlite.` or `postgres.`):
//!
//! - `heartbeats_per_s=<n>`: sustained ingest rate (the fleet needs gateways/60 per second);
//! - `minute_of_fleet_s=<n>`: seconds to ingest one minute's heartbeats;
//! - `metrics_ms=<n>`: one `/metrics` scrape;
//! - `evaluate_ms=<n>`: one alert evaluation over the whole fleet;
//! - `provider_peak_rss_mb=<n>`: the largest instance's peak resident memory (VmHWM).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tm_provider::store::Store;

use chrono::Utc;
use tm_protocol::{
    Backlog, ClockState, DeviceHealth, DiskUse, GatewayId, Heartbeat, MessageKind, SigningKey,
};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn heartbeat(id: &GatewayId, round: u32) -> Heartbeat {
    let device = |n: u8| DeviceHealth {
        address: format!("A4:C1:38:00:00:{n:02X}"),
        model: Some("omron-bp".into()),
        last_seen: Some(Utc::now()),
        last_reading: Some(Utc::now()),
        battery_pct: Some(80),
        rssi_dbm: Some(-62),
    };
    Heartbeat {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: id.clone(),
        sent_at: Utc::now(),
        version: "0.1.0".into(),
        uptime_s: u64::from(round) * 60,
        backlog: Backlog {
            depth: u64::from(round % 3),
            oldest_age_s: Some(30),
            rejected: 0,
        },
        devices_unreadable: false,
        devices: vec![device(1), device(2)],
        clock: ClockState::Synchronized,
        disk: DiskUse {
            used_bytes: 1 << 20,
            quota_bytes: 100 << 20,
        },
        last_error: None,
        setup: None,
    }
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// Where the fleet's store is.
enum Backend {
    Sqlite,
    Postgres(tm_testkit::postgres::Database),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// The provider's `[database]` table.
    fn setting(&self, dir: &Path) -> String {
        match self {
            Self::Sqlite => format!(
                "[database]\npath = {:?}\n",
                dir.join("provider.db").display().to_string()
            ),
            Self::Postgres(db) => format!(
                "[database]\nurl = \"{}?sslmode=disable\"\npassword_file = {:?}\n",
                db.url(),
                db.password_file().display().to_string()
            ),
        }
    }

    async fn open(&self, dir: &Path) -> anyhow::Result<Store> {
        let database = match self {
            Self::Sqlite => tm_provider::store::Database::Sqlite(dir.join("provider.db")),
            Self::Postgres(db) => tm_provider::store::Database::Postgres(
                tm_provider::store::settings::PostgresSettings::new(
                    format!("{}?sslmode=disable", db.url()),
                    Some(db.password_file()),
                    None,
                    Some(4),
                )?,
            ),
        };
        Ok(Store::connect(&database).await?)
    }
}

/// The fleet in the registry: one accepted session and one key per gateway.
async fn register(store: &Store, keys: &[(GatewayId, SigningKey)]) -> anyhow::Result<()> {
    let rows: Vec<(String, String, Vec<u8>)> = keys
        .iter()
        .map(|(id, k)| {
            (
                id.to_string(),
                format!("tm-{id}"),
                k.verifying_key().as_bytes().to_vec(),
            )
        })
        .collect();
    let now = Utc::now();
    if let Some(sqlite) = store.sqlite() {
        sqlite
            .write(move |c| {
                let tx = c.transaction()?;
                for (id, session, key) in &rows {
                    tx.execute(
                        "INSERT INTO sessions VALUES (?1, 'p', 'rx', 'accepted', ?2, '1', ?3, ?3)",
                        rusqlite::params![
                            session,
                            tm_provider::ops::adherence::HEART_FAILURE,
                            now.to_rfc3339()
                        ],
                    )?;
                    tx.execute(
                        "INSERT INTO gateways (gateway_id, public_key, telemonitoring_id, state, \
                         enrolled_at) VALUES (?1, ?2, ?3, 'active', ?4)",
                        rusqlite::params![id, key, session, now.to_rfc3339()],
                    )?;
                }
                tx.commit()
            })
            .await?;
        return Ok(());
    }
    let pg = store.postgres().expect("a PostgreSQL store");
    let client = pg.client().await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let sessions: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    let public_keys: Vec<&[u8]> = rows.iter().map(|r| r.2.as_slice()).collect();
    client
        .execute(
            "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, status, \
             carepath_id, carepath_version, created_at, updated_at) \
             SELECT s, 'p', 'rx', 'accepted', $2, '1', $3, $3 FROM UNNEST($1::text[]) AS s",
            &[&sessions, &tm_provider::ops::adherence::HEART_FAILURE, &now],
        )
        .await?;
    client
        .execute(
            "INSERT INTO gateways (gateway_id, public_key, telemonitoring_id, state, enrolled_at) \
             SELECT g, k, s, 'active', $4 FROM UNNEST($1::text[], $2::bytea[], $3::text[]) AS t(g, k, s)",
            &[&ids, &public_keys, &sessions, &now],
        )
        .await?;
    Ok(())
}

/// Figures of one backend.
struct Figures {
    heartbeats: u64,
    rate: f64,
    slowest_round: Duration,
    metrics_ms: u128,
    evaluate_ms: u128,
    peak_rss_mb: f64,
}

async fn run(
    backend: &Backend,
    instances: usize,
    keys: Arc<Vec<(GatewayId, SigningKey)>>,
    rounds: u32,
    bin: &str,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let store = backend.open(dir.path()).await?;
    register(&store, &keys).await?;
    drop(store);
    std::fs::write(dir.path().join("ops-token"), "bench-token")?;
    let mut children = Vec::new();
    let mut bases = Vec::new();
    // One after the other: the first creates the key files the others load.
    for i in 0..instances {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join(format!("provider-{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
                 key_file = \"{keys}/provider.key\"\n{database}\
                 [attachments]\nkey_file = \"{keys}/attachments.key\"\n\
                 [ops]\ntoken_file = \"{keys}/ops-token\"\nevaluate_interval_s = 3600\n",
                keys = dir.path().display(),
                database = backend.setting(dir.path()),
            ),
        )?;
        let child = tokio::process::Command::new(bin)
            .args(["serve", "--config"])
            .arg(&config)
            .env("TM_LOG", "warn")
            .kill_on_drop(true)
            .spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut up = false;
        for _ in 0..400 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::ensure!(up, "instance {i} did not start");
        children.push(child);
        bases.push(base);
    }
    let http = reqwest::Client::new();
    let urls: Arc<Vec<String>> = Arc::new(
        bases
            .iter()
            .map(|b| format!("{b}{}", tm_protocol::routes::http::HEARTBEAT))
            .collect(),
    );
    let mut total = 0u64;
    let started = Instant::now();
    let mut slowest_round = Duration::ZERO;
    for round in 0..rounds {
        let round_start = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..32usize {
            let (keys, urls, http) = (keys.clone(), urls.clone(), http.clone());
            workers.spawn(async move {
                let url = &urls[w % urls.len()];
                let mut sent = 0u64;
                for (id, key) in keys.iter().skip(w).step_by(32) {
                    let frame = tm_protocol::seal(
                        MessageKind::Heartbeat,
                        id.as_str(),
                        &tm_protocol::encode(&heartbeat(id, round)),
                        key,
                    );
                    let r = http.post(url.as_str()).body(frame).send().await?;
                    anyhow::ensure!(r.status() == 204, "heartbeat refused: {}", r.status());
                    sent += 1;
                }
                Ok(sent)
            });
        }
        while let Some(r) = workers.join_next().await {
            total += r??;
        }
        slowest_round = slowest_round.max(round_start.elapsed());
    }
    let elapsed = started.elapsed().as_secs_f64();

    let scrape = Instant::now();
    let r = http
        .get(format!("{}/metrics", bases[0]))
        .bearer_auth("bench-token")
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "metrics: {}", r.status());
    let metrics_ms = scrape.elapsed().as_millis();
    let store = backend.open(dir.path()).await?;
    let thresholds = tm_provider::ops::Thresholds::default();
    let evaluate = Instant::now();
    tm_provider::ops::evaluator::run_once(&store, &thresholds, Utc::now()).await?;
    let evaluate_ms = evaluate.elapsed().as_millis();
    let peak_rss_mb = children
        .iter()
        .map(|c| peak_rss_mb(c.id().unwrap_or(0)))
        .fold(0.0, f64::max);
    for mut child in children {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = total as f64 / elapsed;
    Ok(Figures {
        heartbeats: total,
        rate,
        slowest_round,
        metrics_ms,
        evaluate_ms,
        peak_rss_mb,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tm_provider::install_crypto_provider();
    let gateways = env_u32("BENCH_GATEWAYS", 10_000);
    let rounds = env_u32("BENCH_ROUNDS", 3);
    let instances = usize::try_from(env_u32("BENCH_INSTANCES", 2))?;
    let bin =
        std::env::var("TM_PROVIDER_BIN").unwrap_or_else(|_| "target/release/tm-provider".into());
    let which = std::env::var("BENCH_STORE").unwrap_or_else(|_| "both".into());
    let keys: Vec<(GatewayId, SigningKey)> = (0..gateways)
        .map(|n| {
            Ok((
                GatewayId::new(format!("gw-{n}"))?,
                SigningKey::generate()?.0,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let keys = Arc::new(keys);
    let mut backends = Vec::new();
    if matches!(which.as_str(), "sqlite" | "both") {
        backends.push((Backend::Sqlite, 1));
    }
    if matches!(which.as_str(), "postgres" | "both") {
        let db = tm_testkit::postgres::Database::create("bench_heartbeats");
        backends.push((Backend::Postgres(db), instances));
    }
    anyhow::ensure!(
        !backends.is_empty(),
        "BENCH_STORE is sqlite, postgres or both"
    );
    println!(
        "gateways={gateways} rounds={rounds} needed_per_s={:.0}",
        f64::from(gateways) / 60.0
    );
    for (backend, instances) in &backends {
        let f = run(backend, *instances, keys.clone(), rounds, &bin).await?;
        let name = backend.name();
        println!("{name}.instances={instances}");
        println!("{name}.heartbeats={}", f.heartbeats);
        println!("{name}.heartbeats_per_s={:.0}", f.rate);
        println!(
            "{name}.minute_of_fleet_s={:.1}",
            f.slowest_round.as_secs_f64()
        );
        println!("{name}.metrics_ms={}", f.metrics_ms);
        println!("{name}.evaluate_ms={}", f.evaluate_ms);
        println!("{name}.provider_peak_rss_mb={:.1}", f.peak_rss_mb);
    }
    Ok(())
}
