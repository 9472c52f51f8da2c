//! The provider driven through the Portal/HUB emulator over real HTTP: the contract's three
//! answers, headers, bodies, enrollment to accepted, and the actions in every status.

mod common;

use common::*;
use serde_json::{Value, json};
use tm_provider::hub::contract::{Carepath, Status, StatusUpdate};
use tm_testkit::backend::TestStore;

#[tokio::test]
async fn the_three_answers_headers_and_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path()).await;
    // Option 2: more information needed -> our enrollment page.
    let first = s.prescribe("tm-1", "rx-1").await;
    assert_eq!(first["status"], 200, "{first}");
    let url = first["body"]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/enroll/", s.provider)));
    // A repeat is answered the same way, not duplicated.
    assert_eq!(
        s.prescribe("tm-1", "rx-1").await["body"]["url"],
        url.as_str()
    );
    // Option 3: refusals with a message.
    let unknown = s.prescribe("tm-2", "rx-unknown").await;
    assert_eq!(unknown["status"], 404);
    assert!(
        unknown["body"]["message"]
            .as_str()
            .unwrap()
            .contains("prescriber")
    );
    let nodpa = s.prescribe("tm-3", "rx-nodpa").await;
    assert_eq!(nodpa["status"], 403);
    assert_eq!(nodpa["body"]["message"], "DPA has not been signed yet");
    let wrong_header = s
        .control(
            "prescribe",
            json!({"telemonitoringId": "tm-4", "patientId": "p", "prescriberId": "rx-1",
            "headers": {HOSPITAL.0: "wrong"}}),
        )
        .await;
    assert_eq!(wrong_header["status"], 401);
    // Straight to the endpoint: missing fixed header, malformed and oversized bodies.
    let endpoint = format!("{}{}", s.provider, tm_provider::portal::PRESCRIPTION_ROUTE);
    let body = json!({"telemonitoringId": "tm-5", "patientId": "p", "prescriber": {"id": "rx-1"}});
    let r = s.http.post(&endpoint).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let post = |b: Vec<u8>| {
        s.http
            .post(&endpoint)
            .header(FIXED.0, FIXED.1)
            .header(HOSPITAL.0, HOSPITAL.1)
            .header("content-type", "application/json")
            .body(b)
            .send()
    };
    let r = post(b"{not json".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["message"].is_string());
    let r = post(br#"{"patientId":"p","prescriber":{"id":"rx-1"}}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(vec![b' '; 70 * 1024]).await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.json::<Value>().await.unwrap()["message"].is_string());
    // Same telemonitoringId, other patient: refused, nothing overwritten.
    let other = json!({"telemonitoringId": "tm-1", "patientId": "someone-else", "prescriber": {"id": "rx-1"}});
    let r = post(serde_json::to_vec(&other).unwrap()).await.unwrap();
    assert_eq!(r.status(), 409);
    // Only the declared patient field is stored.
    let stored = TestStore::in_dir(dir.path())
        .value("SELECT patient_fields FROM prescriptions WHERE telemonitoring_id='tm-1'");
    assert_eq!(stored, r#"{"patient.language":"nl"}"#);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
    s.stop().await;
}

#[tokio::test]
async fn enrollment_makes_the_session_accepted_with_its_carepath() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path()).await;
    let url = s.prescribe("tm-e", "rx-1").await["body"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = s.http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("pat-tm-e") && page.contains("viewport"));
    let code = s.issue_code(&url).await;
    let (status, body) = enroll_with(&s, "WRONG123").await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let (status, body) = enroll_with(&s, &code).await;
    assert_eq!(status, 200);
    let frame = tm_protocol::Frame::parse(&body).unwrap();
    let payload = frame
        .verify(
            tm_protocol::MessageKind::EnrollmentResponse,
            &s.state.portal.provider_key.verifying_key(),
        )
        .unwrap();
    let response: tm_protocol::EnrollmentResponse = tm_protocol::decode(payload).unwrap();
    let gw = s
        .state
        .store
        .gateway(response.gateway_id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gw.telemonitoring_id.as_deref(), Some("tm-e"));
    s.wait_hub_status("tm-e", "accepted").await;
    let carepath = s
        .sim
        .hub
        .with(|h| h.sessions["tm-e"].carepath.clone())
        .unwrap();
    assert!(carepath.0.ends_with("/heart-failure") && carepath.1 == "1.0.0");
    // The code was single use.
    assert_eq!(enroll_with(&s, &code).await.0, 403);
    // Option 1: the repeat of an enrolled prescription is confirmed with an empty 200.
    let again = s.prescribe("tm-e", "rx-1").await;
    assert_eq!(again["status"], 200);
    assert!(again["body"].is_null());
    assert!(s.violations().is_empty(), "{:?}", s.violations());
    s.stop().await;
}

