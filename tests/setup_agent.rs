//! The nurse sets up the home from her phone, as the real `tm-gateway run` binary lives it:
//! an unenrolled gateway whose configuration names the provider says hello to a small
//! provider on 127.0.0.1:0 (an axum server in this test, checking every frame the way the
//! provider must), is answered "unclaimed" twice, then claimed with a signed enrollment
//! answer. It saves the enrollment, starts syncing and runs in setup mode: heartbeats every
//! two seconds list the BlueZ simulator's devices as nearby; a `pair` command pairs the scale
//! in the background and its readings then reach the provider; setup mode renewed for a few
//! seconds ends by itself at its `until`; a `release` sends it back to saying hello with the
//! same key. An answer
//! signed by another key than the one it carries is refused, and SIGTERM ends the wait.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use tm_protocol::setup::{ClaimHello, HELLO_SIGNER, PairingStep};
use tm_protocol::{
    Command, CommandAction, CommandResult, Frame, GatewayId, Heartbeat, MessageKind, ReadingBatch,
    Receipt, SigningKey, SyncSettings, Transport, VerifyingKey,
};
use tm_sim_bluez::{FakeBluez, bus::PrivateBus, profiles};
use tm_testkit::process::Spawned;
use tm_testkit::wait::eventually;

const GATEWAY: &str = "gw-claimed";
const SCALE: &str = "C0:FF:EE:00:00:01";
const OXI: &str = "C0:FF:EE:00:00:03";
/// The gateway's normal heartbeat and poll interval here (the configuration's override of the
/// enrollment's 60 s): long enough to tell from the setup rhythm, short enough to wait for.
const NORMAL_S: u64 = 5;

/// How the small provider answers the next hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 202: not claimed yet.
    Unclaimed,
    /// 200 with the enrollment answer, signed by the key it carries.
    Claim,
    /// 200 with an answer carrying the provider's key but signed by another.
    Forged,
}

#[derive(Default)]
struct Seen {
    /// Hellos that verified (kind, signer, signature under the key carried).
    hellos: Vec<ClaimHello>,
    /// Heartbeats signed by the claimed gateway, with their arrival.
    heartbeats: Vec<(Instant, Heartbeat)>,
    /// Readings' ids received in batches.
    readings: Vec<String>,
    /// Command frames served to the poll until they have a result.
    commands: Vec<(String, Vec<u8>)>,
    /// Results received.
    results: Vec<CommandResult>,
}

struct Provider {
    key: SigningKey,
    base: String,
    plan: Mutex<VecDeque<Answer>>,
    seen: Mutex<Seen>,
}

type Shared = Arc<Provider>;

impl Provider {
    fn gateway_key(&self) -> Option<VerifyingKey> {
        let seen = self.seen.lock().unwrap();
        let hello = seen.hellos.last()?;
        VerifyingKey::from_bytes(&hello.public_key).ok()
    }

    fn answer(&self, signing: &SigningKey) -> Vec<u8> {
        let response = tm_protocol::EnrollmentResponse {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: GatewayId::new(GATEWAY).unwrap(),
            provider_public_key: self.key.verifying_key().as_bytes().to_vec(),
            sync: SyncSettings {
                transport: Transport::Https,
                https_url: self.base.clone(),
                mqtt_url: None,
                heartbeat_interval_s: 60,
            },
        };
        tm_protocol::seal(
            MessageKind::EnrollmentResponse,
            "provider",
            &tm_protocol::encode(&response),
            signing,
        )
    }

    /// Queues a signed command for the gateway's poll; returns its id.
    fn issue(&self, id: &str, action: CommandAction) -> String {
        let now = chrono::Utc::now();
        let command = Command {
            v: tm_protocol::PROTOCOL_VERSION,
            command_id: id.parse().unwrap(),
            gateway_id: GATEWAY.parse().unwrap(),
            issued_at: now,
            expires_at: now + chrono::Duration::minutes(5),
            action,
        };
        let frame = tm_protocol::seal(
            MessageKind::Command,
            "provider",
            &tm_protocol::encode(&command),
            &self.key,
        );
        self.seen
            .lock()
            .unwrap()
            .commands
            .push((id.to_owned(), frame));
        id.to_owned()
    }

    fn result(&self, id: &str) -> Option<CommandResult> {
        let seen = self.seen.lock().unwrap();
        seen.results
            .iter()
            .find(|r| r.command_id.as_str() == id)
            .cloned()
    }

    fn heartbeats(&self) -> Vec<(Instant, Heartbeat)> {
        self.seen.lock().unwrap().heartbeats.clone()
    }

    fn hellos(&self) -> usize {
        self.seen.lock().unwrap().hellos.len()
    }
}

