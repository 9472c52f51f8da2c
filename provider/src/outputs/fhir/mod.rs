//! # FHIR attachment: a `collection` Bundle of R4 vital-sign Observations
//!
//! Per session, one Bundle (`application/fhir+json`) holding:
//! - one `Device` per measuring device (manufacturer, model, serial, firmware), which the
//!   Observations reference by `urn:uuid:` fullUrl;
//! - the Observations of every charted reading, on the R4 core vital-sign profiles the
//!   patient-monitoring IG uses (`bodyweight`, `bp`, `heartrate`, `oxygensat`, `bodytemp`, plus
//!   `bmi` and `bodyheight`), with the codes, displays and UCUM units of [`rules`]
//!   (docs/fhir.md §4),
//!   `status` final, `effectiveDateTime` = the corrected time with the gateway's offset, and the
//!   subject as a logical reference by identifier (the Portal's pseudonymous patientId; no
//!   Patient resource is sent, as in the IG examples). Capillary glucose (2339-0 mg/dL,
//!   15074-8 mmol/L) has no vital-sign profile and is categorised `laboratory`.
//!
//! Identity: each Observation's `identifier` is `<reading_id>-<slug>` (one reading can give a
//! BP panel and a heart rate), and its `id`/`fullUrl` a UUID derived from it, so they are
//! stable across every update of the attachment. The Bundle's `timestamp` is the latest
//! `received_at` of its readings, not the wall clock: the same readings give the same bytes,
//! hence the same ETag.
//!
//! Not charted, and returned as [`NotCharted`] so the caller can count and show them (the PDF
//! lists every reading): readings of kind `unrecognized` and `cuff-pressure`, components with
//! no FHIR code yet (`x-…` local codes, body fat) or an unexpected unit, and **readings whose
//! time quality is `device-unset-untrusted`**: their effective time is unknown, the vital-sign
//! profiles require one, and charting them at a guessed time would put a value at the wrong
//! place in the EHR's trend. Readings with the gateway's receive time (`device-unset-receive-time`,
//! `no-device-time`) are charted: that time is when the measurement was taken, to within a
//! connection.

mod ids;
mod observation;
pub use observation::decimal as observation_decimal;
pub mod rules;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tm_protocol::{DeviceInfo, Reading, ReadingId, ReadingKind, TimeQuality};

use super::SessionContext;
pub use ids::stable_uuid;
use observation::{BuiltObservation, Common, observations_of};

/// The attachment's content type.
pub const CONTENT_TYPE: &str = "application/fhir+json";

/// Options of the FHIR rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirOptions {
    /// `Observation.identifier.system`: a URI in the provider's namespace.
    pub observation_identifier_system: String,
}

impl FhirOptions {
    /// Identifiers under the provider's public URL: `<public_url>/fhir/reading`.
    pub fn for_public_url(public_url: &str) -> Self {
        FhirOptions {
            observation_identifier_system: format!(
                "{}/fhir/reading",
                public_url.trim_end_matches('/')
            ),
        }
    }
}

/// Why a reading or one of its components is not in the Bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotChartedReason {
    /// `unrecognized` or `cuff-pressure`: not a measurement to chart.
    NotAMeasurement(ReadingKind),
    /// The device clock was unset and the reading came from memory: no trustworthy time.
    UntrustedTime,
    /// No FHIR code is chosen for this component (a local `x-` code, body fat).
    NoFhirCode,
    /// The unit is not the one the profile requires.
    UnexpectedUnit(String),
    /// A panel with none of its components.
    NoValue,
}

/// A reading (or one of its components) left out of the Bundle, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCharted {
    /// The reading.
    pub reading_id: ReadingId,
    /// The component's code, or the reading's kind when the whole reading is left out.
    pub code: String,
    /// Why.
    pub reason: NotChartedReason,
}

/// The FHIR rendering of a session.
#[derive(Debug, Clone)]
pub struct FhirExport {
    /// The Bundle.
    pub bundle: Value,
    /// What is not in it.
    pub not_charted: Vec<NotCharted>,
    /// Number of Observations in the Bundle.
    pub observations: usize,
}

impl FhirExport {
    /// The attachment's bytes (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.bundle).unwrap_or_default()
    }
}

fn device_key(d: &DeviceInfo) -> String {
    format!(
        "{}|{}|{}|{}",
        d.address.to_ascii_uppercase(),
        d.manufacturer.as_deref().unwrap_or(""),
        d.model.as_deref().unwrap_or(""),
        d.serial.as_deref().unwrap_or("")
    )
}

/// The Bluetooth address as the PHD IG writes a transport address: EUI-48, upper-case hex
/// pairs separated by dashes.
const BLUETOOTH_ADDRESS_SYSTEM: &str = "http://hl7.org/fhir/sid/eui-48/bluetooth";
const DEVICE_IDENTIFIER_TYPES: &str =
    "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers";
const IDENTIFIER_TYPES: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const MDC: &str = "urn:iso:std:iso:11073:10101";

