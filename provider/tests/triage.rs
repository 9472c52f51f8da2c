//! Clinical triage over real HTTP, on the store under test: signed reading batches from a
//! gateway, the carepath rules judged by the sweep, each episode raised once (also when the
//! sweep runs again, after a restart, or twice at once), and the worklist's token, JSON API,
//! forms, page and metrics.

use tm_testkit::browser;
mod fixtures;
mod ops_support;

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone, Utc};
use ops_support::{CLINICAL_TOKEN, Fleet, Gateway, TOKEN, start};
use serde_json::Value;
use tm_protocol::{Reading, TimeQuality};

/// The resolve form's body, as the browser encodes it.
const NOTE_FORM: &str = "note=diuretic+adjusted+by+the+cardiologist";

const BRUSSELS: chrono_tz::Tz = chrono_tz::Europe::Brussels;

/// `days` ago at `hh:mm` in Brussels.
fn local(days: i64, hh: u32, mm: u32) -> DateTime<FixedOffset> {
    let day = (Utc::now().with_timezone(&BRUSSELS) - Duration::days(days)).date_naive();
    BRUSSELS
        .from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(hh, mm, 0).unwrap()))
        .earliest()
        .unwrap()
        .fixed_offset()
}

/// A scale's reading of `grams`.
fn weight(at: DateTime<FixedOffset>, grams: u32) -> Reading {
    fixtures::reading(
        "2A9D",
        &fixtures::weight_frame(grams),
        fixtures::scale(),
        at,
        TimeQuality::CorrectedByOffset,
    )
}

fn cuff(at: DateTime<FixedOffset>, systolic: u8, pulse: u8, irregular: bool) -> Reading {
    let mut r = fixtures::reading(
        "2A35",
        &fixtures::bp_frame(systolic, 80, 95, pulse),
        fixtures::omron_cuff(),
        at,
        TimeQuality::CorrectedByOffset,
    );
    if irregular {
        r.flags.push("irregular-pulse".into());
    }
    r
}

/// A gateway on a heart-failure session of patient `PSEUDO-0042`, enrolled a month ago (so
/// that readings of the last days are accepted).
async fn patient(fleet: &Fleet) -> Gateway {
    let gw = fleet.gateway(1).await;
    fleet
        .db
        .execute("UPDATE sessions SET patient_id = 'PSEUDO-0042'")
        .unwrap();
    let month_ago = (Utc::now() - Duration::days(30)).to_rfc3339();
    fleet
        .db
        .execute(&format!("UPDATE gateways SET enrolled_at = '{month_ago}'"))
        .unwrap();
    gw
}

async fn clinical(fleet: &Fleet, path: &str) -> reqwest::Response {
    fleet
        .http
        .get(format!("{}{path}", fleet.base))
        .bearer_auth(CLINICAL_TOKEN)
        .send()
        .await
        .unwrap()
}

async fn alerts(fleet: &Fleet, query: &str) -> Vec<Value> {
    let body: Value = clinical(fleet, &format!("/clinical/api/alerts{query}"))
        .await
        .json()
        .await
        .unwrap();
    body["alerts"].as_array().unwrap().clone()
}

