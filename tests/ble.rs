//! The agent's real btleplug path against the BlueZ simulator on a private dbus-daemon
//! (one bus per test process, tests serialised). Each test owns the receiving end of the
//! stash channel and answers like the outbox: a reading id seen before is a duplicate.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDateTime;
use tm_gateway::ble::central::{self, BleOptions};
use tm_gateway::ble::paired::{PairedDevice, PairedStore};
use tm_gateway::ble::pairing;
use tm_gateway::stash::{StashHandle, StashOutcome, Stashable};
use tm_protocol::{Reading, TimeQuality};
use tm_sim_bluez::{DeviceSpec, FakeBluez, Faults, bus::shared_test_bus, profiles};
use tokio_util::sync::CancellationToken;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the fake outbox committed: unique readings, and how many duplicates it refused.
#[derive(Debug, Default)]
struct Outbox {
    readings: Vec<Reading>,
    ids: HashSet<String>,
    duplicates: usize,
    first_at: Option<std::time::Instant>,
}

struct Agent {
    fake: FakeBluez,
    outbox: Arc<Mutex<Outbox>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    store: PairedStore,
    _dir: tempfile::TempDir,
}

fn minutes_ago(m: i64) -> NaiveDateTime {
    let t = chrono::Local::now().naive_local() - chrono::Duration::minutes(m);
    t.with_nanosecond(0).unwrap_or(t)
}
use chrono::Timelike as _;

async fn start(devices: Vec<DeviceSpec>, paired: &[(&str, &str)]) -> Agent {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TM_LOG"))
        .with_test_writer()
        .try_init();
    let bus = shared_test_bus();
    let fake = FakeBluez::start(bus, devices).await.expect("simulator");
    let dir = tempfile::tempdir().unwrap();
    let store = PairedStore::in_state_dir(dir.path());
    for (addr, model) in paired {
        let mut d = PairedDevice::new(addr);
        d.model_id = Some(model.to_string());
        store.upsert(d).unwrap();
        fake.set_paired(addr).await.unwrap();
    }
    let (handle, mut rx) = StashHandle::channel();
    let outbox = Arc::new(Mutex::new(Outbox::default()));
    let ob = outbox.clone();
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            let mut out = StashOutcome::default();
            let mut g = ob.lock().unwrap();
            for item in req.items {
                if let Stashable::Reading(r) = item {
                    if g.ids.insert(r.reading_id.to_string()) {
                        g.first_at.get_or_insert_with(std::time::Instant::now);
                        g.readings.push(*r);
                        out.inserted += 1;
                    } else {
                        g.duplicates += 1;
                        out.duplicates += 1;
                    }
                }
            }
            let _ = req.reply.send(Ok(out));
        }
    });
    let cancel = CancellationToken::new();
    let opts = BleOptions {
        adapter: "hci0".into(),
        quiet: Duration::from_secs(2),
    };
    let (s, c) = (store.clone(), cancel.clone());
    let task = tokio::spawn(async move {
        central::run(opts, s, handle, c).await.expect("BLE side");
    });
    Agent {
        fake,
        outbox,
        cancel,
        task,
        store,
        _dir: dir,
    }
}

