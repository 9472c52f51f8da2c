//! The HUB client through the emulator: failures and recovery (in order, none lost), token
//! expiry and revocation, and a provider restart with updates still pending.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn status_changes(s: &Stack, id: &str) -> Vec<String> {
    s.sim.hub.with(|h| {
        h.sessions[id]
            .timeline
            .iter()
            .filter_map(|e| match &e.kind {
                tm_sim_hub::state::EventKind::StatusChanged { to, .. } => Some(to.clone()),
                _ => None,
            })
            .collect()
    })
}

/// Rows still pending once the outbox is done (bounded wait): the HUB applies a PUT before it
/// answers, and the row is marked delivered only after the answer.
async fn delivered_all(store: &tm_provider::store::Store) -> i64 {
    tm_testkit::wait::settle(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async { store.pending_hub_updates().await.unwrap() },
        |pending| *pending == 0,
    )
    .await
}

#[tokio::test]
async fn a_failing_hub_recovers_and_gets_every_status_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path()).await;
    s.prescribe("tm-f", "rx-1").await;
    let url = s.prescribe("tm-f", "rx-1").await["body"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    s.control(
        "faults",
        json!([{"kind": "status", "code": 503}, {"kind": "timeout"}, {"kind": "status", "code": 500},
               {"kind": "slow", "ms": 50}, {"kind": "status", "code": 502}]),
    )
    .await;
    let code = s.issue_code(&url).await;
    assert_eq!(enroll_with(&s, &code).await.0, 200);
    assert_eq!(s.act("tm-f", "stop").await["status"], 200);
    s.wait_hub_status("tm-f", "completed").await;
    assert_eq!(status_changes(&s, "tm-f"), vec!["accepted", "completed"]);
    assert_eq!(delivered_all(&s.state.store).await, 0);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
    s.stop().await;
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path()).await;
    s.control("token-ttl", json!({"seconds": 1})).await;
    accepted_session(&s, "tm-t").await;
    let first = s.sim.hub.with(|h| h.token_requests);
    // Expiry: the cached token is not used past expires_in.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.prescribe("tm-t2", "rx-1").await;
    assert_eq!(s.act("tm-t2", "cancel").await["status"], 200);
    s.wait_hub_status("tm-t2", "cancelled").await;
    let second = s.sim.hub.with(|h| h.token_requests);
    assert!(second > first);
    // Revocation: one 401, one re-authentication, delivered.
    s.control("token-ttl", json!({"seconds": 3600})).await;
    s.control("revoke-tokens", json!({})).await;
    assert_eq!(s.act("tm-t", "stop").await["status"], 200);
    s.wait_hub_status("tm-t", "completed").await;
    assert!(s.sim.hub.with(|h| h.token_requests) > second);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
    s.stop().await;
}

#[tokio::test]
async fn updates_pending_at_shutdown_are_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path()).await;
    s.prescribe("tm-r", "rx-1").await;
    s.prescribe("tm-r2", "rx-1").await;
    // Every HUB call fails for now.
    let many: Vec<_> = (0..1000)
        .map(|_| json!({"kind": "status", "code": 503}))
        .collect();
    s.control("faults", json!(many)).await;
    assert_eq!(s.act("tm-r", "cancel").await["status"], 200);
    assert_eq!(s.act("tm-r2", "stop").await["status"], 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.state.store.pending_hub_updates().await.unwrap(), 2);
    s.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The HUB heals; a new provider process on the same database delivers what was pending.
    s.sim.hub.with(|h| h.faults.clear());
    assert_eq!(s.hub_status("tm-r").as_deref(), Some("requested"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let text = config_text(dir.path(), &addr, &s.sim.url());
    let (state, shutdown) = start_provider(listener, &text).await;
    s.wait_hub_status("tm-r", "cancelled").await;
    s.wait_hub_status("tm-r2", "cancelled").await;
    assert_eq!(delivered_all(&state.store).await, 0);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
    shutdown.cancel();
    s.sim.shutdown.cancel();
}
