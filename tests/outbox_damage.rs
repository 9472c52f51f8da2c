//! Outbox damage seen by the agent as a process: a damaged page in an outbox full of unsent
//! readings makes the agent move the file aside at start, salvage the readable unsent rows
//! into a fresh outbox (the alarm gives the counts) and deliver them exactly once; an outbox
//! truncated to zero length with its WAL gone raises `outbox-reset`.

mod common;

use std::time::Duration;

use common::*;
use tm_protocol::Transport;

fn alarm(status: &serde_json::Value, kind: &str) -> Option<String> {
    status["alarms"].as_array().and_then(|a| {
        a.iter()
            .find(|a| a["kind"] == kind)
            .map(|a| a["message"].as_str().unwrap_or("").to_owned())
    })
}

/// Whether the agent moved a damaged outbox aside.
fn moved_aside(gw: &GatewaySide) -> bool {
    std::fs::read_dir(&gw.dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
}

/// Runs the agent with the provider down until `count` readings are committed, then stops it
/// cleanly (the WAL is checkpointed into the file).
async fn fill_offline(gw: &GatewaySide, count: u32) {
    let mut agent = gw.spawn_agent(count, 0);
    let filled = eventually(Duration::from_secs(30), || async {
        gw.status()["backlog"] == count
    })
    .await;
    assert!(filled, "{}", gw.status());
    assert!(agent.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_readings_of_a_corrupt_outbox_are_salvaged_and_delivered_once() {
    const COUNT: u32 = 600;
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewaySide::new(
        dir.path(),
        "[sync]\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\n",
    );
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let (addr, _stop) = provider.serve_http("127.0.0.1:0".parse().unwrap()).await;
    // Enrolled with a provider that does not answer yet.
    gw.enroll(
        &provider.key,
        Transport::Https,
        &format!("http://127.0.0.1:{}", free_port()),
    );
    fill_offline(&gw, COUNT).await;

    // Damage the page holding the record of sequence 350.
    let path = gw.dir.join("outbox.db");
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"\"sequence\":350,";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("record in the file");
    let page = at / 4096 * 4096;
    bytes[page..page + 4096].fill(0xff);
    std::fs::write(&path, bytes).unwrap();

    // The provider is reachable now; the agent starts without a device feeding it.
    gw.enroll(&provider.key, Transport::Https, &format!("http://{addr}"));
    let log = dir.path().join("agent.log");
    let mut agent = gw.spawn_agent_logged(&[], "warn", &log);
    // `status` reads the damaged file until the agent has moved it aside.
    let moved = eventually(Duration::from_secs(20), || async { moved_aside(&gw) }).await;
    assert!(moved, "the damaged file is kept for inspection");
    let salvaged = eventually(Duration::from_secs(20), || async {
        // The salvage's counts replace the first message.
        alarm(&gw.status(), "database-corrupt").is_some_and(|m| m.contains("could not"))
    })
    .await;
    let status = gw.status();
    assert!(salvaged, "{status}");
    let message = alarm(&status, "database-corrupt").unwrap();
    let recovered: u64 = message
        .split(" readings not yet sent were recovered")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{message}"));
    assert!(
        (500..u64::from(COUNT)).contains(&recovered),
        "all but one page: {message}"
    );
    assert!(message.contains("rows could not be read"), "{message}");

    // Every salvaged reading arrives, once.
    let arrived = eventually(Duration::from_secs(30), || async {
        provider.count().await >= recovered && gw.status()["backlog"] == 0
    })
    .await;
    assert!(arrived, "{} of {recovered}", provider.count().await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (n, mut seqs) = provider.readings().await;
    assert_eq!(n, recovered);
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(u64::try_from(seqs.len()).unwrap(), recovered, "once each");
    assert!(
        !seqs.contains(&350),
        "the damaged page's readings are not invented"
    );
    kill(&mut agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_truncated_to_zero_raises_outbox_reset_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewaySide::new(dir.path(), "");
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    gw.enroll(
        &provider.key,
        Transport::Https,
        &format!("http://127.0.0.1:{}", free_port()),
    );
    fill_offline(&gw, 200).await;
    let path = gw.dir.join("outbox.db");
    std::fs::File::create(&path).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", path.display()));
    }
    let log = dir.path().join("agent.log");
    let mut agent = gw.spawn_agent_logged(&[], "warn", &log);
    let raised = eventually(Duration::from_secs(20), || async {
        alarm(&gw.status(), "outbox-reset").is_some()
    })
    .await;
    kill(&mut agent);
    let status = gw.status();
    assert!(raised, "{status}");
    assert!(
        alarm(&status, "outbox-reset")
            .unwrap()
            .contains("the outbox was reset"),
        "{status}"
    );
    assert_eq!(status["backlog"], 0);
}
