//! One reading to its Observations, by the rule table.
//!
//! A blood-pressure reading becomes the `bp` panel (systolic, diastolic and, when the cuff
//! reports it, mean arterial pressure as components) plus a `heartrate` Observation for its
//! pulse; a pulse oximeter reading becomes `oxygensat` (coded 2708-6 and 59408-5) plus
//! `heartrate`; every other kind becomes one Observation per charted component. A component
//! the device reported as a special value (NaN, NRes, ±INF) keeps its place with a
//! `dataAbsentReason`, so the EHR sees that a measurement happened.
//!
//! Every Observation names its performer, its time source (`meta.tag`) and `issued`; values
//! with a configured range carry `referenceRange` and, outside it, `interpretation`; the
//! reading's measurement-status flags are components of each of its Observations. Only the
//! measurements of the session's scope (carepath plus configured extras) are made; the others
//! are reported as not charted.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use tm_protocol::{Reading, ReadingKind};

use super::ids::stable_uuid;
use super::interpretation::assess;
use super::provenance::{issued, time_source_tag};
use super::rules::{
    self, BP_PANEL, Category, DATA_ABSENT_REASON, LOINC, OBSERVATION_CATEGORY,
    PATIENT_IDENTIFIER_SYSTEM, Rule, SPO2_BY_PULSE_OXIMETRY,
};
use super::scope::Measurement;
use super::status;
use super::values::{quantity, timestamp};
use super::{NotCharted, NotChartedReason};
use crate::outputs::series::Ranges;

/// An Observation ready for the Bundle.
#[derive(Debug, Clone)]
pub(super) struct BuiltObservation {
    /// `urn:uuid:<id>`.
    pub full_url: String,
    /// The resource.
    pub resource: Value,
}

/// What the Observations of one reading share.
pub(super) struct Common<'a> {
    /// The Portal's patientId.
    pub patient_id: &'a str,
    /// `Observation.identifier.system`.
    pub identifier_system: &'a str,
    /// `urn:uuid:` reference of the measuring device.
    pub device_ref: &'a str,
    /// `Observation.performer`.
    pub performer: &'a Value,
    /// Normal ranges per device code.
    pub ranges: &'a Ranges,
    /// The measurements the session's Bundle carries.
    pub scope: &'a BTreeSet<Measurement>,
}

fn absent(reason: &str) -> Value {
    let (code, display) = rules::data_absent_reason(reason);
    json!({"coding": [{"system": DATA_ABSENT_REASON, "code": code, "display": display}]})
}

fn coding(c: rules::Coding) -> Value {
    json!({"system": LOINC, "code": c.code, "display": c.display})
}

/// The skeleton every Observation shares.
fn skeleton(
    reading: &Reading,
    common: &Common<'_>,
    rule_slug: &str,
    profile: Option<&str>,
    category: Category,
    codings: Vec<Value>,
) -> (String, Map<String, Value>) {
    let identifier = format!("{}-{}", reading.reading_id, rule_slug);
    let id = stable_uuid("Observation", &identifier);
    let (cat_code, cat_display) = category.coding();
    let mut meta = Map::new();
    if let Some(p) = profile {
        meta.insert(
            "profile".into(),
            json!([format!("http://hl7.org/fhir/StructureDefinition/{p}")]),
        );
    }
    meta.insert("tag".into(), json!([time_source_tag(reading.time_quality)]));
    let mut obs = Map::new();
    obs.insert("resourceType".into(), json!("Observation"));
    obs.insert("id".into(), json!(id));
    obs.insert("meta".into(), Value::Object(meta));
    obs.insert(
        "identifier".into(),
        json!([{"system": common.identifier_system, "value": identifier}]),
    );
    obs.insert("status".into(), json!("final"));
    obs.insert(
        "category".into(),
        json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": cat_code, "display": cat_display}]}]),
    );
    obs.insert("code".into(), json!({ "coding": codings }));
    obs.insert(
        "subject".into(),
        json!({"identifier": {"system": PATIENT_IDENTIFIER_SYSTEM, "value": common.patient_id}}),
    );
    obs.insert(
        "effectiveDateTime".into(),
        json!(timestamp(&reading.effective_time, false)),
    );
    obs.insert("issued".into(), issued(&reading.received_at));
    obs.insert("performer".into(), common.performer.clone());
    obs.insert("device".into(), json!({"reference": common.device_ref}));
    (id, obs)
}

fn built(id: &str, obs: Map<String, Value>) -> BuiltObservation {
    BuiltObservation {
        full_url: format!("urn:uuid:{id}"),
        resource: Value::Object(obs),
    }
}

/// Whether a glucose reading is on capillary blood: the meter says so, or names no sample
/// (a Glucose Service device is a blood glucose meter, measured on a finger prick).
fn capillary(reading: &Reading) -> bool {
    let sample = reading.flags.iter().find_map(|f| f.strip_prefix("sample:"));
    matches!(
        sample,
        None | Some("capillary-whole-blood" | "capillary-plasma")
    )
}