/// The ISO/IEEE 11073-10101 device specialization of a device that measures `kind` (the PHD
/// IG's `DeviceTypes11073MDC` codes).
fn device_type(kind: ReadingKind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        ReadingKind::BloodPressure | ReadingKind::CuffPressure => {
            ("528391", "MDC_DEV_SPEC_PROFILE_BP")
        }
        ReadingKind::BodyWeight => ("528399", "MDC_DEV_SPEC_PROFILE_SCALE"),
        ReadingKind::BodyComposition => ("528404", "MDC_DEV_SPEC_PROFILE_BCA"),
        ReadingKind::PulseOximetry => ("528388", "MDC_DEV_SPEC_PROFILE_PULS_OXIM"),
        ReadingKind::BodyTemperature => ("528392", "MDC_DEV_SPEC_PROFILE_TEMP"),
        ReadingKind::Glucose => ("528401", "MDC_DEV_SPEC_PROFILE_GLUCOSE"),
        ReadingKind::HeartRate => ("528525", "MDC_DEV_SUB_SPEC_PROFILE_HR"),
        ReadingKind::Unrecognized => return None,
    })
}

/// The Device of `d`, typed by the kind of its first charted reading.
fn device_resource(id: &str, d: &DeviceInfo, kind: ReadingKind) -> Value {
    let mut dev = serde_json::Map::new();
    dev.insert("resourceType".into(), json!("Device"));
    dev.insert("id".into(), json!(id));
    let mut identifiers = vec![json!({
        "type": {"coding": [{"system": DEVICE_IDENTIFIER_TYPES, "code": "BTMAC"}]},
        "system": BLUETOOTH_ADDRESS_SYSTEM,
        "value": d.address.to_ascii_uppercase().replace(':', "-"),
    })];
    if let Some(serial) = &d.serial {
        identifiers.push(json!({
            "type": {"coding": [{"system": IDENTIFIER_TYPES, "code": "SNO"}]},
            "value": serial,
        }));
    }
    dev.insert("identifier".into(), Value::Array(identifiers));
    if let Some(m) = &d.manufacturer {
        dev.insert("manufacturer".into(), json!(m));
    }
    if let Some(serial) = &d.serial {
        dev.insert("serialNumber".into(), json!(serial));
    }
    if let Some(name) = d.model.as_ref().or(d.catalog_model.as_ref()) {
        dev.insert(
            "deviceName".into(),
            json!([{"name": name, "type": "model-name"}]),
        );
    }
    if let Some(model) = &d.model {
        dev.insert("modelNumber".into(), json!(model));
    }
    if let Some((code, display)) = device_type(kind) {
        dev.insert(
            "type".into(),
            json!({"coding": [{"system": MDC, "code": code, "display": display}]}),
        );
    }
    if let Some(fw) = &d.firmware {
        dev.insert("version".into(), json!([{ "value": fw }]));
    }
    Value::Object(dev)
}

/// Renders the session's Bundle. Pure: the same context and readings (in any order) give the
/// same bytes.
pub fn export_bundle(
    ctx: &SessionContext,
    readings: &[Reading],
    options: &FhirOptions,
) -> FhirExport {
    let mut sorted: Vec<&Reading> = readings.iter().collect();
    sorted
        .sort_by(|a, b| (a.effective_time, &a.reading_id).cmp(&(b.effective_time, &b.reading_id)));
    sorted.dedup_by(|a, b| a.reading_id == b.reading_id);

    let mut not_charted = Vec::new();
    let mut devices: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut observations: Vec<BuiltObservation> = Vec::new();
    for reading in &sorted {
        let whole = |reason| NotCharted {
            reading_id: reading.reading_id.clone(),
            code: kind_name(reading.kind),
            reason,
        };
        match reading.kind {
            ReadingKind::Unrecognized | ReadingKind::CuffPressure => {
                not_charted.push(whole(NotChartedReason::NotAMeasurement(reading.kind)));
                continue;
            }
            _ if reading.time_quality == TimeQuality::DeviceUnsetUntrusted => {
                not_charted.push(whole(NotChartedReason::UntrustedTime));
                continue;
            }
            _ => {}
        }
        let key = device_key(&reading.device);
        let device_id = stable_uuid("Device", &key);
        let device_ref = format!("urn:uuid:{device_id}");
        let common = Common {
            patient_id: &ctx.patient_id,
            identifier_system: &options.observation_identifier_system,
            device_ref: &device_ref,
        };
        let built = observations_of(reading, &common, &mut not_charted);
        if !built.is_empty() {
            devices.entry(key).or_insert_with(|| {
                (
                    device_ref.clone(),
                    device_resource(&device_id, &reading.device, reading.kind),
                )
            });
            observations.extend(built);
        }
    }

    let timestamp: DateTime<Utc> = sorted
        .iter()
        .map(|r| r.received_at)
        .max()
        .unwrap_or_else(|| ctx.period.start.with_timezone(&Utc));
    let mut entries: Vec<Value> = devices
        .into_values()
        .map(|(full_url, resource)| json!({"fullUrl": full_url, "resource": resource}))
        .collect();
    let count = observations.len();
    entries.extend(
        observations
            .into_iter()
            .map(|o| json!({"fullUrl": o.full_url, "resource": o.resource})),
    );
    let bundle = json!({
        "resourceType": "Bundle",
        "id": stable_uuid("Bundle", &ctx.telemonitoring_id),
        "type": "collection",
        "timestamp": timestamp.to_rfc3339_opts(SecondsFormat::Secs, true),
        "entry": entries,
    });
    FhirExport {
        bundle,
        not_charted,
        observations: count,
    }
}

fn kind_name(kind: ReadingKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
