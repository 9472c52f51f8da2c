//! End to end: the real provider (its whole assembly on 127.0.0.1:0) and the Portal/HUB
//! emulator. Prescription -> enrollment of a gateway key -> signed reading batches of decoded
//! device frames -> in-progress with attachments -> the emulator's EHR downloads every file and
//! finds length, MD5 and ETag right -> more readings -> one batched update within the
//! carepath's limit -> stop from the Portal -> completed with the final set, verified again.
//! Signed URIs that are tampered, expired or foreign get the same 403 over the real server;
//! `tm-provider export-fhir` prints the announced Bundle; pending readings survive a restart.

mod common;
mod fixtures;

use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::Value;
use tm_protocol::{Reading, TimeQuality};
use tm_provider::attachments::UriSigner;
use tm_sim_hub::state::EventKind;

const HEART_FAILURE: &str = "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure";

/// `[attachments]` settings ([`with_attachments`]) with a one-second update interval for heart
/// failure, so the test sees the limit hold without waiting hours, and the provider
/// organisation the Bundle names.
fn fast_updates() -> String {
    format!(
        "languages = [\"nl\", \"en\"]\nframe_ancestors = [\"https://ehr.example\"]\n\
         [attachments.updates_per_day]\n\"{HEART_FAILURE}\" = 86400\n\
         [attachments.organization]\nname = \"{ORGANIZATION}\"\n"
    )
}

/// The organisation `fast_updates` configures.
const ORGANIZATION: &str = "Zorg op afstand NV";

/// Every Observation of `bundle` names the configured organisation as performer, and has the
/// effective time of its reading (to the millisecond) and the gateway's receive time as issued.
fn check_observations(bundle: &str, readings: &[Reading]) {
    let bundle: Value = serde_json::from_str(bundle).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    let org = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Organization")
        .expect("the provider organisation");
    assert_eq!(org["resource"]["name"], ORGANIZATION);
    let millis = |t: chrono::DateTime<chrono::FixedOffset>| t.timestamp_millis();
    for r in readings {
        let obs: Vec<&Value> = entries
            .iter()
            .map(|e| &e["resource"])
            .filter(|o| {
                o["identifier"][0]["value"]
                    .as_str()
                    .is_some_and(|v| v.starts_with(r.reading_id.as_str()))
            })
            .collect();
        assert!(!obs.is_empty(), "no Observation of {}", r.reading_id);
        for o in obs {
            assert_eq!(o["performer"][0]["reference"], org["fullUrl"]);
            let at =
                |k: &str| chrono::DateTime::parse_from_rfc3339(o[k].as_str().unwrap()).unwrap();
            assert_eq!(millis(at("effectiveDateTime")), millis(r.effective_time));
            assert_eq!(millis(at("issued")), r.received_at.timestamp_millis());
        }
    }
}

/// Readings decoded from real frames, measured `seconds_ago` before now (after the
/// enrollment: earlier readings are outside the gateway's session).
fn morning(seconds_ago: i64, sys: u8, kg_grams: u32) -> Vec<Reading> {
    let at = (Utc::now() - chrono::Duration::seconds(seconds_ago)).with_timezone(&fixtures::cest());
    vec![
        fixtures::reading(
            "2A35",
            &fixtures::bp_frame(sys, 85, 100, 72),
            fixtures::omron_cuff(),
            at,
            TimeQuality::NoDeviceTime,
        ),
        fixtures::reading(
            "2A9D",
            &fixtures::weight_frame(kg_grams),
            fixtures::scale(),
            at + chrono::Duration::milliseconds(400),
            TimeQuality::NoDeviceTime,
        ),
    ]
}

/// Posts a signed batch to `/api/v1/readings`; checks the signed receipt accepts them all.
async fn post_all(s: &Stack, base: &str, gw: &Enrolled, batch_id: &str, readings: &[Reading]) {
    let receipt = post_batch(s, base, gw, batch_id, readings).await;
    assert_eq!(receipt.accepted.len(), readings.len(), "{receipt:?}");
}

/// The status PUTs the HUB accepted for `id` with attachments, in order.
fn attachment_puts(s: &Stack, id: &str) -> Vec<Value> {
    s.sim.hub.with(|h| {
        h.sessions[id]
            .timeline
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StatusPut { body, answer: 200 } if body.get("attachments").is_some() => {
                    Some(body.clone())
                }
                _ => None,
            })
            .collect()
    })
}

