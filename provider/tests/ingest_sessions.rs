//! Ingest through the real provider (its whole assembly on 127.0.0.1:0) and the Portal/HUB
//! emulator: readings are unique per session, so a gateway that sends another session's
//! reading ids stores its own copies and hides nothing; a reading sent again is named a
//! duplicate in the receipt; a reading received in the future is rejected with the reason.

mod common;
mod fixtures;

use chrono::{Duration, Utc};
use common::*;
use tm_protocol::{Reading, Receipt, TimeQuality};

/// Prescribes `session`, enrolls a fresh gateway key on it and waits until the HUB shows it
/// accepted.
async fn enrolled(s: &Stack, session: &str) -> Enrolled {
    let answer = s.prescribe(session, "rx-1").await;
    let url = answer["body"]["url"].as_str().unwrap().to_owned();
    let code = s.issue_code(&url).await;
    let gw = enroll_gateway(s, &code).await;
    s.wait_hub_status(session, "accepted").await;
    gw
}

/// Posts a batch signed by `gw`; returns the verified receipt.
async fn post(s: &Stack, gw: &Enrolled, batch_id: &str, readings: &[Reading]) -> Receipt {
    post_batch(s, &s.provider, gw, batch_id, readings).await
}

/// A blood pressure and a weight measured `seconds_ago` before now (after the enrollment).
fn morning(seconds_ago: i64) -> Vec<Reading> {
    let at = (Utc::now() - Duration::seconds(seconds_ago)).with_timezone(&fixtures::cest());
    vec![
        fixtures::reading(
            "2A35",
            &fixtures::bp_frame(131, 84, 99, 74),
            fixtures::omron_cuff(),
            at,
            TimeQuality::NoDeviceTime,
        ),
        fixtures::reading(
            "2A9D",
            &fixtures::weight_frame(78_600),
            fixtures::scale(),
            at + Duration::milliseconds(400),
            TimeQuality::NoDeviceTime,
        ),
    ]
}

/// (session, gateway, payload) of every stored row with `reading_id`, by session.
async fn rows_of(s: &Stack, reading_id: &str) -> Vec<(String, String, String)> {
    // Reading ids are hex: nothing to quote.
    assert!(reading_id.chars().all(|c| c.is_ascii_alphanumeric()));
    tm_testkit::backend::TestStore::in_dir(&s.dir)
        .rows(&format!(
            "SELECT telemonitoring_id, gateway_id, payload FROM readings \
             WHERE reading_id = '{reading_id}' ORDER BY telemonitoring_id"
        ))
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect()
}

#[tokio::test]
async fn another_sessions_reading_ids_hide_nothing_and_a_resend_is_named_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path()).await;
    let a = enrolled(&s, "tm-a").await;
    let b = enrolled(&s, "tm-b").await;
    let readings = morning(60);
    let ids: Vec<_> = readings.iter().map(|r| r.reading_id.clone()).collect();

    let first = post(&s, &a, "a-1", &readings).await;
    assert_eq!(first.accepted, ids);
    assert!(first.duplicates.is_empty(), "{first:?}");
    let before: Vec<_> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(rows_of(&s, id.as_str()).await);
        }
        v
    };

    // Gateway B sends the same reading ids, signed by B: stored under B's session.
    let theirs = post(&s, &b, "b-1", &readings).await;
    assert_eq!(theirs.accepted, ids, "{theirs:?}");
    assert!(theirs.rejected.is_empty(), "{theirs:?}");
    assert!(
        theirs.duplicates.is_empty(),
        "stored for B, not a duplicate: {theirs:?}"
    );
    for (id, before) in ids.iter().zip(&before) {
        let rows = rows_of(&s, id.as_str()).await;
        let sessions: Vec<_> = rows
            .iter()
            .map(|(t, g, _)| (t.as_str(), g.as_str()))
            .collect();
        assert_eq!(
            sessions,
            [("tm-a", a.id.as_str()), ("tm-b", b.id.as_str())],
            "one row per session"
        );
        assert_eq!(&rows[..1], &before[..], "A's reading is intact");
    }

    // The same batch again from B: nothing new, every reading named a duplicate.
    let again = post(&s, &b, "b-2", &readings).await;
    assert_eq!(again.accepted, ids);
    assert_eq!(again.duplicates, ids, "{again:?}");
    for id in &ids {
        assert_eq!(rows_of(&s, id.as_str()).await.len(), 2);
    }
    s.stop().await;
}

#[tokio::test]
async fn a_reading_received_a_day_ahead_is_rejected_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path()).await;
    let gw = enrolled(&s, "tm-future").await;
    let normal = morning(30).remove(0);
    let ahead = fixtures::reading(
        "2A9D",
        &fixtures::weight_frame(80_100),
        fixtures::scale(),
        (Utc::now() + Duration::days(1)).with_timezone(&fixtures::cest()),
        TimeQuality::NoDeviceTime,
    );
    assert!(ahead.received_at > Utc::now() + Duration::hours(23));
    // Received now, but the device says it measured tomorrow: stored (the device measured it;
    // its time quality says how far the time is trusted), like a device time in the past.
    let mut device_ahead = morning(20).remove(1);
    device_ahead.effective_time = (Utc::now() + Duration::days(1)).with_timezone(&fixtures::cest());

    let receipt = post(
        &s,
        &gw,
        "f-1",
        &[normal.clone(), ahead.clone(), device_ahead.clone()],
    )
    .await;
    assert_eq!(
        receipt.accepted,
        [normal.reading_id.clone(), device_ahead.reading_id.clone()]
    );
    assert_eq!(receipt.rejected.len(), 1, "{receipt:?}");
    assert_eq!(receipt.rejected[0].reading_id, ahead.reading_id);
    assert!(
        receipt.rejected[0]
            .reason
            .contains("received in the future"),
        "{receipt:?}"
    );
    assert_eq!(rows_of(&s, normal.reading_id.as_str()).await.len(), 1);
    assert_eq!(rows_of(&s, device_ahead.reading_id.as_str()).await.len(), 1);
    assert!(rows_of(&s, ahead.reading_id.as_str()).await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_reading_is_stored_as_the_text_the_gateway_signed() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path()).await;
    let gw = enrolled(&s, "tm-a").await;
    let readings = morning(60);
    // The gateway's encoder writes compact JSON; this one spaces one field of each reading, so
    // a payload encoded again by the provider would differ from what was signed.
    let spaced = |text: String| text.replacen(",\"kind\":", " , \"kind\" :  ", 1);
    let texts: Vec<String> = readings
        .iter()
        .map(|r| spaced(serde_json::to_string(r).unwrap()))
        .collect();
    let json = format!(
        r#"{{"v":{},"gateway_id":"{}","batch_id":"text-1","created_at":"{}","readings":[{}]}}"#,
        tm_protocol::PROTOCOL_VERSION,
        gw.id.as_str(),
        Utc::now().to_rfc3339(),
        texts.join(",")
    );
    let frame = tm_protocol::seal(
        tm_protocol::MessageKind::ReadingBatch,
        gw.id.as_str(),
        json.as_bytes(),
        &gw.key,
    );
    let url = format!("{}{}", s.provider, tm_protocol::routes::http::READINGS);
    let answer = s.http.post(url).body(frame).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    for (reading, text) in readings.iter().zip(&texts) {
        let rows = rows_of(&s, reading.reading_id.as_str()).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0].2, text, "stored byte for byte as signed");
        assert_eq!(
            &serde_json::from_str::<Reading>(&rows[0].2).unwrap(),
            reading
        );
    }
    s.stop().await;
}
