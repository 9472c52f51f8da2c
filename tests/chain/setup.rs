//! The nurse's setup from her phone, with the shipped binaries: a headless Chromium at a
//! phone's viewport (360 x 740 CSS pixels) drives the enrollment page the provider answered
//! the Portal with, against the real provider, the real `tm-gateway run` (not enrolled, its
//! configuration naming the provider, announcing itself) and the BlueZ simulator's household.
//!
//! The story, on the keyboard alone (Tab, typing, Enter), in the phone's language (Dutch):
//! carepath -> a mistyped claim code (refused, naming the problem) -> the code from the box's
//! label (`tm-gateway identity`) -> the gateway shown online -> the scale paired (Just-Works)
//! -> the oximeter paired with a wrong passkey (refused, plainly) and again with the one it
//! shows -> the first measurement of each device shown once the provider has committed it ->
//! the summary -> setup completed. axe-core checks every screen (WCAG 2.1 A and AA); the
//! screenshots are kept in the chain's log directory. At the HUB the session is accepted
//! after the claim and in progress after the first readings; a second session's page cannot
//! claim the same gateway again.
//!
//! Each step waits at most 30 s (the browser's bound) or the stated bound; the time from the
//! claim to the first measurement on the page is printed.

use std::time::{Duration, Instant};

use serde_json::Value;
use tm_testkit::browser::Browser;
use tm_testkit::wait::wait_for;

use super::stack::{Chain, Topology, Transport};

const SCALE: &str = "C0:FF:EE:00:00:01";
const OXIMETER: &str = "C0:FF:EE:00:00:03";
/// The passkey the simulated oximeter shows.
const PASSKEY: &str = "123456";

/// The browser, on a runtime of its own: the chain's own calls block, so they are made
/// between two browser steps, never inside one.
struct Phone {
    rt: tokio::runtime::Runtime,
    browser: Browser,
    shots: std::path::PathBuf,
}

impl Phone {
    fn open(shots: &std::path::Path) -> Self {
        std::fs::create_dir_all(shots).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // The chain's certificate comes from the test's own CA, which Chromium does not know.
        let mut browser = rt.block_on(Browser::launch_with(
            360,
            740,
            &["--ignore-certificate-errors", "--lang=nl-BE"],
        ));
        rt.block_on(browser.set_headers(serde_json::json!({"Accept-Language": "nl-BE,nl;q=0.9"})));
        Self {
            rt,
            browser,
            shots: shots.to_owned(),
        }
    }

    fn goto(&mut self, url: &str) {
        self.rt.block_on(self.browser.goto(url));
    }

    fn eval(&mut self, js: &str) -> Value {
        self.rt.block_on(self.browser.eval(js))
    }

    fn wait_for(&mut self, condition: &str) {
        self.rt.block_on(self.browser.wait_for(condition));
    }

    /// Tab to `selector` and press Enter on it.
    fn activate(&mut self, selector: &str) {
        self.rt.block_on(async {
            self.browser.tab_to(selector).await;
            self.browser.press("Enter", false).await;
        });
    }

    /// Tab to the field `selector`, select what it holds and type `text` over it.
    fn type_into(&mut self, selector: &str, text: &str) {
        self.rt.block_on(async {
            self.browser.tab_to(selector).await;
            self.browser.eval("document.activeElement.select()").await;
            self.browser.type_text(text).await;
        });
    }

    /// Runs axe-core on the screen and fails on any violation; keeps a screenshot named
    /// `name`.
    fn check_screen(&mut self, name: &str, shown: &str) {
        let path = self.shots.join(format!("setup-{name}.png"));
        let scroll = format!(
            "document.querySelector({}).scrollIntoView({{block: 'center'}})",
            serde_json::to_string(shown).unwrap()
        );
        let violations = self.rt.block_on(async {
            self.browser.eval(&scroll).await;
            self.browser.screenshot(&path).await;
            self.browser.accessibility_violations().await
        });
        assert!(
            violations.is_empty(),
            "accessibility violations on the {name} screen:\n{}",
            violations.join("\n")
        );
    }
}

fn device(address: &str) -> String {
    format!("[data-address=\"{address}\"]")
}

/// A claim code with one symbol changed (the check symbol then fails).
fn mistyped(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    chars[0] = if chars[0] == '7' { '8' } else { '7' };
    chars.into_iter().collect()
}

