//! The whole agent: the real `tm-gateway run` binary with its system bus pointed at a private
//! dbus-daemon served by the BlueZ simulator, paired devices in its state directory, and the
//! real provider ingest on 127.0.0.1:0. Readings go from the simulated devices through the
//! btleplug links and the SQLite outbox to the provider, exactly once; stored RACP records
//! resume after the outbox's high-water mark across restarts; a `reread-devices` command issued
//! through the provider's ops API reconnects to a device that would otherwise stay connected,
//! fetches only its new record, and is reported done; without BlueZ the agent keeps syncing,
//! shows the `ble-unavailable` alarm, and recovers when BlueZ appears.

mod common;

use std::time::Duration;

use common::*;
use tm_gateway::ble::paired::{PairedDevice, PairedStore};
use tm_protocol::{Reading, Transport};
use tm_sim_bluez::{FakeBluez, bus::PrivateBus, profiles};

const SCALE: &str = "C0:FF:EE:00:00:01";
const CUFF: &str = "C0:FF:EE:00:00:02";
const GLUCO: &str = "C0:FF:EE:00:00:05";

fn minutes_ago(m: i64) -> chrono::NaiveDateTime {
    let t = chrono::Local::now().naive_local() - chrono::Duration::minutes(m);
    chrono::Timelike::with_nanosecond(&t, 0).unwrap_or(t)
}

const SYNC: &str =
    "[sync]\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\nrequest_timeout_ms = 2000\n";

/// A gateway enrolled with the provider over HTTPS routes (plain HTTP on loopback).
async fn gateway_and_provider(
    dir: &std::path::Path,
) -> (
    GatewaySide,
    ProviderSide,
    tokio_util::sync::CancellationToken,
) {
    let (gw, provider, _, stop) = gateway_and_provider_with(dir, SYNC).await;
    (gw, provider, stop)
}

/// The same with `config` as the gateway's extra configuration; also returns the provider's
/// address (ops API, command poll).
async fn gateway_and_provider_with(
    dir: &std::path::Path,
    config: &str,
) -> (
    GatewaySide,
    ProviderSide,
    std::net::SocketAddr,
    tokio_util::sync::CancellationToken,
) {
    let gw = GatewaySide::new(dir, config);
    let provider = ProviderSide::new(dir, &gw.id, &gw.key).await;
    let (addr, stop) = provider.serve_http("127.0.0.1:0".parse().unwrap()).await;
    gw.enroll(&provider.key, Transport::Https, &format!("http://{addr}"));
    (gw, provider, addr, stop)
}

async fn pair(gw: &GatewaySide, fake: &FakeBluez, devices: &[(&str, &str)]) {
    let store = PairedStore::in_state_dir(&gw.dir);
    for (address, model) in devices {
        let mut d = PairedDevice::new(address);
        d.model_id = Some((*model).into());
        store.upsert(d).unwrap();
        fake.set_paired(address).await.unwrap();
    }
}

/// Every reading the provider stored.
async fn provider_readings(provider: &ProviderSide) -> Vec<Reading> {
    provider
        .store
        .sqlite()
        .expect("a SQLite store")
        .read(|c| {
            let mut stmt = c.prepare("SELECT payload FROM readings")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .map(|p| serde_json::from_str(&p.unwrap()).unwrap())
                .collect::<Vec<Reading>>();
            Ok(rows)
        })
        .await
        .unwrap()
}

fn value(r: &Reading, code: &str) -> Option<f64> {
    r.components
        .iter()
        .find(|c| c.code == code)
        .map(|c| c.value)
}

