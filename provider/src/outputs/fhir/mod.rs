//! # FHIR attachment: a `collection` Bundle of R4 vital-sign Observations
//!
//! Per session, one Bundle (`application/fhir+json`) holding:
//! - the provider `Organization` ([`performer`]), the performer of every Observation;
//! - one `Device` per measuring device (manufacturer, model, serial, firmware, Bluetooth
//!   address, 11073 type), which the Observations reference by `urn:uuid:` fullUrl;
//! - the Observations of the readings the session's carepath monitors ([`scope`]: heart
//!   failure is heart rate, blood pressure and body weight; other kinds only when
//!   `[attachments] extra_measurements` names them), on the R4 core vital-sign profiles the
//!   patient-monitoring IG uses (`bodyweight`, `bp`, `heartrate`, `oxygensat`, `bodytemp`, plus
//!   `bmi` and `bodyheight`), with the codes, displays and UCUM units of [`rules`]
//!   (docs/fhir.md §4). Capillary glucose from a meter (41653-7 mg/dL, 14743-9 mmol/L) has no
//!   vital-sign profile and is categorised `laboratory`.
//!
//! Each Observation: `status` final; `effectiveDateTime` = the corrected time with the
//! gateway's offset, to the millisecond when it has a fraction ([`values`]); its time source as
//! a `meta.tag` and `issued` = the gateway's receive time ([`provenance`]); the subject as a
//! logical reference by identifier (the Portal's pseudonymous patientId; no Patient resource is
//! sent, as in the IG examples); `performer`; `referenceRange` and, out of range,
//! `interpretation` from the configured ranges ([`interpretation`]); the device's
//! measurement-status flags as components ([`status`]). Integral values are JSON integers.
//!
//! Identity: each Observation's `identifier` is `<reading_id>-<slug>` (one reading can give a
//! BP panel and a heart rate), and its `id`/`fullUrl` a UUID derived from it, so they are
//! stable across every update of the attachment. The Bundle's `timestamp` is the latest
//! `received_at` of its readings, not the wall clock: the same readings give the same bytes,
//! hence the same ETag.
//!
//! Not charted, and returned as [`NotCharted`] so the caller can count and show them (the PDF
//! lists every reading): readings of kind `unrecognized` and `cuff-pressure`, a glucose meter's
//! control-solution tests, measurements outside the session's scope, components with no FHIR
//! code yet (`x-…` local codes, body fat) or an unexpected unit, and **readings whose time
//! quality is `device-unset-untrusted`**: their effective time is unknown, the vital-sign
//! profiles require one, and charting them at a guessed time would put a value at the wrong
//! place in the EHR's trend. Readings with the gateway's receive time (`device-unset-receive-time`,
//! `no-device-time`) are charted, tagged as such: that time is when the measurement was taken,
//! to within a connection.

mod device;
mod ids;
pub mod interpretation;
mod observation;
pub mod performer;
pub mod provenance;
pub mod rules;
pub mod scope;
pub mod status;
mod symptom;
pub mod values;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tm_protocol::{Reading, ReadingId, ReadingKind, TimeQuality};

use super::SessionContext;
use super::series::Ranges;
use crate::symptom::{SymptomAnswer, sorted_answers};
use device::{device_key, device_resource};
pub use ids::stable_uuid;
use observation::{BuiltObservation, Common, control_solution, observations_of};
pub use performer::Organization;
pub use scope::Measurement;

/// The attachment's content type.
pub const CONTENT_TYPE: &str = "application/fhir+json";

/// Options of the FHIR rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct FhirOptions {
    /// `Observation.identifier.system`: a URI in the provider's namespace.
    pub observation_identifier_system: String,
    /// Normal ranges per device LOINC code: `referenceRange` and `interpretation`.
    pub ranges: Ranges,
    /// Measurements carried besides those of the session's carepath.
    pub extra_measurements: BTreeSet<Measurement>,
    /// The provider organisation, performer of the device Observations.
    pub organization: Organization,
}

impl FhirOptions {
    /// Identifiers under the provider's public URL (`<public_url>/fhir/reading`), the
    /// heart-failure ranges, no extra measurement, the default organisation name.
    pub fn for_public_url(public_url: &str) -> Self {
        FhirOptions {
            observation_identifier_system: format!(
                "{}/fhir/reading",
                public_url.trim_end_matches('/')
            ),
            ranges: Ranges::heart_failure(),
            extra_measurements: BTreeSet::new(),
            organization: Organization::default(),
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
    /// The session's carepath does not monitor this measurement and the configuration adds
    /// no such extra kind (`[attachments] extra_measurements`).
    OutsideCarepath,
    /// A glucose meter's test of its control solution: not the patient's blood.
    ControlSolution,
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

/// Renders the session's Bundle. Pure: the same context, readings and symptom answers (in any
/// order) give the same bytes.
pub fn export_bundle(
    ctx: &SessionContext,
    readings: &[Reading],
    symptoms: &[SymptomAnswer],
    options: &FhirOptions,
) -> FhirExport {
    let mut sorted: Vec<&Reading> = readings.iter().collect();
    sorted
        .sort_by(|a, b| (a.effective_time, &a.reading_id).cmp(&(b.effective_time, &b.reading_id)));
    sorted.dedup_by(|a, b| a.reading_id == b.reading_id);

    let scope = scope::in_scope(&ctx.carepath.id, &options.extra_measurements);
    let performer = options.organization.performer();
    let mut not_charted = Vec::new();
    let mut devices: BTreeMap<String, (String, Value)> = BTreeMap::new();
    let mut observations: Vec<BuiltObservation> = Vec::new();
    for reading in &sorted {
        let whole = |reason| NotCharted {
            reading_id: reading.reading_id.clone(),
            code: reading.kind.wire_name().to_owned(),
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
            _ if control_solution(reading) => {
                not_charted.push(whole(NotChartedReason::ControlSolution));
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
            performer: &performer,
            ranges: &options.ranges,
            scope: &scope,
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

    let answers = sorted_answers(symptoms);
    observations.extend(answers.iter().map(|a| {
        let (full_url, resource) =
            symptom::observation(a, &ctx.patient_id, &options.observation_identifier_system);
        BuiltObservation { full_url, resource }
    }));
    let timestamp: DateTime<Utc> = sorted
        .iter()
        .map(|r| r.received_at)
        .chain(answers.iter().map(|a| a.end.with_timezone(&Utc)))
        .max()
        .unwrap_or_else(|| ctx.period.start.with_timezone(&Utc));
    let mut entries = Vec::new();
    if observations.len() > answers.len() {
        let org = &options.organization;
        entries
            .push(json!({"fullUrl": format!("urn:uuid:{}", org.id()), "resource": org.resource()}));
    }
    entries.extend(
        devices
            .into_values()
            .map(|(full_url, resource)| json!({"fullUrl": full_url, "resource": resource})),
    );
    let count = observations.len();
    entries.extend(
        observations
            .into_iter()
            .map(|o| json!({"fullUrl": o.full_url, "resource": o.resource})),
    );
    let mut bundle = json!({
        "resourceType": "Bundle",
        "id": stable_uuid("Bundle", &ctx.telemonitoring_id),
        "type": "collection",
        "timestamp": values::timestamp(&timestamp, true),
    });
    // FHIR JSON has no empty arrays: a Bundle with nothing to chart has no `entry`.
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    FhirExport {
        bundle,
        not_charted,
        observations: count,
    }
}
