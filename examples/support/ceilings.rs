//! The ceilings of the sync benchmark: what the parts under the agent manage alone, measured in
//! the same run as the figures they bound, so a figure can be read as a share of what this
//! machine allows at that moment (these machines are noisy; a ratio moves less than a rate).
//!
//! - SQLite: rows of the outbox's shape (an ordered 40-byte key, a 636-byte payload) inserted
//!   into a fresh file with the outbox's settings (WAL, `synchronous=FULL`), 4,000 rows a
//!   transaction, payloads made beforehand: the ceiling of the stash, in rows per second and
//!   bytes written to storage per row.
//! - The broker: frames of a batch's size published at QoS 1 over TLS to a mosquitto started
//!   for the run, with the agent's window of frames in flight, and received by a subscriber on
//!   its plain listener (where the provider subscribes): the ceiling of the MQTT drain.
//! - The provider's ingest in process: sealed batches handed to `Ingest::readings` by as many
//!   tasks as the agent has batches in flight, no network: the ceiling of both drains.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tm_gateway::simulate;
use tm_protocol::{GatewayId, SigningKey};
use tm_testkit::mosquitto::Mosquitto;
use tm_testkit::pki;

/// Readings in one batch of the benchmark (the agent's default batch size).
pub const READINGS_PER_BATCH: u32 = 1000;
/// Batches the agent keeps in flight by default (`[sync] in_flight_batches`).
pub const IN_FLIGHT: usize = 8;

/// What SQLite does alone with the outbox's row shape.
pub struct SqliteCeiling {
    pub rows_per_s: f64,
    pub disk_bytes_per_row: f64,
}

/// Inserts `total` outbox-shaped rows into a fresh file in `dir`.
pub fn sqlite_insert(dir: &Path, total: u32) -> SqliteCeiling {
    const PER_TX: u32 = 4000;
    let payloads: Vec<Vec<u8>> = (0..PER_TX)
        .map(|s| serde_json::to_vec(&simulate::reading(simulate::SIMULATED_DEVICE, s)).unwrap())
        .collect();
    let path = dir.join("ceiling.db");
    let before = crate::loopback::write_bytes("self");
    let started = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.pragma_update(None, "cache_size", -2_048).unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 4_096)
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE readings (id INTEGER PRIMARY KEY, reading_key BLOB NOT NULL, \
             device_address TEXT NOT NULL, received_at_ms INTEGER NOT NULL, \
             payload BLOB NOT NULL, state INTEGER NOT NULL, settled_at_ms INTEGER, reason TEXT);
             CREATE UNIQUE INDEX readings_key ON readings(reading_key);
             CREATE INDEX readings_state ON readings(state, id);",
        )
        .unwrap();
        let mut n = 0u32;
        while n < total {
            let tx = conn.transaction().unwrap();
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO readings \
                         (reading_key, device_address, received_at_ms, payload, state) \
                         VALUES (?1, ?2, ?3, ?4, 0)",
                    )
                    .unwrap();
                for payload in payloads.iter().take((total - n) as usize) {
                    // An ordered key: the record number, then 32 bytes that differ per row.
                    let mut key = Vec::with_capacity(40);
                    key.extend_from_slice(&(u64::from(n) | 1 << 63).to_be_bytes());
                    let mix = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    for _ in 0..4 {
                        key.extend_from_slice(&mix.to_le_bytes());
                    }
                    insert
                        .execute(rusqlite::params![
                            key,
                            simulate::SIMULATED_DEVICE,
                            1_767_225_600_000_i64 + i64::from(n),
                            payload
                        ])
                        .unwrap();
                    n += 1;
                }
            }
            tx.commit().unwrap();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let written = crate::loopback::write_bytes("self").saturating_sub(before);
    SqliteCeiling {
        rows_per_s: f64::from(total) / elapsed,
        disk_bytes_per_row: written as f64 / f64::from(total),
    }
}

