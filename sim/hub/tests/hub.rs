//! The emulator rejects what the contract forbids: bad credentials and tokens, unknown
//! sessions, every illegal transition, every malformed attachment; and it checks downloads.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde_json::{Value, json};
use tm_sim_hub::state::SimSession;
use tm_sim_hub::{SimConfig, SimHandle};

async fn start(provider_url: Option<String>) -> (SimHandle, reqwest::Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = SimConfig {
        client_id: "prov".into(),
        client_secret: "s3cret".into(),
        action_url: provider_url.as_ref().map(|u| format!("{u}/action")),
        provider_url,
        fixed_headers: vec![("X-Fixed".into(), "fixed-value".into())],
        token_ttl: Duration::from_secs(3600),
        ca_file: None,
    };
    let handle = tm_sim_hub::spawn(listener, config).unwrap();
    (handle, reqwest::Client::new())
}

async fn token(sim: &SimHandle, http: &reqwest::Client) -> String {
    let r: Value = http
        .post(format!("{}/auth/providers", sim.url()))
        .basic_auth("prov", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["token_type"], "bearer");
    assert!(r["expires_in"].is_u64());
    r["access_token"].as_str().unwrap().to_owned()
}

fn seed(sim: &SimHandle, id: &str, status: &str) {
    sim.hub.with(|s| {
        s.sessions.insert(
            id.to_owned(),
            SimSession {
                status: status.into(),
                prescriber_id: "rx-1".into(),
                carepath: None,
                attachments: vec![],
                timeline: vec![],
            },
        )
    });
}

