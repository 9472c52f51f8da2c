//! Sync benchmark (run with `scripts/bench sync`): a backlog of readings drained to the provider
//! on loopback, over MQTT (a real mosquitto, the gateway on its TLS listener) and over HTTPS (the
//! provider's own TLS listener), end to end: the real `tm-gateway run` process, TLS with rustls
//! and ring on both ends (a CA made for the run), the provider's verification, commit and
//! signed receipts. Prints figures; the last lines are the machine-readable results.
//!
//! Environment: `TM_GATEWAY_BIN` (the release agent binary), `BENCH_READINGS` (default
//! 1,000,000).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tm_gateway::simulate;
use tm_gateway::stash::{StashHandle, Stashable};
use tm_gateway::store::{Outbox, writer};
use tm_protocol::{GatewayId, SigningKey, SyncSettings, Transport};

use tm_testkit::mosquitto::Mosquitto;
use tm_testkit::pki;

const FEEDERS: u32 = 8;
const CHUNK: u32 = 500;

/// Fills the outbox through the real stash channel and writer; returns readings/s.
async fn fill(outbox_path: &Path, total: u32) -> f64 {
    let (outbox, _) = Outbox::open(outbox_path, 8 << 30).unwrap();
    let (handle, thread) = writer::spawn(outbox);
    let (stash, rx) = StashHandle::channel();
    let forward = tokio::spawn(handle.clone().serve_stash(rx));
    let started = Instant::now();
    let mut feeders = tokio::task::JoinSet::new();
    for f in 0..FEEDERS {
        let stash = stash.clone();
        feeders.spawn(async move {
            let mut start = f * CHUNK;
            while start < total {
                let end = (start + CHUNK).min(total);
                let items: Vec<Stashable> = (start..end)
                    .map(|s| {
                        Stashable::Reading(Box::new(simulate::reading(
                            simulate::SIMULATED_DEVICE,
                            s,
                        )))
                    })
                    .collect();
                stash.stash(items).await.unwrap();
                start += FEEDERS * CHUNK;
            }
        });
    }
    while feeders.join_next().await.is_some() {}
    let rate = f64::from(total) / started.elapsed().as_secs_f64();
    drop((stash, handle));
    forward.await.unwrap();
    thread.join().unwrap();
    rate
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Run {
    drain_per_s: f64,
    fill_per_s: f64,
    rss_mb: f64,
}

async fn run(transport: Transport, total: u32, bin: &str) -> Run {
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
             [sync]\nca_file = \"{}\"\n{}",
            state.display(),
            ca.pem_file.display(),
            std::env::var("BENCH_SYNC_EXTRA")
                .unwrap_or_default()
                .replace(';', "\n")
        ),
    )
    .unwrap();

    let db = tm_provider::db::Db::open(&dir.path().join("provider.db")).unwrap();
    let provider_key =
        Arc::new(tm_provider::keys::load_or_create(&dir.path().join("provider.key")).unwrap());
    {
        let gw = gw.clone();
        let public = gw_key.verifying_key();
        db.write(move |c| {
            tm_testkit::store::accepted_session(c, "tm-1")?;
            tm_provider::gateways::insert(c, &gw, &public, "tm-1")
        })
        .await
        .unwrap();
    }
    let ingest = tm_provider::ingest::Ingest::new(db.clone(), provider_key.clone());
    let cancel = tokio_util::sync::CancellationToken::new();

    let fill_per_s = fill(&state.join("outbox.db"), total).await;
    println!("{transport:?}: backlog of {total} readings stashed at {fill_per_s:.0} readings/s");

    let mut broker = None;
    let (https_url, mqtt_url) = match transport {
        Transport::Https => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let router = tm_provider::ingest::http::routes(ingest.clone()).into_router();
            let certificates =
                tm_provider::http::tls::Certificates::load(tm_provider::http::tls::TlsSection {
                    cert_file,
                    key_file,
                })
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
            // The provider subscribes on a loopback listener, the gateway publishes over TLS.
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
        gateway_id: gw.clone(),
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

    let started = Instant::now();
    let agent_log = dir.path().join("agent.log");
    let mut agent = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_log).unwrap())
        .spawn()
        .unwrap();
    let mut rss_mb: f64 = 0.0;
    let (mut last_count, mut last_progress) = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss_mb = rss_mb.max(peak_rss_mb(agent.id()));
        let n: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0)))
            .await
            .unwrap();
        if n >= i64::from(total) {
            break;
        }
        if n > last_count {
            (last_count, last_progress) = (n, Instant::now());
        }
        if last_progress.elapsed() > Duration::from_secs(60) {
            let _ = agent.kill();
            let log = std::fs::read_to_string(&agent_log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "{transport:?}: no reading arrived for 60 s (stalled at {n}); agent log, newest first:\n{}",
                tail.join("\n")
            );
        }
    }
    let drain_per_s = f64::from(total) / started.elapsed().as_secs_f64();
    rss_mb = rss_mb.max(peak_rss_mb(agent.id()));
    println!(
        "{transport:?}: drained in {:.1} s, {drain_per_s:.0} readings/s, agent peak RSS {rss_mb:.1} MB",
        started.elapsed().as_secs_f64()
    );
    let _ = agent.kill();
    let _ = agent.wait();
    cancel.cancel();
    drop(broker);
    Run {
        drain_per_s,
        fill_per_s,
        rss_mb,
    }
}

fn bytes_per_reading_on_wire() -> f64 {
    let (key, _) = SigningKey::generate().unwrap();
    let gw = GatewayId::new("gw-bench").unwrap();
    let batch = tm_gateway::store::LeasedBatch {
        batch_id: tm_protocol::BatchId::new("b1-0011223344556677").unwrap(),
        readings: (0..1000)
            .map(|s| serde_json::to_vec(&simulate::reading(simulate::SIMULATED_DEVICE, s)).unwrap())
            .collect(),
    };
    let frame = tm_gateway::sync::seal_batch(&gw, &key, &batch);
    frame.len() as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin =
        std::env::var("TM_GATEWAY_BIN").unwrap_or_else(|_| "target/release/tm-gateway".into());
    let total: u32 = std::env::var("BENCH_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mqtt = run(Transport::Mqtt, total, &bin).await;
    let https = run(Transport::Https, total, &bin).await;
    println!("drain_mqtt_readings_per_s={:.0}", mqtt.drain_per_s);
    println!("drain_https_readings_per_s={:.0}", https.drain_per_s);
    println!("agent_peak_rss_mb={:.1}", mqtt.rss_mb.max(https.rss_mb));
    println!(
        "stash_batched_readings_per_s={:.0}",
        mqtt.fill_per_s.min(https.fill_per_s)
    );
    println!(
        "bytes_per_reading_on_wire={:.0}",
        bytes_per_reading_on_wire()
    );
}
