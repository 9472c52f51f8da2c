//! Prints two BLE figures against the simulator on a private bus: the time from the first
//! advertisement to a reading stashed, and the process RSS while idle with two paired devices
//! (simulator in the same process, so an upper bound for the agent alone).
//! Run: `cargo run --release --example ble_figures`

use std::time::{Duration, Instant};

use tm_gateway::ble::central::{self, BleOptions};
use tm_gateway::ble::paired::{PairedDevice, PairedStore};
use tm_gateway::stash::{StashHandle, StashOutcome};
use tm_sim_bluez::{FakeBluez, bus::PrivateBus, profiles};

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[allow(unsafe_code)]
fn main() -> anyhow::Result<()> {
    let bus = PrivateBus::start()?;
    // SAFETY: single-threaded here; no D-Bus connection exists yet.
    unsafe { std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", bus.address()) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let now = chrono::Local::now().naive_local();
        let mut scale = profiles::weight_scale("C0:FF:EE:00:00:01");
        scale.stored.push(profiles::weight_kg(14_000, now));
        let mut cuff = profiles::bp_cuff("C0:FF:EE:00:00:02");
        cuff.stored.push(profiles::blood_pressure(120, 80, 93, 60, now));
        let fake = FakeBluez::start(bus.address(), vec![scale, cuff]).await?;
        let dir = tempfile::tempdir()?;
        let store = PairedStore::in_state_dir(dir.path());
        for (a, m) in [("C0:FF:EE:00:00:01", "sig-weight-scale"), ("C0:FF:EE:00:00:02", "sig-blood-pressure")] {
            let mut d = PairedDevice::new(a);
            d.model_id = Some(m.into());
            store.upsert(d)?;
            fake.set_paired(a).await?;
        }
        let (handle, mut rx) = StashHandle::channel();
        let (tx, mut first) = tokio::sync::mpsc::channel::<Instant>(8);
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let _ = tx.try_send(Instant::now());
                let _ = req.reply.send(Ok(StashOutcome { inserted: req.items.len(), duplicates: 0 }));
            }
        });
        let cancel = tokio_util::sync::CancellationToken::new();
        let started = Instant::now();
        let task = tokio::spawn(central::run(BleOptions { adapter: "hci0".into(), quiet: Duration::from_secs(30) }, store, handle, cancel.clone()));
        let t = first.recv().await.ok_or_else(|| anyhow::anyhow!("no reading"))?;
        println!("discovery start to first reading stashed: {} ms (connect, discover, DIS, battery, clock, subscribe, first indication)", (t - started).as_millis());
        tokio::time::sleep(Duration::from_secs(3)).await;
        println!("idle RSS with two paired devices (agent + simulator in one process): {} KiB", rss_kib());
        cancel.cancel();
        let _ = task.await;
        fake.stop().await?;
        anyhow::Ok(())
    })
}
