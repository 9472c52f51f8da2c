//! What the Observations carry for the EHR beyond the IG examples: the performer, the
//! reference ranges and flags the report marks, the devices' measurement-status flags, where
//! each time came from, integral values as integers, and only the carepath's measurements by
//! default.

use chrono::{Duration, TimeZone};
use serde_json::{Value, json};
use tm_protocol::{Reading, TimeQuality};
use tm_provider::outputs::Carepath;
use tm_provider::outputs::fhir::interpretation::INTERPRETATION;
use tm_provider::outputs::fhir::provenance::TIME_SOURCE_SYSTEM;
use tm_provider::outputs::fhir::status::{ASN1_TO_HL7, YES_NO};
use tm_provider::outputs::fhir::{NotChartedReason, export_bundle};
use tm_provider::outputs::series::{Flag, overview};

use super::{default_options, export, fixtures, observations, options, resources};

/// A Blood Pressure Measurement frame with pulse and the Measurement Status field.
fn bp_with_status(sys: u8, dia: u8, pulse: u8, status: u16) -> Vec<u8> {
    let [lo, hi] = status.to_le_bytes();
    vec![0x14, sys, 0, dia, 0, 100, 0, pulse, 0, lo, hi]
}

/// A cuff reading with irregular pulse and a loose cuff, measured at a quarter past a second.
fn flagged_cuff_reading() -> Reading {
    let at = fixtures::cest()
        .with_ymd_and_hms(2026, 5, 9, 7, 30, 0)
        .unwrap()
        + Duration::milliseconds(250);
    fixtures::reading(
        "2A35",
        &bp_with_status(132, 84, 96, 0x0006),
        fixtures::omron_cuff(),
        at,
        TimeQuality::NoDeviceTime,
    )
}

/// A glucose record in mmol/L (5.1, capillary whole blood) and a control-solution test.
fn glucose_readings() -> Vec<Reading> {
    let at = fixtures::cest()
        .with_ymd_and_hms(2026, 5, 9, 8, 31, 30)
        .unwrap();
    let reading = |frame: &str, at| {
        fixtures::reading(
            "2A18",
            &fixtures::hex(frame),
            fixtures::glucometer(),
            at,
            TimeQuality::DeviceSynced,
        )
    };
    vec![
        reading("07 08 00 EA 07 05 09 07 1F 1E 3C 00 33 C0 11", at),
        reading(
            "07 09 00 EA 07 05 09 07 20 1E 3C 00 33 C0 4A",
            at + Duration::minutes(1),
        ),
    ]
}

fn observation_with<'a>(bundle: &'a Value, code: &str) -> Vec<&'a Value> {
    observations(bundle)
        .into_iter()
        .filter(|o| o["code"]["coding"][0]["code"] == code)
        .collect()
}

/// The Bundles the validator checks besides the golden one: the heart-failure default, the
/// flagged cuff and glucose readings, and a carepath with nothing to chart.
pub fn more_bundles() -> Vec<(&'static str, Value)> {
    let ctx = fixtures::session();
    let mut extra = fixtures::heart_failure_week();
    extra.push(flagged_cuff_reading());
    extra.extend(glucose_readings());
    let mut holter = fixtures::session();
    holter.carepath.id =
        "https://hl7belgium.org/fhir/patient-monitoring/carepath/holter-monitoring".into();
    vec![
        (
            "default",
            export_bundle(
                &ctx,
                &fixtures::heart_failure_week(),
                &fixtures::symptom_week(),
                &default_options(),
            )
            .bundle,
        ),
        (
            "flagged",
            export_bundle(&ctx, &extra, &[], &options()).bundle,
        ),
        (
            "empty",
            export_bundle(
                &holter,
                &fixtures::heart_failure_week(),
                &[],
                &default_options(),
            )
            .bundle,
        ),
    ]
}

