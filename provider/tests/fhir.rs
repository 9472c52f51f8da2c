//! The FHIR attachment: golden Bundle, the IG examples' shapes, stability across updates, and
//! the independent validator (Medplum, `tests/fhir-validate/`). What the Observations carry
//! beyond the IG examples (performer, ranges, status flags, time source, scope) is checked in
//! `fhir/content.rs`.

#[path = "fhir/content.rs"]
mod content;
mod fixtures;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tm_protocol::ReadingKind;
use tm_provider::outputs::fhir::performer::OrganizationIdentifier;
use tm_provider::outputs::fhir::{
    FhirExport, FhirOptions, Measurement, NotChartedReason, Organization, export_bundle,
    rules::PATIENT_IDENTIFIER_SYSTEM,
};

/// The defaults: the heart-failure carepath's measurements only, the default organisation.
fn default_options() -> FhirOptions {
    FhirOptions::for_public_url("https://provider.example.org")
}

/// The golden week's options: every measurement of the fixtures (SpO2, temperature and glucose
/// as configured extras), and a configured organisation.
fn options() -> FhirOptions {
    FhirOptions {
        extra_measurements: BTreeSet::from([
            Measurement::Spo2,
            Measurement::BodyTemperature,
            Measurement::Glucose,
        ]),
        organization: Organization {
            name: "Zorg op afstand NV".into(),
            identifier: Some(OrganizationIdentifier {
                system: "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe".into(),
                value: "0123456749".into(),
            }),
        },
        ..default_options()
    }
}

fn export() -> FhirExport {
    export_bundle(
        &fixtures::session(),
        &fixtures::heart_failure_week(),
        &fixtures::symptom_week(),
        &options(),
    )
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn resources(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect()
}

/// The Observations of device readings (each names its device).
fn observations(bundle: &Value) -> Vec<&Value> {
    resources(bundle)
        .into_iter()
        .filter(|r| r["resourceType"] == "Observation" && r.get("device").is_some())
        .collect()
}

/// The Observations of the patient's symptom answers.
fn answers(bundle: &Value) -> Vec<&Value> {
    resources(bundle)
        .into_iter()
        .filter(|r| r["resourceType"] == "Observation" && r.get("valueCodeableConcept").is_some())
        .collect()
}

/// The bundle is byte-for-byte the reviewed golden file (`UPDATE_GOLDEN=1` rewrites it).
#[test]
fn bundle_matches_the_golden_file() {
    let text = serde_json::to_string_pretty(&export().bundle).unwrap() + "\n";
    let path = golden_dir().join("heart-failure-bundle.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text, golden,
        "the Bundle differs from {path:?}; review and re-run with UPDATE_GOLDEN=1"
    );
}

/// Every Device names its Bluetooth address as the PHD IG does (EUI-48, BTMAC), its serial
/// number when the device reported one, and its 11073 device specialization.
#[test]
fn every_device_has_its_address_serial_and_type() {
    let bundle = export().bundle;
    let devices: Vec<&Value> = resources(&bundle)
        .into_iter()
        .filter(|r| r["resourceType"] == "Device")
        .collect();
    assert!(devices.len() >= 3, "{devices:?}");
    for d in devices {
        let ids = d["identifier"].as_array().unwrap();
        let address = ids
            .iter()
            .find(|i| i["system"] == "http://hl7.org/fhir/sid/eui-48/bluetooth")
            .unwrap_or_else(|| panic!("no Bluetooth address: {d}"));
        assert_eq!(address["type"]["coding"][0]["code"], "BTMAC");
        let value = address["value"].as_str().unwrap();
        assert_eq!(value.len(), 17, "{value}");
        assert!(
            value.split('-').all(|p| p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())),
            "{value}"
        );
        if let Some(serial) = d["serialNumber"].as_str() {
            assert!(
                ids.iter()
                    .any(|i| i["value"] == serial && i["type"]["coding"][0]["code"] == "SNO"),
                "{d}"
            );
        }
        let coding = &d["type"]["coding"][0];
        assert_eq!(coding["system"], "urn:iso:std:iso:11073:10101", "{d}");
        let specializations = [
            "528388", "528391", "528392", "528399", "528401", "528404", "528525",
        ];
        assert!(
            specializations.contains(&coding["code"].as_str().unwrap()),
            "{d}"
        );
    }
}

