//! The story both transports play, step by step as the people and systems involved take them,
//! over TLS wherever a deployment has it (the enrollment, the sync link, the Portal's calls and
//! the EHR's downloads are HTTPS; MQTT gateways use `mqtts://`), and what must hold at the end: every reading the gateway produced is at the provider exactly
//! once, the gateway's backlog is empty, every announced attachment set was downloaded and
//! matched its metadata, and the emulator saw no contract violation.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use tm_protocol::Reading;

use super::stack::{Chain, Stop, Topology, Transport};
use tm_testkit::wait::wait_for;

/// The demo household's devices (`tm-sim-bluez --household demo`) and the one record each
/// holds: (address, pairing passkey, LOINC code, value).
const HOUSEHOLD: [(&str, Option<&str>, &str, f64); 3] = [
    ("C0:FF:EE:00:00:01", None, "29463-7", 70.0),
    ("C0:FF:EE:00:00:02", None, "8480-6", 128.0),
    ("C0:FF:EE:00:00:03", Some("123456"), "2708-6", 97.0),
];

/// The address of `tm-gateway run --simulate-readings`'s device.
const SIMULATED: &str = tm_gateway::simulate::SIMULATED_DEVICE;

/// Readings of the simulated device, and how many it produces a second: a stream of 18 s
/// that both restarts fall into.
const STREAM: u32 = 360;
const RATE: u32 = 20;

/// How long any single step may take.
const STEP: Duration = Duration::from_secs(60);

/// The longest a waiting instance may take to take over the HUB outbox from a dead holder.
const TAKEOVER: Duration = Duration::from_secs(10);