async fn hello(State(p): State<Shared>, body: Bytes) -> axum::response::Response {
    let frame = Frame::parse(&body).expect("a hello is a frame");
    assert_eq!(frame.signer(), HELLO_SIGNER);
    let hello: ClaimHello = serde_json::from_slice(frame.unverified_payload()).unwrap();
    let carried = VerifyingKey::from_bytes(&hello.public_key).unwrap();
    frame
        .verify(MessageKind::ClaimHello, &carried)
        .expect("a hello is signed by the key it carries");
    let skew = (chrono::Utc::now() - hello.sent_at).num_seconds().abs();
    assert!(
        skew <= tm_protocol::setup::HELLO_SKEW_S,
        "sent_at {skew} s off"
    );
    p.seen.lock().unwrap().hellos.push(hello);
    let next = p
        .plan
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Answer::Unclaimed);
    match next {
        Answer::Unclaimed => (
            StatusCode::ACCEPTED,
            [("content-type", "application/json")],
            r#"{"status":"unclaimed"}"#,
        )
            .into_response(),
        Answer::Claim => p.answer(&p.key).into_response(),
        Answer::Forged => {
            let (other, _) = SigningKey::generate().unwrap();
            p.answer(&other).into_response()
        }
    }
}

/// The payload of a frame the claimed gateway signed, of `kind`.
fn from_gateway(p: &Provider, body: &[u8], kind: MessageKind) -> Vec<u8> {
    let frame = Frame::parse(body).unwrap();
    assert_eq!(frame.signer(), GATEWAY);
    let key = p.gateway_key().expect("a hello came first");
    frame.verify(kind, &key).unwrap().to_vec()
}

async fn heartbeat(State(p): State<Shared>, body: Bytes) -> StatusCode {
    let payload = from_gateway(&p, &body, MessageKind::Heartbeat);
    let hb: Heartbeat = tm_protocol::decode(&payload).expect("a heartbeat the provider decodes");
    p.seen.lock().unwrap().heartbeats.push((Instant::now(), hb));
    StatusCode::OK
}

async fn readings(State(p): State<Shared>, body: Bytes) -> Vec<u8> {
    let payload = from_gateway(&p, &body, MessageKind::ReadingBatch);
    let batch: ReadingBatch = tm_protocol::decode(&payload).unwrap();
    let accepted: Vec<_> = batch
        .readings
        .iter()
        .map(|r| r.reading_id.clone())
        .collect();
    p.seen
        .lock()
        .unwrap()
        .readings
        .extend(accepted.iter().map(ToString::to_string));
    let receipt = Receipt {
        v: tm_protocol::PROTOCOL_VERSION,
        batch_id: batch.batch_id,
        accepted,
        rejected: vec![],
        duplicates: vec![],
    };
    tm_protocol::seal(
        MessageKind::Receipt,
        "provider",
        &tm_protocol::encode(&receipt),
        &p.key,
    )
}

async fn commands(State(p): State<Shared>) -> axum::Json<serde_json::Value> {
    let seen = p.seen.lock().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let frames: Vec<String> = seen
        .commands
        .iter()
        .filter(|(id, _)| !seen.results.iter().any(|r| r.command_id.as_str() == id))
        .map(|(_, f)| b64.encode(f))
        .collect();
    axum::Json(serde_json::json!({ "frames": frames }))
}

async fn command_result(State(p): State<Shared>, body: Bytes) -> StatusCode {
    let payload = from_gateway(&p, &body, MessageKind::CommandResult);
    let result: CommandResult = tm_protocol::decode(&payload).unwrap();
    p.seen.lock().unwrap().results.push(result);
    StatusCode::OK
}

async fn start_provider(plan: &[Answer]) -> Shared {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (key, _) = SigningKey::generate().unwrap();
    let provider = Arc::new(Provider {
        key,
        base,
        plan: Mutex::new(plan.iter().copied().collect()),
        seen: Mutex::default(),
    });
    let routes = tm_protocol::routes::http::commands(&GatewayId::new(GATEWAY).unwrap());
    let app = Router::new()
        .route(tm_protocol::routes::http::CLAIM_HELLO, post(hello))
        .route(tm_protocol::routes::http::HEARTBEAT, post(heartbeat))
        .route(tm_protocol::routes::http::READINGS, post(readings))
        .route(
            tm_protocol::routes::http::COMMAND_RESULTS,
            post(command_result),
        )
        .route(&routes, get(commands))
        .with_state(provider.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    provider
}

/// An unenrolled gateway's state directory and configuration naming `provider`.
fn gateway(dir: &Path, provider: &str) -> (PathBuf, PathBuf) {
    let state = dir.join("gw");
    std::fs::create_dir_all(&state).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nlog_level = \"info\"\n[provider]\nurl = \"{provider}\"\n\
             [sync]\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\nrequest_timeout_ms = 2000\n\
             heartbeat_interval_s = {NORMAL_S}\n",
            state.display()
        ),
    )
    .unwrap();
    (state, config)
}

