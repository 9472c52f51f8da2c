//! The JSON the setup script polls (`GET /enroll/{token}/setup/state`), built from the store's
//! [`SetupView`] by pure functions: the gateway online or not, the devices it hears with the
//! catalog's name, profile and pairing hint ([`tm_devices::catalog`]), each pairing's step in
//! plain words, the paired devices with their battery and the reading shown for each, in the
//! provider's own measurement labels and units ([`crate::outputs::labels`]).
//!
//! Shape (times RFC 3339):
//! ```json
//! {"status": "accepted", "step": "connect|pair|measure|summary|done", "completed": false,
//!  "gateway": null | {"id", "online", "last_seen", "version", "setup_until"},
//!  "nearby": [{"address", "name", "model_id", "model_name", "profile", "profile_text", "pairing_hint",
//!              "rssi_dbm", "paired"}],
//!  "pairings": [{"address", "model_name", "step", "text", "shown", "error", "battery_pct",
//!                "at", "input": null | "pin" | "passkey" | "confirm"}],
//!  "devices": [{"address", "model_id", "model_name", "profile", "profile_text", "battery_pct",
//!               "reading": null | {"text", "at"}}]}
//! ```

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use tm_devices::catalog::{Catalog, Entry};
use tm_protocol::setup::{PairingFailure, PairingProgress, PairingStep};
use tm_protocol::{Reading, ReadingKind};

use super::words::{self, PageLanguage};
use crate::hub::contract::Status;
use crate::outputs::labels::{Labels, display_unit, format_value};
use crate::outputs::series::Measure;
use crate::store::setup::SetupView;

/// A gateway counts as online while its newest heartbeat is younger than this (it sends one
/// every two seconds in setup mode).
pub const ONLINE_WITHIN_S: i64 = 10;

/// Where the setup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No heartbeat from the gateway since the claim.
    Connect,
    /// The gateway reports, no device paired yet.
    Pair,
    /// A paired device has no reading shown yet.
    Measure,
    /// Every paired device has its reading: the summary.
    Summary,
    /// The nurse finished the setup.
    Done,
}

impl Step {
    /// The `step` of the JSON (and the page's `data-step`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Pair => "pair",
            Self::Measure => "measure",
            Self::Summary => "summary",
            Self::Done => "done",
        }
    }
}

/// The step `view` is at.
pub fn step_of(view: Option<&SetupView>) -> Step {
    let Some(view) = view else {
        return Step::Connect;
    };
    if view.setup_done_at.is_some() {
        return Step::Done;
    }
    let Some((_, heartbeat)) = &view.heartbeat else {
        return Step::Connect;
    };
    if heartbeat.devices.is_empty() {
        Step::Pair
    } else if heartbeat
        .devices
        .iter()
        .all(|d| view.readings.iter().any(|r| r.address == d.address))
    {
        Step::Summary
    } else {
        Step::Measure
    }
}

fn catalog_entry(model_id: Option<&str>) -> Option<&'static Entry> {
    let catalog = Catalog::embedded().ok()?;
    catalog.by_id(model_id?)
}

fn profile(entry: Option<&Entry>) -> Value {
    entry.map_or(Value::Null, |e| {
        serde_json::to_value(e.model.profile).unwrap_or(Value::Null)
    })
}

/// What kind of device a catalog entry is, in the page's words.
fn profile_text(entry: Option<&Entry>, lang: PageLanguage) -> Value {
    use tm_devices::catalog::Profile;
    entry.map_or(Value::Null, |e| {
        let w = match e.model.profile {
            Profile::BloodPressure => words::PROFILE_BLOOD_PRESSURE,
            Profile::WeightScale | Profile::XiaomiScaleAdvert => words::PROFILE_SCALE,
            Profile::BodyComposition => words::PROFILE_BODY_COMPOSITION,
            Profile::Thermometer => words::PROFILE_THERMOMETER,
            Profile::Glucose => words::PROFILE_GLUCOSE,
            Profile::PulseOximeter => words::PROFILE_OXIMETER,
            Profile::HeartRate => words::PROFILE_HEART_RATE,
        };
        json!(lang.pick(w))
    })
}

