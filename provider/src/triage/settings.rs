//! `[triage]`: which rules judge whose readings. Rules are set per carepath (by its URI) and
//! may be overridden per patient (by the Portal's pseudonymous patient id), field by field;
//! without the section the heart-failure carepath gets [`Rules::heart_failure`] and other
//! carepaths no rules.
//!
//! ```toml
//! [triage]
//! token_file = "/etc/tm-provider/clinical-token"
//! interval_s = 60
//! [triage.carepaths."https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure"]
//! weight_gain = { kg = 2.0, days = 3 }
//! overnight_gain_kg = 1.0
//! systolic = { low = 90, high = 140 }
//! heart_rate = { low = 50, high = 100 }
//! irregular_pulse = { count = 2, days = 7 }
//! severe_symptom = true
//! [triage.patients."PSEUDO-0042"]
//! systolic = { low = 100, high = 160 }
//! off = ["irregular-pulse-repeated"]
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use tm_protocol::config_file::ConfigError;

use super::rules::{Repeated, RuleKind, Rules, WeightGain};
use crate::normal_range::Range;

/// The heart-failure carepath's URI (the IG's HUB identifier).
pub const HEART_FAILURE: &str =
    "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure";

/// The `[triage]` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriageSection {
    /// File holding the clinical worklist's token (bearer token, or the password of basic
    /// auth, the user name recorded as the nurse who acted), read once at start and trimmed.
    /// Without it the worklist answers 404; the rules still run.
    pub token_file: Option<std::path::PathBuf>,
    /// Seconds between two triage sweeps over new readings (positive; default 60).
    pub interval_s: u64,
    /// Rules per carepath URI; a carepath listed here replaces its defaults entirely.
    pub carepaths: BTreeMap<String, RulesSection>,
    /// Overrides per patient id, over their carepath's rules.
    pub patients: BTreeMap<String, RulesSection>,
}

impl Default for TriageSection {
    fn default() -> Self {
        Self {
            token_file: None,
            interval_s: 60,
            carepaths: BTreeMap::new(),
            patients: BTreeMap::new(),
        }
    }
}

/// A rule set as written: every field optional, `off` names rules switched off.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSection {
    /// Weight gain within days.
    pub weight_gain: Option<WeightGainSection>,
    /// Kilograms since the day before.
    pub overnight_gain_kg: Option<f64>,
    /// Systolic range, mmHg.
    pub systolic: Option<Range>,
    /// Heart-rate range, /min.
    pub heart_rate: Option<Range>,
    /// Irregular pulse repeated.
    pub irregular_pulse: Option<RepeatedSection>,
    /// A symptom the patient rates severe.
    pub severe_symptom: Option<bool>,
    /// Rules switched off, by name (`weight-gain`, ...).
    #[serde(default)]
    pub off: Vec<String>,
}

/// `{ kg = 2.0, days = 3 }`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightGainSection {
    /// Kilograms (positive).
    pub kg: f64,
    /// Days (1 to 14).
    pub days: u32,
}

/// `{ count = 2, days = 7 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatedSection {
    /// Readings (at least 1).
    pub count: u32,
    /// Days (1 to 31).
    pub days: u32,
}

/// The validated rule sets; built once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Triage {
    /// The worklist's token file.
    pub token_file: Option<std::path::PathBuf>,
    /// Seconds between sweeps.
    pub interval: std::time::Duration,
    carepaths: BTreeMap<String, Rules>,
    patients: BTreeMap<String, RulesSection>,
    context_days: i64,
}

impl Default for Triage {
    fn default() -> Self {
        TriageSection::default()
            .validate()
            .expect("the defaults are valid")
    }
}

impl TriageSection {
    /// Checks every value and builds the rule sets.
    pub fn validate(&self) -> Result<Triage, ConfigError> {
        if self.interval_s == 0 {
            return Err(invalid("triage.interval_s must be positive".into()));
        }
        let mut carepaths = BTreeMap::from([(HEART_FAILURE.to_owned(), Rules::heart_failure())]);
        for (uri, section) in &self.carepaths {
            let where_ = format!("triage.carepaths.\"{uri}\"");
            section.check(&where_)?;
            carepaths.insert(uri.clone(), section.over(&Rules::none()));
        }
        for (patient, section) in &self.patients {
            section.check(&format!("triage.patients.\"{patient}\""))?;
        }
        // The longest context any patient's rules need, on any carepath.
        let context_days = carepaths
            .values()
            .flat_map(|base| {
                std::iter::once(base.clone()).chain(self.patients.values().map(|p| p.over(base)))
            })
            .chain(self.patients.values().map(|p| p.over(&Rules::none())))
            .map(|r| r.context_days())
            .max()
            .unwrap_or(1);
        Ok(Triage {
            token_file: self.token_file.clone(),
            interval: std::time::Duration::from_secs(self.interval_s),
            carepaths,
            patients: self.patients.clone(),
            context_days,
        })
    }
}

impl Triage {
    /// Days of readings before a new one that the rules of any patient need
    /// ([`Rules::context_days`]).
    pub fn context_days(&self) -> i64 {
        self.context_days
    }

    /// The rules for `patient` on `carepath` (its URI); `None` when no rule applies.
    pub fn rules_for(&self, carepath: &str, patient: &str) -> Option<Rules> {
        let base = self
            .carepaths
            .get(carepath)
            .cloned()
            .unwrap_or(Rules::none());
        let rules = match self.patients.get(patient) {
            Some(over) => over.over(&base),
            None => base,
        };
        (rules != Rules::none()).then_some(rules)
    }
}