/// `tm-gateway run` with its system bus at `bus`, its log in `log`, systemd's socket at
/// `notify` when given.
fn spawn(config: &Path, bus: &str, log: &Path, notify: Option<&Path>) -> Spawned {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_tm-gateway"));
    cmd.arg("--config")
        .arg(config)
        .arg("run")
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus)
        .env("TM_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    if let Some(socket) = notify {
        cmd.env("NOTIFY_SOCKET", socket);
    }
    Spawned::start("tm-gateway", &mut cmd)
}

fn minutes_ago(m: i64) -> chrono::NaiveDateTime {
    let t = chrono::Local::now().naive_local() - chrono::Duration::minutes(m);
    chrono::Timelike::with_nanosecond(&t, 0).unwrap_or(t)
}

/// Waits for a heartbeat received after `after` that satisfies `f`; returns it.
async fn heartbeat_where(
    p: &Provider,
    after: Instant,
    what: &str,
    f: impl Fn(&Heartbeat) -> bool,
) -> Heartbeat {
    let found = eventually(Duration::from_secs(30), || async {
        p.heartbeats().iter().any(|(t, hb)| *t > after && f(hb))
    })
    .await;
    let all = p.heartbeats();
    assert!(found, "no heartbeat with {what}: {:#?}", all.last());
    all.into_iter()
        .find(|(t, hb)| *t > after && f(hb))
        .map(|(_, hb)| hb)
        .unwrap()
}