/// Whether a glucose meter measured its control solution, not the patient.
pub(super) fn control_solution(reading: &Reading) -> bool {
    reading.kind == ReadingKind::Glucose
        && reading
            .flags
            .iter()
            .any(|f| f == "sample:control-solution" || f == "location:control-solution")
}

/// The standalone rule of a component code of `reading`.
fn rule_of(reading: &Reading, code: &str) -> Option<&'static Rule> {
    let glucometer = reading.kind == ReadingKind::Glucose && capillary(reading);
    glucometer
        .then(|| rules::glucometer_rule(code))
        .flatten()
        .or_else(|| rules::single_value_rule(code))
}

/// The Observations of one reading, and the components that could not be charted.
pub(super) fn observations_of(
    reading: &Reading,
    common: &Common<'_>,
    not_charted: &mut Vec<NotCharted>,
) -> Vec<BuiltObservation> {
    let mut out = Vec::new();
    let mut skip = |code: &str, reason: NotChartedReason| {
        not_charted.push(NotCharted {
            reading_id: reading.reading_id.clone(),
            code: code.to_owned(),
            reason,
        });
    };
    let flags = status::components(reading.kind, &reading.flags);
    let with_flags = |obs: &mut Map<String, Value>, mut components: Vec<Value>| {
        components.extend(flags.iter().cloned());
        if !components.is_empty() {
            obs.insert("component".into(), Value::Array(components));
        }
    };

    if reading.kind == ReadingKind::BloodPressure {
        let mut components = Vec::new();
        let in_scope = common.scope.contains(&Measurement::BloodPressure);
        for rule in [&rules::SYSTOLIC, &rules::DIASTOLIC, &rules::MEAN_ARTERIAL] {
            let code = rule.coding.code;
            let mut component = Map::new();
            component.insert("code".into(), json!({"coding": [coding(rule.coding)]}));
            if let Some(c) = reading.components.iter().find(|c| c.code == code) {
                if c.unit != rule.ucum {
                    skip(code, NotChartedReason::UnexpectedUnit(c.unit.clone()));
                    continue;
                }
                component.insert(
                    "valueQuantity".into(),
                    quantity(c.value, rule.unit_text, rule.ucum),
                );
                assess(&mut component, common.ranges, code, c.value, rule);
            } else if let Some(m) = reading.missing.iter().find(|m| m.code == code) {
                component.insert("dataAbsentReason".into(), absent(&m.reason));
            } else {
                continue;
            }
            components.push(Value::Object(component));
        }
        if components.is_empty() {
            skip(BP_PANEL.code, NotChartedReason::NoValue);
        } else if !in_scope {
            skip(BP_PANEL.code, NotChartedReason::OutsideCarepath);
        } else {
            let (id, mut obs) = skeleton(
                reading,
                common,
                "bp",
                Some("bp"),
                Category::VitalSigns,
                vec![coding(BP_PANEL)],
            );
            with_flags(&mut obs, components);
            out.push(built(&id, obs));
        }
    }

    let is_bp_part = |code: &str| {
        reading.kind == ReadingKind::BloodPressure && rules::bp_component_rule(code).is_some()
    };
    for c in reading.components.iter().filter(|c| !is_bp_part(&c.code)) {
        let Some(rule) = rule_of(reading, &c.code) else {
            skip(&c.code, NotChartedReason::NoFhirCode);
            continue;
        };
        if c.unit != rule.ucum {
            skip(&c.code, NotChartedReason::UnexpectedUnit(c.unit.clone()));
            continue;
        }
        if !common.scope.contains(&rule.measurement) {
            skip(&c.code, NotChartedReason::OutsideCarepath);
            continue;
        }
        let (id, mut obs) = single_skeleton(reading, common, rule);
        obs.insert(
            "valueQuantity".into(),
            quantity(c.value, rule.unit_text, rule.ucum),
        );
        assess(&mut obs, common.ranges, &c.code, c.value, rule);
        with_flags(&mut obs, Vec::new());
        out.push(built(&id, obs));
    }
    for m in reading.missing.iter().filter(|m| !is_bp_part(&m.code)) {
        let Some(rule) = rule_of(reading, &m.code) else {
            skip(&m.code, NotChartedReason::NoFhirCode);
            continue;
        };
        if !common.scope.contains(&rule.measurement) {
            skip(&m.code, NotChartedReason::OutsideCarepath);
            continue;
        }
        let (id, mut obs) = single_skeleton(reading, common, rule);
        obs.insert("dataAbsentReason".into(), absent(&m.reason));
        with_flags(&mut obs, Vec::new());
        out.push(built(&id, obs));
    }
    out
}

fn single_skeleton(
    reading: &Reading,
    common: &Common<'_>,
    rule: &Rule,
) -> (String, Map<String, Value>) {
    let mut codings = vec![coding(rule.coding)];
    if rule.coding.code == "2708-6" && reading.kind == ReadingKind::PulseOximetry {
        codings.push(coding(SPO2_BY_PULSE_OXIMETRY));
    }
    skeleton(
        reading,
        common,
        rule.slug,
        rule.profile,
        rule.category,
        codings,
    )
}
