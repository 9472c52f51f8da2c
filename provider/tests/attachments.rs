//! Attachments over real HTTP: an axum server on 127.0.0.1:0 serving an in-memory session
//! store; the metadata the HUB would carry checked against what a download returns; signed
//! URIs refused when tampered, expired, foreign or for a session that does not exist; and the
//! dashboard loaded in headless Chromium.

use tm_testkit::browser;
mod fixtures;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use base64::Engine;
use chrono::{Duration, TimeZone, Utc};
use md5::{Digest, Md5};
use tm_provider::attachments::routes::AttachmentServer;
use tm_provider::attachments::{
    Attachment, OutputOptions, SessionData, SessionSource, SourceError, UriSigner, describe, routes,
};
use tm_provider::outputs::dashboard::DashboardOptions;
use tm_provider::outputs::fhir::FhirOptions;
use tm_provider::outputs::series::Ranges;
use tokio_util::sync::CancellationToken;

/// The session store, in memory.
#[derive(Debug, Default)]
struct Memory(HashMap<String, SessionData>);

impl SessionSource for Memory {
    async fn load(&self, id: &str) -> Result<Option<SessionData>, SourceError> {
        Ok(self.0.get(id).cloned())
    }
}

const KEY: [u8; 32] = *b"0123456789abcdef0123456789abcdef";

fn options() -> OutputOptions {
    OutputOptions {
        fhir: FhirOptions::for_public_url("https://provider.example.org"),
        ranges: Ranges::heart_failure(),
        dashboard: DashboardOptions {
            frame_ancestors: vec!["https://ehr.example-hospital.be".into()],
        },
        triage: tm_provider::triage::Triage::default(),
        time_zone: chrono_tz::Europe::Brussels,
    }
}

fn data() -> SessionData {
    SessionData {
        context: fixtures::session(),
        readings: fixtures::heart_failure_week(),
        symptoms: fixtures::symptom_week(),
        last_modified: Utc.with_ymd_and_hms(2026, 5, 8, 5, 36, 3).unwrap(),
    }
}

