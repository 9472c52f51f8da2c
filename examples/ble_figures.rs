//! Prints two BLE figures against the simulator on a private bus: the time from the first
//! advertisement to a reading stashed, and the RSS while idle with two paired devices.
//!
//! The in-process figures (central and simulator in this process) always print. With
//! `TM_GATEWAY_BIN` and `TM_SIM_BLUEZ_BIN` set (`scripts/bench ble` sets them), the real agent
//! (`tm-gateway run`) is also started against the `tm-sim-bluez` binary, and the agent
//! process's own VmRSS is read from /proc once both readings are in its outbox.
//! Run: `scripts/bench ble` (or `cargo run --release --example ble_figures`)

use std::time::{Duration, Instant};

use tm_gateway::ble::central::{self, BleOptions};
use tm_gateway::ble::paired::{PairedDevice, PairedStore};
use tm_gateway::stash::{StashHandle, StashOutcome};
use tm_sim_bluez::{FakeBluez, bus::PrivateBus, profiles};

fn rss_kib() -> u64 {
    rss_kib_of("self")
}

fn rss_kib_of(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// SIGTERM to a child this program started, then wait for it.
fn terminate(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The real agent against the simulator binary: returns (ms to both readings in the outbox,
/// idle VmRSS of the agent process in KiB).
fn agent_alone(agent_bin: &str, sim_bin: &str) -> anyhow::Result<(u128, u64)> {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let mut sim = Command::new(sim_bin)
        .args(["--household", "demo", "--print-address"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = std::io::BufReader::new(sim.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    let address = line
        .trim()
        .strip_prefix("DBUS_SYSTEM_BUS_ADDRESS=")
        .ok_or_else(|| anyhow::anyhow!("the simulator printed {line:?}"))?
        .to_string();
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state)?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("state_dir = \"{}\"\n", state.display()))?;
    let (provider_key, _) = tm_protocol::SigningKey::load_or_create(&dir.path().join("p.key"))?;
    tm_gateway::enrollment::Enrollment {
        gateway_id: tm_protocol::GatewayId::new("gw-figures")?,
        provider_url: "http://127.0.0.1:9".into(),
        provider_public_key: provider_key.verifying_key().as_bytes().to_vec(),
        sync: tm_protocol::SyncSettings {
            transport: tm_protocol::Transport::Https,
            https_url: "http://127.0.0.1:9".into(),
            mqtt_url: None,
            heartbeat_interval_s: 60,
        },
        enrolled_at: chrono::Utc::now(),
    }
    .save(&state)?;
    let store = PairedStore::in_state_dir(&state);
    for (a, m) in [
        ("C0:FF:EE:00:00:01", "sig-weight-scale"),
        ("C0:FF:EE:00:00:02", "sig-blood-pressure"),
    ] {
        let mut d = PairedDevice::new(a);
        d.model_id = Some(m.into());
        store.upsert(d)?;
    }
    let started = Instant::now();
    let mut agent = Command::new(agent_bin)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .env("TM_LOG", "off")
        .spawn()?;
    let outbox = state.join(tm_gateway::store::FILE_NAME);
    let mut both = None;
    for _ in 0..600 {
        std::thread::sleep(Duration::from_millis(50));
        let backlog = tm_gateway::store::read_status(&outbox, u64::MAX)
            .map(|s| s.backlog())
            .unwrap_or(0);
        if backlog >= 2 {
            both = Some(started.elapsed().as_millis());
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(5));
    let rss = rss_kib_of(&agent.id().to_string());
    terminate(&mut agent);
    terminate(&mut sim);
    let both = both.ok_or_else(|| anyhow::anyhow!("the agent never stored both readings"))?;
    Ok((both, rss))
}

#[allow(unsafe_code)]
fn main() -> anyhow::Result<()> {
    if let (Ok(agent), Ok(sim)) = (
        std::env::var("TM_GATEWAY_BIN"),
        std::env::var("TM_SIM_BLUEZ_BIN"),
    ) {
        let (ms, rss) = agent_alone(&agent, &sim)?;
        println!(
            "tm-gateway run against tm-sim-bluez: start to both readings committed in the outbox: {ms} ms"
        );
        println!("idle RSS of the agent process alone with two paired devices: {rss} KiB");
    }
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
        let task = tokio::spawn(central::run(BleOptions::new("hci0"), store, handle, cancel.clone()));
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
