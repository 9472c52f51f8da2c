//! Sync benchmark (run with `scripts/bench sync`): a backlog of readings drained to the provider
//! on loopback, over MQTT (a real mosquitto, the gateway on its TLS listener) and over HTTPS (the
//! provider's own TLS listener), end to end: the real `tm-gateway run` process, TLS with rustls
//! and ring on both ends (a CA made for the run), the provider's verification, commit and
//! signed receipts. Prints figures; the last lines are the machine-readable results.
//!
//! Each figure is printed with its ceiling measured in the same run (`support/ceilings.rs`:
//! SQLite alone with the outbox's row shape, the broker alone with frames of a batch's size,
//! the provider's ingest in process) and the figure's share of it.
//!
//! Environment: `TM_GATEWAY_BIN` (the release agent binary), `BENCH_READINGS` (default
//! 1,000,000), `BENCH_ONLY=ingest` (only the provider's ingest in process, on each backend).

#[path = "support/ceilings.rs"]
mod ceilings;
#[path = "support/loopback.rs"]
mod loopback;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loopback::{Loopback, ProviderStore, peak_rss_mb, write_bytes};
use tm_gateway::simulate;
use tm_gateway::stash::{StashHandle, Stashable};
use tm_gateway::store::{Outbox, writer};
use tm_protocol::{GatewayId, SigningKey, Transport};

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

struct Run {
    drain_per_s: f64,
    fill_per_s: f64,
    rss_mb: f64,
    /// Bytes written to storage per reading while stashing (this process) and draining (the
    /// agent), from `/proc/PID/io` `write_bytes`.
    stash_disk_bytes: f64,
    drain_disk_bytes: f64,
}

