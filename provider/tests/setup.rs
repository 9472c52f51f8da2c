//! The nurse sets the home up from her phone, against a real provider (and the HUB emulator)
//! on 127.0.0.1:0, with gateways simulated at the protocol level (their keys, signed hellos,
//! heartbeats and reading batches):
//!
//! - a gateway's hellos are answered 202 until a nurse's page claims its code, then 200 with
//!   the signed enrollment; forged and stale hellos are refused;
//! - typos, unknown codes, the rate limit, a gateway claimed twice, cross-site forms and
//!   unknown or ended pages get their own answers;
//! - the setup page follows the gateway's setup heartbeats, keeps it in setup mode, turns the
//!   nurse's pair/secret/unpair into signed commands on the gateway's poll (the secret never
//!   shown back), shows each device's first reading, and audits every step;
//! - operations release a gateway (refused while readings wait, unless forced) and the same
//!   claim code claims it again for the next home;
//! - the pages speak Dutch, French, German and English.
//!
//! Both store backends (`TM_TEST_STORE=postgres`).

mod common;
mod fixtures;

use base64::Engine as _;
use chrono::{Duration, Utc};
use common::{Stack, stack_edited};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tm_protocol::claim::ClaimCode;
use tm_protocol::setup::{
    ClaimHello, NearbyDevice, PairingFailure, PairingProgress, PairingStep, SetupState,
};
use tm_protocol::{
    Backlog, ClockState, Command, CommandAction, DeviceHealth, DiskUse, EnrollmentResponse, Frame,
    GatewayId, Heartbeat, MessageKind, ReadingBatch, SigningKey, TimeQuality,
};

const OPS_TOKEN: &str = "setup-ops-token";
const HEART_FAILURE: &str = "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure";
const CUFF: &str = "28:FF:B2:11:22:33";

async fn stack(dir: &std::path::Path) -> Stack {
    let token = dir.join("ops-token");
    std::fs::write(&token, OPS_TOKEN).unwrap();
    stack_edited(dir, |text| {
        text + &format!("[ops]\ntoken_file = \"{}\"\n", token.display())
    })
    .await
}

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// An unenrolled gateway: its key.
struct Unclaimed {
    key: SigningKey,
}

impl Unclaimed {
    fn new() -> Self {
        Self {
            key: SigningKey::generate().unwrap().0,
        }
    }

    fn code(&self) -> ClaimCode {
        ClaimCode::of(&self.key.verifying_key())
    }

    fn id(&self) -> GatewayId {
        tm_provider::enroll::api::gateway_id_for(&self.key.verifying_key())
    }

    /// A hello carrying `carried`'s key, sent at `sent_at`, signed by this gateway's key.
    fn hello_frame(&self, carried: &SigningKey, sent_at: chrono::DateTime<Utc>) -> Vec<u8> {
        let hello = ClaimHello {
            v: tm_protocol::PROTOCOL_VERSION,
            public_key: carried.verifying_key().as_bytes().to_vec(),
            agent_version: "0.9.0".into(),
            sent_at,
        };
        let payload = serde_json::to_vec(&hello).unwrap();
        tm_protocol::seal(
            MessageKind::ClaimHello,
            tm_protocol::setup::HELLO_SIGNER,
            &payload,
            &self.key,
        )
    }

    async fn post_hello(&self, s: &Stack, frame: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let url = format!("{}{}", s.provider, tm_protocol::routes::http::CLAIM_HELLO);
        let r = s.http.post(url).body(frame).send().await.unwrap();
        (r.status(), r.bytes().await.unwrap().to_vec())
    }

    /// Says hello now; the answer.
    async fn hello(&self, s: &Stack) -> (StatusCode, Vec<u8>) {
        self.post_hello(s, self.hello_frame(&self.key, Utc::now()))
            .await
    }

