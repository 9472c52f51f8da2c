//! The agent on a full disk: the state directory on a small tmpfs (mounted by the test, as root;
//! skipped with a message where mounting is not permitted), filled by the simulated stream while
//! the provider is down, with some other file taking part of the disk. The agent keeps running
//! (also across a restart on the full disk) with the `disk-full` alarm in `tm-gateway status`;
//! when the provider comes back every committed reading arrives exactly once, the refused ones
//! (kept by the device, here the simulator) follow, the heartbeat carries the alarm to the
//! provider's operations alerts, and the alarm clears once space is freed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use tm_protocol::Transport;

/// A tmpfs mounted for the test, unmounted when dropped (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fills `path` with `bytes` of zeros, as far as the disk lets it.
fn filler(path: &Path, bytes: usize) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len());
        if f.write_all(&block[..n]).is_err() {
            break;
        }
        left -= n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_the_agent_running_and_loses_nothing() {
    const COUNT: u32 = 12_000;
    let dir = tempfile::tempdir().unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&dir.path().join("gw"), "6m") else {
        return;
    };
    // The quota is above the disk's size: the disk fills before the quota does.
    let gw = GatewaySide::new(
        dir.path(),
        "[store]\nquota_mb = 32\n[sync]\nheartbeat_interval_s = 1\nbackoff_initial_ms = 50\n\
         backoff_max_ms = 300\nrequest_timeout_ms = 2000\n",
    );
    // Something else on the same disk (logs, say).
    filler(&gw.dir.join("other-data"), 1536 * 1024);
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let port = free_port();
    gw.enroll(
        &provider.key,
        Transport::Https,
        &format!("http://127.0.0.1:{port}"),
    );

    // The provider is down; the stream fills the disk.
    let mut agent = gw.spawn_agent(COUNT, 0);
    let mut stopped = false;
    let full = eventually(Duration::from_secs(60), || {
        stopped = !agent.is_running();
        let alarmed = has_alarm(&gw.status(), "disk-full");
        async move { stopped || alarmed }
    })
    .await;
    assert!(!stopped, "the agent stopped on the full disk");
    let status = gw.status();
    assert!(full, "no disk-full alarm: {status}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(agent.is_running(), "the agent stopped on the full disk");
    let status = gw.status();
    assert!(has_alarm(&status, "disk-full"), "{status}");
    assert_eq!(status["rejected"], 0);
    let committed = status["backlog"].as_u64().unwrap();
    assert!(
        committed > 0 && committed < u64::from(COUNT),
        "the disk should hold part of the stream: {status}"
    );

    // A restart on the full disk starts too (no crash loop), with the alarm.
    kill(&mut agent);
    let mut agent = gw.spawn_agent(COUNT, 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        agent.is_running(),
        "the agent does not start on a full disk"
    );
    let status = gw.status();
    assert!(has_alarm(&status, "disk-full"), "{status}");
    assert!(status["backlog"].as_u64().unwrap() >= committed, "{status}");

    // The provider comes back: everything committed, then the rest of the stream, arrives once.
    let (_addr, _stop) = provider
        .serve_http(format!("127.0.0.1:{port}").parse().unwrap())
        .await;
    let arrived = eventually(Duration::from_secs(30), || async {
        provider.count().await >= committed
    })
    .await;
    assert!(arrived, "only {} arrived", provider.count().await);

    // The heartbeat carries the alarm: the provider's operations raise an alert.
    let evaluator = provider.ops.evaluator();
    let alerted = eventually(Duration::from_secs(20), || async {
        tm_provider::ops::evaluator::run_once(&evaluator.store, &evaluator.thresholds, chrono::Utc::now())
            .await
            .unwrap();
        provider
            .store
            .sqlite().expect("a SQLite store").read(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM ops_alerts WHERE kind = 'disk-full' AND state <> 'resolved'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await
            .unwrap()
            == 1
    })
    .await;
    assert!(alerted, "no disk-full operations alert");

    assert_all_delivered(&gw, &provider, COUNT, Duration::from_secs(120)).await;
    assert!(agent.is_running());

    // Space is freed: the alarm clears.
    std::fs::remove_file(gw.dir.join("other-data")).unwrap();
    let cleared = eventually(Duration::from_secs(60), || async {
        !has_alarm(&gw.status(), "disk-full")
    })
    .await;
    let status = gw.status();
    assert!(cleared, "{status}");
    assert_eq!(status["rejected"], 0);
    assert!(agent.is_running());
    kill(&mut agent);
}