#[test]
fn every_observation_is_performed_by_the_provider_organization() {
    let bundle = export().bundle;
    let orgs: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Organization")
        .collect();
    assert_eq!(orgs.len(), 1);
    let org = &orgs[0]["resource"];
    assert_eq!(org["name"], "Zorg op afstand NV");
    assert_eq!(org["identifier"][0]["value"], "0123456749");
    for o in observations(&bundle) {
        assert_eq!(
            o["performer"],
            json!([{"reference": orgs[0]["fullUrl"], "display": "Zorg op afstand NV"}]),
            "{o}"
        );
    }
    // The default organisation when none is configured.
    let plain = export_bundle(
        &fixtures::session(),
        &fixtures::heart_failure_week(),
        &[],
        &default_options(),
    );
    let org = &plain.bundle["entry"][0]["resource"];
    assert_eq!(org["resourceType"], "Organization");
    assert_eq!(org["name"], "Telemonitoring provider");
}

#[test]
fn values_the_report_flags_carry_interpretation_and_every_ranged_value_its_range() {
    let readings = fixtures::heart_failure_week();
    let opts = options();
    let bundle = export_bundle(&fixtures::session(), &readings, &[], &opts).bundle;
    // Every Observation or BP component that has a value of a ranged code.
    let mut assessed: Vec<&Value> = Vec::new();
    for o in observations(&bundle) {
        match o["component"].as_array() {
            Some(cs) if o["valueQuantity"].is_null() => assessed.extend(cs.iter()),
            _ => assessed.push(o),
        }
    }
    let flagged: Vec<&&Value> = assessed
        .iter()
        .filter(|v| v.get("interpretation").is_some())
        .collect();
    // The report's flags: every charted cell the ranges mark.
    let report = overview(&readings, &opts.ranges);
    let marked = report
        .rows
        .iter()
        .filter(|r| r.time_quality != TimeQuality::DeviceUnsetUntrusted)
        .flat_map(|r| &r.cells)
        .filter(|c| c.flag != Flag::Normal)
        .count();
    assert_eq!(flagged.len(), marked, "the EHR gets the report's flags");
    assert!(marked >= 10, "{marked}");
    for v in &flagged {
        let coding = &v["interpretation"][0]["coding"][0];
        assert_eq!(coding["system"], INTERPRETATION);
        assert!(
            ["H", "L"].contains(&coding["code"].as_str().unwrap()),
            "{v}"
        );
        assert!(v.get("referenceRange").is_some(), "{v}");
    }
    // Day 6: 152/95 mmHg, both above their ranges.
    let panel = observation_with(&bundle, "85354-9")
        .into_iter()
        .find(|o| o["component"][0]["valueQuantity"]["value"] == json!(152))
        .unwrap();
    let systolic = &panel["component"][0];
    assert_eq!(systolic["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(systolic["referenceRange"][0]["low"]["value"], json!(90));
    assert_eq!(systolic["referenceRange"][0]["high"]["value"], json!(140));
    assert_eq!(systolic["referenceRange"][0]["high"]["code"], "mm[Hg]");
    assert_eq!(
        panel["component"][1]["interpretation"][0]["coding"][0]["code"],
        "H"
    );
    assert!(
        panel.get("interpretation").is_none(),
        "flags are per component"
    );
    // SpO2 91 %: low, against a range with no upper bound.
    let low = observation_with(&bundle, "2708-6")
        .into_iter()
        .find(|o| o["valueQuantity"]["value"] == json!(91))
        .unwrap();
    assert_eq!(low["interpretation"][0]["coding"][0]["code"], "L");
    assert!(low["referenceRange"][0].get("high").is_none());
    // Weight has no absolute range: neither element.
    for w in observation_with(&bundle, "29463-7") {
        assert!(w.get("referenceRange").is_none() && w.get("interpretation").is_none());
    }
}

#[test]
fn cuff_status_flags_are_components_of_the_panel_and_of_its_pulse() {
    let reading = flagged_cuff_reading();
    assert_eq!(reading.flags, ["cuff-fit-loose", "irregular-pulse"]);
    let bundle = export_bundle(&fixtures::session(), &[reading], &[], &default_options()).bundle;
    let obs = observations(&bundle);
    assert_eq!(obs.len(), 2, "the panel and the pulse");
    for o in obs {
        let status: Vec<&Value> = o["component"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["code"]["coding"][0]["system"] == ASN1_TO_HL7)
            .collect();
        let codes: Vec<(&str, &str)> = status
            .iter()
            .map(|c| {
                (
                    c["code"]["coding"][0]["code"].as_str().unwrap(),
                    c["code"]["text"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            codes,
            [
                ("8410608.1", "cuff-fit-loose"),
                ("8410608.2", "irregular-pulse")
            ],
            "{o}"
        );
        for c in status {
            assert_eq!(
                c["valueCodeableConcept"],
                json!({"coding": [{"system": YES_NO, "code": "Y", "display": "Yes"}]})
            );
        }
    }
    let panel = observation_with(&bundle, "85354-9")[0];
    assert_eq!(panel["component"][0]["code"]["coding"][0]["code"], "8480-6");
    assert_eq!(
        panel["component"].as_array().unwrap().len(),
        5,
        "3 pressures, 2 flags"
    );
}

#[test]
fn every_observation_states_its_time_source_and_when_it_was_issued() {
    let mut readings = fixtures::heart_failure_week();
    readings.push(flagged_cuff_reading());
    let bundle = export_bundle(&fixtures::session(), &readings, &[], &options()).bundle;
    for o in observations(&bundle) {
        let tags = o["meta"]["tag"].as_array().unwrap();
        assert_eq!(tags.len(), 1, "{o}");
        assert_eq!(tags[0]["system"], TIME_SOURCE_SYSTEM);
        let reading = readings
            .iter()
            .find(|r| {
                o["identifier"][0]["value"]
                    .as_str()
                    .unwrap()
                    .starts_with(r.reading_id.as_str())
            })
            .unwrap();
        let quality = serde_json::to_value(reading.time_quality).unwrap();
        assert_eq!(tags[0]["code"], quality, "{o}");
        let issued = chrono::DateTime::parse_from_rfc3339(o["issued"].as_str().unwrap()).unwrap();
        assert_eq!(
            issued, reading.received_at,
            "issued is the gateway's receive time"
        );
        assert!(o["issued"].as_str().unwrap().ends_with('Z'));
    }
    // The glucose meter's synced clock, and the receive times of devices without one.
    let glucose = &observation_with(&bundle, "41653-7")[0];
    assert_eq!(glucose["meta"]["tag"][0]["code"], "device-synced");
    assert_eq!(glucose["effectiveDateTime"], "2026-05-04T08:31:30+02:00");
    let weight = &observation_with(&bundle, "29463-7")[0];
    assert_eq!(weight["meta"]["tag"][0]["code"], "no-device-time");
    assert!(
        weight["meta"]["tag"][0]["display"]
            .as_str()
            .unwrap()
            .contains("receive time")
    );
    // Sub-second times keep their milliseconds.
    let flagged = observation_with(&bundle, "85354-9")
        .into_iter()
        .find(|o| o["effectiveDateTime"] == "2026-05-09T07:30:00.250+02:00")
        .expect("the millisecond time");
    assert_eq!(flagged["issued"], "2026-05-09T05:30:03.250Z");
}

#[test]
fn integral_device_values_are_written_as_integers() {
    let text = String::from_utf8(export().to_bytes()).unwrap();
    assert!(text.contains(r#""value":128}"#), "systolic 128 mmHg");
    assert!(
        text.contains(r#""value":78.4}"#),
        "weight keeps its decimal"
    );
    assert!(
        text.contains(r#""value":36.4}"#),
        "temperature keeps its decimal"
    );
    // No number anywhere claims a tenth it does not have.
    fn check(v: &Value, path: &str) {
        match v {
            Value::Number(n) => assert!(
                !(n.is_f64() && n.as_f64().unwrap().fract() == 0.0),
                "{path} = {n} is written with a trailing zero"
            ),
            Value::Array(a) => a.iter().for_each(|v| check(v, path)),
            Value::Object(m) => m.iter().for_each(|(k, v)| check(v, &format!("{path}.{k}"))),
            _ => {}
        }
    }
    let reparsed: Value = serde_json::from_str(&text).unwrap();
    check(&reparsed, "Bundle");
}

#[test]
fn the_heart_failure_bundle_carries_only_its_carepath_by_default() {
    let ctx = fixtures::session();
    assert_eq!(ctx.carepath, Carepath::heart_failure());
    let export = export_bundle(
        &ctx,
        &fixtures::heart_failure_week(),
        &[],
        &default_options(),
    );
    let bundle = &export.bundle;
    let obs = observations(bundle);
    // 8 BP panels, 8 weights, 16 heart rates (cuff and oximeter pulse).
    assert_eq!(obs.len(), 32);
    assert_eq!(export.observations, 32);
    let codes: std::collections::BTreeSet<&str> = obs
        .iter()
        .map(|o| o["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["29463-7", "85354-9", "8867-4"].into());
    let text = String::from_utf8(export.to_bytes()).unwrap();
    for left_out in [
        "2708-6",
        "8310-5",
        "41653-7",
        "2339-0",
        "UT-201BLE",
        "Accu-Chek",
    ] {
        assert!(!text.contains(left_out), "{left_out} in the default Bundle");
    }
    // The oximeter stays: its pulse is a heart rate.
    let devices: Vec<&Value> = resources(bundle)
        .into_iter()
        .filter(|r| r["resourceType"] == "Device")
        .collect();
    assert_eq!(devices.len(), 3, "cuff, scale, oximeter");
    let outside: Vec<&str> = export
        .not_charted
        .iter()
        .filter(|n| n.reason == NotChartedReason::OutsideCarepath)
        .map(|n| n.code.as_str())
        .collect();
    // 8 SpO2, 2 temperatures, 1 glucose: reported, so the PDF can still show them.
    assert_eq!(outside.len(), 11, "{outside:?}");
    assert!(
        outside.contains(&"2708-6") && outside.contains(&"8310-5") && outside.contains(&"2339-0")
    );
}

#[test]
fn glucose_codes_follow_the_meters_unit_and_control_solution_is_left_out() {
    let readings = glucose_readings();
    let export = export_bundle(&fixtures::session(), &readings, &[], &options());
    let obs = observations(&export.bundle);
    assert_eq!(
        obs.len(),
        1,
        "the control-solution test is not the patient's"
    );
    assert_eq!(obs[0]["code"]["coding"][0]["code"], "14743-9");
    assert_eq!(
        obs[0]["code"]["coding"][0]["display"],
        "Glucose [Moles/volume] in Capillary blood by Glucometer"
    );
    assert_eq!(obs[0]["valueQuantity"]["value"], json!(5.1));
    assert_eq!(obs[0]["valueQuantity"]["code"], "mmol/L");
    assert_eq!(obs[0]["referenceRange"][0]["low"]["value"], json!(3.9));
    assert_eq!(obs[0]["referenceRange"][0]["high"]["value"], json!(10));
    assert!(
        export
            .not_charted
            .iter()
            .any(|n| n.reason == NotChartedReason::ControlSolution
                && n.reading_id == readings[1].reading_id)
    );
}

#[test]
fn a_carepath_without_home_vital_signs_gives_a_bundle_without_entries() {
    let (_, empty) = more_bundles().pop().unwrap();
    assert_eq!(empty["resourceType"], "Bundle");
    assert!(
        empty.get("entry").is_none(),
        "no empty array in FHIR JSON: {empty}"
    );
}
