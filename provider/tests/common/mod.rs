//! A provider and a Portal/HUB emulator on real 127.0.0.1:0 listeners, wired to each other.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use tm_protocol::{
    BatchId, Frame, GatewayId, MessageKind, Reading, ReadingBatch, Receipt, SigningKey,
};
use tm_provider::portal::AppState;
use tm_sim_hub::{SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

pub const FIXED: (&str, &str) = ("x-tm-portal-key", "fixed-secret");
pub const HOSPITAL: (&str, &str) = ("x-hospital-key", "h-secret");

pub struct Stack {
    pub sim: SimHandle,
    pub provider: String,
    pub state: AppState,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
    pub dir: std::path::PathBuf,
}

/// The provider's configuration for a stack in `dir`. The key files are named in `dir` (where
/// a SQLite store puts them by default; a PostgreSQL store would put them in the working
/// directory, shared by every test), with an `[attachments]` table that
/// [`with_attachments`] adds settings to; `[enrollment]` comes last, so settings appended to
/// the text are enrollment settings.
pub fn config_text(dir: &std::path::Path, listen: &str, hub_url: &str) -> String {
    std::fs::write(dir.join("hub-secret"), "s3cret\n").unwrap();
    format!(
        r#"
listen = "{listen}"
public_url = "http://{listen}"
key_file = "{key_file}"
{store}
[attachments]
key_file = "{uri_key_file}"
[portal]
fixed_headers = {{ "{f0}" = "{f1}" }}
patient_fields = ["patient.language"]
[[portal.prescribers]]
id = "rx-1"
dpa_signed = true
headers = {{ "{h0}" = "{h1}" }}
[[portal.prescribers]]
id = "rx-nodpa"
dpa_signed = false
[hub]
url = "{hub_url}"
client_id = "prov"
client_secret_file = "{secret}"
timeout_ms = 300
retry_initial_ms = 20
retry_max_ms = 100
token_margin_s = 0
[enrollment]
code_ttl_s = 60
"#,
        store = tm_testkit::backend::TestStore::in_dir(dir).setting(),
        key_file = dir.join("provider.key").display(),
        uri_key_file = dir.join("attachments.key").display(),
        secret = dir.join("hub-secret").display(),
        f0 = FIXED.0,
        f1 = FIXED.1,
        h0 = HOSPITAL.0,
        h1 = HOSPITAL.1,
    )
}

/// `text` (a [`config_text`]) with `settings` added to its `[attachments]` table: its keys,
/// then any `[attachments.*]` sub-tables.
pub fn with_attachments(text: &str, settings: &str) -> String {
    assert!(text.contains("\n[attachments]\n"), "{text}");
    text.replacen("\n[portal]\n", &format!("\n{settings}[portal]\n"), 1)
}

/// Starts the provider on `listener` with `config`; returns its state and stop token.
pub async fn start_provider(
    listener: tokio::net::TcpListener,
    text: &str,
) -> (AppState, CancellationToken) {
    let file: tm_provider::config::ConfigFile = toml::from_str(text).unwrap();
    let config = tm_provider::config::Config::try_from(file).unwrap();
    let assembly = tm_provider::app::assemble(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let router = assembly.router();
    if let Some(outbox) = assembly.outbox {
        tokio::spawn(outbox.run(shutdown.clone()));
    }
    tokio::spawn(assembly.updater.run(shutdown.clone()));
    tokio::spawn(tm_provider::http::serve(listener, router, shutdown.clone()));
    (assembly.state, shutdown)
}

pub async fn stack(dir: &std::path::Path) -> Stack {
    stack_with(dir, "").await
}

/// A stack whose provider configuration ends with `extra` (e.g. an `[attachments]` section).
pub async fn stack_with(dir: &std::path::Path, extra: &str) -> Stack {
    stack_edited(dir, |text| text + extra).await
}

/// A stack whose provider configuration is `edit` applied to [`config_text`].
pub async fn stack_edited(dir: &std::path::Path, edit: impl FnOnce(String) -> String) -> Stack {
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let provider = format!("http://{addr}");
    let sim = tm_sim_hub::spawn(
        sim_listener,
        SimConfig {
            client_id: "prov".into(),
            client_secret: "s3cret".into(),
            provider_url: Some(format!(
                "{provider}{}",
                tm_provider::portal::PRESCRIPTION_ROUTE
            )),
            action_url: Some(format!("{provider}{}", tm_provider::portal::ACTION_ROUTE)),
            fixed_headers: vec![(FIXED.0.into(), FIXED.1.into())],
            token_ttl: Duration::from_secs(3600),
            ca_file: None,
        },
    )
    .unwrap();
    let text = edit(config_text(dir, &addr, &sim.url()));
    let (state, shutdown) = start_provider(listener, &text).await;
    Stack {
        sim,
        provider,
        state,
        shutdown,
        http: reqwest::Client::new(),
        dir: dir.to_path_buf(),
    }
}

impl Stack {
    pub async fn control(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}/control/{path}", self.sim.url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The Portal prescribes for `id`; returns the provider's answer {status, body}.
    pub async fn prescribe(&self, id: &str, prescriber: &str) -> Value {
        self.control(
            "prescribe",
            json!({"telemonitoringId": id, "patientId": format!("pat-{id}"), "prescriberId": prescriber,
                "fields": {"patient.language": "nl", "patient.firstName": "Ann"},
                "headers": {HOSPITAL.0: HOSPITAL.1}}),
        )
        .await
    }

    pub async fn act(&self, id: &str, action: &str) -> Value {
        self.control(
            "action",
            json!({"telemonitoringId": id, "action": action, "headers": {HOSPITAL.0: HOSPITAL.1}}),
        )
        .await
    }

    pub fn hub_status(&self, id: &str) -> Option<String> {
        self.sim
            .hub
            .with(|s| s.sessions.get(id).map(|x| x.status.clone()))
    }

    /// Waits (bounded) until the HUB shows `status` for `id`.
    pub async fn wait_hub_status(&self, id: &str, status: &str) {
        let seen = tm_testkit::wait::settle(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || std::future::ready(self.hub_status(id)),
            |seen| seen.as_deref() == Some(status),
        )
        .await;
        assert_eq!(
            seen.as_deref(),
            Some(status),
            "HUB never showed {status} for {id}"
        );
    }

    pub fn violations(&self) -> Vec<(String, String)> {
        self.sim.hub.with(|s| s.violations.clone())
    }

    /// Opens the enrollment page and issues a code for the default carepath.
    pub async fn issue_code(&self, url: &str) -> String {
        let page = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("heart-failure\" selected"), "{page}");
        let html = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("carepath=https%3A%2F%2Fhl7belgium.org%2Ffhir%2Fpatient-monitoring%2Fcarepath%2Fheart-failure")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let start = html.find("id=\"code\">").expect("a code on the page") + 10;
        html[start..start + 8].to_owned()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.sim.shutdown.cancel();
    }
}

/// Enrolls a fresh gateway key with `code` through the API; returns (status, body).
pub async fn enroll_with(stack: &Stack, code: &str) -> (u16, Vec<u8>) {
    let (key, _) = SigningKey::generate().unwrap();
    enroll_key(stack, code, &key).await
}

/// Enrolls `key` with `code` through the API; returns (status, body).
async fn enroll_key(stack: &Stack, code: &str, key: &SigningKey) -> (u16, Vec<u8>) {
    let request = tm_protocol::EnrollmentRequest {
        v: tm_protocol::PROTOCOL_VERSION,
        code: code.into(),
        public_key: key.verifying_key().as_bytes().to_vec(),
        agent_version: "test".into(),
    };
    let frame = tm_protocol::seal(
        MessageKind::EnrollmentRequest,
        "enroll",
        &tm_protocol::encode(&request),
        key,
    );
    let r = stack
        .http
        .post(format!(
            "{}{}",
            stack.provider,
            tm_protocol::routes::http::ENROLL
        ))
        .body(frame)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// A gateway enrolled through the API: the id the provider gave it, its key.
pub struct Enrolled {
    pub id: GatewayId,
    pub key: SigningKey,
}

/// Enrolls a fresh gateway key with `code` (the API answers 200); returns the gateway, its id
/// read from the provider's signed answer.
pub async fn enroll_gateway(stack: &Stack, code: &str) -> Enrolled {
    let (key, _) = SigningKey::generate().unwrap();
    let (status, body) = enroll_key(stack, code, &key).await;
    assert_eq!(status, 200);
    let response: tm_protocol::EnrollmentResponse =
        verified(stack, &body, MessageKind::EnrollmentResponse);
    Enrolled {
        id: response.gateway_id,
        key,
    }
}

/// Posts a batch of `readings` signed by `gw` to `base`'s readings route; returns the answer.
pub async fn send_batch(
    stack: &Stack,
    base: &str,
    gw: &Enrolled,
    batch_id: &str,
    readings: &[Reading],
) -> reqwest::Response {
    let batch = ReadingBatch {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gw.id.clone(),
        batch_id: BatchId::new(batch_id).unwrap(),
        created_at: chrono::Utc::now(),
        readings: readings.to_vec(),
    };
    let frame = tm_protocol::seal(
        MessageKind::ReadingBatch,
        gw.id.as_str(),
        &tm_protocol::encode(&batch),
        &gw.key,
    );
    let url = format!("{base}{}", tm_protocol::routes::http::READINGS);
    stack.http.post(url).body(frame).send().await.unwrap()
}

/// Posts a batch of `readings` signed by `gw` to `base`'s readings route (the API answers
/// 200); returns the provider's receipt, its signature verified.
pub async fn post_batch(
    stack: &Stack,
    base: &str,
    gw: &Enrolled,
    batch_id: &str,
    readings: &[Reading],
) -> Receipt {
    let r = send_batch(stack, base, gw, batch_id, readings).await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    verified(stack, &body, MessageKind::Receipt)
}

/// The payload of a frame of `kind` signed by the provider, decoded.
fn verified<T: tm_protocol::codec::Message>(stack: &Stack, frame: &[u8], kind: MessageKind) -> T {
    let provider = stack.state.portal.provider_key.verifying_key();
    let payload = Frame::parse(frame)
        .unwrap()
        .verify(kind, &provider)
        .unwrap()
        .to_vec();
    tm_protocol::decode(&payload).unwrap()
}

/// Prescribes and enrolls `id`, waiting until the HUB shows it accepted; returns the
/// enrollment page's URL.
pub async fn accepted_session(stack: &Stack, id: &str) -> String {
    let answer = stack.prescribe(id, "rx-1").await;
    let url = answer["body"]["url"].as_str().unwrap().to_owned();
    let code = stack.issue_code(&url).await;
    let (status, _) = enroll_with(stack, &code).await;
    assert_eq!(status, 200);
    stack.wait_hub_status(id, "accepted").await;
    url
}