/// Plays the story over `transport` on `topology`. Mid-stream the provider is stopped with
/// `provider_stop` and started again (one instance); or one of two instances is killed and
/// started again, and later the instance delivering the HUB outbox is killed while the HUB
/// answers 503 (two instances).
pub fn play(transport: Transport, provider_stop: Stop, topology: Topology) {
    let started = Instant::now();
    let mut chain = Chain::start(transport, topology);
    let c = &mut chain;
    let id = format!(
        "tm-chain-{}-{}",
        format!("{transport:?}").to_lowercase(),
        c.instances()
    );
    let expected = STREAM as usize + HOUSEHOLD.len();

    // The physician prescribes; the provider answers with the nurse's enrollment page; the
    // nurse keeps the carepath and gets a one-time code; the gateway enrolls with it.
    let page = c.prescribe(&id);
    assert!(page.starts_with(&c.provider_url), "enrollment page {page}");
    let code = c.enrollment_code(&page);
    let provider_url = c.provider_url.clone();
    let out = c.gateway_cli(&["enroll", "--provider", &provider_url, "--code", &code]);
    assert!(out.contains("enrolled as"), "{out}");
    let sync = c.enrollment()["sync"].clone();
    let want = match transport {
        Transport::Https => "https",
        Transport::Mqtt => "mqtt",
    };
    assert_eq!(
        sync["transport"], want,
        "sync settings from the provider: {sync}"
    );
    assert_eq!(sync["https_url"], provider_url.as_str(), "{sync}");
    if transport == Transport::Mqtt {
        let broker = sync["mqtt_url"].as_str().unwrap_or_default();
        assert!(
            broker.starts_with("mqtts://"),
            "the broker over TLS: {sync}"
        );
    }
    wait_for("the session to be accepted", STEP, || {
        let s = c.session(&id);
        (s["status"] == "accepted")
            .then_some(())
            .ok_or(s["status"].to_string())
    });

    // The household: the nurse scans and pairs the scale, the cuff and the oximeter.
    c.start_bluez();
    let scan: Value =
        serde_json::from_str(&c.gateway_cli(&["scan", "--seconds", "2", "--json"])).unwrap();
    for (address, ..) in HOUSEHOLD {
        assert!(
            scan.as_array()
                .unwrap()
                .iter()
                .any(|d| d["address"] == address),
            "{address} not found by the scan: {scan:#}"
        );
    }
    for (address, passkey, ..) in HOUSEHOLD {
        let mut args = vec!["pair", address, "--json"];
        if let Some(p) = passkey {
            args.extend(["--pin", p]);
        }
        let paired: Value = serde_json::from_str(&c.gateway_cli(&args)).unwrap();
        assert_eq!(paired["paired"]["address"], address, "{paired}");
    }
    let devices: Value = serde_json::from_str(&c.gateway_cli(&["devices", "--json"])).unwrap();
    assert_eq!(
        devices.as_array().unwrap().len(),
        HOUSEHOLD.len(),
        "{devices:#}"
    );

    // The gateway's own check reaches the provider (and the broker) over verified TLS.
    let checks = c.gateway_doctor();
    let provider_check = &checks["provider"];
    assert_eq!(provider_check["verdict"], "ok", "{provider_check}");
    if transport == Transport::Mqtt {
        let broker_check = &checks["broker"];
        assert_eq!(broker_check["verdict"], "ok", "{broker_check}");
        assert!(
            broker_check["detail"]
                .as_str()
                .is_some_and(|d| d.contains("TLS verified")),
            "{broker_check}"
        );
    }

    // The agent runs: the devices' records and the simulated stream are captured, committed
    // to the outbox and synced; the first reading moves the session to in-progress with its
    // attachments, which the EHR downloads and checks.
    c.start_gateway(STREAM, RATE);
    let first = wait_for("in-progress with its attachments verified", STEP, || {
        c.assert_running();
        verified_set(&c.session(&id), "in-progress")
    });
    let ids: Vec<&str> = first["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["fhir", "pdf-nl", "pdf-en", "dashboard"], "{first:#}");
    for a in first["attachments"].as_array().unwrap() {
        let uri = a["uri"].as_str().unwrap_or_default();
        assert!(uri.starts_with(&c.provider_url), "served over HTTPS: {uri}");
    }
    wait_for("the household's readings at the provider", STEP, || {
        c.assert_running();
        let from_devices = c
            .provider_readings(&id)
            .iter()
            .filter(|(_, r)| r.device.address != SIMULATED)
            .count();
        (from_devices == HOUSEHOLD.len())
            .then_some(())
            .ok_or(format!("{from_devices} readings from the household"))
    });

    // Mid-stream, the gateway is killed and started again.
    let quarter = STREAM as usize / 4;
    let at_kill = wait_for("a quarter of the stream", STEP, || {
        c.assert_running();
        let n = produced(&c.gateway_status());
        (n >= quarter).then_some(n).ok_or(format!("{n} produced"))
    });
    c.kill_gateway();
    assert!(
        at_kill < expected,
        "the stream ended before the gateway was killed ({at_kill} produced): raise STREAM"
    );
    c.start_gateway(STREAM, RATE);

    // Mid-stream again, the provider stops and starts on the same database and port.
    let halfway = at_kill + (expected - at_kill) / 2;
    let at_restart = wait_for(
        "more of the stream after the gateway's restart",
        STEP,
        || {
            c.assert_running();
            let n = produced(&c.gateway_status());
            (n >= halfway).then_some(n).ok_or(format!("{n} produced"))
        },
    );
    match topology {
        Topology::One => c.restart_provider(0, provider_stop),
        Topology::TwoOnPostgres => {
            // One of two instances dies mid-stream; the other goes on; it comes back later.
            c.kill_provider(0);
            std::thread::sleep(Duration::from_secs(2));
            c.start_provider(0);
        }
    }
    let after = produced(&c.gateway_status());
    assert!(
        after < expected,
        "the stream ended while the provider restarted ({at_restart} produced before, \
         {after} after): raise STREAM"
    );

    // Everything drains.
    let status = wait_for("the gateway's backlog to drain", STEP, || {
        c.assert_running();
        let s = c.gateway_status();
        (s["backlog"] == 0 && produced(&s) >= expected)
            .then_some(s.clone())
            .ok_or(s.to_string())
    });
    assert_eq!(status["acknowledged"], expected, "{status:#}");
    assert_eq!(status["rejected"], 0, "{status:#}");
    assert_eq!(status["quarantined"], 0, "{status:#}");

    // The physician stops the telemonitoring: completed with the final set, verified. With
    // two instances the HUB answers 503 for a while, and the instance delivering the outbox
    // dies while it retries: the other takes the outbox over.
    if topology == Topology::TwoOnPostgres {
        c.hub_faults(503, 12);
    }
    let answer = c.act(&id, "stop");
    assert_eq!(
        answer["status"], 200,
        "the provider's answer to stop: {answer}"
    );
    let takeover = (topology == Topology::TwoOnPostgres).then(|| kill_outbox_holder(c));
    let last = wait_for("completed with its attachments verified", STEP, || {
        c.assert_running();
        verified_set(&c.session(&id), "completed")
    });

    // Nothing lost, nothing duplicated.
    let stored = c.provider_readings(&id);
    assert_exactly_once(&stored);
    // The final FHIR Bundle charts every reading.
    let fhir = last["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "fhir")
        .unwrap();
    let bundle: Value =
        serde_json::from_slice(&c.download(fhir["uri"].as_str().unwrap(), &fhir["headers"]))
            .unwrap();
    let charted = charted_readings(&bundle);
    let at_provider: BTreeSet<String> = stored.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(charted, at_provider, "readings in the final FHIR Bundle");

    let session = c.session(&id);
    let failed: Vec<&Value> = events(&session, "download")
        .filter(|e| e["ok"] != true)
        .collect();
    assert!(
        failed.is_empty(),
        "downloads that did not match: {failed:#?}"
    );
    assert!(
        events(&session, "download").count() >= 6,
        "two sets of three documents downloaded: {session:#}"
    );
    let violations = c.violations();
    assert!(
        violations.is_empty(),
        "contract violations: {violations:#?}"
    );

    assert_statuses_once_in_order(&session);

    c.stop_gateway();
    match takeover {
        None => eprintln!(
            "{transport:?}: {expected} readings exactly once across a gateway SIGKILL (at \
             {at_kill}) and a provider {provider_stop:?} (at {at_restart}) in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Some(took) => eprintln!(
            "{transport:?}, two instances on PostgreSQL: {expected} readings exactly once across \
             a gateway SIGKILL (at {at_kill}), an instance SIGKILL (at {at_restart}) and the \
             HUB-outbox holder's SIGKILL during 503s (taken over in {} ms); connections per \
             instance {:?}; {:.1} s",
            took.as_millis(),
            c.balanced(),
            started.elapsed().as_secs_f64()
        ),
    }
}

/// Finds the instance delivering the HUB outbox (the one logging retries of the refused
/// update), kills it, starts it again once the other has taken the outbox over, and returns
/// how long the takeover took.
fn kill_outbox_holder(c: &mut Chain) -> Duration {
    let before: Vec<usize> = (0..c.instances())
        .map(|i| c.provider_log(i).len())
        .collect();
    let holder = wait_for("an instance retrying the update at the HUB", STEP, || {
        c.assert_running();
        (0..c.instances())
            .find(|i| c.provider_log(*i)[before[*i]..].contains("status update not delivered"))
            .ok_or_else(|| "no retry logged yet".to_owned())
    });
    let other = 1 - holder;
    let mark = c.provider_log(other).len();
    let killed = Instant::now();
    c.kill_provider(holder);
    wait_for(
        "the other instance to take the outbox over",
        TAKEOVER,
        || {
            let log = c.provider_log(other);
            log[mark..]
                .lines()
                .any(|l| l.contains("holds the duty") && l.contains("hub-outbox"))
                .then_some(())
                .ok_or_else(|| "not yet".to_owned())
        },
    );
    let took = killed.elapsed();
    c.start_provider(holder);
    took
}

/// Each status the HUB accepted, once, in the contract's order (a status re-sent with new
/// attachments counts once).
fn assert_statuses_once_in_order(session: &Value) {
    let mut accepted: Vec<String> = events(session, "status-put")
        .filter(|e| e["answer"] == 200)
        .map(|e| e["body"]["status"].as_str().unwrap_or_default().to_owned())
        .collect();
    let completed = accepted.iter().filter(|s| *s == "completed").count();
    assert_eq!(completed, 1, "completed accepted once: {accepted:?}");
    accepted.dedup();
    const ORDER: [&str; 4] = ["requested", "accepted", "in-progress", "completed"];
    let places: Vec<Option<usize>> = accepted
        .iter()
        .map(|s| ORDER.iter().position(|o| o == s))
        .collect();
    assert!(
        places.iter().all(Option::is_some) && places.windows(2).all(|w| w[0] < w[1]),
        "the statuses the HUB accepted, each once and in order: {accepted:?}"
    );
    assert!(
        accepted.ends_with(&["in-progress".to_owned(), "completed".to_owned()]),
        "{accepted:?}"
    );
}

/// Readings the gateway's outbox holds in any state.
fn produced(status: &Value) -> usize {
    ["acknowledged", "backlog", "rejected", "quarantined"]
        .iter()
        .map(|k| {
            status[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k} in {status}"))
        })
        .sum::<u64>()
        .try_into()
        .unwrap()
}

fn events<'a>(session: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    session["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |e| e["event"] == kind)
}

/// The latest attachment set the HUB accepted with status `status`, once the EHR downloaded
/// every document of it (everything but the dashboard) after the announcement; a download that
/// did not match its metadata fails the test at once.
fn verified_set(session: &Value, status: &str) -> Result<Value, String> {
    if session["status"] != status {
        return Err(format!("status {}", session["status"]));
    }
    let timeline = session["timeline"].as_array().cloned().unwrap_or_default();
    let (at, put) = timeline
        .iter()
        .enumerate()
        .rev()
        .find(|(_, e)| {
            e["event"] == "status-put"
                && e["answer"] == 200
                && e["body"]["status"] == status
                && e["body"]["attachments"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        })
        .ok_or(format!("no accepted {status} PUT with attachments"))?;
    let body = put["body"].clone();
    let mut downloaded = BTreeMap::new();
    for e in timeline[at + 1..]
        .iter()
        .filter(|e| e["event"] == "download")
    {
        assert_eq!(e["ok"], true, "the EHR found a mismatch: {e}");
        downloaded.insert(e["id"].as_str().unwrap_or_default().to_owned(), ());
    }
    let missing: Vec<&str> = body["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["contentType"] != "x-tm-dashboard")
        .filter_map(|a| a["id"].as_str())
        .filter(|id| !downloaded.contains_key(*id))
        .collect();
    if missing.is_empty() {
        Ok(body)
    } else {
        Err(format!("not downloaded yet: {missing:?}"))
    }
}

/// Asserts the stored readings are the stream `0..STREAM` and each household record, once.
fn assert_exactly_once(stored: &[(String, Reading)]) {
    let expected = STREAM as usize + HOUSEHOLD.len();
    assert_eq!(stored.len(), expected, "readings at the provider");
    let unique: BTreeSet<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(unique.len(), stored.len(), "reading ids are unique");
    for (id, r) in stored {
        assert_eq!(id, r.reading_id.as_str(), "the row's id is the reading's");
    }
    let mut sequences: Vec<u32> = stored
        .iter()
        .filter(|(_, r)| r.device.address == SIMULATED)
        .map(|(_, r)| r.sequence.expect("simulated readings are numbered"))
        .collect();
    sequences.sort_unstable();
    assert!(
        sequences.iter().copied().eq(0..STREAM),
        "the simulated stream 0..{STREAM} once each; got {} readings, first gaps or repeats: {:?}",
        sequences.len(),
        sequences
            .windows(2)
            .filter(|w| w[1] != w[0] + 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    for (address, _, code, value) in HOUSEHOLD {
        let from: Vec<&Reading> = stored
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.device.address == address)
            .collect();
        assert_eq!(from.len(), 1, "one reading from {address}: {from:#?}");
        let got = from[0].components.iter().find(|c| c.code == code);
        assert_eq!(
            got.map(|c| c.value),
            Some(value),
            "{address} {code}: {from:#?}"
        );
    }
}

/// The reading ids the Bundle's Observations carry (`identifier` = `<reading id>-<slug>`).
fn charted_readings(bundle: &Value) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "Observation")
        .map(|r| {
            let value = r["identifier"][0]["value"].as_str().unwrap();
            // Reading ids are hex: the first hyphen ends the id.
            value
                .split_once('-')
                .map_or(value, |(id, _slug)| id)
                .to_owned()
        })
        .collect()
}
