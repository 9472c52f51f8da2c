//! Adherence's records: the measures a carepath schedules daily and, per monitored session, the
//! latest reading time of each, read for the "blue alarm" (the rule itself, in the patient's
//! time zone, is the operations' `ops::adherence`).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A scheduled measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// Body weight.
    BodyWeight,
    /// Blood pressure.
    BloodPressure,
    /// Heart rate (a blood pressure reading's pulse counts).
    HeartRate,
}

impl Measure {
    /// Stable name, used in alert subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BodyWeight => "body-weight",
            Self::BloodPressure => "blood-pressure",
            Self::HeartRate => "heart-rate",
        }
    }

    /// Whether a stored reading (its kind and JSON payload) counts for this measure.
    pub fn satisfied_by(self, kind: &str, payload: &str) -> bool {
        match self {
            Self::BodyWeight => kind == "body-weight",
            Self::BloodPressure => kind == "blood-pressure",
            // LOINC 8867-4: heart rate; blood pressure monitors report the pulse with it.
            Self::HeartRate => {
                kind == "heart-rate" || (kind == "blood-pressure" && payload.contains("\"8867-4\""))
            }
        }
    }
}

/// The heart-failure carepath (docs/fhir.md §3).
pub const HEART_FAILURE: &str =
    "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure";

/// The daily measures a carepath schedules; empty when it schedules none we check.
pub fn schedule(carepath_id: &str) -> &'static [Measure] {
    match carepath_id {
        HEART_FAILURE => &[
            Measure::BodyWeight,
            Measure::BloodPressure,
            Measure::HeartRate,
        ],
        _ => &[],
    }
}

/// One monitored session and the latest reading time of each scheduled measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAdherence {
    /// The session.
    pub telemonitoring_id: String,
    /// Its gateway (the first enrolled), for the alert's context.
    pub gateway_id: Option<String>,
    /// Since when it is monitored (its gateway's enrollment).
    pub monitored_since: DateTime<Utc>,
    /// Scheduled measures with their latest effective time.
    pub latest: Vec<(Measure, Option<DateTime<Utc>>)>,
}
