//! A reading can be followed by its `reading_id` through the logs at debug level, from the
//! agent's commit to the provider's: committed, leased into a batch, acknowledged by the
//! receipt (the agent, `TM_LOG=tm_gateway=debug`), stored inside the `ingest` span that names
//! the gateway and the batch (the provider, in this process, `tm_provider=debug`). The trail
//! holds ids only: no measurement value appears in either log.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tm_protocol::Transport;

/// Everything the provider logs in this process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_is_followed_by_its_id_from_the_agent_to_the_provider() {
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("tm_provider=debug")
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    let dir = tempfile::tempdir().unwrap();
    let gw = GatewaySide::new(dir.path(), "[sync]\nbatch_max_readings = 10\n");
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let (addr, _stop) = provider.serve_http("127.0.0.1:0".parse().unwrap()).await;
    gw.enroll(&provider.key, Transport::Https, &format!("http://{addr}"));
    let log = dir.path().join("agent.log");
    let mut agent = gw.spawn_agent_logged(&["--simulate-readings", "30"], "tm_gateway=debug", &log);
    assert_all_delivered(&gw, &provider, 30, Duration::from_secs(60)).await;
    // The receipt of the last batch may be settled just after the provider's commit.
    let ids: Vec<String> = provider
        .store
        .sqlite()
        .expect("a SQLite store")
        .read(|c| {
            let mut stmt = c.prepare("SELECT reading_id FROM readings ORDER BY reading_id")?;
            stmt.query_map([], |r| r.get(0))?.collect()
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), 30);
    let acknowledged = eventually(Duration::from_secs(20), || async {
        gw.status()["acknowledged"] == 30
    })
    .await;
    assert!(acknowledged, "{}", gw.status());
    kill(&mut agent);

    let provider_log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for id in &ids {
        for step in [
            "reading committed",
            "reading leased",
            "reading acknowledged",
        ] {
            let lines = log_lines(&log, &[id, step]);
            assert_eq!(lines.len(), 1, "agent: {step} {id}: {lines:?}");
        }
        let batch = log_lines(&log, &[id, "reading leased"])[0]
            .split("batch=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .to_owned();
        assert_eq!(
            log_lines(&log, &[&format!("batch={batch}"), "batch sent"]).len(),
            1,
            "the batch {batch} is sent once"
        );
        let stored: Vec<&str> = provider_log
            .lines()
            .filter(|l| l.contains(id.as_str()) && l.contains("reading stored"))
            .collect();
        assert_eq!(stored.len(), 1, "provider: stored {id}:\n{provider_log}");
        assert!(
            stored[0].contains(&format!("batch={batch}"))
                && stored[0].contains(&format!("gateway={}", gw.id)),
            "the provider's line names the ingest span's gateway and batch: {}",
            stored[0]
        );
    }
    // Ids, never values (the simulated readings are 120/80 mm[Hg]).
    let agent_log = std::fs::read_to_string(&log).unwrap();
    for text in [&agent_log, &provider_log] {
        assert!(
            !text.contains("120.0") && !text.contains("mm[Hg]"),
            "a measurement value reached the logs"
        );
    }
}
