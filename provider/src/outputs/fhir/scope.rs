//! What a carepath's Bundle carries: the measurements its carepath defines, plus the extra
//! kinds the configuration names (`[attachments] extra_measurements`, docs/fhir.md §4.1).
//!
//! The heart-failure carepath of the patient-monitoring IG monitors heart rate, blood pressure
//! and body weight; its Bundle holds those and nothing else unless the operator adds a kind.
//! The PDF report and the dashboard are not limited by this: they show every reading.

use std::collections::BTreeSet;

use serde::Deserialize;

/// A kind of measurement the Bundle can carry, as named in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measurement {
    /// Body weight (`bodyweight`).
    BodyWeight,
    /// The blood-pressure panel (`bp`).
    BloodPressure,
    /// Heart rate, from any device (`heartrate`).
    HeartRate,
    /// Oxygen saturation (`oxygensat`).
    Spo2,
    /// Body temperature (`bodytemp`).
    BodyTemperature,
    /// Blood glucose from a meter.
    Glucose,
    /// Body mass index, as a scale reports it (`bmi`).
    Bmi,
    /// Body height, as a scale reports it (`bodyheight`).
    BodyHeight,
}

impl Measurement {
    /// The name the configuration uses (`spo2`, `body-temperature`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Measurement::BodyWeight => "body-weight",
            Measurement::BloodPressure => "blood-pressure",
            Measurement::HeartRate => "heart-rate",
            Measurement::Spo2 => "spo2",
            Measurement::BodyTemperature => "body-temperature",
            Measurement::Glucose => "glucose",
            Measurement::Bmi => "bmi",
            Measurement::BodyHeight => "body-height",
        }
    }
}

/// The carepaths whose monitored vital signs the IG lists (`heartfailure.md`,
/// `perioperative-abdominal.md`). The guide defines no home vital sign for the other carepaths
/// (Holter monitoring, CIED, CPAP): their Bundle holds only the configured extra kinds.
const CAREPATH_MEASUREMENTS: &[(&str, &[Measurement])] = &[
    (
        "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure",
        &[
            Measurement::HeartRate,
            Measurement::BloodPressure,
            Measurement::BodyWeight,
        ],
    ),
    (
        "https://hl7belgium.org/fhir/patient-monitoring/carepath/perioperative-abdominal",
        &[
            Measurement::BloodPressure,
            Measurement::HeartRate,
            Measurement::Spo2,
            Measurement::BodyTemperature,
        ],
    ),
];

/// The measurements the carepath `carepath_id` defines (empty for a carepath without home
/// vital signs, or one the provider does not know).
pub fn carepath_measurements(carepath_id: &str) -> &'static [Measurement] {
    CAREPATH_MEASUREMENTS
        .iter()
        .find(|(id, _)| *id == carepath_id)
        .map_or(&[], |(_, m)| m)
}

/// What a session's Bundle carries: its carepath's measurements and the configured extras.
pub fn in_scope(carepath_id: &str, extra: &BTreeSet<Measurement>) -> BTreeSet<Measurement> {
    carepath_measurements(carepath_id)
        .iter()
        .chain(extra)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::Carepath;

    #[test]
    fn heart_failure_is_heart_rate_blood_pressure_and_weight() {
        let hf = Carepath::heart_failure().id;
        assert_eq!(
            in_scope(&hf, &BTreeSet::new()),
            BTreeSet::from([
                Measurement::BodyWeight,
                Measurement::BloodPressure,
                Measurement::HeartRate
            ])
        );
        let with_spo2 = in_scope(&hf, &BTreeSet::from([Measurement::Spo2]));
        assert!(with_spo2.contains(&Measurement::Spo2));
        assert!(carepath_measurements("urn:unknown").is_empty());
        // The carepath ids are the HUB's, as the enrollment page offers them.
        for (id, _) in CAREPATH_MEASUREMENTS {
            assert!(
                crate::hub::contract::CAREPATHS.iter().any(|c| c.id == *id),
                "{id}"
            );
        }
    }

    #[test]
    fn kinds_are_named_in_kebab_case_and_unknown_names_are_refused() {
        #[derive(Deserialize)]
        struct List {
            kinds: Vec<Measurement>,
        }
        let l: List = toml::from_str("kinds = [\"spo2\", \"body-temperature\", \"glucose\"]")
            .expect("known kinds");
        assert_eq!(
            l.kinds,
            [
                Measurement::Spo2,
                Measurement::BodyTemperature,
                Measurement::Glucose
            ]
        );
        for m in [
            Measurement::BodyWeight,
            Measurement::BloodPressure,
            Measurement::HeartRate,
            Measurement::Spo2,
            Measurement::BodyTemperature,
            Measurement::Glucose,
            Measurement::Bmi,
            Measurement::BodyHeight,
        ] {
            let l: List = toml::from_str(&format!("kinds = [\"{}\"]", m.name())).unwrap();
            assert_eq!(l.kinds, [m]);
        }
        let err = toml::from_str::<List>("kinds = [\"oxygen\"]")
            .err()
            .expect("unknown kind");
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
