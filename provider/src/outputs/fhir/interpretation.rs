//! Values against the normal ranges the PDF and the dashboard mark them with
//! ([`crate::outputs::series::Ranges`], `[attachments.ranges]`), so the flags reach the EHR too
//! (docs/fhir.md §4.2).
//!
//! A value with a configured range carries it as `referenceRange` (low and/or high, in the
//! value's unit); a value outside it also carries `interpretation` `H` or `L` of HL7 v3
//! ObservationInterpretation. The range of a device's LOINC code applies to the Observation
//! made from it, even when the Observation is coded more precisely (capillary glucose
//! 41653-7 uses the range of 2339-0). In the BP panel each pressure component carries its own.

use serde_json::{Map, Value, json};

use super::rules::Rule;
use super::values::quantity;
use crate::outputs::series::{Flag, Range, Ranges};

/// HL7 v3 ObservationInterpretation.
pub const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// `interpretation` for `flag`; `None` inside the range.
pub fn interpretation(flag: Flag) -> Option<Value> {
    let (code, display) = match flag {
        Flag::Normal => return None,
        Flag::High => ("H", "High"),
        Flag::Low => ("L", "Low"),
    };
    Some(json!([{"coding": [{"system": INTERPRETATION, "code": code, "display": display}]}]))
}

/// `referenceRange` of `range` in the unit of `rule`; `None` when neither bound is set.
pub fn reference_range(range: Range, rule: &Rule) -> Option<Value> {
    let mut r = Map::new();
    let bound = |v: f64| quantity(v, rule.unit_text, rule.ucum);
    if let Some(low) = range.low {
        r.insert("low".into(), bound(low));
    }
    if let Some(high) = range.high {
        r.insert("high".into(), bound(high));
    }
    (!r.is_empty()).then(|| json!([Value::Object(r)]))
}

/// Adds `referenceRange` and, out of range, `interpretation` to `target` (an Observation or a
/// component) for `value` of the device code `code`.
pub fn assess(
    target: &mut Map<String, Value>,
    ranges: &Ranges,
    code: &str,
    value: f64,
    rule: &Rule,
) {
    let Some(range) = ranges.get(code) else {
        return;
    };
    if let Some(i) = interpretation(ranges.flag(code, value)) {
        target.insert("interpretation".into(), i);
    }
    if let Some(r) = reference_range(range, rule) {
        target.insert("referenceRange".into(), r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::fhir::rules::{SYSTOLIC, single_value_rule};

    #[test]
    fn out_of_range_values_are_flagged_and_every_ranged_value_has_its_range() {
        let ranges = Ranges::heart_failure();
        let mut high = Map::new();
        assess(&mut high, &ranges, "8480-6", 152.0, &SYSTOLIC);
        assert_eq!(high["interpretation"][0]["coding"][0]["code"], "H");
        assert_eq!(
            high["interpretation"][0]["coding"][0]["system"],
            INTERPRETATION
        );
        assert_eq!(
            high["referenceRange"],
            json!([{
                "low": {"value": 90, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
                "high": {"value": 140, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
            }])
        );
        let mut normal = Map::new();
        assess(&mut normal, &ranges, "8480-6", 128.0, &SYSTOLIC);
        assert!(normal.get("interpretation").is_none());
        assert!(normal.get("referenceRange").is_some());

        let spo2 = single_value_rule("2708-6").unwrap();
        let mut low = Map::new();
        assess(&mut low, &ranges, "2708-6", 91.0, spo2);
        assert_eq!(low["interpretation"][0]["coding"][0]["code"], "L");
        assert_eq!(
            low["referenceRange"][0].get("high"),
            None,
            "SpO2 has no upper bound"
        );

        let weight = single_value_rule("29463-7").unwrap();
        let mut none = Map::new();
        assess(&mut none, &ranges, "29463-7", 80.9, weight);
        assert!(none.is_empty(), "weight has no absolute range");
    }
}