/// Reduces an Observation to what the IG fixes: drops identity, device and performer, what the
/// IG examples do not have (`issued`, ranges and interpretation, the time-source tag; checked in
/// `fhir/content.rs`), and blanks the measured values, the time and the patient.
fn shape(obs: &Value) -> Value {
    let mut o = obs.clone();
    let m = o.as_object_mut().unwrap();
    for key in [
        "id",
        "identifier",
        "device",
        "contained",
        "performer",
        "text",
        "issued",
        "interpretation",
        "referenceRange",
    ] {
        m.remove(key);
    }
    if let Some(meta) = m.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("tag");
    }
    for key in ["effectiveDateTime", "effectivePeriod"] {
        if m.remove(key).is_some() {
            m.insert("effective".into(), json!("T"));
        }
    }
    m["subject"]["identifier"]["value"] = json!("P");
    if let Some(q) = m.get_mut("valueQuantity") {
        q["value"] = json!(0);
    }
    if let Some(Value::Array(cs)) = m.get_mut("component") {
        for c in cs {
            c["valueQuantity"]["value"] = json!(0);
            let c = c.as_object_mut().unwrap();
            c.remove("interpretation");
            c.remove("referenceRange");
        }
    }
    o
}

#[test]
fn every_observation_has_the_shape_of_the_ig_example_of_its_profile() {
    let export = export();
    let ours = observations(&export.bundle);
    let mut compared = 0;
    for entry in std::fs::read_dir(golden_dir().join("ig")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let example: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let profile = &example["meta"]["profile"][0];
        let mine: Vec<_> = ours
            .iter()
            .filter(|o| &o["meta"]["profile"][0] == profile)
            .collect();
        assert!(!mine.is_empty(), "no Observation on {profile}");
        for obs in mine {
            let mut got = shape(obs);
            // The cuff's mean arterial pressure is an extra BP component the profile allows.
            if let Some(Value::Array(cs)) = got.get_mut("component") {
                let extra = cs.split_off(2);
                assert!(
                    extra
                        .iter()
                        .all(|c| c["code"]["coding"][0]["code"] == "8478-0")
                );
            }
            assert_eq!(got, shape(&example), "{path:?}");
            compared += 1;
        }
    }
    // 8 BP panels, 8 weights, 16 heart rates (cuff + oximeter), 8 SpO2, 2 temperatures.
    assert_eq!(compared, 42);
}

#[test]
fn subject_time_device_and_identifiers() {
    let export = export();
    let bundle = &export.bundle;
    assert_eq!(bundle["type"], "collection");
    // The last check-in (08:00 CEST) came after the last reading.
    assert_eq!(bundle["timestamp"], "2026-05-08T06:00:00Z");
    let full_urls: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap())
        .collect();
    let devices: Vec<_> = resources(bundle)
        .into_iter()
        .filter(|r| r["resourceType"] == "Device")
        .collect();
    // Cuff, scale, oximeter, thermometer, glucose meter.
    assert_eq!(devices.len(), 5);
    assert_eq!(
        bundle["entry"][0]["resource"]["resourceType"],
        "Organization"
    );
    let cuff = devices
        .iter()
        .find(|d| d["modelNumber"] == "BP7150")
        .unwrap();
    assert_eq!(cuff["manufacturer"], "OMRON HEALTHCARE");
    assert_eq!(cuff["serialNumber"], "20260412-0042");
    let obs = observations(bundle);
    assert_eq!(obs.len(), 43, "42 vital signs and one glucose");
    assert_eq!(answers(bundle).len(), 25, "the week's symptom answers");
    assert_eq!(export.observations, 43 + 25);
    for o in &obs {
        assert_eq!(o["status"], "final");
        assert_eq!(
            o["subject"],
            json!({"identifier": {"system": PATIENT_IDENTIFIER_SYSTEM, "value": "EFD5E060-9522-48BE-9ECC-3BFA54EA3666"}})
        );
        let t = o["effectiveDateTime"].as_str().unwrap();
        assert!(t.ends_with("+02:00"), "{t}");
        let device = o["device"]["reference"].as_str().unwrap();
        assert!(full_urls.contains(&device), "dangling device reference");
        let ident = &o["identifier"][0];
        assert_eq!(ident["system"], "https://provider.example.org/fhir/reading");
        assert_eq!(
            o["id"]
                .as_str()
                .map(|id| format!("urn:uuid:{id}"))
                .as_deref(),
            full_urls
                .iter()
                .copied()
                .find(|u| u.ends_with(o["id"].as_str().unwrap()))
        );
    }
    // The meter's capillary sample: the glucometer's LOINC code, in the meter's mg/dL.
    let glucose = obs
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "41653-7")
        .unwrap();
    assert_eq!(
        glucose["code"]["coding"][0]["display"],
        "Glucose [Mass/volume] in Capillary blood by Glucometer"
    );
    assert_eq!(glucose["valueQuantity"]["value"], json!(92));
    assert_eq!(glucose["valueQuantity"]["code"], "mg/dL");
    assert_eq!(glucose["category"][0]["coding"][0]["code"], "laboratory");
    assert_eq!(glucose["effectiveDateTime"], "2026-05-04T08:31:30+02:00");
}