    /// A heartbeat signed by the enrolled gateway, healthy unless `edit` changes it.
    async fn heartbeat(&self, s: &Stack, edit: impl FnOnce(&mut Heartbeat)) -> StatusCode {
        let mut hb = Heartbeat {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: self.id(),
            sent_at: Utc::now(),
            version: "0.9.0".into(),
            uptime_s: 30,
            backlog: Backlog {
                depth: 0,
                oldest_age_s: None,
                rejected: 0,
            },
            devices: Vec::new(),
            devices_unreadable: false,
            clock: ClockState::Synchronized,
            disk: DiskUse {
                used_bytes: 1 << 20,
                quota_bytes: 100 << 20,
            },
            last_error: None,
            setup: None,
        };
        edit(&mut hb);
        let frame = tm_protocol::seal(
            MessageKind::Heartbeat,
            self.id().as_str(),
            &tm_protocol::encode(&hb),
            &self.key,
        );
        let url = format!("{}{}", s.provider, tm_protocol::routes::http::HEARTBEAT);
        s.http.post(url).body(frame).send().await.unwrap().status()
    }

    /// The commands its poll serves, verified with the provider's key.
    async fn poll(&self, s: &Stack) -> Vec<Command> {
        let url = format!(
            "{}{}",
            s.provider,
            tm_protocol::routes::http::commands(&self.id())
        );
        let body: Value = s.http.get(url).send().await.unwrap().json().await.unwrap();
        let provider = s.state.portal.provider_key.verifying_key();
        body["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(f.as_str().unwrap())
                    .unwrap();
                let payload = Frame::parse(&bytes)
                    .unwrap()
                    .verify(MessageKind::Command, &provider)
                    .unwrap()
                    .to_vec();
                tm_protocol::decode(&payload).unwrap()
            })
            .collect()
    }
}

/// The enrollment page of a new prescription for `id`.
async fn prescribed(s: &Stack, id: &str) -> String {
    let answer = s.prescribe(id, "rx-1").await;
    answer["body"]["url"].as_str().unwrap().to_owned()
}

