//! A HUB that refuses status updates (4xx), through the emulator over HTTP: one refusal is
//! retried and the session's later updates follow it in order; a HUB that keeps refusing past
//! the window gets the row held, one alert per session, the session's later updates kept back
//! while other sessions' updates go through; held rows stay held across a restart, and an
//! operator re-queues them through the ops API: delivered in order, alert resolved, audited.

mod common;
mod fixtures;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::{Value, json};
use tm_protocol::TimeQuality;
use tm_sim_hub::state::EventKind;

const TOKEN: &str = "ops-token-for-hub-refusals";

/// The common configuration with `[hub]` retry delays and refusal window, and the ops token.
fn configure(dir: &Path, retry_ms: (u64, u64), window_ms: u64) -> impl FnOnce(String) -> String {
    let token = dir.join("ops-token");
    std::fs::write(&token, TOKEN).unwrap();
    move |text: String| {
        let hub = format!(
            "retry_initial_ms = {}\nretry_max_ms = {}\nrefused_retry_window_ms = {window_ms}\n",
            retry_ms.0, retry_ms.1
        );
        let text = text.replace("retry_initial_ms = 20\nretry_max_ms = 100\n", &hub);
        assert!(text.contains("refused_retry_window_ms"), "{text}");
        format!(
            "{text}[ops]\ntoken_file = \"{}\"\nevaluate_interval_s = 3600\n",
            token.display()
        )
    }
}

/// The status PUTs the HUB received for `id`: (status, answer), in order.
fn puts(s: &Stack, id: &str) -> Vec<(String, u16)> {
    s.sim.hub.with(|h| {
        h.sessions[id]
            .timeline
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StatusPut { body, answer } => {
                    Some((body["status"].as_str().unwrap_or("").to_owned(), *answer))
                }
                _ => None,
            })
            .collect()
    })
}

/// Files (not the dashboard) in the latest attachment set the HUB accepted for `id`.
fn announced_files(s: &Stack, id: &str) -> usize {
    s.sim.hub.with(|h| {
        h.sessions[id]
            .attachments
            .iter()
            .filter(|a| a["id"] != "dashboard")
            .count()
    })
}

/// Downloads the EHR made for `id`.
fn downloads(s: &Stack, id: &str) -> usize {
    s.sim.hub.with(|h| {
        h.sessions[id]
            .timeline
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Download { .. }))
            .count()
    })
}

fn status_changes(s: &Stack, id: &str) -> Vec<String> {
    s.sim.hub.with(|h| {
        h.sessions[id]
            .timeline
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StatusChanged { to, .. } => Some(to.clone()),
                _ => None,
            })
            .collect()
    })
}

