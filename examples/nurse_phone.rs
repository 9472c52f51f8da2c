//! The nurse's phone for `scripts/demo --once`: sets the demo household up through the
//! enrollment page the provider answered the Portal with, the way a nurse would.
//!
//! `nurse_phone PAGE CLAIM_CODE CA_FILE [--http]`
//!
//! With Debian's `chromium` installed (and without `--http`) a headless Chromium at a phone's
//! size (360 x 740) clicks through the page: carepath, claim code, Pair on each device of the
//! household (typing the oximeter's passkey when it asks), waits for each device's first
//! measurement on the page, then "finish". Without Chromium it makes the same HTTP calls the
//! page's script makes (`POST claim`, `GET setup/state`, `POST setup/pair`, `setup/secret`,
//! `setup/done`). Each step is printed with the seconds since the claim. Exit 0 when every
//! device showed its first measurement, 1 otherwise.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tm_testkit::browser::Browser;
use tm_testkit::net::form_encode;

/// The demo household (`tm-sim-bluez --household demo`).
const HOUSEHOLD: [&str; 3] = [
    "C0:FF:EE:00:00:01",
    "C0:FF:EE:00:00:02",
    "C0:FF:EE:00:00:03",
];
/// The passkey the simulated oximeter shows.
const PASSKEY: &str = "123456";
/// The heart-failure carepath, the page's default.
const CAREPATH: &str = "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure";
/// How long the whole setup may take.
const LIMIT: Duration = Duration::from_secs(120);

fn say(since: Instant, what: &str) {
    println!("  [{:5.1} s] {what}", since.elapsed().as_secs_f64());
}

fn have_chromium() -> bool {
    std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [page, code, ca, rest @ ..] = args.as_slice() else {
        eprintln!("usage: nurse_phone PAGE CLAIM_CODE CA_FILE [--http]");
        std::process::exit(2);
    };
    let http_only = rest.iter().any(|a| a == "--http");
    let ok = if !http_only && have_chromium() {
        println!("the nurse's phone: headless Chromium, 360 x 740");
        with_browser(page, code).await
    } else {
        println!("the nurse's phone: the page's own HTTP calls, without a browser");
        with_http(page, code, ca).await
    };
    std::process::exit(if ok { 0 } else { 1 });
}

fn device(address: &str) -> String {
    format!("[data-address=\"{address}\"]")
}

async fn with_browser(page: &str, code: &str) -> bool {
    // The demo's certificate comes from a CA made on the spot, which Chromium does not know.
    let mut b = Browser::launch_with(360, 740, &["--ignore-certificate-errors"]).await;
    b.goto(page).await;
    b.wait_for("document.querySelector('#carepath-next')").await;
    b.eval("document.querySelector('#carepath-next').click()")
        .await;
    b.wait_for("document.querySelector('#claim-code')").await;
    b.eval("document.querySelector('#claim-code').focus()")
        .await;
    b.type_text(code).await;
    let since = Instant::now();
    b.eval("document.querySelector('#claim-submit').click()")
        .await;
    say(since, "claim code sent");
    b.wait_for("document.querySelector('#gateway-state[data-online=\"true\"]')")
        .await;
    say(since, "gateway online");
    for address in HOUSEHOLD {
        let pair = format!("#nearby {} button[data-action=\"pair\"]", device(address));
        b.wait_for(&format!("document.querySelector('{pair}')"))
            .await;
        b.eval(&format!("document.querySelector('{pair}').click()"))
            .await;
        say(since, &format!("Pair pressed for {address}"));
        let item = format!("#pairings {}", device(address));
        b.wait_for(&format!(
            "['paired', 'needs-passkey', 'failed'].includes(\
             (document.querySelector('{item}') || {{dataset: {{}}}}).dataset.pairing)"
        ))
        .await;
        let step = b
            .eval(&format!("document.querySelector('{item}').dataset.pairing"))
            .await;
        if step == "needs-passkey" {
            say(
                since,
                &format!("{address} asks for its passkey: typing {PASSKEY}"),
            );
            b.eval(&format!("document.querySelector('{item} input').focus()"))
                .await;
            b.type_text(PASSKEY).await;
            b.eval(&format!(
                "document.querySelector('{item} form').requestSubmit()"
            ))
            .await;
        }
        b.wait_for(&format!(
            "document.querySelector('{item}[data-pairing=\"paired\"]') || \
             document.querySelector('{item}[data-pairing=\"failed\"]')"
        ))
        .await;
        let step = b
            .eval(&format!("document.querySelector('{item}').dataset.pairing"))
            .await;
        say(since, &format!("{address}: {step}"));
        if step != "paired" {
            return false;
        }
    }
    for address in HOUSEHOLD {
        let shown = format!("#measurements {} [data-reading=\"shown\"]", device(address));
        b.wait_for(&format!("document.querySelector('{shown}')"))
            .await;
        let text = b
            .eval(&format!("document.querySelector('{shown}').textContent"))
            .await;
        say(
            since,
            &format!("first measurement of {address} on the page: {text}"),
        );
    }
    b.wait_for("!document.querySelector('#finish-form').hidden")
        .await;
    b.eval("document.querySelector('#finish').click()").await;
    b.wait_for("!document.querySelector('#setup-done').hidden")
        .await;
    say(since, "setup finished");
    true
}

