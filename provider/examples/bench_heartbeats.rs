//! Benchmark: heartbeat ingest for a fleet of 10,000 gateways reporting once a minute.
//!
//! Registers `BENCH_GATEWAYS` (default 10,000) gateways, starts the `tm-provider` binary
//! (`TM_PROVIDER_BIN`, default `target/release/tm-provider`) as its own process on loopback,
//! then sends `BENCH_ROUNDS` (default 3) rounds of one signed heartbeat per gateway (two paired
//! devices each) over HTTP with 32 concurrent clients, as fast as the provider takes them. One
//! round is one minute of the fleet's load. Prints:
//!
//! - `heartbeats_per_s=<n>`: sustained ingest rate (the fleet needs gateways/60 per second);
//! - `minute_of_fleet_s=<n>`: seconds to ingest one minute's heartbeats;
//! - `evaluate_ms=<n>`: one alert evaluation over the whole fleet;
//! - `provider_peak_rss_mb=<n>`: the provider process's peak resident memory (VmHWM).

use std::sync::Arc;
use std::time::{Duration, Instant};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tm_provider::install_crypto_provider();
    let gateways = env_u32("BENCH_GATEWAYS", 10_000);
    let rounds = env_u32("BENCH_ROUNDS", 3);
    let bin =
        std::env::var("TM_PROVIDER_BIN").unwrap_or_else(|_| "target/release/tm-provider".into());
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("provider.db");

    // The fleet in the registry: one session and one key per gateway.
    let keys: Vec<(GatewayId, SigningKey)> = (0..gateways)
        .map(|n| {
            Ok((
                GatewayId::new(format!("gw-{n}"))?,
                SigningKey::generate()?.0,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let db = tm_provider::db::Db::open(&db_path)?;
    let rows: Vec<(GatewayId, tm_protocol::VerifyingKey)> = keys
        .iter()
        .map(|(id, k)| (id.clone(), k.verifying_key()))
        .collect();
    db.write(move |c| {
        let tx = c.transaction()?;
        for (id, key) in &rows {
            let session = format!("tm-{id}");
            tx.execute(
                "INSERT INTO sessions VALUES (?1, 'p', 'rx', 'accepted', ?2, '1', 't', 't')",
                rusqlite::params![session, tm_provider::ops::adherence::HEART_FAILURE],
            )?;
            tm_provider::gateways::insert(&tx, id, key, &session)?;
        }
        tx.commit()
    })
    .await?;
    drop(db);

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("provider.toml");
    std::fs::write(dir.path().join("ops-token"), "bench-token")?;
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\ndatabase = \"{}\"\n\
             [ops]\ntoken_file = \"{}\"\nevaluate_interval_s = 3600\n",
            db_path.display(),
            dir.path().join("ops-token").display()
        ),
    )?;
    let mut child = tokio::process::Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("TM_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let keys = Arc::new(keys);
    let url = Arc::new(format!("{base}{}", tm_protocol::routes::http::HEARTBEAT));
    let mut total = 0u64;
    let started = Instant::now();
    let mut slowest_round = Duration::ZERO;
    for round in 0..rounds {
        let round_start = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..32usize {
            let (keys, url, http) = (keys.clone(), url.clone(), http.clone());
            workers.spawn(async move {
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

    let evaluate = Instant::now();
    let r = http
        .get(format!("{base}/metrics"))
        .bearer_auth("bench-token")
        .send()
        .await?;
    anyhow::ensure!(r.status() == 200, "metrics: {}", r.status());
    let metrics_ms = evaluate.elapsed().as_millis();
    let db = tm_provider::db::Db::open(&db_path)?;
    let thresholds = tm_provider::ops::Thresholds::default();
    let evaluate = Instant::now();
    tm_provider::ops::evaluator::run_once(&db, &thresholds, Utc::now()).await?;
    let evaluate_ms = evaluate.elapsed().as_millis();
    let rss = peak_rss_mb(pid);
    let _ = child.start_kill();
    let _ = child.wait().await;

    #[allow(clippy::cast_precision_loss)]
    let rate = total as f64 / elapsed;
    println!("gateways={gateways} rounds={rounds} heartbeats={total}");
    println!("heartbeats_per_s={rate:.0}");
    println!("needed_per_s={:.0}", f64::from(gateways) / 60.0);
    println!("minute_of_fleet_s={:.1}", slowest_round.as_secs_f64());
    println!("metrics_ms={metrics_ms}");
    println!("evaluate_ms={evaluate_ms}");
    println!("provider_peak_rss_mb={rss:.1}");
    Ok(())
}