async fn get(s: &Stack, url: &str, language: Option<&str>) -> (StatusCode, String) {
    let mut request = s.http.get(url);
    if let Some(l) = language {
        request = request.header("accept-language", l);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Posts the claim form of `page`; the status, the `Location` and the body.
async fn claim(page: &str, code: &str) -> (StatusCode, Option<String>, String) {
    let body = format!(
        "carepath={}&code={}&lang=en",
        urlencode(HEART_FAILURE),
        urlencode(code)
    );
    let r = client()
        .post(format!("{page}/claim"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (r.status(), location, r.text().await.unwrap())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn state(s: &Stack, page: &str) -> (StatusCode, Value) {
    let r = s
        .http
        .get(format!("{page}/setup/state?lang=en"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn act(s: &Stack, page: &str, action: &str, body: Value) -> (StatusCode, Value) {
    let r = s
        .http
        .post(format!("{page}/setup/{action}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

async fn ops(s: &Stack, path: &str) -> Value {
    s.http
        .get(format!("{}{path}", s.provider))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The audit actions of `gateway`, oldest first.
async fn audited(s: &Stack, gateway: &GatewayId) -> Vec<String> {
    let trail = ops(s, &format!("/ops/api/audit?gateway={gateway}")).await;
    let mut actions: Vec<String> = trail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    actions.reverse();
    actions
}

/// Claims `gw` for a new session `id` (its hello first); the page.
async fn claimed(s: &Stack, gw: &Unclaimed, id: &str) -> String {
    assert_eq!(gw.hello(s).await.0, StatusCode::ACCEPTED);
    let page = prescribed(s, id).await;
    let (status, location, body) = claim(&page, &gw.code().to_string()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert!(location.unwrap().contains("lang=en"));
    page
}

#[tokio::test]
async fn a_gateway_says_hello_is_claimed_and_fetches_its_enrollment() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stack(tmp.path()).await;
    let gw = Unclaimed::new();
    let (status, body) = gw.hello(&s).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"state": "unclaimed"})
    );
    assert_eq!(gw.hello(&s).await.0, StatusCode::ACCEPTED, "refreshed");

    let page = prescribed(&s, "tm-s1").await;
    let (status, html) = get(&s, &page, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-step=\"carepath\"") && html.contains("pat-tm-s1"));
    assert!(
        html.contains("id=\"technician\""),
        "the technician's option stays"
    );
    let step2 = format!("{page}?carepath={}", urlencode(HEART_FAILURE));
    let (status, html) = get(&s, &step2, None).await;
    assert_eq!(status, StatusCode::OK);
    for needed in [
        "id=\"claim-code\"",
        "<label for=\"claim-code\">",
        "autocapitalize=\"characters\"",
        "autocomplete=\"off\"",
        "inputmode=\"text\"",
        "id=\"scan\" class=\"secondary\" hidden",
    ] {
        assert!(html.contains(needed), "{needed}: {html}");
    }
    // Typed as people type it: lower case, spaces.
    let sloppy = gw.code().to_string().to_lowercase().replace('-', " ");
    let (status, location, _) = claim(&page, &sloppy).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let token = page.rsplit('/').next().unwrap();
    assert_eq!(location.unwrap(), format!("../{token}?lang=en"));
    s.wait_hub_status("tm-s1", "accepted").await;

    let (status, frame) = gw.hello(&s).await;
    assert_eq!(status, StatusCode::OK);
    let provider = s.state.portal.provider_key.verifying_key();
    let payload = Frame::parse(&frame)
        .unwrap()
        .verify(MessageKind::EnrollmentResponse, &provider)
        .unwrap()
        .to_vec();
    let response: EnrollmentResponse = tm_protocol::decode(&payload).unwrap();
    assert_eq!(response.gateway_id, gw.id());
    assert_eq!(response.provider_public_key, provider.as_bytes().to_vec());
    assert_eq!(gw.hello(&s).await.0, StatusCode::OK, "and again");
    assert_eq!(gw.heartbeat(&s, |_| {}).await, StatusCode::NO_CONTENT);
    assert_eq!(audited(&s, &gw.id()).await, ["claimed"]);
    s.stop().await;
}

#[tokio::test]
async fn hellos_that_are_forged_stale_or_malformed_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stack(tmp.path()).await;
    let gw = Unclaimed::new();
    let other = Unclaimed::new();
    // Carries gw's key, signed by another: it proves nothing.
    let forged = other.hello_frame(&gw.key, Utc::now());
    assert_eq!(gw.post_hello(&s, forged).await.0, StatusCode::UNAUTHORIZED);
    let stale = gw.hello_frame(&gw.key, Utc::now() - Duration::seconds(600));
    let (status, body) = gw.post_hello(&s, stale).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = String::from_utf8(body).unwrap();
    assert!(message.contains("set the gateway's clock"), "{message}");
    let ahead = gw.hello_frame(&gw.key, Utc::now() + Duration::seconds(400));
    assert_eq!(gw.post_hello(&s, ahead).await.0, StatusCode::BAD_REQUEST);
    let wrong_signer = tm_protocol::seal(
        MessageKind::ClaimHello,
        "gw-1",
        &serde_json::to_vec(&json!({"v": 1})).unwrap(),
        &gw.key,
    );
    assert_eq!(
        gw.post_hello(&s, wrong_signer).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        gw.post_hello(&s, b"not a frame".to_vec()).await.0,
        StatusCode::BAD_REQUEST
    );
    // None of these made the gateway claimable.
    let page = prescribed(&s, "tm-s2").await;
    let (status, _, body) = claim(&page, &gw.code().to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body.contains("No gateway with this code is switched on and waiting"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn wrong_codes_are_told_apart_and_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stack(tmp.path()).await;
    let page = prescribed(&s, "tm-s3").await;
    let gw = Unclaimed::new();
    let code = gw.code().compact();

    let (status, _, body) = claim(&page, &code[..8]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("this one has 8"), "{body}");
    assert!(body.contains("id=\"claim-error\" role=\"alert\""));
    assert!(
        body.contains("action=\"../"),
        "the form points back at the claim: {body}"
    );
    let (status, _, body) = claim(&page, &format!("{}#", &code[..12])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("does not appear in claim codes"), "{body}");
    let mut swapped: Vec<char> = code.chars().collect();
    let i = (0..11).find(|&i| swapped[i] != swapped[i + 1]).unwrap();
    swapped.swap(i, i + 1);
    let (status, _, body) = claim(&page, &swapped.into_iter().collect::<String>()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("does not check out"), "{body}");

    // Well-formed codes of no waiting gateway: five a session in the window, then 429.
    for n in 0..5 {
        let (status, _, body) = claim(&page, &Unclaimed::new().code().to_string()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "attempt {n}: {body}");
    }
    let (status, _, body) = claim(&page, &Unclaimed::new().code().to_string()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("Too many wrong codes"), "{body}");
    assert_eq!(gw.hello(&s).await.0, StatusCode::ACCEPTED);
    let (status, _, _) = claim(&page, &gw.code().to_string()).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even a right one, for now"
    );

    // Another session claims it; a third one is told it is taken.
    let other = prescribed(&s, "tm-s4").await;
    assert_eq!(claim(&other, &code).await.0, StatusCode::SEE_OTHER);
    let third = prescribed(&s, "tm-s5").await;
    let (status, _, body) = claim(&third, &code).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body.contains("already claimed; operations can release it"),
        "{body}"
    );
    assert_eq!(
        claim(&other, &code).await.0,
        StatusCode::CONFLICT,
        "not waiting"
    );

    // From another site: refused before anything is looked at.
    let r = client()
        .post(format!("{third}/claim"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(format!("carepath={}&code={code}", urlencode(HEART_FAILURE)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .http
        .post(format!("{other}/setup/pair"))
        .header("origin", "https://elsewhere.example")
        .json(&json!({"address": CUFF}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Unknown pages.
    let unknown = format!("{}/enroll/{}", s.provider, "0".repeat(32));
    assert_eq!(get(&s, &unknown, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(claim(&unknown, &code).await.0, StatusCode::NOT_FOUND);
    assert_eq!(state(&s, &unknown).await.0, StatusCode::NOT_FOUND);
    let (status, _) = act(&s, &unknown, "pair", json!({"address": CUFF})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

fn nearby(paired: bool) -> NearbyDevice {
    NearbyDevice {
        address: CUFF.into(),
        name: Some("BP7000".into()),
        model_id: Some("omron-bp7000".into()),
        rssi_dbm: Some(-58),
        paired,
    }
}

fn pairing(step: PairingStep, shown: Option<u32>) -> PairingProgress {
    PairingProgress {
        address: CUFF.into(),
        step,
        shown,
        error: (step == PairingStep::Failed).then(|| "the device did not answer".into()),
        failure: (step == PairingStep::Failed).then_some(PairingFailure::WrongSecret),
        battery_pct: None,
        at: Utc::now(),
    }
}

fn setup(nearby: Vec<NearbyDevice>, pairings: Vec<PairingProgress>) -> Option<SetupState> {
    Some(SetupState {
        until: Utc::now() + Duration::minutes(4),
        nearby,
        pairings,
    })
}

fn cuff_paired() -> DeviceHealth {
    DeviceHealth {
        address: CUFF.into(),
        model: Some("omron-bp7000".into()),
        last_seen: Some(Utc::now()),
        last_reading: None,
        battery_pct: Some(85),
        rssi_dbm: None,
    }
}

#[tokio::test]
async fn the_setup_page_follows_the_gateway_and_relays_its_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stack(tmp.path()).await;
    let gw = Unclaimed::new();
    let page = claimed(&s, &gw, "tm-s6").await;
    let (status, html) = get(&s, &page, Some("en")).await;
    assert_eq!(status, StatusCode::OK);
    for needed in [
        "id=\"setup\"",
        "id=\"gateway-state\"",
        "data-step=\"pair\"",
        "data-step=\"measure\"",
        "data-step=\"summary\"",
        "src=\"",
        "No check-in link yet",
    ] {
        assert!(html.contains(needed), "{needed}: {html}");
    }
    let script = s
        .http
        .get(format!("{}/assets/setup.js", s.provider))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.text().await.unwrap().contains("BarcodeDetector"));

    // Before its first heartbeat: the gateway is waited for, and put in setup mode.
    let (status, st) = state(&s, &page).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st["step"], "connect");
    assert_eq!(st["gateway"]["id"], gw.id().as_str());
    assert_eq!(st["gateway"]["online"], false);
    let setups = |commands: &[Command]| {
        commands
            .iter()
            .filter(|c| matches!(c.action, CommandAction::Setup { .. }))
            .count()
    };
    assert_eq!(setups(&gw.poll(&s).await), 1);
    state(&s, &page).await;
    assert_eq!(
        setups(&gw.poll(&s).await),
        1,
        "not renewed while it reaches far"
    );

    // A setup heartbeat: the cuff is heard.
    let status = gw
        .heartbeat(&s, |hb| hb.setup = setup(vec![nearby(false)], vec![]))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, st) = state(&s, &page).await;
    assert_eq!(st["step"], "pair");
    assert_eq!(st["gateway"]["online"], true);
    assert_eq!(st["nearby"][0]["address"], CUFF);
    assert_eq!(
        st["nearby"][0]["model_name"],
        "Omron BP7000 Evolv (HEM-7600T)"
    );
    assert_eq!(st["nearby"][0]["profile"], "blood-pressure");
    assert!(
        st["nearby"][0]["pairing_hint"]
            .as_str()
            .unwrap()
            .contains("-P-")
    );
    assert_eq!(st["nearby"][0]["rssi_dbm"], -58);
    assert_eq!(st["nearby"][0]["profile"], "blood-pressure");
    assert_eq!(st["nearby"][0]["profile_text"], "Blood pressure monitor");

    // Pair, then the passkey it asks for, then unpair: signed commands on the poll.
    let (status, _) = act(&s, &page, "pair", json!({"address": CUFF.to_lowercase()})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    gw.heartbeat(&s, |hb| {
        hb.setup = setup(
            vec![nearby(false)],
            vec![pairing(PairingStep::NeedsPasskey, None)],
        )
    })
    .await;
    let (_, st) = state(&s, &page).await;
    assert_eq!(st["pairings"][0]["step"], "needs-passkey");
    assert_eq!(st["pairings"][0]["input"], "passkey");
    assert_eq!(
        st["pairings"][0]["text"],
        "Type the passkey the device shows."
    );
    // A refused passkey: the reason in the page's language, not in the gateway's English.
    gw.heartbeat(&s, |hb| {
        hb.setup = setup(
            vec![nearby(false)],
            vec![pairing(PairingStep::Failed, None)],
        )
    })
    .await;
    let (_, st) = state(&s, &page).await;
    assert_eq!(
        st["pairings"][0]["error"],
        "The device refused the code: check the number on its screen and try again."
    );
    let dutch: Value = s
        .http
        .get(format!("{page}/setup/state?lang=nl"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        dutch["pairings"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("Het toestel weigerde de code"),
        "{dutch}"
    );
    let (status, _) = act(
        &s,
        &page,
        "secret",
        json!({"address": CUFF, "secret": "12ab"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = act(
        &s,
        &page,
        "secret",
        json!({"address": CUFF, "secret": "482913"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = act(&s, &page, "pair", json!({"address": "nope"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let r = s
        .http
        .post(format!("{page}/setup/pair"))
        .body("address=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let commands = gw.poll(&s).await;
    let actions: Vec<&CommandAction> = commands.iter().map(|c| &c.action).collect();
    assert!(actions.contains(&&CommandAction::Pair {
        address: CUFF.into()
    }));
    assert!(actions.contains(&&CommandAction::PairSecret {
        address: CUFF.into(),
        secret: "482913".into()
    }));
    assert!(commands.iter().all(|c| c.gateway_id == gw.id()));
    assert!(
        commands
            .iter()
            .all(|c| c.expires_at - c.issued_at == Duration::seconds(120))
    );
    let listed = ops(&s, &format!("/ops/api/gateways/{}/commands", gw.id())).await;
    let text = listed.to_string();
    assert!(
        text.contains("pair-secret") && text.contains("enrollment-page"),
        "{text}"
    );
    assert!(
        !text.contains("482913"),
        "the secret is not shown back: {text}"
    );

    // Paired: a measurement is asked for, then shown once it arrived.
    gw.heartbeat(&s, |hb| {
        hb.devices = vec![cuff_paired()];
        hb.setup = setup(vec![nearby(true)], vec![pairing(PairingStep::Paired, None)]);
    })
    .await;
    let (_, st) = state(&s, &page).await;
    assert_eq!(st["step"], "measure");
    assert_eq!(st["devices"][0]["battery_pct"], 85);
    assert_eq!(
        st["devices"][0]["model_name"],
        "Omron BP7000 Evolv (HEM-7600T)"
    );
    assert!(st["devices"][0]["reading"].is_null());
    let reading = fixtures::reading(
        "2A35",
        &fixtures::bp_frame(128, 82, 97, 64),
        fixtures::omron_cuff(),
        Utc::now().fixed_offset(),
        TimeQuality::DeviceSynced,
    );
    let batch = ReadingBatch {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gw.id(),
        batch_id: "b-setup-1".parse().unwrap(),
        created_at: Utc::now(),
        readings: vec![reading],
    };
    let frame = tm_protocol::seal(
        MessageKind::ReadingBatch,
        gw.id().as_str(),
        &tm_protocol::encode(&batch),
        &gw.key,
    );
    let r = s
        .http
        .post(format!(
            "{}{}",
            s.provider,
            tm_protocol::routes::http::READINGS
        ))
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, st) = state(&s, &page).await;
    assert_eq!(st["step"], "summary");
    let shown = st["devices"][0]["reading"]["text"].as_str().unwrap();
    assert!(shown.starts_with("Blood pressure 128/82 mmHg, "), "{shown}");
    state(&s, &page).await;
    let (status, _) = act(&s, &page, "unpair", json!({"address": CUFF})).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Finished: setup mode ends, the page says so.
    let r = client()
        .post(format!("{page}/setup/done"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The redirect leads back to the page itself.
    let back = r
        .url()
        .join(r.headers()["location"].to_str().unwrap())
        .unwrap();
    assert_eq!(back.as_str(), page);
    let (_, st) = state(&s, &page).await;
    assert_eq!(st["step"], "done");
    assert_eq!(st["completed"], true);
    // The first reading recorded stays on the summary.
    assert!(
        st["devices"][0]["reading"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Blood pressure 128/82 mmHg, "),
        "{st}"
    );
    let ended = gw
        .poll(&s)
        .await
        .into_iter()
        .any(|c| matches!(c.action, CommandAction::Setup { until } if until <= Utc::now()));
    assert!(ended, "setup mode is ended");
    assert_eq!(
        audited(&s, &gw.id()).await,
        [
            "claimed",
            "pair-requested",
            "secret-relayed",
            "paired",
            "first-reading-shown",
            "unpair-requested",
            "setup-completed"
        ]
    );
    let trail = ops(&s, &format!("/ops/api/audit?gateway={}", gw.id())).await;
    assert!(!trail.to_string().contains("482913"));

    // The session ends: the page's actions stop.
    s.act("tm-s6", "stop").await;
    s.wait_hub_status("tm-s6", "completed").await;
    assert_eq!(state(&s, &page).await.0, StatusCode::GONE);
    let (status, _) = act(&s, &page, "pair", json!({"address": CUFF})).await;
    assert_eq!(status, StatusCode::GONE);
    s.stop().await;
}

async fn release(s: &Stack, gw: &GatewayId, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = s
        .http
        .post(format!("{}/ops/api/gateways/{gw}/release", s.provider))
        .bearer_auth(OPS_TOKEN);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn operations_release_a_gateway_for_another_home() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stack(tmp.path()).await;
    let gw = Unclaimed::new();
    claimed(&s, &gw, "tm-s7").await;
    assert_eq!(gw.hello(&s).await.0, StatusCode::OK);
    gw.heartbeat(&s, |hb| {
        hb.backlog = Backlog {
            depth: 3,
            oldest_age_s: Some(60),
            rejected: 0,
        }
    })
    .await;
    let (status, body) = release(&s, &gw.id(), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["message"].as_str().unwrap().contains("3 readings"),
        "{body}"
    );
    let r = s
        .http
        .post(format!(
            "{}/ops/api/gateways/{}/commands",
            s.provider,
            gw.id()
        ))
        .bearer_auth(OPS_TOKEN)
        .json(&json!({"type": "release"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "not a plain command");
    let r = s
        .http
        .post(format!(
            "{}/ops/api/gateways/{}/release",
            s.provider,
            gw.id()
        ))
        .json(&json!({"force": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "operations only");

    let (status, body) = release(&s, &gw.id(), Some(json!({"force": true}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["gateway_id"], gw.id().as_str());
    let (status, _) = release(&s, &gw.id(), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "released already");
    // The Release frame is still served, signed, to the released gateway.
    let served = gw.poll(&s).await;
    assert!(served.iter().any(|c| c.action == CommandAction::Release));
    // Its frames are an unknown gateway's now.
    assert_eq!(gw.heartbeat(&s, |_| {}).await, StatusCode::FORBIDDEN);
    assert!(
        audited(&s, &gw.id())
            .await
            .ends_with(&["released".to_owned()])
    );

    // Claimable again, with the same code, for the next home.
    assert_eq!(gw.hello(&s).await.0, StatusCode::ACCEPTED);
    let next = prescribed(&s, "tm-s8").await;
    assert_eq!(
        claim(&next, &gw.code().to_string()).await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(gw.hello(&s).await.0, StatusCode::OK);
    assert_eq!(gw.heartbeat(&s, |_| {}).await, StatusCode::NO_CONTENT);
    let detail = ops(&s, &format!("/ops/api/gateways/{}", gw.id())).await;
    assert_eq!(detail["gateway"]["telemonitoring_id"], "tm-s8", "{detail}");
    s.stop().await;
}

#[tokio::test]
async fn the_pages_speak_the_phones_language() {
    let tmp = tempfile::tempdir().unwrap();
    let s = stack(tmp.path()).await;
    let page = prescribed(&s, "tm-s9").await;
    for (accept, lang, words) in [
        ("nl-BE,nl;q=0.9", "nl", "Stap 1 van 5: kies het zorgpad"),
        (
            "fr-BE",
            "fr",
            "Étape 1 sur 5 : choisissez le trajet de soins",
        ),
        (
            "de-DE,de;q=0.9,en;q=0.5",
            "de",
            "Schritt 1 von 5: Versorgungspfad wählen",
        ),
        ("en-GB", "en", "Step 1 of 5: choose the carepath"),
        ("ja", "en", "Step 1 of 5: choose the carepath"),
    ] {
        let (status, html) = get(&s, &page, Some(accept)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains(&format!("<html lang=\"{lang}\">")),
            "{accept}"
        );
        assert!(html.contains(words), "{accept}: {html}");
    }
    let (_, html) = get(&s, &format!("{page}?lang=de"), Some("fr")).await;
    assert!(html.contains("<html lang=\"de\">"), "?lang= wins");
    let step2 = format!("{page}?carepath={}&lang=fr", urlencode(HEART_FAILURE));
    let (_, html) = get(&s, &step2, None).await;
    assert!(html.contains("Scanner le code QR") && html.contains("hreflang=\"nl\""));
    let r = s.http.get(&page).send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("referrer-policy"), "no-referrer");
    let csp = header("content-security-policy");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let cancelled = prescribed(&s, "tm-s10").await;
    s.act("tm-s10", "cancel").await;
    s.wait_hub_status("tm-s10", "cancelled").await;
    let (status, _, body) = claim(&cancelled, &Unclaimed::new().code().to_string()).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    s.stop().await;
}