async fn result_of(p: &Provider, id: &str) -> CommandResult {
    let reported = eventually(Duration::from_secs(20), || async { p.result(id).is_some() }).await;
    assert!(reported, "no result for {id}");
    p.result(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_claimed_from_the_phone_syncs_pairs_in_setup_mode_and_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let provider = start_provider(&[Answer::Unclaimed, Answer::Unclaimed, Answer::Claim]).await;
    let (state, config) = gateway(dir.path(), &provider.base);
    let bus = PrivateBus::start().unwrap();
    let mut scale = profiles::weight_scale(SCALE);
    scale
        .stored
        .push(profiles::weight_kg(14_100, minutes_ago(5)));
    let fake = FakeBluez::start(bus.address(), vec![scale, profiles::oximeter(OXI)])
        .await
        .unwrap();
    let log = dir.path().join("agent.log");
    let started = Instant::now();
    let mut agent = spawn(&config, bus.address(), &log, None);

    // Two hellos answered "unclaimed", three seconds apart, then the claim: the enrollment is
    // saved as the provider granted it.
    let claimed = eventually(Duration::from_secs(20), || async {
        state.join("enrollment.json").exists()
    })
    .await;
    assert!(claimed, "never enrolled; {} hellos", provider.hellos());
    assert_eq!(provider.hellos(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "hellos 3 s apart"
    );
    let enrollment = tm_gateway::enrollment::Enrollment::load(&state).unwrap();
    assert_eq!(enrollment.gateway_id.as_str(), GATEWAY);
    assert_eq!(
        enrollment.provider_key(),
        Some(provider.key.verifying_key())
    );
    let key = provider.gateway_key().unwrap();
    let code = tm_protocol::claim::ClaimCode::of(&key).to_string();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.matches(&code).count(),
        1,
        "the claim code is logged once: {logged}"
    );

    // In setup mode for ten minutes: heartbeats every two seconds list the devices in range.
    let t0 = Instant::now();
    let hb = heartbeat_where(&provider, t0, "both devices nearby", |hb| {
        hb.setup.as_ref().is_some_and(|s| {
            s.nearby.iter().any(|d| d.address == SCALE) && s.nearby.iter().any(|d| d.address == OXI)
        })
    })
    .await;
    let setup = hb.setup.unwrap();
    let left = setup.until - chrono::Utc::now();
    assert!(
        (9..=10).contains(&left.num_minutes()),
        "setup mode for ten minutes, {left} left"
    );
    let oxi = setup.nearby.iter().find(|d| d.address == OXI).unwrap();
    assert_eq!(oxi.model_id.as_deref(), Some("sig-pulse-oximeter"));
    assert_eq!(oxi.rssi_dbm, Some(-58));
    assert!(!oxi.paired);
    let spacing: Vec<Duration> = provider
        .heartbeats()
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .collect();
    assert!(
        spacing.iter().all(|d| *d <= Duration::from_millis(2600)),
        "setup heartbeats every 2 s: {spacing:?}"
    );

    // The nurse taps "pair" on the scale: answered at once, the pairing runs on and each step
    // shows in the heartbeats until it is paired.
    let t1 = Instant::now();
    let pair = provider.issue(
        "cmd-pair",
        CommandAction::Pair {
            address: SCALE.into(),
        },
    );
    let done = result_of(&provider, &pair).await;
    assert_eq!(done.detail, "pairing started");
    assert!(
        t1.elapsed() < Duration::from_secs(5),
        "the command poll runs every second"
    );
    let hb = heartbeat_where(&provider, t1, "the scale paired", |hb| {
        hb.setup.as_ref().is_some_and(|s| {
            s.pairings
                .iter()
                .any(|p| p.address == SCALE && p.step == PairingStep::Paired)
        })
    })
    .await;
    let paired = &hb.setup.unwrap().pairings[0];
    assert_eq!(paired.battery_pct, Some(88));
    assert!(fake.is_paired(SCALE).unwrap());
    // The agent collects from the newly paired scale by itself, and syncs its reading.
    let synced = eventually(Duration::from_secs(30), || async {
        !provider.seen.lock().unwrap().readings.is_empty()
    })
    .await;
    assert!(
        synced,
        "the paired scale's reading never reached the provider"
    );
    heartbeat_where(&provider, t1, "the scale marked paired", |hb| {
        hb.setup
            .as_ref()
            .is_some_and(|s| s.nearby.iter().any(|d| d.address == SCALE && d.paired))
            && hb.devices.iter().any(|d| d.address == SCALE)
    })
    .await;

    // The page renews setup mode for three more seconds only: it ends by itself at `until`,
    // with one heartbeat without it, and the rhythm is the normal one again.
    let until = chrono::Utc::now() + chrono::Duration::seconds(3);
    let short = provider.issue("cmd-short", CommandAction::Setup { until });
    assert!(
        result_of(&provider, &short)
            .await
            .detail
            .starts_with("setup mode until")
    );
    let t2 = Instant::now();
    let over = heartbeat_where(&provider, t2, "setup mode over", |hb| hb.setup.is_none()).await;
    assert!(over.sent_at >= until, "ended at until, not before");
    assert!(
        over.sent_at < until + chrono::Duration::seconds(2),
        "the end is told at once"
    );
    let ended = Instant::now();
    let normal = eventually(Duration::from_secs(20), || async {
        provider
            .heartbeats()
            .iter()
            .filter(|(t, _)| *t > ended)
            .count()
            >= 2
    })
    .await;
    assert!(normal, "heartbeats stopped after setup mode");
    let after: Vec<_> = provider
        .heartbeats()
        .into_iter()
        .filter(|(t, _)| *t > ended)
        .collect();
    let gap = after[1].0 - after[0].0;
    assert!(
        gap >= Duration::from_secs(NORMAL_S - 1),
        "back to the normal interval, got {gap:?}"
    );
    assert!(after.iter().all(|(_, hb)| hb.setup.is_none()));

    // Released: the enrollment is set aside and the same key says hello again.
    let hellos = provider.hellos();
    let release = provider.issue("cmd-release", CommandAction::Release);
    let done = result_of(&provider, &release).await;
    assert_eq!(done.status, tm_protocol::CommandStatus::Done, "{done:?}");
    let again = eventually(Duration::from_secs(20), || async {
        provider.hellos() > hellos + 1
    })
    .await;
    assert!(again, "no hello after the release");
    assert!(!state.join("enrollment.json").exists());
    assert!(state.join("enrollment.json.released").exists());
    assert_eq!(provider.gateway_key(), Some(key));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.matches(&code).count(), 2, "logged again once");

    let status = agent.terminate(Duration::from_secs(10)).expect("stops");
    assert!(status.success(), "{status}");
    fake.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_not_signed_by_the_key_it_carries_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let provider = start_provider(&[Answer::Forged, Answer::Forged, Answer::Forged]).await;
    let (state, config) = gateway(dir.path(), &provider.base);
    let socket = dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let log = dir.path().join("agent.log");
    // No BlueZ at all: waiting to be claimed needs none.
    let mut agent = spawn(&config, "unix:path=/nonexistent/bus", &log, Some(&socket));

    let retried = eventually(Duration::from_secs(20), || async { provider.hellos() >= 4 }).await;
    assert!(retried, "{} hellos", provider.hellos());
    assert!(
        !state.join("enrollment.json").exists(),
        "a forged answer must not enroll the gateway"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("refusing the provider's answer"),
        "{logged}"
    );
    // systemd heard it is up and waiting, with the code.
    let key = provider.gateway_key().unwrap();
    let code = tm_protocol::claim::ClaimCode::of(&key).to_string();
    let mut messages = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = notify.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(messages.contains(&"READY=1".to_owned()), "{messages:?}");
    assert!(
        messages.contains(&format!("STATUS=waiting to be claimed (code {code})")),
        "{messages:?}"
    );
    // SIGTERM ends the wait at once.
    let asked = Instant::now();
    let status = agent.terminate(Duration::from_secs(10)).expect("stops");
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}
