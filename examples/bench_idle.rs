//! Idle and latency benchmark (run with `scripts/bench idle`): the real `tm-gateway run`
//! enrolled with the provider on loopback (in this process, over HTTPS and over MQTT in turn)
//! and reading two paired devices of the `tm-sim-bluez` binary (a scale and a blood-pressure
//! cuff). Prints, per transport:
//!
//! - the agent's CPU time per second of wall time while idle (both devices connected, nothing
//!   to send), summed over its threads from `/proc/PID/task/*/schedstat` (nanoseconds, sampled
//!   every 250 ms because threads come and go), and its context switches per second (how
//!   often it wakes);
//! - its resident memory while idle;
//! - the time from a blood-pressure indication written to the simulator to the reading
//!   committed at the provider, median and 99th percentile over the indications.
//!
//! The last lines are the machine-readable results. Environment: `TM_GATEWAY_BIN`,
//! `TM_SIM_BLUEZ_BIN` (release binaries), `BENCH_IDLE_S` (seconds measured idle, default 30),
//! `BENCH_INDICATIONS` (default 100).

#[path = "support/loopback.rs"]
mod loopback;

use std::io::{BufRead as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use loopback::{Loopback, ProviderStore, rss_mb, rss_split_mb};
use tm_gateway::ble::paired::{PairedDevice, PairedStore};
use tm_protocol::Transport;

const CUFF: &str = "C0:FF:EE:00:00:02";
const SCALE: &str = "C0:FF:EE:00:00:01";

/// CPU time (nanoseconds) and context switches of each thread of `pid` so far, by thread id.
fn per_thread(pid: u32) -> std::collections::HashMap<String, (u64, u64)> {
    let mut threads = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let p = task.path();
        let ns = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        let mut switches = 0;
        if let Ok(s) = std::fs::read_to_string(p.join("status")) {
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches:")
                    || l.starts_with("nonvoluntary_ctxt_switches:")
                {
                    switches += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        threads.insert(
            task.file_name().to_string_lossy().into_owned(),
            (ns, switches),
        );
    }
    threads
}

/// CPU time (nanoseconds) and context switches of `pid` over `span`, sampled every 250 ms
/// and summed per thread: threads come and go (the runtime's blocking pool lets an idle
/// thread exit after seconds), and a thread's counters go with it. A thread that starts is
/// counted from zero; one that exits loses at most its last 250 ms.
async fn cpu_and_switches_over(pid: u32, span: Duration) -> (u64, u64) {
    let (mut ns, mut switches) = (0, 0);
    let mut last = per_thread(pid);
    let end = Instant::now() + span;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(250).min(end - Instant::now())).await;
        let now = per_thread(pid);
        for (tid, (n, s)) in &now {
            let (n0, s0) = last.get(tid).copied().unwrap_or((0, 0));
            ns += n.saturating_sub(n0);
            switches += s.saturating_sub(s0);
        }
        last = now;
    }
    (ns, switches)
}

/// SIGTERM to a child this program started, then wait for it.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// A blood-pressure measurement frame with a device time of `n` seconds after a fixed start
/// (each frame is a new reading).
fn bp_frame(n: u32) -> String {
    let (minute, second) = ((n / 60) % 60, n % 60);
    let hour = 8 + (n / 3600) % 12;
    format!(
        "02780050005D00EA0705{:02X}{:02X}{:02X}{:02X}",
        9, hour, minute, second
    )
}

/// The `pct`-th percentile of sorted values (nearest rank).
fn percentile(sorted: &[f64], pct: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) * pct)
        .div_ceil(100)
        .min(sorted.len() - 1)]
}

struct Figures {
    idle_cpu_ms_per_s: f64,
    wakeups_per_s: f64,
    idle_rss_mb: f64,
    /// Of `idle_rss_mb`: the agent's own pages and the pages mapped from files.
    idle_rss_split_mb: (f64, f64),
    latency_ms: Vec<f64>,
}