/// Moves accepted session `id` to in-progress as its first publication would (without
/// outputs): the status and its queued HUB update, written in SQL both backends run.
fn move_in_progress(store: &TestStore, id: &str) {
    let row = &store.rows(&format!(
        "SELECT carepath_id, carepath_version FROM sessions WHERE telemonitoring_id = '{id}'"
    ))[0];
    let update = StatusUpdate {
        telemonitoring_id: id.to_owned(),
        status: Status::InProgress,
        provider_context: None,
        carepath: Some(Carepath {
            id: row[0].clone(),
            version: row[1].clone(),
        }),
        attachments: None,
    };
    let body = serde_json::to_string(&update).unwrap().replace('\'', "''");
    store
        .execute(&format!(
            "UPDATE sessions SET status = 'in-progress' WHERE telemonitoring_id = '{id}'; \
             INSERT INTO hub_outbox (telemonitoring_id, body, state, created_at) \
             VALUES ('{id}', '{body}', 0, '{}')",
            chrono::Utc::now().to_rfc3339()
        ))
        .unwrap();
}

async fn in_progress(s: &Stack, id: &str) {
    accepted_session(s, id).await;
    move_in_progress(&TestStore::in_dir(&s.dir), id);
    s.state.portal.wake_outbox.notify_one();
    s.wait_hub_status(id, "in-progress").await;
}

#[tokio::test]
async fn stop_and_cancel_in_every_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path()).await;
    // requested
    s.prescribe("r-stop", "rx-1").await;
    assert_eq!(s.act("r-stop", "stop").await["status"], 200);
    s.wait_hub_status("r-stop", "cancelled").await;
    s.prescribe("r-cancel", "rx-1").await;
    assert_eq!(s.act("r-cancel", "cancel").await["status"], 200);
    s.wait_hub_status("r-cancel", "cancelled").await;
    // accepted
    accepted_session(&s, "a-stop").await;
    assert_eq!(s.act("a-stop", "stop").await["status"], 200);
    s.wait_hub_status("a-stop", "completed").await;
    accepted_session(&s, "a-cancel").await;
    assert_eq!(s.act("a-cancel", "cancel").await["status"], 200);
    s.wait_hub_status("a-cancel", "cancelled").await;
    // in progress
    in_progress(&s, "p-cancel").await;
    let refused = s.act("p-cancel", "cancel").await;
    assert_eq!(refused["status"], 409);
    assert!(refused["body"]["message"].is_string());
    assert_eq!(s.hub_status("p-cancel").as_deref(), Some("in-progress"));
    in_progress(&s, "p-stop").await;
    assert_eq!(s.act("p-stop", "stop").await["status"], 200);
    s.wait_hub_status("p-stop", "completed").await;
    // final: repeats are harmless, cancel after completion is refused
    assert_eq!(s.act("p-stop", "stop").await["status"], 200);
    assert_eq!(s.act("p-stop", "cancel").await["status"], 409);
    assert_eq!(s.act("r-cancel", "cancel").await["status"], 200);
    // Gateways of ended sessions are unbound.
    let states = TestStore::in_dir(dir.path()).rows(
        "SELECT state FROM gateways WHERE telemonitoring_id IN ('a-stop','a-cancel','p-stop')",
    );
    assert_eq!(states, vec![vec!["unbound".to_owned()]; 3]);
    assert!(s.violations().is_empty(), "{:?}", s.violations());
    s.stop().await;
}

#[tokio::test]
async fn failed_enrollment_attempts_are_limited_per_minute_across_a_restart() {
    // The limit counts per minute of the clock: start early in a minute, so the attempts below
    // (well under a second) fall into one.
    let into_minute = chrono::Utc::now().timestamp_millis().rem_euclid(60_000);
    if into_minute > 40_000 {
        let wait = u64::try_from(60_000 - into_minute + 100).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let extra = "failed_attempts_per_minute = 3\n";
    let s = stack_with(dir.path(), extra).await;
    let url = s.prescribe("tm-rl", "rx-1").await["body"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = s.issue_code(&url).await;
    for _ in 0..3 {
        assert_eq!(enroll_with(&s, "WRONG123").await.0, 403);
    }
    let (status, body) = enroll_with(&s, &code).await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("wait a minute"));
    // Another provider process on the same store (here: the same one restarted) counts the
    // same failures.
    s.stop().await;
    let s = stack_with(dir.path(), extra).await;
    assert_eq!(enroll_with(&s, &code).await.0, 429);
    s.stop().await;
}