struct Server {
    base: String,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start() -> Server {
    let mut store = Memory::default();
    store.0.insert("tm-4711".into(), data());
    let server = Arc::new(AttachmentServer {
        source: store,
        signer: UriSigner::new(&KEY).unwrap(),
        options: options(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(tm_provider::http::serve(
        listener,
        routes(server).into_router(),
        stop.clone(),
    ));
    Server { base, stop }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(StdDuration::from_secs(20))
        .build()
        .unwrap()
}

fn announced(base: &str) -> Vec<Attachment> {
    let signer = UriSigner::new(&KEY).unwrap();
    describe(
        &data(),
        &options(),
        &signer,
        base,
        Utc::now() + Duration::hours(1),
    )
}

#[tokio::test]
async fn downloads_match_the_announced_metadata_and_revalidate() {
    let server = start().await;
    let http = client();
    let list = announced(&server.base);
    let ids: Vec<&str> = list.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["fhir", "pdf-en", "pdf-nl", "pdf-fr", "dashboard"]);
    let json = serde_json::to_value(&list[1]).unwrap();
    assert_eq!(json["contentType"], "application/pdf");
    assert_eq!(json["contentLanguage"], "en");
    assert_eq!(json["lastModified"], "2026-05-08T05:36:03.000Z");
    assert!(json["contentMD5"].is_string() && json["etag"].is_string());

    for a in &list {
        let resp = http.get(&a.uri).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}", a.id);
        let h = resp.headers().clone();
        let body = resp.bytes().await.unwrap();
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
        if a.id == "dashboard" {
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(
                csp.contains("frame-ancestors https://ehr.example-hospital.be"),
                "{csp}"
            );
            assert!(csp.contains("default-src 'none'"), "{csp}");
            assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        } else {
            assert_eq!(a.content_md5.as_deref(), Some(md5.as_str()), "{}", a.id);
            assert_eq!(a.content_length, Some(body.len() as u64));
            assert_eq!(h["content-md5"].to_str().unwrap(), md5);
            assert_eq!(h["etag"].to_str().unwrap(), a.etag.as_deref().unwrap());
            assert_eq!(
                h["content-length"].to_str().unwrap(),
                body.len().to_string()
            );
            assert_eq!(h["content-type"].to_str().unwrap(), a.content_type);
        }
        assert_eq!(
            h["last-modified"].to_str().unwrap(),
            "Fri, 08 May 2026 05:36:03 GMT"
        );
        let etag = h["etag"].to_str().unwrap().to_owned();
        let again = http
            .get(&a.uri)
            .header("If-None-Match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{}", a.id);
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        let stale = http
            .get(&a.uri)
            .header("If-None-Match", "\"0000\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200);
    }
}

#[tokio::test]
async fn bad_tokens_get_the_same_403_whether_or_not_the_session_exists() {
    let server = start().await;
    let http = client();
    let signer = UriSigner::new(&KEY).unwrap();
    let soon = Utc::now() + Duration::hours(1);
    let url = |session: &str, att: &str, token: &str| {
        format!("{}/attachments/{session}/{att}?token={token}", server.base)
    };
    let good = signer.sign("tm-4711", "fhir", "hospital-az-groeninge", soon);
    assert_eq!(
        http.get(url("tm-4711", "fhir", &good))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let mut tampered = good.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let expired = signer.sign(
        "tm-4711",
        "fhir",
        "hospital-az-groeninge",
        Utc::now() - Duration::seconds(1),
    );
    let foreign = signer.sign("tm-4711", "fhir", "another-hospital", soon);
    let other_key =
        UriSigner::new(&[9u8; 32])
            .unwrap()
            .sign("tm-4711", "fhir", "hospital-az-groeninge", soon);
    let missing_session = signer.sign("tm-9999", "fhir", "hospital-az-groeninge", soon);
    let unconfigured_language = signer.sign("tm-4711", "pdf-de", "hospital-az-groeninge", soon);
    let cases = [
        url("tm-4711", "fhir", &tampered),
        url("tm-4711", "fhir", &expired),
        url("tm-4711", "fhir", &foreign),
        url("tm-4711", "fhir", &other_key),
        url("tm-4711", "pdf-en", &good),
        url("tm-9999", "fhir", &missing_session),
        url("tm-9999", "fhir", &good),
        url("tm-4711", "pdf-de", &unconfigured_language),
        format!("{}/attachments/tm-4711/fhir", server.base),
    ];
    let mut bodies = Vec::new();
    for u in cases {
        let resp = http.get(&u).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{u}");
        assert!(resp.headers().get("etag").is_none());
        bodies.push(resp.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

/// The dashboard in Debian's headless Chromium: what a clinician sees in the EHR's iframe.
#[tokio::test]
async fn dashboard_renders_in_headless_chromium() {
    let server = start().await;
    let uri = announced(&server.base)
        .into_iter()
        .find(|a| a.id == "dashboard")
        .unwrap()
        .uri;
    let (dom, out) = browser::dump_dom(&uri).await;
    assert!(dom.contains("<svg"), "no chart in the DOM:\n{dom}\n{out:?}");
    assert!(dom.contains("Telemonitoring report"));
    assert!(dom.contains("EFD5E060-9522-48BE-9ECC-3BFA54EA3666"));
    // Latest values: weight 80.2 kg, BP 141/89 (systolic high, so marked), SpO2 93 %.
    assert!(dom.contains("80.2 kg"), "{dom}");
    assert!(
        dom.contains("<div class=\"latest out\">141/89 mmHg</div>"),
        "{dom}"
    );
    assert!(dom.contains("93 %"));
    for measure in [
        "bodyweight",
        "bloodpressure",
        "heartrate",
        "spo2",
        "bodytemperature",
        "glucosemass",
    ] {
        assert!(
            dom.contains(&format!("data-measure=\"{measure}\"")),
            "{measure}"
        );
    }
    assert_eq!(dom.matches("<polyline").count(), 7, "one line per series");
    assert!(!dom.contains("<script"));
    // What the carepath rules found in the week, as the worklist and the PDF list it.
    assert!(dom.contains("<h2>Care path alerts</h2>"), "{dom}");
    assert!(
        dom.contains(
            "<li data-rule=\"systolic-out-of-range\">Systolic pressure out of range: 145 mmHg \
             2026-05-05 07:30</li>"
        ),
        "{dom}"
    );
    assert!(dom.contains("<li data-rule=\"heart-rate-out-of-range\">"));
    // The patient's severe breathlessness is a finding, and the answers have their table:
    // newest first, those rated absent left out, a severe one marked.
    assert!(
        dom.contains(
            "<li data-rule=\"severe-symptom\">Severe symptom reported: Shortness of breath: \
             Severe 2026-05-06 08:00 \u{2192} Tiredness: Severe 2026-05-06 08:00</li>"
        ),
        "{dom}"
    );
    let table = &dom[dom
        .find("<section id=\"symptoms\">")
        .expect("the symptom table")..];
    assert!(table.contains("Latest values: 2026-05-08 08:00"), "{table}");
    let rows: Vec<&str> = table.split("<tr data-symptom=").skip(1).collect();
    assert_eq!(rows.len(), 22, "25 answers, 3 rated absent");
    assert!(rows[0].contains("2026-05-08 08:00"), "{}", rows[0]);
    assert!(
        table.contains(
            "<tr data-symptom=\"267036007\"><td>2026-05-07 08:00</td><td>Shortness of breath</td>\
             <td class=\"out\">Severe</td></tr>"
        ),
        "{table}"
    );
    assert!(table.contains("<td>Tickly cough</td><td>Mild</td>"));
}