#[test]
fn what_is_not_charted_is_reported_with_its_reason() {
    let export = export();
    let reasons: Vec<_> = export.not_charted.iter().map(|n| &n.reason).collect();
    assert_eq!(export.not_charted.len(), 3, "{:?}", export.not_charted);
    assert!(reasons.contains(&&NotChartedReason::UntrustedTime));
    assert!(reasons.contains(&&NotChartedReason::NotAMeasurement(
        ReadingKind::CuffPressure
    )));
    assert!(reasons.contains(&&NotChartedReason::NotAMeasurement(
        ReadingKind::Unrecognized
    )));
    let text = String::from_utf8(export.to_bytes()).unwrap();
    let untrusted = export
        .not_charted
        .iter()
        .find(|n| n.reason == NotChartedReason::UntrustedTime)
        .unwrap();
    assert!(!text.contains(untrusted.reading_id.as_str()));
}

#[test]
fn ids_are_stable_across_updates_and_input_order() {
    let ctx = fixtures::session();
    let mut readings = fixtures::heart_failure_week();
    let all = export_bundle(&ctx, &readings, &[], &options());
    readings.reverse();
    assert_eq!(
        export_bundle(&ctx, &readings, &[], &options()).to_bytes(),
        all.to_bytes(),
        "input order must not change the bytes"
    );
    // An earlier update, with only the first three days: every Observation it had keeps its id,
    // fullUrl and identifier in the later one.
    readings.reverse();
    let early: Vec<_> = readings
        .iter()
        .filter(|r| r.effective_time < fixtures::session().period.start + chrono::Duration::days(3))
        .cloned()
        .collect();
    let before = export_bundle(&ctx, &early, &[], &options());
    let later: Vec<_> = all.bundle["entry"].as_array().unwrap().clone();
    let earlier = before.bundle["entry"].as_array().unwrap();
    assert!(earlier.len() > 5 && earlier.len() < later.len());
    for e in earlier {
        assert!(later.contains(e), "changed between updates: {e}");
    }
    assert_eq!(before.bundle["id"], all.bundle["id"]);
}

fn validator_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir-validate")
}

/// Runs the validator on `files`; returns (success, output).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let dir = validator_dir();
    if !dir.join("node_modules/@medplum/core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the FHIR validator (scripts/test installs it)");
        assert!(status.success(), "npm ci in {dir:?} failed");
    }
    let out = Command::new("node")
        .arg(dir.join("validate.mjs"))
        .args(files)
        .output()
        .expect("node is needed for the FHIR validator (scripts/test installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_independent_validator_accepts_every_bundle_and_catches_a_broken_one() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("bundle.json");
    let export = export();
    std::fs::write(&good, export.to_bytes()).unwrap();
    // The heart-failure default, status flags and glucose codes, a Bundle with no entry.
    let mut files = vec![good];
    for (name, bundle) in content::more_bundles() {
        let path = tmp.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();
        files.push(path);
    }

    // The same bundle with three faults the profiles forbid.
    let mut bad = export.bundle.clone();
    let entries = bad["entry"].as_array_mut().unwrap();
    let weight = entries
        .iter_mut()
        .find(|e| e["resource"]["code"]["coding"][0]["code"] == "29463-7")
        .unwrap();
    weight["resource"]
        .as_object_mut()
        .unwrap()
        .remove("category");
    weight["resource"]["valueQuantity"]["value"] = json!("78.4");
    weight["resource"]["unexpected"] = json!(true);
    let bad_path = tmp.path().join("broken.json");
    std::fs::write(&bad_path, serde_json::to_vec(&bad).unwrap()).unwrap();

    let (ok, output) = validate(&files);
    assert!(ok, "validator rejected a bundle:\n{output}");
    assert!(output.contains("\"errors\":0"), "{output}");
    let (ok, output) = validate(&[bad_path]);
    assert!(!ok, "validator accepted a broken bundle:\n{output}");
    for fault in ["category", "expected number", "unexpected"] {
        assert!(output.contains(fault), "{fault} not reported:\n{output}");
    }
}