/// What the nurse reads for a pairing's step.
pub fn step_words(step: PairingStep) -> crate::symptom::codes::Words {
    match step {
        PairingStep::Searching => words::STEP_SEARCHING,
        PairingStep::Bonding => words::STEP_BONDING,
        PairingStep::NeedsPin => words::STEP_NEEDS_PIN,
        PairingStep::NeedsPasskey => words::STEP_NEEDS_PASSKEY,
        PairingStep::ConfirmNumber => words::STEP_CONFIRM_NUMBER,
        PairingStep::TypeOnDevice => words::STEP_TYPE_ON_DEVICE,
        PairingStep::DeviceInformation => words::STEP_DEVICE_INFORMATION,
        PairingStep::Battery => words::STEP_BATTERY,
        PairingStep::Clock => words::STEP_CLOCK,
        PairingStep::Paired => words::STEP_PAIRED,
        PairingStep::Failed => words::STEP_FAILED,
        PairingStep::Unpaired => words::STEP_UNPAIRED,
    }
}

/// Why a pairing failed, in the page's words; the gateway's own English text is the fallback
/// for a gateway that names no kind.
pub fn failure_words(failure: PairingFailure) -> crate::symptom::codes::Words {
    match failure {
        PairingFailure::NotFound => words::FAILED_NOT_FOUND,
        PairingFailure::NoAnswer => words::FAILED_NO_ANSWER,
        PairingFailure::WrongSecret => words::FAILED_WRONG_SECRET,
        PairingFailure::Refused => words::FAILED_REFUSED,
        PairingFailure::Unreadable => words::FAILED_UNREADABLE,
        PairingFailure::Gateway => words::FAILED_GATEWAY,
    }
}

/// What a pairing waits for from the nurse.
fn input(step: PairingStep) -> Value {
    match step {
        PairingStep::NeedsPin => json!("pin"),
        PairingStep::NeedsPasskey => json!("passkey"),
        PairingStep::ConfirmNumber => json!("confirm"),
        _ => Value::Null,
    }
}

fn pairing(p: &PairingProgress, model_name: Option<&str>, lang: PageLanguage) -> Value {
    json!({
        "address": p.address,
        "model_name": model_name,
        "step": p.step,
        "text": lang.pick(step_words(p.step)),
        "shown": p.shown,
        "error": p.failure.map_or_else(
            || p.error.clone(),
            |f| Some(lang.pick(failure_words(f)).to_owned())
        ),
        "battery_pct": p.battery_pct,
        "at": p.at,
        "input": input(p.step),
    })
}

/// The measurement a reading of `kind` is shown as.
fn measure_of(kind: ReadingKind) -> &'static [Measure] {
    match kind {
        ReadingKind::BloodPressure => &[Measure::BloodPressure],
        ReadingKind::BodyWeight | ReadingKind::BodyComposition => &[Measure::BodyWeight],
        ReadingKind::PulseOximetry => &[Measure::SpO2],
        ReadingKind::BodyTemperature => &[Measure::BodyTemperature],
        ReadingKind::Glucose => &[Measure::GlucoseMass, Measure::GlucoseMoles],
        ReadingKind::HeartRate => &[Measure::HeartRate],
        ReadingKind::CuffPressure | ReadingKind::Unrecognized => &[],
    }
}

