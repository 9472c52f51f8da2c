//! The patient's daily check-in over real HTTP, on the store under test: the nurse creates the
//! link on the enrollment page once the gateway is enrolled, the patient's answers are stored
//! once, published in the next attachment set, judged by triage (a severe symptom raises an
//! alert), and the link stops working when the nurse stops it, replaces it, or the monitoring
//! ends. Malformed and cross-site forms store nothing. A headless Chromium at a phone's size
//! fills the page in as a patient would.

use tm_testkit::browser;
mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::{Stack, accepted_session, stack};
use reqwest::StatusCode;
use tm_provider::symptom::Severity;

const BREATH: &str = "267036007";
const TIRED: &str = "84229001";
const COUGH: &str = "901000172101";

/// The enrollment page URL of `id`, the session accepted with a gateway.
async fn monitored(stack: &Stack, id: &str) -> String {
    accepted_session(stack, id).await
}

/// Creates a check-in link in `language` from the enrollment page `page`; returns its URL.
async fn create_link(stack: &Stack, page: &str, language: &str) -> String {
    let (status, html) = post(
        stack,
        &format!("{page}/checkin"),
        &format!("language={language}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<svg id=\"checkin-qr\""), "{html}");
    let marker = "id=\"checkin-link\" href=\"";
    let start = html.find(marker).expect("the link") + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].to_owned()
}

/// The hidden `submission` of a served form.
fn submission_of(form: &str) -> String {
    let marker = "name=\"submission\" value=\"";
    let start = form.find(marker).unwrap() + marker.len();
    form[start..start + 32].to_owned()
}