/// The whole setup over `transport`.
pub fn play(transport: Transport) {
    let mut chain = Chain::start(transport, Topology::One);
    chain.start_bluez();
    // The scale has measured nothing yet: its first weight is taken during the setup.
    chain.bluez_control(&format!("forget {SCALE}"));
    let claim_code = chain.unclaimed_gateway();
    chain.start_gateway_plain();
    let id = format!("setup-{}", transport_name(transport));
    let page = chain.prescribe(&id);

    // TM_SCREENSHOTS=DIR keeps the screens for a look; else they stay with the chain's logs.
    let shots = std::env::var_os("TM_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| chain.logs().to_owned())
        .join(transport_name(transport));
    let mut phone = Phone::open(&shots);
    phone.goto(&page);
    assert_eq!(phone.eval("document.documentElement.lang"), "nl");
    phone.wait_for("document.querySelector('#carepath-next')");
    phone.check_screen("1-carepath", "#carepath-next");
    phone.activate("#carepath-next");
    phone.wait_for("document.querySelector('#claim-code')");
    phone.check_screen("2-connect", "#claim-code");

    // A typo: refused with the reason, nothing claimed.
    phone.type_into("#claim-code", &mistyped(&claim_code));
    phone.rt.block_on(phone.browser.press("Enter", false));
    phone.wait_for("document.querySelector('#claim-error')");
    assert_eq!(
        phone.eval("document.querySelector('#claim-code').getAttribute('aria-invalid')"),
        "true"
    );
    phone.check_screen("2-connect-typo", "#claim-error");
    assert_eq!(chain.session(&id)["status"], "requested");

    // The code from the label.
    phone.type_into("#claim-code", &claim_code);
    let claimed = Instant::now();
    phone.rt.block_on(phone.browser.press("Enter", false));
    phone.wait_for("document.querySelector('#gateway-state[data-online=\"true\"]')");
    let online = claimed.elapsed();
    wait_for(
        "the session accepted at the HUB",
        Duration::from_secs(30),
        || match chain.session(&id)["status"].as_str() {
            Some("accepted" | "in-progress") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // The household appears; the scale pairs by Just-Works.
    phone.wait_for(&format!(
        "document.querySelector('#nearby {} button[data-action=\"pair\"]') && \
         document.querySelector('#nearby {}')",
        device(SCALE),
        device(OXIMETER)
    ));
    phone.check_screen("3-pair", "#nearby");
    let card = phone.eval(&format!(
        "document.querySelector('#nearby {}').textContent",
        device(SCALE)
    ));
    assert!(card.as_str().unwrap().contains("Weegschaal"), "{card}");
    phone.activate(&format!(
        "#nearby {} button[data-action=\"pair\"]",
        device(SCALE)
    ));
    phone.wait_for(&format!(
        "document.querySelector('#pairings {}[data-pairing=\"paired\"]')",
        device(SCALE)
    ));

    // The oximeter asks for the passkey it shows: a wrong one first.
    phone.activate(&format!(
        "#nearby {} button[data-action=\"pair\"]",
        device(OXIMETER)
    ));
    let secret_field = format!("#pairings {} input", device(OXIMETER));
    phone.wait_for(&format!(
        "document.querySelector('#pairings {}[data-pairing=\"needs-passkey\"] input')",
        device(OXIMETER)
    ));
    phone.check_screen("3-passkey", "#pairings");
    phone.type_into(&secret_field, "000000");
    phone.rt.block_on(phone.browser.press("Enter", false));
    phone.wait_for(&format!(
        "document.querySelector('#pairings {}[data-pairing=\"failed\"] .error')",
        device(OXIMETER)
    ));
    phone.check_screen("3-passkey-refused", "#pairings");
    let refused = phone.eval(&format!(
        "document.querySelector('#pairings {} .error').textContent",
        device(OXIMETER)
    ));
    // In the phone's language, not in the gateway's English.
    assert!(
        refused
            .as_str()
            .unwrap()
            .starts_with("Het toestel weigerde de code"),
        "{refused}"
    );
    phone.activate(&format!(
        "#pairings {} button[data-action=\"retry\"]",
        device(OXIMETER)
    ));
    phone.wait_for(&format!(
        "document.querySelector('#pairings {}[data-pairing=\"needs-passkey\"] input')",
        device(OXIMETER)
    ));
    phone.type_into(&secret_field, PASSKEY);
    phone.rt.block_on(phone.browser.press("Enter", false));
    phone.wait_for(&format!(
        "document.querySelector('#pairings {}[data-pairing=\"paired\"]')",
        device(OXIMETER)
    ));

    // The oximeter's stored measurement comes with its first connection; the scale waits
    // until the patient steps on it.
    phone.wait_for(&format!(
        "document.querySelector('#measurements {} [data-reading=\"shown\"]')",
        device(OXIMETER)
    ));
    let first_shown = claimed.elapsed();
    phone.wait_for(&format!(
        "document.querySelector('#measurements {} [data-reading=\"waiting\"]')",
        device(SCALE)
    ));
    phone.check_screen("4-measure-waiting", "#measurements");
    let weighed = chrono::Local::now().naive_local();
    // 81.35 kg, as a live indication (sent again until the agent has subscribed: the same
    // bytes are the same reading, stored once).
    let frame: String = tm_sim_bluez::profiles::weight_kg(16_270, weighed)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut last_sent = Instant::now() - Duration::from_secs(10);
    let deadline = Instant::now() + Duration::from_secs(60);
    let probe = format!(
        "!!document.querySelector('#measurements {} [data-reading=\"shown\"]')",
        device(SCALE)
    );
    while phone.eval(&probe) != Value::Bool(true) {
        assert!(
            Instant::now() < deadline,
            "the scale's weight never reached the page"
        );
        if last_sent.elapsed() >= Duration::from_secs(2) {
            chain.bluez_control(&format!("indicate {SCALE} 2a9d {frame}"));
            last_sent = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    phone.check_screen("4-measure", "#measurements");
    let shown = |phone: &mut Phone, address: &str| -> String {
        phone
            .eval(&format!(
                "document.querySelector('#measurements {} [data-reading=\"shown\"]').textContent",
                device(address)
            ))
            .as_str()
            .unwrap()
            .to_owned()
    };
    let scale_text = shown(&mut phone, SCALE);
    let oximeter_text = shown(&mut phone, OXIMETER);
    // The weight taken now, the oximeter's stored 97 % at 64 /min.
    assert!(scale_text.contains("81"), "{scale_text}");
    assert!(oximeter_text.contains("97"), "{oximeter_text}");
    let committed = chain.provider_readings(&id);
    for address in [SCALE, OXIMETER] {
        assert!(
            committed
                .iter()
                .any(|(_, r)| r.device.address.eq_ignore_ascii_case(address)),
            "no reading of {address} at the provider"
        );
    }

    // The summary, and the end of the setup.
    phone.wait_for("document.querySelector('#summary-gateway') && !document.querySelector('#finish-form').hidden");
    phone.check_screen("5-summary", "#summary");
    phone.activate("#finish");
    phone.wait_for("!document.querySelector('#setup-done').hidden");
    wait_for(
        "the session in progress at the HUB",
        Duration::from_secs(60),
        || match chain.session(&id)["status"].as_str() {
            Some("in-progress") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let timeline = chain.session(&id)["timeline"].clone();
    let mut statuses: Vec<&str> = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "status-put" && e["answer"] == 200)
        .filter_map(|e| e["body"]["status"].as_str())
        .collect();
    // A status sent again with new attachments counts once.
    statuses.dedup();
    assert_eq!(statuses, ["accepted", "in-progress"], "{timeline}");

    // Another patient's page cannot take the gateway.
    let other = chain.prescribe(&format!("{id}-other"));
    let carepath = super::configs::HEART_FAILURE;
    let (status, html) = chain.post_page(
        &format!("{other}/claim"),
        &[("carepath", carepath), ("code", &claim_code)],
    );
    assert_eq!(status, 409, "{html}");
    assert!(chain.violations().is_empty(), "{:?}", chain.violations());
    chain.assert_running();
    println!(
        "setup over {}: gateway online {:.1} s after the claim, first measurement shown {:.1} s \
         after the claim; screenshots in {}",
        transport_name(transport),
        online.as_secs_f64(),
        first_shown.as_secs_f64(),
        shots.display()
    );
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Https => "https",
        Transport::Mqtt => "mqtt",
    }
}