async fn ops_get(s: &Stack, base: &str, path: &str) -> Value {
    let r = s
        .http
        .get(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// The undelivered outbox rows of `id`, as the ops API lists them.
async fn hub_updates(s: &Stack, base: &str, id: &str) -> Vec<Value> {
    ops_get(s, base, "/ops/api/hub-updates").await["updates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["telemonitoring_id"] == id)
        .cloned()
        .collect()
}

/// The `hub-update-held` alerts of `id` (resolved ones too).
async fn held_alerts(s: &Stack, base: &str, id: &str) -> Vec<Value> {
    ops_get(s, base, "/ops/api/alerts?all=1").await["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "hub-update-held" && a["subject"] == id)
        .cloned()
        .collect()
}

/// The gateway posts one signed batch (a blood pressure measured just now).
async fn post_reading(s: &Stack, gw: &Enrolled) {
    let at = (Utc::now() - chrono::Duration::seconds(5)).with_timezone(&fixtures::cest());
    let reading = fixtures::reading(
        "2A35",
        &fixtures::bp_frame(128, 85, 100, 72),
        fixtures::omron_cuff(),
        at,
        TimeQuality::NoDeviceTime,
    );
    post_batch(s, &s.provider, gw, "b-1", &[reading]).await;
}

/// Rows neither delivered nor held once the outbox is done (bounded wait).
async fn settled(store: &tm_provider::store::Store) -> (i64, i64) {
    tm_testkit::wait::settle(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async {
            (
                store.pending_hub_updates().await.unwrap(),
                store.held_hub_updates().await.unwrap(),
            )
        },
        |counts| *counts == (0, 0),
    )
    .await
}

#[tokio::test]
async fn one_refusal_is_retried_and_the_session_stays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // The refused row is retried after one second: the in-progress update is queued meanwhile
    // and must wait behind it.
    let s = stack_edited(dir.path(), configure(dir.path(), (1000, 1000), 60_000)).await;
    let id = "tm-once";
    let url = s.prescribe(id, "rx-1").await["body"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    s.control(
        "refuse",
        json!({"telemonitoringId": id, "code": 404, "status": "accepted", "times": 1}),
    )
    .await;
    let code = s.issue_code(&url).await;
    let gw = enroll_gateway(&s, &code).await;
    post_reading(&s, &gw).await;
    s.wait_hub_status(id, "in-progress").await;
    // The EHR fetches the announced files before the stop cuts the final set.
    let files = announced_files(&s, id);
    assert!(files > 0);
    for _ in 0..500 {
        if downloads(&s, id) >= files {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(downloads(&s, id), files);
    assert_eq!(s.act(id, "stop").await["status"], 200);
    s.wait_hub_status(id, "completed").await;

    assert_eq!(
        status_changes(&s, id),
        ["accepted", "in-progress", "completed"]
    );
    let sent = puts(&s, id);
    assert_eq!(sent[0], ("accepted".to_owned(), 404), "{sent:?}");
    assert_eq!(sent[1], ("accepted".to_owned(), 200), "{sent:?}");
    assert!(
        sent[1..].iter().all(|(_, answer)| *answer == 200),
        "{sent:?}"
    );
    assert!(s.violations().is_empty(), "{:?}", s.violations());
    assert_eq!(settled(&s.state.store).await, (0, 0));
    // One refusal inside the window raises no alert.
    assert!(held_alerts(&s, &s.provider, id).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn refusals_past_the_window_hold_the_session_until_an_operator_requeues_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = configure(dir.path(), (20, 100), 300);
    let s = stack_edited(dir.path(), config).await;
    let held = "tm-held";
    let other = "tm-other";

    // The HUB refuses every update of one session; the Portal then stops it.
    let url = s.prescribe(held, "rx-1").await["body"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    s.control("refuse", json!({"telemonitoringId": held, "code": 404}))
        .await;
    let code = s.issue_code(&url).await;
    assert_eq!(enroll_with(&s, &code).await.0, 200);
    assert_eq!(s.act(held, "stop").await["status"], 200);

    // Another session goes through meanwhile.
    accepted_session(&s, other).await;
    assert_eq!(s.act(other, "cancel").await["status"], 200);
    s.wait_hub_status(other, "cancelled").await;

    // Past the window the refused row is held, with one open alert.
    let mut rows = Vec::new();
    for _ in 0..300 {
        rows = hub_updates(&s, &s.provider, held).await;
        if rows.first().is_some_and(|r| r["state"] == "held") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["state"], "held", "{rows:?}");
    assert_eq!(rows[0]["status"], "accepted");
    assert!(rows[0]["last_error"].as_str().unwrap().starts_with("404"));
    assert!(rows[0]["refusals"].as_i64().unwrap() >= 3, "{rows:?}");
    assert_eq!(rows[1]["state"], "waiting");
    assert_eq!(rows[1]["status"], "completed");
    let seq = rows[0]["seq"].as_i64().unwrap();
    let alerts = held_alerts(&s, &s.provider, held).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "open");
    assert_eq!(alerts[0]["telemonitoring_id"], held);
    // The later update never reached the HUB: no illegal requested -> completed.
    let sent = puts(&s, held);
    assert!(
        sent.iter()
            .all(|(status, answer)| status == "accepted" && *answer == 404),
        "{sent:?}"
    );
    assert_eq!(s.hub_status(held).as_deref(), Some("requested"));
    assert_eq!(status_changes(&s, other), ["accepted", "cancelled"]);

    // The dashboard shows the held row with its re-queue form; a form from another site is
    // refused.
    let r = s
        .http
        .get(format!("{}/ops", s.provider))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains(&format!("<tr class=\"held\" data-hub-update=\"{seq}\">")),
        "{page}"
    );
    assert!(page.contains(&format!("action=\"/ops/hub-updates/{seq}/requeue\"")));
    let r = s
        .http
        .post(format!("{}/ops/hub-updates/{seq}/requeue", s.provider))
        .bearer_auth(TOKEN)
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A restarted provider keeps the row held and sends nothing for the session.
    s.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = puts(&s, held).len();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let base = format!("http://{addr}");
    let text = configure(dir.path(), (20, 100), 300)(config_text(dir.path(), &addr, &s.sim.url()));
    let (state, shutdown) = start_provider(listener, &text).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(puts(&s, held).len(), before);
    let rows = hub_updates(&s, &base, held).await;
    assert_eq!(rows[0]["state"], "held", "{rows:?}");
    assert_eq!(held_alerts(&s, &base, held).await[0]["state"], "open");

    // The HUB is fixed; the operator re-queues the row through the API.
    s.control(
        "refuse",
        json!({"telemonitoringId": held, "code": 404, "times": 0}),
    )
    .await;
    let r = s
        .http
        .post(format!("{base}/ops/api/hub-updates/{seq}/requeue"))
        .basic_auth("ann", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let requeued: Value = r.json().await.unwrap();
    assert_eq!(requeued["rows"], 1);
    assert_eq!(requeued["telemonitoring_id"], held);
    s.wait_hub_status(held, "completed").await;
    assert_eq!(status_changes(&s, held), ["accepted", "completed"]);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
    assert_eq!(settled(&state.store).await, (0, 0));
    let alerts = held_alerts(&s, &base, held).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["state"], "resolved");
    let audit = ops_get(&s, &base, "/ops/api/audit").await["audit"]
        .as_array()
        .unwrap()
        .clone();
    let entry = audit
        .iter()
        .find(|e| e["action"] == "hub-update-requeued")
        .unwrap_or_else(|| panic!("no audit entry: {audit:?}"));
    assert_eq!(entry["actor"], "operator:ann");
    assert_eq!(entry["telemonitoring_id"], held);
    assert!(
        entry["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("#{seq}"))
    );
    // Nothing is held any more.
    let r = s
        .http
        .post(format!("{base}/ops/api/hub-updates/{seq}/requeue"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    shutdown.cancel();
    s.sim.shutdown.cancel();
}