async fn put(sim: &SimHandle, http: &reqwest::Client, auth: &str, body: &Value) -> (u16, Value) {
    let r = http
        .put(format!("{}/prescription", sim.url()))
        .header("authorization", auth)
        .json(body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn carepath() -> Value {
    json!({"id": "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure", "version": "1.0.0"})
}

#[tokio::test]
async fn credentials_and_tokens_are_enforced() {
    let (sim, http) = start(None).await;
    let bad = http
        .post(format!("{}/auth/providers", sim.url()))
        .basic_auth("prov", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    seed(&sim, "tm-1", "requested");
    let body = json!({"telemonitoringId": "tm-1", "status": "accepted", "carepath": carepath()});
    assert_eq!(put(&sim, &http, "Bearer nope", &body).await.0, 401);
    let t = token(&sim, &http).await;
    assert_eq!(sim.hub.with(|s| s.token_ttl.as_secs()), 3600);
    // The bare token is accepted too (docs/portal-hub.md §5).
    assert_eq!(put(&sim, &http, &t, &body).await.0, 200);
    assert_eq!(put(&sim, &http, &format!("Bearer {t}"), &body).await.0, 200);
    http.post(format!("{}/control/revoke-tokens", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(put(&sim, &http, &format!("Bearer {t}"), &body).await.0, 401);
    // Expired tokens are refused.
    http.post(format!("{}/control/token-ttl", sim.url()))
        .json(&json!({"seconds": 0}))
        .send()
        .await
        .unwrap();
    let t = token(&sim, &http).await;
    assert_eq!(put(&sim, &http, &format!("Bearer {t}"), &body).await.0, 401);
    sim.shutdown.cancel();
}

#[tokio::test]
async fn every_illegal_transition_is_rejected_and_recorded() {
    let (sim, http) = start(None).await;
    let auth = format!("Bearer {}", token(&sim, &http).await);
    let statuses = tm_sim_hub::rules::STATUSES;
    let legal = [
        ("requested", "accepted"),
        ("requested", "cancelled"),
        ("accepted", "accepted"),
        ("accepted", "in-progress"),
        ("accepted", "cancelled"),
        ("accepted", "completed"),
        ("in-progress", "in-progress"),
        ("in-progress", "completed"),
    ];
    let mut illegal = 0;
    for from in statuses {
        for to in statuses {
            let id = format!("tm-{from}-{to}");
            seed(&sim, &id, from);
            let body = json!({"telemonitoringId": id, "status": to, "carepath": carepath()});
            let (code, answer) = put(&sim, &http, &auth, &body).await;
            if legal.contains(&(from, to)) {
                assert_eq!(code, 200, "{from} -> {to}: {answer}");
            } else {
                illegal += 1;
                assert!((400..500).contains(&code), "{from} -> {to} got {code}");
                assert!(answer["message"].is_string());
                let status = sim.hub.with(|s| s.sessions[&id].status.clone());
                assert_eq!(status, from, "a refused PUT changes nothing");
            }
        }
    }
    let recorded = sim.hub.with(|s| s.violations.len());
    assert_eq!(recorded, illegal);
    // Unknown session.
    let (code, _) = put(
        &sim,
        &http,
        &auth,
        &json!({"telemonitoringId": "nope", "status": "accepted"}),
    )
    .await;
    assert_eq!(code, 404);
    sim.shutdown.cancel();
}

fn pdf(id: &str) -> Value {
    json!({
        "id": id, "contentType": "application/pdf", "uri": "https://x.example/pdf?t=1",
        "etag": "\"e1\"", "contentMD5": "1B2M2Y8AsgTpgAmY7PhCfg==", "contentLength": 0,
        "lastModified": "2024-09-30T07:44:17.335Z", "contentLanguage": "nl",
    })
}

fn dashboard(id: &str) -> Value {
    json!({"id": id, "contentType": "x-tm-dashboard", "uri": "https://x.example/d"})
}

#[tokio::test]
async fn every_malformed_attachment_and_carepath_is_rejected() {
    let (sim, http) = start(None).await;
    let auth = format!("Bearer {}", token(&sim, &http).await);
    let mut cases: Vec<(&str, Value)> = vec![
        ("duplicate ids", json!([dashboard("a"), dashboard("a")])),
        (
            "missing id",
            json!([{"contentType": "x-tm-dashboard", "uri": "https://x/d"}]),
        ),
        (
            "unknown type",
            json!([{"id": "a", "contentType": "text/plain", "uri": "https://x/d"}]),
        ),
        (
            "relative uri",
            json!([{"id": "a", "contentType": "x-tm-dashboard", "uri": "/d"}]),
        ),
        (
            "headers not strings",
            json!([{"id": "a", "contentType": "x-tm-dashboard", "uri": "https://x/d", "headers": {"X": 1}}]),
        ),
        (
            "dashboard with md5",
            json!([{"id": "a", "contentType": "x-tm-dashboard", "uri": "https://x/d", "contentMD5": "x"}]),
        ),
        ("not an object", json!(["a"])),
        ("not an array", json!({"id": "a"})),
    ];
    for (field, bad) in [
        ("etag", Value::Null),
        ("contentMD5", json!("f2fd2ddd34eebc9d039f5e693b95a61c")),
        ("contentLength", json!(-1)),
        ("lastModified", json!("yesterday")),
        ("contentLanguage", json!("dutch")),
    ] {
        let mut a = pdf("p");
        if bad.is_null() {
            a.as_object_mut().unwrap().remove(field);
        } else {
            a[field] = bad;
        }
        cases.push((field, json!([a])));
    }
    for (i, (name, attachments)) in cases.into_iter().enumerate() {
        let id = format!("tm-{i}");
        seed(&sim, &id, "accepted");
        let body = json!({"telemonitoringId": id, "status": "in-progress", "carepath": carepath(), "attachments": attachments});
        let (code, answer) = put(&sim, &http, &auth, &body).await;
        assert_eq!(code, 400, "{name}: {answer}");
        assert_eq!(sim.hub.with(|s| s.sessions[&id].status.clone()), "accepted");
    }
    for (i, bad_carepath) in [
        json!({"id": "x"}),
        json!("x"),
        json!({"id": "x", "version": 1}),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("tm-c{i}");
        seed(&sim, &id, "requested");
        let body = json!({"telemonitoringId": id, "status": "accepted", "carepath": bad_carepath});
        assert_eq!(put(&sim, &http, &auth, &body).await.0, 400);
    }
    // Attachments with accepted, and unknown fields, are violations too.
    seed(&sim, "tm-x", "requested");
    let body =
        json!({"telemonitoringId": "tm-x", "status": "accepted", "attachments": [dashboard("a")]});
    assert_eq!(put(&sim, &http, &auth, &body).await.0, 400);
    let body = json!({"telemonitoringId": "tm-x", "status": "accepted", "colour": "red"});
    assert_eq!(put(&sim, &http, &auth, &body).await.0, 400);
    // Past the soft limit: accepted with a warning.
    seed(&sim, "tm-many", "accepted");
    let many: Vec<Value> = (0..11).map(|i| dashboard(&format!("d{i}"))).collect();
    let body = json!({"telemonitoringId": "tm-many", "status": "in-progress", "attachments": many});
    assert_eq!(put(&sim, &http, &auth, &body).await.0, 200);
    let timeline: Value = http
        .get(format!("{}/control/sessions/tm-many", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        timeline["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "warning")
    );
    sim.shutdown.cancel();
}

/// A file server for the EHR downloads: serves `content` with ETag `"v1"`.
async fn file_server(content: &'static [u8]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/doc",
        axum::routing::get(move |headers: HeaderMap| async move {
            if headers.get("x-doc-key").and_then(|v| v.to_str().ok()) != Some("k") {
                return (
                    axum::http::StatusCode::FORBIDDEN,
                    [("etag", "\"v1\"")],
                    &b""[..],
                );
            }
            (axum::http::StatusCode::OK, [("etag", "\"v1\"")], content)
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/doc")
}

#[tokio::test]
async fn the_ehr_downloads_and_checks_documents() {
    let (sim, http) = start(None).await;
    let auth = format!("Bearer {}", token(&sim, &http).await);
    let content: &'static [u8] = b"%PDF-1.7 report";
    let uri = file_server(content).await;
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(content));
    let good = json!({"id": "good", "contentType": "application/pdf", "uri": uri, "etag": "\"v1\"",
        "contentMD5": md5, "contentLength": content.len(), "lastModified": "2024-09-30T07:44:17Z",
        "headers": {"X-Doc-Key": "k"}});
    let mut wrong = good.clone();
    wrong["id"] = json!("wrong");
    wrong["contentLength"] = json!(3);
    wrong["contentMD5"] = json!("1B2M2Y8AsgTpgAmY7PhCfg==");
    seed(&sim, "tm-d", "accepted");
    let body =
        json!({"telemonitoringId": "tm-d", "status": "in-progress", "attachments": [good, wrong]});
    assert_eq!(put(&sim, &http, &auth, &body).await.0, 200);
    let mut downloads = Vec::new();
    for _ in 0..200 {
        downloads = sim.hub.with(|s| {
            s.sessions["tm-d"]
                .timeline
                .iter()
                .filter_map(|e| serde_json::to_value(e).ok())
                .filter(|e| e["event"] == "download")
                .collect::<Vec<_>>()
        });
        if downloads.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(downloads.len(), 2);
    assert_eq!(downloads[0]["ok"], true, "{:?}", downloads[0]);
    assert_eq!(downloads[1]["ok"], false);
    assert_eq!(downloads[1]["problems"].as_array().unwrap().len(), 2);
    sim.shutdown.cancel();
}

#[tokio::test]
async fn faults_leave_the_call_unprocessed() {
    let (sim, http) = start(None).await;
    let auth = format!("Bearer {}", token(&sim, &http).await);
    seed(&sim, "tm-f", "requested");
    http.post(format!("{}/control/faults", sim.url()))
        .json(&json!([{"kind": "status", "code": 503}, {"kind": "slow", "ms": 20}]))
        .send()
        .await
        .unwrap();
    let body = json!({"telemonitoringId": "tm-f", "status": "accepted"});
    assert_eq!(put(&sim, &http, &auth, &body).await.0, 503);
    assert_eq!(
        sim.hub.with(|s| s.sessions["tm-f"].status.clone()),
        "requested"
    );
    assert_eq!(put(&sim, &http, &auth, &body).await.0, 200);
    assert_eq!(
        sim.hub.with(|s| s.sessions["tm-f"].status.clone()),
        "accepted"
    );
    sim.shutdown.cancel();
}

#[tokio::test]
async fn the_portal_sends_fields_and_headers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let provider = format!("http://{}", listener.local_addr().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(HeaderMap, Value)>(4);
    let app = axum::Router::new().route(
        "/rx",
        axum::routing::post(
            move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let tx = tx.clone();
                async move {
                    tx.send((headers, body)).await.unwrap();
                    axum::Json(json!({"url": "https://p.example/enroll/1"}))
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (sim, http) = start(Some(format!("{provider}/rx"))).await;
    let answer: Value = http
        .post(format!("{}/control/prescribe", sim.url()))
        .json(
            &json!({"telemonitoringId": "tm-p", "patientId": "pat-1", "prescriberId": "rx-1",
            "fields": {"patient.language": "nl", "surgery.procedure.id": "p1"},
            "headers": {"X-Hospital": "h1"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["body"]["url"], "https://p.example/enroll/1");
    let (headers, body) = rx.recv().await.unwrap();
    assert_eq!(headers["x-fixed"], "fixed-value");
    assert_eq!(headers["x-hospital"], "h1");
    assert_eq!(body["prescriber"]["id"], "rx-1");
    assert_eq!(body["patient"]["language"], "nl");
    assert_eq!(body["surgery"]["procedure"]["id"], "p1");
    let unknown = http
        .post(format!("{}/control/prescribe", sim.url()))
        .json(
            &json!({"telemonitoringId": "tm-q", "patientId": "p", "prescriberId": "rx-1",
            "fields": {"patient.shoeSize": "44"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    sim.shutdown.cancel();
}

#[tokio::test]
async fn the_timeline_is_readable_over_http() {
    let (sim, http) = start(None).await;
    let auth = format!("Bearer {}", token(&sim, &http).await);
    seed(&sim, "tm-tl", "requested");
    let ok = json!({"telemonitoringId": "tm-tl", "status": "accepted", "carepath": carepath()});
    assert_eq!(put(&sim, &http, &auth, &ok).await.0, 200);
    let bad = json!({"telemonitoringId": "tm-tl", "status": "requested", "carepath": carepath()});
    assert!((400..500).contains(&put(&sim, &http, &auth, &bad).await.0));

    let session: Value = http
        .get(format!("{}/control/sessions/tm-tl", sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["status"], "accepted");
    let events: Vec<&str> = session["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"status-changed"), "{events:?}");
    assert!(events.contains(&"violation"), "{events:?}");
    let changed = session["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "status-changed")
        .unwrap();
    assert_eq!(
        (changed["from"].as_str(), changed["to"].as_str()),
        (Some("requested"), Some("accepted"))
    );

    let unknown = http
        .get(format!("{}/control/sessions/nope", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    sim.shutdown.cancel();
}