async fn run(transport: Transport, backend: ProviderStore, total: u32, bin: &str) -> Run {
    let extra = std::env::var("BENCH_SYNC_EXTRA")
        .unwrap_or_default()
        .replace(';', "\n");
    let (side, (fill_per_s, stash_disk_bytes)) =
        Loopback::start(transport, backend, &extra, |outbox| async move {
            let before = write_bytes("self");
            let rate = fill(&outbox, total).await;
            let written = write_bytes("self").saturating_sub(before);
            (rate, written as f64 / f64::from(total))
        })
        .await;
    println!("{transport:?}: backlog of {total} readings stashed at {fill_per_s:.0} readings/s");
    let started = Instant::now();
    let agent_log = side.dir.path().join("agent.log");
    let mut agent = Command::new(bin)
        .arg("--config")
        .arg(&side.config)
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
        let n = side.stored().await;
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
    // The last receipts settled, then what the agent wrote for the whole drain.
    let outbox = side.state.join(tm_gateway::store::FILE_NAME);
    let settled_by = Instant::now() + Duration::from_secs(60);
    while tm_gateway::store::read_status(&outbox, u64::MAX).map_or(1, |s| s.backlog()) > 0
        && Instant::now() < settled_by
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain_disk_bytes = write_bytes(&agent.id().to_string()) as f64 / f64::from(total);
    println!(
        "{transport:?}: written to disk per reading: {stash_disk_bytes:.0} B stashing, {drain_disk_bytes:.0} B draining"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    drop(side);
    Run {
        drain_per_s,
        fill_per_s,
        rss_mb,
        stash_disk_bytes,
        drain_disk_bytes,
    }
}

fn frame_bytes_of_a_batch() -> usize {
    let (key, _) = SigningKey::generate().unwrap();
    let gw = GatewayId::new("gw-bench").unwrap();
    let batch = tm_gateway::store::LeasedBatch {
        batch_id: tm_protocol::BatchId::new("b1-0011223344556677").unwrap(),
        readings: (0..ceilings::READINGS_PER_BATCH)
            .map(|s| serde_json::to_vec(&simulate::reading(simulate::SIMULATED_DEVICE, s)).unwrap())
            .collect(),
    };
    tm_gateway::sync::seal_batch(&gw, &key, &batch).len()
}

/// The provider's ingest alone, in process, on each backend (`BENCH_ONLY=ingest`): what bounds
/// the drain on the provider's side, without an agent or a transport.
async fn ingest_only(total: u32) {
    let mut stores = vec![ProviderStore::Sqlite];
    if std::env::var("BENCH_PROVIDER_STORE").as_deref() != Ok("sqlite") {
        stores.push(ProviderStore::Postgres);
    }
    for backend in stores {
        let scratch = tempfile::tempdir().unwrap();
        let per_s = ceilings::provider_ingest(scratch.path(), total, backend).await;
        println!(
            "{}.provider_ingest_readings_per_s={per_s:.0}",
            backend.name()
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin =
        std::env::var("TM_GATEWAY_BIN").unwrap_or_else(|_| "target/release/tm-gateway".into());
    let total: u32 = std::env::var("BENCH_READINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if std::env::var("BENCH_ONLY").as_deref() == Ok("ingest") {
        return ingest_only(total.min(1_000_000)).await;
    }
    let frame_bytes = frame_bytes_of_a_batch();
    let scratch = tempfile::tempdir().unwrap();
    let sqlite = ceilings::sqlite_insert(scratch.path(), total);
    println!(
        "ceiling: SQLite alone inserts {:.0} outbox rows/s, writing {:.0} B a row",
        sqlite.rows_per_s, sqlite.disk_bytes_per_row
    );
    let frames = (total / ceilings::READINGS_PER_BATCH).max(1);
    let broker = ceilings::broker(scratch.path(), frame_bytes, frames).await
        * f64::from(ceilings::READINGS_PER_BATCH);
    println!("ceiling: the broker alone carries {broker:.0} readings/s in batch-sized frames");
    let ingest =
        ceilings::provider_ingest(scratch.path(), total.min(200_000), ProviderStore::Sqlite).await;
    println!("ceiling: the provider's ingest alone takes {ingest:.0} readings/s");
    drop(scratch);

    let mqtt = run(Transport::Mqtt, ProviderStore::Sqlite, total, &bin).await;
    let https = run(Transport::Https, ProviderStore::Sqlite, total, &bin).await;
    let share = |figure: f64, ceiling: f64| figure / ceiling;
    let stash = mqtt.fill_per_s.min(https.fill_per_s);
    let stash_disk = mqtt.stash_disk_bytes.max(https.stash_disk_bytes);
    println!("drain_mqtt_readings_per_s={:.0}", mqtt.drain_per_s);
    println!(
        "drain_mqtt_share_of_ceiling={:.2}",
        share(mqtt.drain_per_s, broker.min(ingest))
    );
    println!("drain_https_readings_per_s={:.0}", https.drain_per_s);
    println!(
        "drain_https_share_of_ceiling={:.2}",
        share(https.drain_per_s, ingest)
    );
    println!("ceiling_broker_readings_per_s={broker:.0}");
    println!("ceiling_provider_ingest_readings_per_s={ingest:.0}");
    println!("agent_peak_rss_mb={:.1}", mqtt.rss_mb.max(https.rss_mb));
    println!("stash_batched_readings_per_s={stash:.0}");
    println!(
        "stash_share_of_ceiling={:.2}",
        share(stash, sqlite.rows_per_s)
    );
    println!("ceiling_sqlite_insert_rows_per_s={:.0}", sqlite.rows_per_s);
    println!(
        "bytes_per_reading_on_wire={:.0}",
        frame_bytes as f64 / f64::from(ceilings::READINGS_PER_BATCH)
    );
    println!("disk_bytes_per_reading_stash={stash_disk:.0}");
    println!(
        "disk_bytes_stash_over_ceiling={:.2}",
        share(stash_disk, sqlite.disk_bytes_per_row)
    );
    println!(
        "ceiling_sqlite_disk_bytes_per_row={:.0}",
        sqlite.disk_bytes_per_row
    );
    println!(
        "disk_bytes_per_reading_drain={:.0}",
        mqtt.drain_disk_bytes.max(https.drain_disk_bytes)
    );
    // The same drain with the provider on PostgreSQL (BENCH_PROVIDER_STORE=sqlite skips it).
    if std::env::var("BENCH_PROVIDER_STORE").as_deref() != Ok("sqlite") {
        let scratch = tempfile::tempdir().unwrap();
        let pg_ingest =
            ceilings::provider_ingest(scratch.path(), total.min(200_000), ProviderStore::Postgres)
                .await;
        drop(scratch);
        println!(
            "ceiling: the provider's ingest alone on PostgreSQL takes {pg_ingest:.0} readings/s"
        );
        let mqtt = run(Transport::Mqtt, ProviderStore::Postgres, total, &bin).await;
        let https = run(Transport::Https, ProviderStore::Postgres, total, &bin).await;
        println!("postgres.ceiling_provider_ingest_readings_per_s={pg_ingest:.0}");
        println!("postgres.drain_mqtt_readings_per_s={:.0}", mqtt.drain_per_s);
        println!(
            "postgres.drain_mqtt_share_of_ceiling={:.2}",
            share(mqtt.drain_per_s, broker.min(pg_ingest))
        );
        println!(
            "postgres.drain_https_readings_per_s={:.0}",
            https.drain_per_s
        );
        println!(
            "postgres.drain_https_share_of_ceiling={:.2}",
            share(https.drain_per_s, pg_ingest)
        );
    }
}