/// A reading as one line: `Blood pressure 128/82 mmHg, 10:31` (the time in `tz`).
pub fn reading_text(reading: &Reading, lang: PageLanguage, tz: Tz) -> String {
    let labels = Labels::of(lang.labels());
    let at = reading.effective_time.with_timezone(&tz).format("%H:%M");
    let value_of = |code: &str| {
        reading
            .components
            .iter()
            .find(|c| c.code == code)
            .map(|c| format_value(c.value))
    };
    for &wanted in measure_of(reading.kind) {
        let Some((_, codes, unit)) = Measure::ALL.iter().find(|(m, _, _)| *m == wanted) else {
            continue;
        };
        let values: Option<Vec<String>> = codes.iter().map(|c| value_of(c)).collect();
        if let Some(values) = values {
            return format!(
                "{} {} {unit}, {at}",
                labels.measure(wanted),
                values.join("/")
            );
        }
    }
    match reading.components.first() {
        Some(c) => format!(
            "{} {} {}, {at}",
            labels.kind(reading.kind),
            format_value(c.value),
            display_unit(&c.unit)
        ),
        None => format!("{}, {at}", labels.kind(reading.kind)),
    }
}

/// The state JSON of a session in `status` with `view` (its gateway, if bound), at `now`.
pub fn state_json(
    status: Status,
    view: Option<&SetupView>,
    lang: PageLanguage,
    tz: Tz,
    now: DateTime<Utc>,
) -> Value {
    let step = step_of(view);
    let mut state = json!({
        "status": status.as_str(),
        "step": step.as_str(),
        "completed": step == Step::Done,
        "gateway": null,
        "nearby": [],
        "pairings": [],
        "devices": [],
    });
    let Some(view) = view else {
        return state;
    };
    let heartbeat = view.heartbeat.as_ref();
    state["gateway"] = json!({
        "id": view.gateway_id,
        "online": heartbeat.is_some_and(|(at, _)| (now - *at).num_seconds() < ONLINE_WITHIN_S),
        "last_seen": heartbeat.map(|(at, _)| at),
        "version": heartbeat.map(|(_, h)| h.version.clone()),
        "setup_until": heartbeat.and_then(|(_, h)| h.setup.as_ref().map(|s| s.until)),
    });
    let Some((_, heartbeat)) = heartbeat else {
        return state;
    };
    let model_of = |address: &str| -> Option<String> {
        let paired = heartbeat.devices.iter().find(|d| d.address == address);
        let nearby = heartbeat
            .setup
            .iter()
            .flat_map(|s| s.nearby.iter())
            .find(|n| n.address == address);
        paired
            .and_then(|d| d.model.clone())
            .or_else(|| nearby.and_then(|n| n.model_id.clone()))
    };
    if let Some(setup) = &heartbeat.setup {
        state["nearby"] = setup
            .nearby
            .iter()
            .map(|n| {
                let entry = catalog_entry(n.model_id.as_deref());
                json!({
                    "address": n.address,
                    "name": n.name,
                    "model_id": n.model_id,
                    "model_name": entry.map(|e| e.model.name.clone()),
                    "profile": profile(entry),
                    "profile_text": profile_text(entry, lang),
                    "pairing_hint": entry.and_then(|e| e.model.pairing_hint.clone()),
                    "rssi_dbm": n.rssi_dbm,
                    "paired": n.paired,
                })
            })
            .collect();
        state["pairings"] = setup
            .pairings
            .iter()
            .map(|p| {
                let entry = catalog_entry(model_of(&p.address).as_deref());
                pairing(p, entry.map(|e| e.model.name.as_str()), lang)
            })
            .collect();
    }
    state["devices"] = heartbeat
        .devices
        .iter()
        .map(|d| {
            let entry = catalog_entry(d.model.as_deref());
            let reading = view
                .readings
                .iter()
                .find(|r| r.address == d.address)
                .map(|r| {
                    json!({
                        "text": reading_text(&r.reading, lang, tz),
                        "at": r.reading.effective_time,
                    })
                });
            json!({
                "address": d.address,
                "model_id": d.model,
                "model_name": entry.map(|e| e.model.name.clone()),
                "profile": profile(entry),
                    "profile_text": profile_text(entry, lang),
                "battery_pct": d.battery_pct,
                "reading": reading,
            })
        })
        .collect();
    state
}