async fn get(stack: &Stack, url: &str) -> (StatusCode, String) {
    let r = stack.http.get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Posts a form (`application/x-www-form-urlencoded`).
async fn post(stack: &Stack, link: &str, body: &str) -> (StatusCode, String) {
    let r = stack
        .http
        .post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The symptom answers of `id` in the store (kind `symptom` rows).
async fn stored_answers(stack: &Stack, id: &str) -> usize {
    let published = stack.state.store.published_session(id).await.unwrap();
    published.map_or(0, |p| p.symptoms.len())
}

#[tokio::test]
async fn a_patient_reports_symptoms_through_the_link_the_nurse_handed_over() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = stack(tmp.path()).await;
    let page = monitored(&stack, "tm-c1").await;

    // The enrollment page offers the check-in once the session is live.
    let html = get(&stack, &page).await.1;
    assert!(html.contains("No check-in link yet"), "{html}");
    let link = create_link(&stack, &page, "fr").await;
    assert!(
        link.starts_with(&format!("{}/checkin/", stack.provider)),
        "{link}"
    );
    let html = get(&stack, &page).await.1;
    assert!(
        html.contains("A check-in link was handed over on"),
        "{html}"
    );

    // The patient's page, in the language the nurse chose, or the one asked for.
    let r = stack.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    let form = r.text().await.unwrap();
    assert!(form.contains("<html lang=\"fr\">"));
    assert!(form.contains("Toux d&#39;irritation"));
    assert_eq!(form.matches("<fieldset").count(), 15);
    let (_, dutch) = get(&stack, &format!("{link}?lang=nl")).await;
    assert!(dutch.contains("Hoe voelt u zich vandaag?"));

    // Malformed or cross-site forms are refused and store nothing.
    let submission = submission_of(&form);
    let opened = Utc::now().timestamp_millis() - 120_000;
    let base = format!("submission={submission}&opened={opened}&lang=fr");
    let (status, body) = post(&stack, &link, &format!("{base}&s_12345=24484000")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("s_12345: not a symptom of the carepath"),
        "{body}"
    );
    let (status, body) = post(&stack, &link, &base).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("Veuillez répondre à au moins une question."),
        "{body}"
    );
    let answers = format!(
        "{base}&s_{BREATH}={}&s_{TIRED}={}&s_{COUGH}={}",
        Severity::Severe.code(),
        Severity::Mild.code(),
        Severity::Absent.code()
    );
    let r = stack
        .http
        .post(&link)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(answers.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Sent, then sent again (the browser's back button): stored once.
    let (status, body) = post(&stack, &link, &answers).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Merci. Vos réponses sont arrivées"), "{body}");
    assert!(
        body.contains("id=\"severe\""),
        "a severe answer says what to do"
    );
    let (status, body) = post(&stack, &link, &answers).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("déjà arrivées"), "{body}");

    // The updater publishes them with the next attachment set: the session goes in progress.
    stack.wait_hub_status("tm-c1", "in-progress").await;
    let published = tm_testkit::wait::settle(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || stored_answers(&stack, "tm-c1"),
        |n| *n == 3,
    )
    .await;
    assert_eq!(published, 3);
    let session = stack
        .state
        .store
        .published_session("tm-c1")
        .await
        .unwrap()
        .unwrap();
    let mut severities: Vec<(&str, Severity)> = session
        .symptoms
        .iter()
        .map(|a| (a.symptom.code, a.severity))
        .collect();
    severities.sort();
    assert_eq!(
        severities,
        [
            (BREATH, Severity::Severe),
            (TIRED, Severity::Mild),
            (COUGH, Severity::Absent)
        ]
    );
    let answer = &session.symptoms[0];
    assert!(answer.end - answer.start >= chrono::Duration::seconds(100));

    // Triage judges them: the severe breathlessness is an alert.
    let triage = Arc::new(tm_provider::triage::Triage::default());
    let report = tm_provider::triage::sweep::run_once(
        &stack.state.store,
        &triage,
        chrono_tz::Europe::Brussels,
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(report.undecodable, 0);
    let alerts = stack.state.store.clinical_alerts(true, 10).await.unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule, "severe-symptom");
    assert_eq!(alerts[0].summary, "severe: Shortness of breath");

    // A new link stops the old one; stopping it leaves none.
    let second = create_link(&stack, &page, "en").await;
    assert_ne!(second, link);
    assert_eq!(get(&stack, &link).await.0, StatusCode::GONE);
    let (status, _) = post(
        &stack,
        &link,
        &answers.replace(&submission, &"e".repeat(32)),
    )
    .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(get(&stack, &second).await.0, StatusCode::OK);
    let (status, _) = post(&stack, &format!("{page}/checkin/revoke"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(&stack, &second).await.0, StatusCode::GONE);
    let html = get(&stack, &page).await.1;
    assert!(html.contains("No check-in link yet"), "{html}");

    // When the monitoring ends, a live link stops too.
    let third = create_link(&stack, &page, "nl").await;
    stack.act("tm-c1", "stop").await;
    stack.wait_hub_status("tm-c1", "completed").await;
    assert_eq!(get(&stack, &third).await.0, StatusCode::GONE);
    assert_eq!(
        stored_answers(&stack, "tm-c1").await,
        3,
        "nothing was stored twice"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_link_is_offered_only_while_the_patient_is_monitored() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = stack(tmp.path()).await;
    let answer = stack.prescribe("tm-c2", "rx-1").await;
    let page = answer["body"]["url"].as_str().unwrap().to_owned();
    let html = get(&stack, &page).await.1;
    assert!(!html.contains("checkin-issue"), "{html}");
    let (status, _) = post(&stack, &format!("{page}/checkin"), "language=nl").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let unknown = format!("{}/checkin/{}", stack.provider, "0".repeat(64));
    let (status, text) = get(&stack, &unknown).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(text.contains("Deze link werkt niet meer") && text.contains("Ce lien"));
    stack.stop().await;
}

/// The page at a phone's size (360 x 740): nothing wider than the screen, every answer a large
/// target; the patient taps answers and sends, and the thanks page lists them.
#[tokio::test]
async fn a_patient_fills_in_the_page_on_a_phone() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = stack(tmp.path()).await;
    let page = monitored(&stack, "tm-c3").await;
    let link = create_link(&stack, &page, "nl").await;
    let mut browser = browser::Browser::launch(360, 740).await;
    browser.goto(&link).await;
    assert_eq!(browser.eval("document.documentElement.lang").await, "nl");
    let width = browser
        .eval("document.documentElement.scrollWidth")
        .await
        .as_f64()
        .unwrap();
    assert!(
        width <= 360.0,
        "the page is {width} px wide on a 360 px screen"
    );
    let smallest = browser
        .eval(
            "Math.min(...[...document.querySelectorAll('.choices span')]\
             .map(s => s.getBoundingClientRect().height))",
        )
        .await
        .as_f64()
        .unwrap();
    assert!(smallest >= 44.0, "an answer is only {smallest} px high");
    for (code, severity) in [(BREATH, Severity::Moderate), (COUGH, Severity::Severe)] {
        browser
            .eval(&format!(
                "document.querySelector(\"input[name='s_{code}'][value='{}']\")\
                 .closest('label').click()",
                severity.code()
            ))
            .await;
    }
    browser
        .eval("document.querySelector('#checkin button[type=submit]').click()")
        .await;
    browser
        .wait_for("document.querySelector('#done') !== null")
        .await;
    let listed = browser
        .eval("[...document.querySelectorAll('#answers li')].map(l => l.textContent).join('|')")
        .await;
    assert_eq!(listed, "Kortademigheid: Matig|Kriebelhoest: Ernstig");
    assert_eq!(
        browser
            .eval("document.querySelector('#severe') !== null")
            .await,
        true
    );
    stack.state.store.published_session("tm-c3").await.unwrap();
    let stored = tm_testkit::wait::settle(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || stored_answers(&stack, "tm-c3"),
        |n| *n == 2,
    )
    .await;
    assert_eq!(stored, 2);
    stack.stop().await;
}