/// POSTs `{"note": note}` to the API's `step` of alert `id` as nurse `nurse.an`.
async fn step(fleet: &Fleet, id: i64, step: &str, note: &str) -> u16 {
    fleet
        .http
        .post(format!("{}/clinical/api/alerts/{id}/{step}", fleet.base))
        .basic_auth("nurse.an", Some(CLINICAL_TOKEN))
        .json(&serde_json::json!({ "note": note }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_gain_is_raised_once_and_a_nurse_acknowledges_and_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = patient(&fleet).await;
    // 2.1 kg above four days ago within three days; no night reaches 1 kg.
    let week = vec![
        weight(local(4, 7, 0), 80_000),
        weight(local(3, 7, 0), 80_600),
        weight(local(2, 7, 0), 81_300),
        weight(local(1, 7, 0), 82_100),
    ];
    assert_eq!(fleet.readings(&gw, "b-1", week).await, 200);
    let report = fleet.triage_once(Utc::now()).await;
    assert_eq!(report.readings, 4);
    assert_eq!(report.raised.len(), 1, "{report:?}");
    assert_eq!(report.raised[0].1, "weight-gain");
    // Nothing new: nothing judged, nothing raised.
    let again = fleet.triage_once(Utc::now()).await;
    assert_eq!((again.sessions, again.raised.len()), (0, 0));

    // Today's weight is still 2.2 kg above the lightest of the three days before: the same
    // episode goes on, and is not raised again.
    // Before 07:00 it is a minute ago, to the second (the store keeps microseconds).
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now().fixed_offset(), 0);
    let today = local(0, 7, 0).min(now - Duration::minutes(1));
    assert_eq!(
        fleet
            .readings(&gw, "b-2", vec![weight(today, 82_800)])
            .await,
        200
    );
    let later = fleet.triage_once(Utc::now()).await;
    assert_eq!((later.readings, later.raised.len()), (1, 0), "{later:?}");

    let open = alerts(&fleet, "").await;
    assert_eq!(open.len(), 1, "{open:?}");
    let a = &open[0];
    let id = a["alert_id"].as_i64().unwrap();
    assert_eq!(a["patient_id"], "PSEUDO-0042");
    assert_eq!(a["rule"], "weight-gain");
    assert_eq!(a["state"], "open");
    assert_eq!(a["summary"], "weight +2.1 kg in 3 days");
    let values: Vec<f64> = a["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [80.0, 82.1]);
    let last = DateTime::parse_from_rfc3339(a["episode_last"].as_str().unwrap()).unwrap();
    assert_eq!(last, today);

    // Each token opens its own door only.
    for (path, token) in [("/clinical", TOKEN), ("/ops", CLINICAL_TOKEN)] {
        let r = fleet
            .http
            .get(format!("{}{path}", fleet.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }

    assert_eq!(step(&fleet, id, "acknowledge", "  ").await, 400);
    assert_eq!(
        step(&fleet, id, "acknowledge", "called the patient").await,
        204
    );
    assert_eq!(step(&fleet, id, "acknowledge", "again").await, 409);
    assert_eq!(step(&fleet, 999_999, "resolve", "no such").await, 404);

    // The page's form: refused from another site, taken from the page itself.
    let form = |site: &'static str| {
        fleet
            .http
            .post(format!("{}/clinical/alerts/{id}/resolve", fleet.base))
            .basic_auth("nurse.an", Some(CLINICAL_TOKEN))
            .header("sec-fetch-site", site)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(NOTE_FORM)
            .send()
    };
    assert_eq!(form("cross-site").await.unwrap().status(), 403);
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let done = no_redirect
        .post(format!("{}/clinical/alerts/{id}/resolve", fleet.base))
        .basic_auth("nurse.an", Some(CLINICAL_TOKEN))
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(NOTE_FORM)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], format!("/clinical#alert-{id}"));

    assert!(alerts(&fleet, "").await.is_empty());
    let all = alerts(&fleet, "?all=1").await;
    assert_eq!(all[0]["state"], "resolved");
    assert_eq!(all[0]["acknowledged_by"], "nurse.an");
    assert_eq!(all[0]["acknowledge_note"], "called the patient");
    assert_eq!(
        all[0]["resolve_note"],
        "diuretic adjusted by the cardiologist"
    );

    let metrics = fleet.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("tm_clinical_alerts{rule=\"weight-gain\",state=\"resolved\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tm_clinical_alerts{rule=\"weight-gain\",state=\"open\"} 0"));

    // After a restart the alert is still there and nothing is raised again.
    fleet.stop().await;
    let fleet = start(dir.path()).await;
    assert_eq!(alerts(&fleet, "?all=1").await.len(), 1);
    assert_eq!(fleet.triage_once(Utc::now()).await.raised.len(), 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cuffs_readings_raise_their_rules_and_the_page_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = patient(&fleet).await;
    let readings = vec![
        cuff(local(3, 8, 0), 128, 72, false),
        cuff(local(2, 8, 0), 152, 74, true),
        cuff(local(2, 20, 0), 149, 112, false),
        cuff(local(1, 8, 0), 131, 70, true),
    ];
    assert_eq!(fleet.readings(&gw, "b-3", readings).await, 200);
    // Two sweeps at once judge the session one after the other: each episode once.
    let (a, b) = tokio::join!(fleet.triage_once(Utc::now()), fleet.triage_once(Utc::now()));
    let mut raised: Vec<String> = a.raised.into_iter().chain(b.raised).map(|r| r.1).collect();
    raised.sort();
    assert_eq!(
        raised,
        [
            "heart-rate-out-of-range",
            "irregular-pulse-repeated",
            "systolic-out-of-range"
        ]
    );
    let open = alerts(&fleet, "").await;
    let summaries: Vec<&str> = open
        .iter()
        .map(|a| a["summary"].as_str().unwrap())
        .collect();
    assert!(
        summaries.contains(&"systolic 152 mm[Hg], above 140"),
        "{summaries:?}"
    );
    assert!(summaries.contains(&"heart rate 112 /min, above 100"));
    assert!(summaries.contains(&"irregular pulse 2 times in 7 days"));

    let page = clinical(&fleet, "/clinical").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("form-action 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("Open: 3</span>"), "{html}");
    assert!(html.contains("PSEUDO-0042 · Systolic pressure out of range"));
    // Each alert has its chart: the cuff's four readings, the ones that fired in red.
    assert_eq!(html.matches("<svg class=\"spark\"").count(), 3);
    assert!(html.contains("class=\"fired\""));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_acknowledges_and_resolves_an_alert_from_the_worklist() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = patient(&fleet).await;
    let readings = vec![
        weight(local(2, 7, 0), 80_000),
        weight(local(1, 7, 0), 82_100),
    ];
    assert_eq!(fleet.readings(&gw, "b-1", readings).await, 200);
    assert_eq!(fleet.triage_once(Utc::now()).await.raised.len(), 2);

    let mut browser = browser::Browser::launch(1024, 768).await;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("nurse.an:{CLINICAL_TOKEN}"));
    browser
        .set_headers(serde_json::json!({ "Authorization": format!("Basic {credentials}") }))
        .await;
    browser.goto(&format!("{}/clinical", fleet.base)).await;
    assert_eq!(
        browser
            .eval("document.querySelector('#open-count').textContent")
            .await,
        "Open: 2"
    );
    let overnight = "section[data-rule='overnight-weight-gain']";
    // Fill in the note and press the button, as a nurse would.
    browser
        .eval(&format!(
            "(() => {{ const f = document.querySelector(\"{overnight} form.acknowledge\"); \
             f.querySelector('textarea').value = 'Called: ankles swollen, sees GP today'; \
             f.querySelector('button').click(); }})()"
        ))
        .await;
    browser
        .wait_for(&format!(
            "document.querySelector(\"{overnight}\").dataset.state === 'acknowledged'"
        ))
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#open-count').textContent")
            .await,
        "Open: 1"
    );
    let step = browser
        .eval(&format!(
            "document.querySelector(\"{overnight} p.step\").textContent"
        ))
        .await;
    assert!(
        step.as_str()
            .unwrap()
            .contains("by nurse.an: Called: ankles swollen, sees GP today"),
        "{step}"
    );
    browser
        .eval(&format!(
            "(() => {{ const f = document.querySelector(\"{overnight} form.resolve\"); \
             f.querySelector('textarea').value = 'Diuretic doubled'; \
             f.querySelector('button').click(); }})()"
        ))
        .await;
    browser
        .wait_for(&format!(
            "document.querySelector(\"{overnight}\").dataset.state === 'resolved'"
        ))
        .await;
    // An empty note is not sent: the browser asks for it first.
    let other = "section[data-rule='weight-gain']";
    let sent = browser
        .eval(&format!(
            "document.querySelector(\"{other} form.acknowledge\").checkValidity()"
        ))
        .await;
    assert_eq!(sent, false);

    let all = alerts(&fleet, "?all=1").await;
    let done = all
        .iter()
        .find(|a| a["rule"] == "overnight-weight-gain")
        .unwrap();
    assert_eq!(done["state"], "resolved");
    assert_eq!(done["resolved_by"], "nurse.an");
    assert_eq!(done["resolve_note"], "Diuretic doubled");
    fleet.stop().await;
}