fn alarms(status: &serde_json::Value) -> Vec<String> {
    status["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_scale_and_cuff_reach_the_outbox_and_the_provider_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, provider, _http) = gateway_and_provider(dir.path()).await;
    let bus = PrivateBus::start().unwrap();
    let weighed_at = minutes_ago(30);
    let mut scale = profiles::weight_scale(SCALE);
    scale.stored.push(profiles::weight_kg(14_000, weighed_at));
    let mut cuff = profiles::bp_cuff(CUFF);
    cuff.stored
        .push(profiles::blood_pressure(128, 82, 97, 66, minutes_ago(10)));
    let fake = FakeBluez::start(bus.address(), vec![scale, cuff])
        .await
        .unwrap();
    pair(
        &gw,
        &fake,
        &[(SCALE, "sig-weight-scale"), (CUFF, "sig-blood-pressure")],
    )
    .await;
    let mut agent = gw.spawn_agent_on_bus(bus.address(), &[]);

    let arrived = eventually(Duration::from_secs(30), || async {
        provider.count().await >= 2
    })
    .await;
    assert!(arrived, "status: {}", gw.status());
    // The scale re-sends its memory on every connection: the outbox keeps one row.
    fake.drop_link(SCALE).await.unwrap();
    let reconnected = eventually(Duration::from_secs(15), || async {
        fake.connections(SCALE).unwrap() >= 2 && fake.is_connected(SCALE).unwrap()
    })
    .await;
    assert!(reconnected);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let status = gw.status();
    assert_eq!(status["backlog"], 0, "{status}");
    assert_eq!(status["acknowledged"], 2, "{status}");
    assert_eq!(status["quarantined"], 0, "{status}");
    assert!(alarms(&status).is_empty(), "{status}");
    let readings = provider_readings(&provider).await;
    assert_eq!(readings.len(), 2, "each reading once: {readings:#?}");
    let weight = readings.iter().find(|r| r.device.address == SCALE).unwrap();
    assert_eq!(value(weight, "29463-7"), Some(70.0));
    assert_eq!(weight.device_time, Some(weighed_at));
    assert_eq!(weight.time_quality, tm_protocol::TimeQuality::DeviceSynced);
    let bp = readings.iter().find(|r| r.device.address == CUFF).unwrap();
    assert_eq!(value(bp, "8480-6"), Some(128.0));
    assert_eq!(value(bp, "8462-4"), Some(82.0));
    assert_eq!(
        bp.device.model.as_deref(),
        Some("SIM-BP200"),
        "{:?}",
        bp.device
    );
    // The agent set the clocks.
    assert!(fake.written(CUFF).unwrap().iter().any(|w| w.uuid == 0x2A2B));
    assert!(agent.terminate().success());
    fake.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_records_resume_after_the_outbox_high_water_mark_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, provider, _http) = gateway_and_provider(dir.path()).await;
    let (bus, fake, mut agent) = meter_with_three_records_read(&gw, &provider).await;
    assert!(agent.terminate().success());
    // The paired-devices file lags behind (written after the commit, lost in a power cut):
    // the outbox is the source of truth.
    let store = PairedStore::in_state_dir(&gw.dir);
    store.update(GLUCO, |d| d.last_sequence = None).unwrap();
    fake.queue_record(GLUCO, profiles::glucose_mg_dl(4, 150, minutes_ago(5)))
        .unwrap();
    let mut agent = gw.spawn_agent_on_bus(bus.address(), &[]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            provider.count().await == 4
        })
        .await
    );
    assert_resumed_after_sequence_3(&fake, &provider).await;
    assert!(agent.terminate().success());
    fake.stop().await.unwrap();
}

/// A glucose meter holding records 1..=3, paired, and the agent running on its bus until the
/// three readings are at the provider.
async fn meter_with_three_records_read(
    gw: &GatewaySide,
    provider: &ProviderSide,
) -> (PrivateBus, FakeBluez, Agent) {
    let bus = PrivateBus::start().unwrap();
    let mut meter = profiles::glucose_meter(GLUCO);
    meter.stored = (1..=3)
        .map(|s| profiles::glucose_mg_dl(s, 100 + s as i16, minutes_ago(60)))
        .collect();
    let fake = FakeBluez::start(bus.address(), vec![meter]).await.unwrap();
    pair(gw, &fake, &[(GLUCO, "sig-glucose")]).await;
    let agent = gw.spawn_agent_on_bus(bus.address(), &[]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            provider.count().await == 3
        })
        .await,
        "status: {}",
        gw.status()
    );
    (bus, fake, agent)
}

/// The glucose meter was read twice: all records (1..=3) first, then only those after the last
/// committed one (4); each record reached the provider once.
async fn assert_resumed_after_sequence_3(fake: &FakeBluez, provider: &ProviderSide) {
    assert_eq!(
        racp_requests(fake, GLUCO),
        vec![vec![0x01, 0x01], vec![0x01, 0x03, 0x01, 0x04, 0x00]],
        "all records first, then only those after the last committed one"
    );
    let mut seqs: Vec<_> = provider_readings(provider)
        .await
        .iter()
        .map(|r| r.sequence)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![Some(1), Some(2), Some(3), Some(4)], "each once");
}