/// The week's symptom answers are Observations coded with the IG's ValueSets, in the shape of
/// its symptom example, performed by the patient.
#[test]
fn symptoms_are_coded_with_the_igs_value_sets_and_performed_by_the_patient() {
    use tm_provider::symptom::codes::{BELGIAN_EDITION, HEART_FAILURE_SYMPTOMS, SNOMED, Severity};
    let export = export();
    let answers = answers(&export.bundle);
    let path = golden_dir().join("ig/symptom/ReducedAppetiteExample.json");
    let example: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let shape = |o: &Value| {
        json!({
            "status": o["status"],
            "code": o["code"]["coding"][0]["system"],
            "value": o["valueCodeableConcept"]["coding"][0]["system"],
            "subject": o["subject"]["identifier"]["system"],
            "period": [o["effectivePeriod"]["start"].is_string(), o["effectivePeriod"]["end"].is_string()],
        })
    };
    let patient = json!({"system": PATIENT_IDENTIFIER_SYSTEM, "value": "EFD5E060-9522-48BE-9ECC-3BFA54EA3666"});
    let mut severities = std::collections::BTreeMap::new();
    for o in &answers {
        assert_eq!(shape(o), shape(&example), "{o}");
        let code = &o["code"]["coding"][0];
        let symptom = HEART_FAILURE_SYMPTOMS
            .iter()
            .find(|s| code["code"] == s.code)
            .unwrap_or_else(|| panic!("not in heart-failure-symptoms: {code}"));
        assert_eq!(code["display"], symptom.display);
        assert_eq!(code["system"], SNOMED);
        assert_eq!(code.get("version").and_then(Value::as_str), symptom.edition);
        let value = &o["valueCodeableConcept"]["coding"][0];
        let severity = Severity::ALL
            .into_iter()
            .find(|s| value["code"] == s.code())
            .unwrap_or_else(|| panic!("not in symptom-severity: {value}"));
        assert_eq!(value["display"], severity.display());
        *severities.entry(severity).or_insert(0) += 1;
        assert_eq!(
            o["performer"],
            json!([{"type": "Patient", "identifier": patient}])
        );
        assert_eq!(o["category"][0]["coding"][0]["code"], "survey");
        assert_eq!(
            o["identifier"][0]["system"],
            "https://provider.example.org/fhir/reading"
        );
        let (start, end) = (&o["effectivePeriod"]["start"], &o["effectivePeriod"]["end"]);
        assert!(start.as_str().unwrap() < end.as_str().unwrap());
        assert!(end.as_str().unwrap().ends_with(":00:00+02:00"), "{end}");
    }
    // Every severity of the fixture, the Belgian extension's cough among the symptoms.
    assert_eq!(severities.len(), 4, "{severities:?}");
    let cough = answers
        .iter()
        .find(|o| o["code"]["coding"][0]["version"] == BELGIAN_EDITION)
        .expect("the Belgian extension's cough");
    // Also as the IG's ValueSet includes it: the edition URI as the system.
    assert_eq!(
        cough["code"]["coding"][1],
        json!({"system": BELGIAN_EDITION, "code": "901000172101", "display": "Tickly cough"})
    );
    for o in &answers {
        let codings = o["code"]["coding"].as_array().unwrap().len();
        assert_eq!(codings, if o == cough { 2 } else { 1 }, "{o}");
    }
    // Answers only: no device, no Organization for them.
    let only = export_bundle(
        &fixtures::session(),
        &[],
        &fixtures::symptom_week(),
        &options(),
    );
    let kinds: Vec<&Value> = resources(&only.bundle)
        .iter()
        .map(|r| &r["resourceType"])
        .collect();
    assert_eq!(kinds.len(), 25);
    assert!(kinds.iter().all(|k| *k == "Observation"));
    assert_eq!(only.bundle["timestamp"], "2026-05-08T06:00:00Z");
}