/// Frames of `frame_len` bytes through a mosquitto of this run, publisher on TLS, subscriber
/// on the plain listener; frames per second from the first publish to the last arrival.
pub async fn broker(dir: &Path, frame_len: usize, frames: u32) -> f64 {
    let ca = pki::TestCa::new(dir, "ceiling-ca");
    let (cert, key) = ca.server_cert(dir);
    let broker = Mosquitto::builder()
        .config("max_inflight_messages 64")
        .tls(&cert, &key)
        .start(dir);

    let mut sub_options = MqttOptions::new("ceiling-sub", "127.0.0.1", broker.port());
    sub_options.set_max_packet_size(2 << 20, 2 << 20);
    let (sub, mut sub_loop) = AsyncClient::new(sub_options, 64);
    sub.subscribe("ceiling/#", QoS::AtLeastOnce).await.unwrap();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let receiver = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        let mut received = 0u32;
        while received < frames {
            match sub_loop.poll().await.unwrap() {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Packet::Publish(_)) => received += 1,
                _ => {}
            }
        }
        Instant::now()
    });
    subscribed.await.unwrap();

    let tls = tm_gateway::sync::tls_client_config(&tm_gateway::sync::config::SyncConfig {
        ca_file: Some(ca.pem_file.clone()),
        ..Default::default()
    })
    .unwrap();
    let in_flight = u16::try_from(IN_FLIGHT * 2 + 8).unwrap();
    let mut pub_options = MqttOptions::new("ceiling-pub", "127.0.0.1", broker.tls_port());
    pub_options
        .set_max_packet_size(2 << 20, 2 << 20)
        .set_inflight(in_flight)
        .set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    let (publisher, mut pub_loop) = AsyncClient::new(pub_options, usize::from(in_flight));
    let driver = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let frame = vec![0x5a_u8; frame_len];
    let started = Instant::now();
    for i in 0..frames {
        publisher
            .publish(
                format!("ceiling/{i}"),
                QoS::AtLeastOnce,
                false,
                frame.clone(),
            )
            .await
            .unwrap();
    }
    let done = tokio::time::timeout(Duration::from_secs(300), receiver)
        .await
        .expect("every frame arrives")
        .unwrap();
    driver.abort();
    drop(broker);
    f64::from(frames) / done.duration_since(started).as_secs_f64()
}

/// Sealed batches of `READINGS_PER_BATCH` readings, `total` readings in all, ingested by the
/// provider in this process with `IN_FLIGHT` batches at once; readings per second.
pub async fn provider_ingest(
    dir: &Path,
    total: u32,
    backend: crate::loopback::ProviderStore,
) -> f64 {
    let (gw_key, _) = SigningKey::generate().unwrap();
    let gw = GatewayId::new("gw-ceiling").unwrap();
    let (store, provider_key, _database) =
        crate::loopback::provider_store(dir, "ceiling-provider", backend, &gw, &gw_key).await;
    let frames: Vec<Vec<u8>> = (0..total.div_ceil(READINGS_PER_BATCH))
        .map(|b| {
            let first = b * READINGS_PER_BATCH;
            let batch = tm_gateway::store::LeasedBatch {
                batch_id: tm_protocol::BatchId::new(format!("b{first}-0011223344556677")).unwrap(),
                readings: (first..(first + READINGS_PER_BATCH).min(total))
                    .map(|s| {
                        serde_json::to_vec(&simulate::reading(simulate::SIMULATED_DEVICE, s))
                            .unwrap()
                    })
                    .collect(),
            };
            tm_gateway::sync::seal_batch(&gw, &gw_key, &batch)
        })
        .collect();
    let ingest = tm_provider::ingest::Ingest::new(store, provider_key);
    let queue = Arc::new(std::sync::Mutex::new(frames));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (ingest, queue) = (ingest.clone(), queue.clone());
        tasks.spawn(async move {
            loop {
                let Some(frame) = queue.lock().unwrap().pop() else {
                    return;
                };
                ingest.readings(&frame, None).await.unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    f64::from(total) / started.elapsed().as_secs_f64()
}