async fn run(transport: Transport, agent_bin: &str, sim_bin: &str) -> Figures {
    let idle_s: u64 = std::env::var("BENCH_IDLE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let indications: u32 = std::env::var("BENCH_INDICATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let (side, ()) = Loopback::start(transport, ProviderStore::Sqlite, "", |_| async {}).await;
    let mut sim = Command::new(sim_bin)
        .args(["--household", "demo", "--print-address"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sim_out = std::io::BufReader::new(sim.stdout.take().unwrap());
    let mut line = String::new();
    sim_out.read_line(&mut line).unwrap();
    let bus = line
        .trim()
        .strip_prefix("DBUS_SYSTEM_BUS_ADDRESS=")
        .expect("the simulator prints its bus first")
        .to_owned();
    let store = PairedStore::in_state_dir(&side.state);
    for (address, model) in [(SCALE, "sig-weight-scale"), (CUFF, "sig-blood-pressure")] {
        let mut d = PairedDevice::new(address);
        d.model_id = Some(model.into());
        store.upsert(d).unwrap();
    }
    let mut agent = Command::new(agent_bin)
        .arg("--config")
        .arg(&side.config)
        .arg("run")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
        .env("TM_LOG", "off")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent.id();
    // Both devices' stored records reach the provider; then everything settles.
    let deadline = Instant::now() + Duration::from_secs(60);
    while side.stored().await < 2 {
        assert!(
            Instant::now() < deadline,
            "{transport:?}: the devices' readings never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    let t0 = Instant::now();
    let (cpu, switches) = cpu_and_switches_over(pid, Duration::from_secs(idle_s)).await;
    let wall = t0.elapsed().as_secs_f64();
    let idle_cpu_ms_per_s = cpu as f64 / 1e6 / wall;
    let wakeups_per_s = switches as f64 / wall;
    let idle_rss_mb = rss_mb(pid);
    let idle_rss_split_mb = rss_split_mb(pid);
    println!(
        "{transport:?}: idle {idle_cpu_ms_per_s:.3} ms CPU/s, {wakeups_per_s:.1} context switches/s, RSS {idle_rss_mb:.1} MB ({:.1} MB its own, {:.1} MB mapped from files)",
        idle_rss_split_mb.0, idle_rss_split_mb.1
    );

    // Indication -> committed at the provider, one at a time.
    let mut stdin = sim.stdin.take().unwrap();
    let mut latency_ms = Vec::new();
    for n in 0..indications {
        let before = side.stored().await;
        let sent = Instant::now();
        writeln!(stdin, "indicate {CUFF} 2A35 {}", bp_frame(n)).unwrap();
        stdin.flush().unwrap();
        let deadline = sent + Duration::from_secs(10);
        loop {
            if side.stored().await > before {
                latency_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if Instant::now() > deadline {
                println!("{transport:?}: indication {n} not committed within 10 s");
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        // Let the agent go idle again between indications.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latency_ms.sort_by(f64::total_cmp);
    println!(
        "{transport:?}: indication to provider commit over {} readings: median {:.1} ms, p99 {:.1} ms",
        latency_ms.len(),
        percentile(&latency_ms, 50),
        percentile(&latency_ms, 99)
    );
    terminate(&mut agent);
    drop(stdin);
    terminate(&mut sim);
    drop(side);
    Figures {
        idle_cpu_ms_per_s,
        wakeups_per_s,
        idle_rss_mb,
        idle_rss_split_mb,
        latency_ms,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let agent =
        std::env::var("TM_GATEWAY_BIN").unwrap_or_else(|_| "target/release/tm-gateway".into());
    let sim =
        std::env::var("TM_SIM_BLUEZ_BIN").unwrap_or_else(|_| "target/release/tm-sim-bluez".into());
    let https = run(Transport::Https, &agent, &sim).await;
    let mqtt = run(Transport::Mqtt, &agent, &sim).await;
    for (name, f) in [("https", &https), ("mqtt", &mqtt)] {
        println!("agent_idle_cpu_ms_per_s_{name}={:.3}", f.idle_cpu_ms_per_s);
        println!("agent_idle_wakeups_per_s_{name}={:.1}", f.wakeups_per_s);
        println!("agent_idle_rss_mb_{name}={:.1}", f.idle_rss_mb);
        println!("agent_idle_rss_anon_mb_{name}={:.1}", f.idle_rss_split_mb.0);
        println!("agent_idle_rss_file_mb_{name}={:.1}", f.idle_rss_split_mb.1);
        println!(
            "indication_to_commit_ms_median_{name}={:.1}",
            percentile(&f.latency_ms, 50)
        );
        println!(
            "indication_to_commit_ms_p99_{name}={:.1}",
            percentile(&f.latency_ms, 99)
        );
    }
}