fn racp_requests(fake: &FakeBluez, address: &str) -> Vec<Vec<u8>> {
    fake.written(address)
        .unwrap()
        .into_iter()
        .filter(|w| w.uuid == 0x2A52)
        .map(|w| w.value)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reread_devices_command_fetches_a_new_stored_record_once_and_reports_done() {
    let dir = tempfile::tempdir().unwrap();
    // Commands are polled every heartbeat interval: 1 s here.
    let config = format!("{SYNC}heartbeat_interval_s = 1\n");
    let (gw, provider, addr, _http) = gateway_and_provider_with(dir.path(), &config).await;
    let ops = OpsApi::new(addr);
    let (_bus, fake, mut agent) = meter_with_three_records_read(&gw, &provider).await;

    // The meter stores a new record. It stays connected and a RACP device sends stored records
    // only when asked: without a command the agent has no reason to reconnect.
    fake.queue_record(GLUCO, profiles::glucose_mg_dl(4, 150, minutes_ago(5)))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        provider.count().await,
        3,
        "nothing fetched without a command"
    );
    assert_eq!(fake.connections(GLUCO).unwrap(), 1);
    assert!(fake.is_connected(GLUCO).unwrap());

    let id = ops.issue(&gw.id, r#"{"type":"reread-devices"}"#).await;
    let result = ops.result(&gw.id, &id, Duration::from_secs(30)).await;
    assert_eq!(result["state"], "done", "{result}");
    let detail = result["detail"].as_str().unwrap();
    assert!(
        detail.contains("reconnecting to 1 paired device"),
        "{detail}"
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            provider.count().await == 4
        })
        .await,
        "status: {}",
        gw.status()
    );
    assert_eq!(fake.connections(GLUCO).unwrap(), 2, "one reconnection");
    assert_resumed_after_sequence_3(&fake, &provider).await;
    // A re-read is a normal restart of the BLE side: no alarm.
    let drained = eventually(Duration::from_secs(10), || async {
        gw.status()["backlog"] == 0
    })
    .await;
    assert!(drained, "{}", gw.status());
    let status = gw.status();
    assert!(alarms(&status).is_empty(), "{status}");
    assert_eq!(status["acknowledged"], 4, "{status}");
    // The command has its result: the poll no longer serves it.
    assert_eq!(ops.polled(&gw.id).await, 0);
    assert!(agent.terminate().success());
    fake.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bluez_the_agent_keeps_syncing_with_an_alarm_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{SYNC}heartbeat_interval_s = 1\n");
    let (gw, provider, addr, _http) = gateway_and_provider_with(dir.path(), &config).await;
    // A bus with no BlueZ on it.
    let bus = PrivateBus::start().unwrap();
    let store = PairedStore::in_state_dir(&gw.dir);
    let mut d = PairedDevice::new(CUFF);
    d.model_id = Some("sig-blood-pressure".into());
    store.upsert(d).unwrap();
    let mut agent = gw.spawn_agent_on_bus(bus.address(), &["--simulate-readings", "20"]);
    assert!(
        eventually(Duration::from_secs(30), || async {
            provider.count().await == 20
        })
        .await,
        "sync must work without Bluetooth: {}",
        gw.status()
    );
    let status = gw.status();
    assert_eq!(alarms(&status), vec!["ble-unavailable".to_string()]);
    let message = status["alarms"][0]["message"].as_str().unwrap();
    assert!(message.contains("hci0"), "{message}");
    // A re-read now cannot reach any device: it makes the BLE side retry at once and is
    // reported failed, with the reason.
    let ops = OpsApi::new(addr);
    let id = ops.issue(&gw.id, r#"{"type":"reread-devices"}"#).await;
    let result = ops.result(&gw.id, &id, Duration::from_secs(30)).await;
    assert_eq!(result["state"], "failed", "{result}");
    assert!(
        result["detail"]
            .as_str()
            .unwrap()
            .contains("Bluetooth unavailable"),
        "{result}"
    );

    // bluetoothd comes up.
    let mut cuff = profiles::bp_cuff(CUFF);
    cuff.stored
        .push(profiles::blood_pressure(141, 91, 108, 77, minutes_ago(2)));
    let fake = FakeBluez::start(bus.address(), vec![cuff]).await.unwrap();
    fake.set_paired(CUFF).await.unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async {
            provider.count().await == 21
        })
        .await,
        "status: {}",
        gw.status()
    );
    assert!(alarms(&gw.status()).is_empty());
    let bp = provider_readings(&provider)
        .await
        .into_iter()
        .find(|r| r.device.address == CUFF)
        .unwrap();
    assert_eq!(value(&bp, "8480-6"), Some(141.0));
    assert!(agent.terminate().success());
    fake.stop().await.unwrap();
}