impl Agent {
    async fn wait(&self, what: &str, f: impl Fn(&Outbox) -> bool) {
        for _ in 0..750 {
            if f(&self.outbox.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "timed out waiting for {what}: {:?}",
            self.outbox.lock().unwrap()
        );
    }

    async fn wait_sim(&self, what: &str, f: impl Fn(&FakeBluez) -> bool) {
        for _ in 0..750 {
            if f(&self.fake) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn stop(self) -> Vec<Reading> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("agent stops")
            .unwrap();
        self.fake.stop().await.unwrap();
        let g = self.outbox.lock().unwrap();
        g.readings.clone()
    }
}

fn value(r: &Reading, code: &str) -> f64 {
    r.components
        .iter()
        .find(|c| c.code == code)
        .map(|c| c.value)
        .unwrap_or(f64::NAN)
}

const SCALE: &str = "C0:FF:EE:00:00:01";
const CUFF: &str = "C0:FF:EE:00:00:02";
const OXI: &str = "C0:FF:EE:00:00:03";
const THERMO: &str = "C0:FF:EE:00:00:04";
const GLUCO: &str = "C0:FF:EE:00:00:05";
const MI: &str = "C0:FF:EE:00:00:06";
const AND: &str = "C0:FF:EE:00:00:07";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_records_resent_on_reconnect_are_not_duplicated_and_clock_is_set() {
    let _g = SERIAL.lock().await;
    let mut scale = profiles::weight_scale(SCALE);
    scale
        .stored
        .push(profiles::weight_kg(14_000, minutes_ago(30)));
    let agent = start(
        vec![scale, profiles::headphones("C0:FF:EE:00:00:99")],
        &[(SCALE, "sig-weight-scale")],
    )
    .await;
    agent.wait("first weight", |o| o.readings.len() == 1).await;
    // Link loss; the scale keeps advertising and re-sends its memory on the next connection.
    agent.fake.drop_link(SCALE).await.unwrap();
    agent
        .wait_sim("reconnect", |f| f.connections(SCALE).unwrap() >= 2)
        .await;
    agent
        .wait("the re-sent record", |o| o.duplicates >= 1)
        .await;
    // A live reading after reconnecting.
    agent
        .wait_sim("subscribed", |f| f.is_connected(SCALE).unwrap())
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        agent
            .fake
            .indicate(SCALE, 0x2A9D, profiles::weight_kg(14_100, minutes_ago(0)))
            .await
            .unwrap()
    );
    agent
        .wait("the live weight", |o| o.readings.len() == 2)
        .await;
    let written = agent.fake.written(SCALE).unwrap();
    assert!(
        written
            .iter()
            .filter(|w| w.uuid == 0x2A2B && w.value.len() == 10)
            .count()
            >= 2,
        "{written:?}"
    );
    assert!(
        agent
            .fake
            .discovery_filter()
            .iter()
            .any(|u| u.starts_with("0000181d"))
    );
    let paired = agent.store.load().unwrap();
    assert_eq!(paired[0].model.as_deref(), Some("SIM-WS100"));
    assert_eq!(paired[0].battery_pct, Some(88));
    let readings = agent.stop().await;
    assert_eq!(readings.len(), 2, "{readings:#?}");
    assert!(
        (value(&readings[0], "29463-7") - 70.0).abs() < 1e-9,
        "{:?}",
        readings[0].components
    );
    assert!((value(&readings[1], "29463-7") - 70.5).abs() < 1e-9);
    assert!(
        readings
            .iter()
            .all(|r| r.time_quality == TimeQuality::DeviceSynced)
    );
    assert_eq!(readings[0].device.address, SCALE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bp_cuff_reading_values_and_cts() {
    let _g = SERIAL.lock().await;
    let mut cuff = profiles::bp_cuff(CUFF);
    let at = minutes_ago(10);
    cuff.stored
        .push(profiles::blood_pressure(128, 82, 97, 66, at));
    let agent = start(vec![cuff], &[(CUFF, "sig-blood-pressure")]).await;
    agent.wait("BP", |o| o.readings.len() == 1).await;
    let written = agent.fake.written(CUFF).unwrap();
    assert!(written.iter().any(|w| w.uuid == 0x2A2B));
    let r = agent.stop().await.remove(0);
    assert_eq!(value(&r, "8480-6"), 128.0);
    assert_eq!(value(&r, "8462-4"), 82.0);
    assert_eq!(r.device_time, Some(at));
    assert_eq!(r.time_quality, TimeQuality::DeviceSynced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glucose_pin_pairing_and_racp_from_last_sequence() {
    let _g = SERIAL.lock().await;
    let bus = shared_test_bus();
    let mut meter = profiles::glucose_meter(GLUCO);
    meter.stored = (1..=3)
        .map(|s| profiles::glucose_mg_dl(s, 90 + s as i16, minutes_ago(60)))
        .collect();
    // Bond first, answering the PIN prompt, on a simulator of its own.
    {
        let fake = FakeBluez::start(bus, vec![meter.clone()]).await.unwrap();
        let adapter = tm_gateway::ble::open_adapter("hci0").await.unwrap();
        btleplug::api::Central::start_scan(&adapter, Default::default())
            .await
            .unwrap();
        for _ in 0..100 {
            if tm_gateway::ble::find_peripheral(&adapter, GLUCO)
                .await
                .unwrap()
                .is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let wrong = pairing::pair("hci0", GLUCO, Arc::new(|_| Some("0000".into()))).await;
        assert!(wrong.is_err(), "a wrong PIN must fail");
        pairing::pair(
            "hci0",
            GLUCO,
            Arc::new(|p| (p == pairing::Prompt::Pin).then(|| "4321".into())),
        )
        .await
        .unwrap();
        assert!(fake.is_paired(GLUCO).unwrap());
        fake.stop().await.unwrap();
    }
    let agent = start(vec![meter], &[(GLUCO, "sig-glucose")]).await;
    agent
        .wait("3 glucose records", |o| o.readings.len() == 3)
        .await;
    agent.fake.drop_link(GLUCO).await.unwrap();
    agent
        .fake
        .queue_record(GLUCO, profiles::glucose_mg_dl(4, 140, minutes_ago(5)))
        .unwrap();
    agent
        .wait("the new record", |o| o.readings.len() == 4)
        .await;
    let racp: Vec<Vec<u8>> = agent
        .fake
        .written(GLUCO)
        .unwrap()
        .into_iter()
        .filter(|w| w.uuid == 0x2A52)
        .map(|w| w.value)
        .collect();
    assert_eq!(
        racp,
        vec![vec![0x01, 0x01], vec![0x01, 0x03, 0x01, 0x04, 0x00]]
    );
    let dups = agent.outbox.lock().unwrap().duplicates;
    let readings = agent.stop().await;
    assert_eq!(dups, 0, "RACP from the last sequence re-sends nothing");
    let seqs: Vec<_> = readings.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, vec![Some(1), Some(2), Some(3), Some(4)]);
    assert!(
        (value(&readings[3], "2339-0") - 140.0).abs() < 1e-6,
        "{:?}",
        readings[3].components
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oximeter_passkey_pairing_and_spot_check() {
    let _g = SERIAL.lock().await;
    let mut oxi = profiles::oximeter(OXI);
    oxi.stored
        .push(profiles::spot_check(97, 64, minutes_ago(2)));
    let agent = start(vec![oxi], &[]).await;
    agent
        .wait_sim("discovered", |f| f.discovery_filter().len() > 1)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    pairing::pair(
        "hci0",
        OXI,
        Arc::new(|p| (p == pairing::Prompt::Passkey).then(|| "123456".into())),
    )
    .await
    .unwrap();
    assert!(agent.fake.is_paired(OXI).unwrap());
    agent.stop().await;
    // The agent restarts with the device recorded as paired.
    let mut oxi = profiles::oximeter(OXI);
    oxi.stored
        .push(profiles::spot_check(97, 64, minutes_ago(2)));
    let agent = start(vec![oxi], &[(OXI, "sig-pulse-oximeter")]).await;
    agent.wait("SpO2", |o| o.readings.len() == 1).await;
    let r = agent.stop().await.remove(0);
    assert_eq!(value(&r, "2708-6"), 97.0, "{:?}", r.components);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thermometer_that_fails_to_connect_three_times_then_succeeds() {
    let _g = SERIAL.lock().await;
    let mut th = profiles::thermometer(THERMO);
    th.stored
        .push(profiles::temperature_tenths_c(372, minutes_ago(1)));
    let agent = start(vec![th], &[]).await;
    agent
        .fake
        .set_faults(
            THERMO,
            Faults {
                connect_failures: 3,
                ..Default::default()
            },
        )
        .unwrap();
    agent.stop().await;
    let mut th = profiles::thermometer(THERMO);
    th.stored
        .push(profiles::temperature_tenths_c(372, minutes_ago(1)));
    let bus = shared_test_bus();
    let _ = bus;
    let agent = start(vec![th], &[(THERMO, "sig-thermometer")]).await;
    agent
        .fake
        .set_faults(
            THERMO,
            Faults {
                connect_failures: 3,
                ..Default::default()
            },
        )
        .unwrap();
    agent.wait("temperature", |o| o.readings.len() == 1).await;
    assert_eq!(agent.fake.connections(THERMO).unwrap(), 1);
    let r = agent.stop().await.remove(0);
    assert!(
        (value(&r, "8310-5") - 37.2).abs() < 1e-9,
        "{:?}",
        r.components
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn and_cuff_gets_date_time_in_time_and_unset_clock_is_not_trusted() {
    let _g = SERIAL.lock().await;
    let mut cuff = profiles::and_cuff(AND, Duration::from_secs(2));
    // The cuff's clock was never set: its memory carries a 2000-01-01 time stamp.
    let unset = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 3, 0)
        .unwrap();
    cuff.stored
        .push(profiles::blood_pressure(135, 88, 104, 71, unset));
    let agent = start(vec![cuff], &[(AND, "and-ua-651ble")]).await;
    agent.wait("BP", |o| o.readings.len() == 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        agent.fake.is_connected(AND).unwrap(),
        "the cuff dropped the link: no Date Time in time"
    );
    let dt: Vec<_> = agent
        .fake
        .written(AND)
        .unwrap()
        .into_iter()
        .filter(|w| w.uuid == 0x2A08)
        .collect();
    assert_eq!(dt.len(), 1);
    assert_eq!(dt[0].value.len(), 7);
    let r = agent.stop().await.remove(0);
    assert_eq!(r.time_quality, TimeQuality::DeviceUnsetUntrusted);
    assert_eq!(value(&r, "8480-6"), 135.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xiaomi_adverts_are_read_without_connecting_and_repeats_collapse() {
    let _g = SERIAL.lock().await;
    let mut mi = profiles::xiaomi_scale(MI);
    mi.service_data
        .push((0x181D, profiles::mi_scale_v1(14_100, minutes_ago(0))));
    let agent = start(vec![mi], &[(MI, "xiaomi-mi-scale-2")]).await;
    agent.wait("Mi weight", |o| o.readings.len() == 1).await;
    // The same frame keeps coming every advertising interval: still one reading.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(agent.outbox.lock().unwrap().readings.len(), 1);
    agent
        .fake
        .set_service_data(
            MI,
            0x181D,
            profiles::mi_scale_v1(14_300, minutes_ago(0) + chrono::Duration::seconds(1)),
        )
        .unwrap();
    agent
        .wait("second Mi weight", |o| o.readings.len() == 2)
        .await;
    assert_eq!(agent.fake.connections(MI).unwrap(), 0);
    let readings = agent.stop().await;
    assert!(
        (value(&readings[0], "29463-7") - 70.5).abs() < 1e-9,
        "{:?}",
        readings[0].components
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_device_is_recovered_when_it_advertises_again() {
    let _g = SERIAL.lock().await;
    let mut cuff = profiles::bp_cuff(CUFF);
    cuff.stored
        .push(profiles::blood_pressure(120, 80, 93, 60, minutes_ago(20)));
    let agent = start(vec![cuff], &[(CUFF, "sig-blood-pressure")]).await;
    let t0 = std::time::Instant::now();
    agent.wait("BP", |o| o.readings.len() == 1).await;
    let first = agent.outbox.lock().unwrap().first_at.unwrap() - t0;
    println!("advertisement to reading stashed: {} ms", first.as_millis());
    agent.fake.remove_device(CUFF).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent
        .fake
        .queue_record(
            CUFF,
            profiles::blood_pressure(118, 79, 92, 61, minutes_ago(1)),
        )
        .unwrap();
    agent.fake.set_advertising(CUFF, true).unwrap();
    agent
        .wait("BP after coming back", |o| o.readings.len() == 2)
        .await;
    agent.stop().await;
}