async fn with_http(page: &str, code: &str, ca: &str) -> bool {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ca).expect("the demo's CA file");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTPS client");
    let since = Instant::now();
    let claimed = client
        .post(format!("{page}/claim"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "carepath={}&code={}",
            form_encode(CAREPATH),
            form_encode(code)
        ))
        .send()
        .await;
    match claimed {
        Ok(r) if r.status().is_success() => say(since, "claim code accepted"),
        Ok(r) => {
            eprintln!("the claim was refused: {}", r.status());
            return false;
        }
        Err(e) => {
            eprintln!("the claim failed: {e}");
            return false;
        }
    }
    let mut asked: Vec<&str> = Vec::new();
    let mut passkey_sent = false;
    let mut online = false;
    let mut shown: Vec<String> = Vec::new();
    while since.elapsed() < LIMIT {
        let Ok(state) = state(&client, page).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if !online && state["gateway"]["online"] == true {
            online = true;
            say(since, "gateway online");
        }
        for n in state["nearby"].as_array().into_iter().flatten() {
            let address = n["address"].as_str().unwrap_or_default();
            if let Some(&known) = HOUSEHOLD.iter().find(|a| **a == address)
                && !asked.contains(&known)
                && n["paired"] != true
            {
                asked.push(known);
                act(&client, page, "pair", json!({ "address": known })).await;
                say(since, &format!("Pair pressed for {known}"));
            }
        }
        for p in state["pairings"].as_array().into_iter().flatten() {
            if p["input"] == "passkey" && !passkey_sent {
                passkey_sent = true;
                let address = p["address"].as_str().unwrap_or_default();
                say(
                    since,
                    &format!("{address} asks for its passkey: typing {PASSKEY}"),
                );
                act(
                    &client,
                    page,
                    "secret",
                    json!({ "address": address, "secret": PASSKEY }),
                )
                .await;
            }
        }
        for d in state["devices"].as_array().into_iter().flatten() {
            let address = d["address"].as_str().unwrap_or_default().to_owned();
            if let Some(text) = d["reading"]["text"].as_str()
                && !shown.contains(&address)
            {
                say(
                    since,
                    &format!("first measurement of {address} on the page: {text}"),
                );
                shown.push(address);
            }
        }
        if HOUSEHOLD.iter().all(|a| shown.iter().any(|s| s == a)) {
            let done = client
                .post(format!("{page}/setup/done"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            say(since, "setup finished");
            return done;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("the household was not set up within {LIMIT:?}");
    false
}

async fn state(client: &reqwest::Client, page: &str) -> Result<Value, reqwest::Error> {
    client
        .get(format!("{page}/setup/state"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

async fn act(client: &reqwest::Client, page: &str, action: &str, body: Value) {
    match client
        .post(format!("{page}/setup/{action}"))
        .json(&body)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => eprintln!("{action}: {}", r.status()),
        Err(e) => eprintln!("{action}: {e}"),
    }
}