/// Downloads the EHR made for `id`: (attachment id, ok).
fn downloads(s: &Stack, id: &str) -> Vec<(String, bool)> {
    s.sim.hub.with(|h| {
        h.sessions[id]
            .timeline
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Download { id, ok, .. } => Some((id.clone(), *ok)),
                _ => None,
            })
            .collect()
    })
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    tm_testkit::wait::until(
        what,
        Duration::from_secs(6),
        Duration::from_millis(10),
        || std::future::ready(done()),
    )
    .await;
}

/// Waits until the EHR has downloaded `n` files of `id`, and checks every one matched.
async fn all_downloads_ok(s: &Stack, id: &str, n: usize) {
    wait_for("the EHR's downloads", || downloads(s, id).len() >= n).await;
    let d = downloads(s, id);
    assert_eq!(d.len(), n, "{d:?}");
    assert!(d.iter().all(|(_, ok)| *ok), "{d:?} {:?}", s.violations());
    assert!(s.violations().is_empty(), "{:?}", s.violations());
}

fn attachment<'a>(put: &'a Value, id: &str) -> &'a Value {
    put["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("no attachment {id} in {put}"))
}

/// A session in progress: prescribed, enrolled, first batch posted, first set downloaded.
async fn first_readings(s: &Stack, id: &str) -> (Enrolled, Vec<Reading>) {
    let url = s.prescribe(id, "rx-1").await["body"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = s.issue_code(&url).await;
    let gw = enroll_gateway(s, &code).await;
    s.wait_hub_status(id, "accepted").await;
    let first = morning(30, 128, 78_400);
    post_all(s, &s.provider, &gw, "b-1", &first).await;
    s.wait_hub_status(id, "in-progress").await;
    (gw, first)
}

#[tokio::test]
async fn prescription_to_completed_with_every_attachment_verified() {
    let dir = tempfile::tempdir().unwrap();
    let s = stack_edited(dir.path(), |text| with_attachments(&text, &fast_updates())).await;
    let id = "tm-e2e";
    let (gw, first) = first_readings(&s, id).await;
    let puts = attachment_puts(&s, id);
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0]["status"], "in-progress");
    assert_eq!(puts[0]["carepath"]["id"], HEART_FAILURE);
    let ids: Vec<&str> = puts[0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fhir", "pdf-nl", "pdf-en", "dashboard"]);
    assert_eq!(attachment(&puts[0], "pdf-nl")["contentLanguage"], "nl");
    all_downloads_ok(&s, id, 3).await;

    // The FHIR file names every reading; a revalidation with its ETag gets 304.
    let fhir = attachment(&puts[0], "fhir").clone();
    let uri = fhir["uri"].as_str().unwrap();
    let text = s.http.get(uri).send().await.unwrap().text().await.unwrap();
    assert!(first.iter().all(|r| text.contains(r.reading_id.as_str())));
    check_observations(&text, &first);
    let r = s
        .http
        .get(uri)
        .header("if-none-match", fhir["etag"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let dashboard = attachment(&puts[0], "dashboard")["uri"].as_str().unwrap();
    let r = s.http.get(dashboard).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors https://ehr.example"), "{csp}");

    // Two batches inside one interval: one update, no sooner than the limit allows.
    let second = morning(20, 134, 78_900);
    let third = morning(10, 139, 79_300);
    post_all(&s, &s.provider, &gw, "b-2", &second).await;
    post_all(&s, &s.provider, &gw, "b-3", &third).await;
    wait_for("the batched update", || attachment_puts(&s, id).len() >= 2).await;
    all_downloads_ok(&s, id, 6).await;
    let puts = attachment_puts(&s, id);
    assert_eq!(puts.len(), 2, "one update for both batches");
    assert_eq!(puts[1]["status"], "in-progress");
    let modified = |p: &Value| {
        chrono::DateTime::parse_from_rfc3339(
            attachment(p, "fhir")["lastModified"].as_str().unwrap(),
        )
        .unwrap()
    };
    assert!(modified(&puts[1]) - modified(&puts[0]) >= chrono::Duration::seconds(1));
    assert_ne!(attachment(&puts[1], "fhir")["etag"], fhir["etag"]);
    let updated = attachment(&puts[1], "fhir")["uri"].as_str().unwrap();
    let text = s
        .http
        .get(updated)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        [&first, &second, &third]
            .iter()
            .flat_map(|b| b.iter())
            .all(|r| text.contains(r.reading_id.as_str()))
    );

    refusals(&s, dir.path(), updated).await;

    // Stop from the Portal: completed with the final attachments, downloaded and verified.
    assert_eq!(s.act(id, "stop").await["status"], 200);
    s.wait_hub_status(id, "completed").await;
    let puts = attachment_puts(&s, id);
    assert_eq!(puts.len(), 3);
    assert_eq!(puts[2]["status"], "completed");
    all_downloads_ok(&s, id, 9).await;

    // export-fhir prints exactly the announced Bundle.
    let config = dir.path().join("provider.toml");
    let addr = s.provider.trim_start_matches("http://");
    std::fs::write(
        &config,
        with_attachments(
            &config_text(dir.path(), addr, &s.sim.url()),
            &fast_updates(),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tm-provider"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "export-fhir",
            "--session",
            id,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let final_fhir = attachment(&puts[2], "fhir");
    assert_eq!(
        tm_provider::hub::contract::content_md5(&out.stdout),
        final_fhir["contentMD5"].as_str().unwrap()
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_tm-provider"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "export-fhir",
            "--session",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());

    // The ended session's gateway is unbound: its readings are refused.
    let late = morning(1, 120, 79_000);
    let r = send_batch(&s, &s.provider, &gw, "b-late", &late).await;
    assert_eq!(r.status(), 403);
    s.stop().await;
}

/// A tampered, expired or foreign token, and a valid token for a session that does not exist,
/// all get the same 403 from the real server.
async fn refusals(s: &Stack, dir: &std::path::Path, good: &str) {
    let key = std::fs::read(dir.join("attachments.key")).unwrap();
    let signer = UriSigner::new(&key).unwrap();
    let base = good.split("/attachments/").next().unwrap();
    let url =
        |session: &str, token: &str| format!("{base}/attachments/{session}/fhir?token={token}");
    let (prefix, mac) = good.rsplit_once('.').unwrap();
    let flipped = if mac.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{prefix}.{flipped}{}", &mac[1..]);
    let expired = signer.sign(
        "tm-e2e",
        "fhir",
        "rx-1",
        Utc::now() - chrono::Duration::minutes(1),
    );
    let foreign = signer.sign(
        "tm-e2e",
        "fhir",
        "rx-other",
        Utc::now() + chrono::Duration::hours(1),
    );
    let nobody = signer.sign(
        "tm-none",
        "fhir",
        "rx-1",
        Utc::now() + chrono::Duration::hours(1),
    );
    let mut bodies = Vec::new();
    for target in [
        tampered,
        url("tm-e2e", &expired),
        url("tm-e2e", &foreign),
        url("tm-none", &nobody),
        url("tm-e2e", "garbage"),
    ] {
        let r = s.http.get(&target).send().await.unwrap();
        assert_eq!(r.status(), 403, "{target}");
        bodies.push(r.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

/// The systems of the Observations' identifiers in a FHIR Bundle.
fn identifier_systems(bundle: &str) -> std::collections::BTreeSet<String> {
    let bundle: Value = serde_json::from_str(bundle).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Observation")
        .map(|e| {
            e["resource"]["identifier"][0]["system"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn pending_readings_wait_for_the_carepath_limit_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Defaults: heart failure at most 5 updates a day.
    let s = stack(dir.path()).await;
    let id = "tm-limit";
    let (gw, _) = first_readings(&s, id).await;
    all_downloads_ok(&s, id, 4).await;
    let more = morning(5, 141, 80_100);
    post_all(&s, &s.provider, &gw, "b-2", &more).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        attachment_puts(&s, id).len(),
        1,
        "the limit holds the update"
    );
    let pending = s
        .state
        .store
        .has_pending_readings("tm-limit")
        .await
        .unwrap();
    assert!(pending);

    // Restart with a faster limit: the new updater finds the pending readings in the store.
    s.shutdown.cancel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let text = with_attachments(
        &config_text(dir.path(), &addr, &s.sim.url()),
        &fast_updates(),
    );
    let (_state, shutdown) = start_provider(listener, &text).await;
    wait_for("the update after restart", || {
        attachment_puts(&s, id).len() >= 2
    })
    .await;
    let puts = attachment_puts(&s, id);
    let uri = attachment(&puts[1], "fhir")["uri"].as_str().unwrap();
    assert!(uri.starts_with(&format!("http://{addr}/")));
    let text = s.http.get(uri).send().await.unwrap().text().await.unwrap();
    assert!(more.iter().all(|r| text.contains(r.reading_id.as_str())));
    // The provider's address changed, the Observations' identifier system did not: an EHR
    // that de-duplicates by identifier sees the same observations again, not new ones.
    assert_eq!(
        identifier_systems(&text),
        std::collections::BTreeSet::from([format!("{}/fhir/reading", s.provider)])
    );
    all_downloads_ok(&s, id, 7).await;
    shutdown.cancel();
    s.stop().await;
}