impl Rules {
    /// Every rule off.
    pub fn none() -> Self {
        Self {
            weight_gain: None,
            overnight_gain_kg: None,
            systolic: None,
            heart_rate: None,
            irregular_pulse: None,
            severe_symptom: false,
        }
    }
}

impl RulesSection {
    fn check(&self, where_: &str) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(invalid(format!("{where_}: {what}")));
        if let Some(g) = self.weight_gain
            && (g.kg.is_nan() || g.kg <= 0.0 || !(1..=14).contains(&g.days))
        {
            return bad("weight_gain needs kg > 0 and days from 1 to 14");
        }
        if let Some(kg) = self.overnight_gain_kg
            && (kg.is_nan() || kg <= 0.0)
        {
            return bad("overnight_gain_kg must be positive");
        }
        for (name, range) in [("systolic", self.systolic), ("heart_rate", self.heart_rate)] {
            if let Some(r) = range {
                if r.low.is_none() && r.high.is_none() {
                    return bad(&format!("{name} needs low or high"));
                }
                if let (Some(l), Some(h)) = (r.low, r.high)
                    && l >= h
                {
                    return bad(&format!("{name}: low must be below high"));
                }
            }
        }
        if let Some(r) = self.irregular_pulse
            && !(r.count >= 1 && (1..=31).contains(&r.days))
        {
            return bad("irregular_pulse needs count >= 1 and days from 1 to 31");
        }
        for name in &self.off {
            if RuleKind::from_name(name).is_none() {
                let known: Vec<&str> = RuleKind::ALL.iter().map(|k| k.name()).collect();
                return bad(&format!(
                    "off: unknown rule {name:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// `base` with this section's fields put over it, then its `off` rules removed.
    fn over(&self, base: &Rules) -> Rules {
        let mut r = base.clone();
        if let Some(g) = self.weight_gain {
            r.weight_gain = Some(WeightGain {
                kg: g.kg,
                days: g.days,
            });
        }
        if let Some(kg) = self.overnight_gain_kg {
            r.overnight_gain_kg = Some(kg);
        }
        if let Some(s) = self.systolic {
            r.systolic = Some(s);
        }
        if let Some(h) = self.heart_rate {
            r.heart_rate = Some(h);
        }
        if let Some(i) = self.irregular_pulse {
            r.irregular_pulse = Some(Repeated {
                count: i.count,
                days: i.days,
            });
        }
        if let Some(on) = self.severe_symptom {
            r.severe_symptom = on;
        }
        for name in &self.off {
            match RuleKind::from_name(name) {
                Some(RuleKind::WeightGain) => r.weight_gain = None,
                Some(RuleKind::OvernightWeightGain) => r.overnight_gain_kg = None,
                Some(RuleKind::SystolicOutOfRange) => r.systolic = None,
                Some(RuleKind::HeartRateOutOfRange) => r.heart_rate = None,
                Some(RuleKind::IrregularPulseRepeated) => r.irregular_pulse = None,
                Some(RuleKind::SevereSymptom) => r.severe_symptom = false,
                None => {}
            }
        }
        r
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Triage, ConfigError> {
        let s: TriageSection = toml::from_str(text).expect("parses");
        s.validate()
    }

    #[test]
    fn heart_failure_has_its_rules_by_default_and_other_carepaths_none() {
        let t = Triage::default();
        assert_eq!(
            t.rules_for(HEART_FAILURE, "P1"),
            Some(Rules::heart_failure())
        );
        assert_eq!(
            t.rules_for("https://example.org/carepath/other", "P1"),
            None
        );
    }

    #[test]
    fn a_patient_overrides_field_by_field_and_switches_rules_off() {
        let t = parse(
            r#"
            [patients.P42]
            systolic = { low = 100, high = 160 }
            off = ["irregular-pulse-repeated"]
            "#,
        )
        .unwrap();
        let r = t.rules_for(HEART_FAILURE, "P42").unwrap();
        assert_eq!(
            r.systolic,
            Some(Range {
                low: Some(100.0),
                high: Some(160.0)
            })
        );
        assert_eq!(r.irregular_pulse, None);
        assert_eq!(r.weight_gain, Rules::heart_failure().weight_gain);
        assert_eq!(
            t.rules_for(HEART_FAILURE, "P7"),
            Some(Rules::heart_failure())
        );
    }

    #[test]
    fn a_configured_carepath_replaces_its_defaults() {
        let t = parse(&format!(
            "[carepaths.\"{HEART_FAILURE}\"]\novernight_gain_kg = 1.5\n"
        ))
        .unwrap();
        let r = t.rules_for(HEART_FAILURE, "P1").unwrap();
        assert_eq!(r.overnight_gain_kg, Some(1.5));
        assert_eq!(r.weight_gain, None);
    }

    #[test]
    fn bad_values_are_refused_with_where_they_are() {
        for (text, needle) in [
            ("interval_s = 0", "interval_s"),
            (
                "[patients.P1]\noff = [\"weight\"]",
                "unknown rule \"weight\"",
            ),
            (
                "[patients.P1]\nsystolic = { low = 150, high = 140 }",
                "triage.patients.\"P1\": systolic: low must be below high",
            ),
            (
                "[patients.P1]\nweight_gain = { kg = 2, days = 0 }",
                "weight_gain",
            ),
            ("[patients.P1]\novernight_gain_kg = -1", "overnight_gain_kg"),
            (
                "[patients.P1]\nheart_rate = {}",
                "heart_rate needs low or high",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
