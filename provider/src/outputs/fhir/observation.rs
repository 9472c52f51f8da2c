//! One reading to its Observations, by the rule table.
//!
//! A blood-pressure reading becomes the `bp` panel (systolic, diastolic and, when the cuff
//! reports it, mean arterial pressure as components) plus a `heartrate` Observation for its
//! pulse; a pulse oximeter reading becomes `oxygensat` (coded 2708-6 and 59408-5) plus
//! `heartrate`; every other kind becomes one Observation per charted component. A component
//! the device reported as a special value (NaN, NRes, ±INF) keeps its place with a
//! `dataAbsentReason`, so the EHR sees that a measurement happened.

use chrono::SecondsFormat;
use serde_json::{Value, json};
use tm_protocol::{Reading, ReadingKind};

use super::ids::stable_uuid;
use super::rules::{
    self, BP_PANEL, Category, DATA_ABSENT_REASON, LOINC, OBSERVATION_CATEGORY,
    PATIENT_IDENTIFIER_SYSTEM, Rule, SPO2_BY_PULSE_OXIMETRY, UCUM,
};
use super::{NotCharted, NotChartedReason};

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
}

/// Rounds away binary noise (36.400000000000006) without touching clinical precision.
pub fn decimal(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn quantity(rule: &Rule, value: f64) -> Value {
    json!({"value": decimal(value), "unit": rule.unit_text, "system": UCUM, "code": rule.ucum})
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
) -> BuiltObservation {
    let identifier = format!("{}-{}", reading.reading_id, rule_slug);
    let id = stable_uuid("Observation", &identifier);
    let (cat_code, cat_display) = category.coding();
    let mut obs = serde_json::Map::new();
    obs.insert("resourceType".into(), json!("Observation"));
    obs.insert("id".into(), json!(id));
    if let Some(p) = profile {
        obs.insert(
            "meta".into(),
            json!({"profile": [format!("http://hl7.org/fhir/StructureDefinition/{p}")]}),
        );
    }
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
        json!(
            reading
                .effective_time
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        ),
    );
    obs.insert("device".into(), json!({"reference": common.device_ref}));
    BuiltObservation {
        full_url: format!("urn:uuid:{id}"),
        resource: Value::Object(obs),
    }
}

fn insert(obs: &mut BuiltObservation, key: &str, value: Value) {
    if let Value::Object(m) = &mut obs.resource {
        m.insert(key.into(), value);
    }
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

    if reading.kind == ReadingKind::BloodPressure {
        let mut components = Vec::new();
        for rule in [&rules::SYSTOLIC, &rules::DIASTOLIC, &rules::MEAN_ARTERIAL] {
            let code = rule.coding.code;
            if let Some(c) = reading.components.iter().find(|c| c.code == code) {
                if c.unit == rule.ucum {
                    components.push(json!({"code": {"coding": [coding(rule.coding)]}, "valueQuantity": quantity(rule, c.value)}));
                } else {
                    skip(code, NotChartedReason::UnexpectedUnit(c.unit.clone()));
                }
            } else if let Some(m) = reading.missing.iter().find(|m| m.code == code) {
                components.push(json!({"code": {"coding": [coding(rule.coding)]}, "dataAbsentReason": absent(&m.reason)}));
            }
        }
        if components.is_empty() {
            skip(BP_PANEL.code, NotChartedReason::NoValue);
        } else {
            let mut obs = skeleton(
                reading,
                common,
                "bp",
                Some("bp"),
                Category::VitalSigns,
                vec![coding(BP_PANEL)],
            );
            insert(&mut obs, "component", Value::Array(components));
            out.push(obs);
        }
    }

    let single = |code: &str| rules::single_value_rule(code);
    for c in &reading.components {
        if reading.kind == ReadingKind::BloodPressure && rules::bp_component_rule(&c.code).is_some()
        {
            continue;
        }
        let Some(rule) = single(&c.code) else {
            skip(&c.code, NotChartedReason::NoFhirCode);
            continue;
        };
        if c.unit != rule.ucum {
            skip(&c.code, NotChartedReason::UnexpectedUnit(c.unit.clone()));
            continue;
        }
        let mut obs = single_skeleton(reading, common, rule);
        insert(&mut obs, "valueQuantity", quantity(rule, c.value));
        out.push(obs);
    }
    for m in &reading.missing {
        if reading.kind == ReadingKind::BloodPressure && rules::bp_component_rule(&m.code).is_some()
        {
            continue;
        }
        let Some(rule) = single(&m.code) else {
            skip(&m.code, NotChartedReason::NoFhirCode);
            continue;
        };
        let mut obs = single_skeleton(reading, common, rule);
        insert(&mut obs, "dataAbsentReason", absent(&m.reason));
        out.push(obs);
    }
    out
}

fn single_skeleton(reading: &Reading, common: &Common<'_>, rule: &Rule) -> BuiltObservation {
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
