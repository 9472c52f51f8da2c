//! The agent's real btleplug path against the BlueZ simulator on a private dbus-daemon
//! (one bus per test process, tests serialised). Each test owns the receiving end of the
//! stash channel and answers like the outbox: a reading id seen before is a duplicate.
//!
//! - [`devices`]: every scripted device read with correct values, time quality and clock;
//! - [`pairing`]: passkey, numeric comparison and displayed passkey bonds;
//! - [`remote`]: pairing driven by the nurse's phone through the command executor;
//! - [`faults`]: connect failures, StartNotify failure, slow ServicesResolved, the discovery
//!   watchdog, link loss and removal without leaking link tasks;
//! - [`signals`]: the adverts of a device that is not watched never reach the agent.

mod devices;
mod faults;
mod pairing;
mod remote;
mod signals;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDateTime;
use tm_gateway::ble::central::{BleOptions, Central, CentralStatus};
use tm_gateway::ble::paired::{PairedDevice, PairedStore};
use tm_gateway::stash::{StashHandle, StashOutcome, Stashable};
use tm_protocol::Reading;
use tm_sim_bluez::{DeviceSpec, FakeBluez, Faults, bus::shared_test_bus};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the fake outbox committed: unique readings, and how many duplicates it refused.
#[derive(Debug, Default)]
pub struct Outbox {
    pub readings: Vec<Reading>,
    pub ids: HashSet<String>,
    pub duplicates: usize,
    pub first_at: Option<std::time::Instant>,
}

#[derive(Debug)]
pub struct Agent {
    pub fake: FakeBluez,
    pub outbox: Arc<Mutex<Outbox>>,
    pub status: watch::Receiver<CentralStatus>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pub store: PairedStore,
    _dir: tempfile::TempDir,
}

/// The options of these tests: quick watchdog and paired-file reload.
pub fn test_options() -> BleOptions {
    BleOptions {
        quiet: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(10),
        paired_reload: Duration::from_millis(200),
        ..BleOptions::new("hci0")
    }
}

pub fn minutes_ago(m: i64) -> NaiveDateTime {
    let t = chrono::Local::now().naive_local() - chrono::Duration::minutes(m);
    t.with_nanosecond(0).unwrap_or(t)
}
use chrono::Timelike as _;

pub async fn start(devices: Vec<DeviceSpec>, paired: &[(&str, &str)]) -> Agent {
    start_with(devices, paired, &[], test_options()).await
}

/// Starts the simulator with `faults` injected before the central starts, then the central.
pub async fn start_with(
    devices: Vec<DeviceSpec>,
    paired: &[(&str, &str)],
    faults: &[(&str, Faults)],
    opts: BleOptions,
) -> Agent {
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
    for (addr, f) in faults {
        fake.set_faults(addr, f.clone()).unwrap();
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
    let (central, status) = Central::new(opts, store.clone(), handle);
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        central.run(c).await.expect("BLE side");
    });
    Agent {
        fake,
        outbox,
        status,
        cancel,
        task,
        store,
        _dir: dir,
    }
}

impl Agent {
    pub async fn wait(&self, what: &str, f: impl Fn(&Outbox) -> bool) {
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

    pub async fn wait_sim(&self, what: &str, f: impl Fn(&FakeBluez) -> bool) {
        for _ in 0..750 {
            if f(&self.fake) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }

    /// Waits until the central's status satisfies `f`.
    pub async fn wait_status(&self, what: &str, f: impl Fn(&CentralStatus) -> bool) {
        let mut rx = self.status.clone();
        let waited = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|s| f(s))).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "timed out waiting for {what}: {:?}",
            *self.status.borrow()
        );
    }

    pub async fn stop(self) -> Vec<Reading> {
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

pub fn value(r: &Reading, code: &str) -> f64 {
    r.components
        .iter()
        .find(|c| c.code == code)
        .map(|c| c.value)
        .unwrap_or(f64::NAN)
}

pub const SCALE: &str = "C0:FF:EE:00:00:01";
pub const CUFF: &str = "C0:FF:EE:00:00:02";
pub const OXI: &str = "C0:FF:EE:00:00:03";
pub const THERMO: &str = "C0:FF:EE:00:00:04";
pub const GLUCO: &str = "C0:FF:EE:00:00:05";
pub const MI: &str = "C0:FF:EE:00:00:06";

/// The agent with the paired Mi scale, once the scale's first weighing (70.5 kg) is read.
pub async fn start_with_mi_weighing() -> Agent {
    let mut mi = tm_sim_bluez::profiles::xiaomi_scale(MI);
    mi.service_data.push((
        0x181D,
        tm_sim_bluez::profiles::mi_scale_v1(14_100, minutes_ago(0)),
    ));
    let agent = start(vec![mi], &[(MI, "xiaomi-mi-scale-2")]).await;
    agent
        .wait("first Mi weight", |o| o.readings.len() == 1)
        .await;
    agent
}

impl Agent {
    /// The Mi scale's next weighing (71.5 kg) becomes its advertised frame.
    pub fn weigh_again_on_mi(&self) {
        self.fake
            .set_service_data(
                MI,
                0x181D,
                tm_sim_bluez::profiles::mi_scale_v1(
                    14_300,
                    minutes_ago(0) + chrono::Duration::seconds(1),
                ),
            )
            .unwrap();
    }
}
pub const AND: &str = "C0:FF:EE:00:00:07";
