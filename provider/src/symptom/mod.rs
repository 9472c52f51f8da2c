//! What a patient reports about how they feel: one [`SymptomAnswer`] per symptom answered on
//! the daily check-in page ([`crate::checkin`]), coded with the carepath's ValueSets
//! ([`codes`]).
//!
//! An answer is stored as a row of the session's `readings` table with kind [`KIND`] and the
//! answer's JSON as its payload (no gateway, no batch: the check-in's submission id stands in
//! the batch column). So everything that follows a session's stored rows follows the answers
//! too, without a second watermark: the published snapshot cuts them with the readings, the
//! session updater publishes them, triage judges them. Every loader of those rows tells the
//! two apart by the kind ([`Row`]).
//!
//! An answer's id is derived from the session, the check-in's submission id, the symptom and
//! its severity, so a form sent twice (a double tap, the browser's back button and "send"
//! again) stores each answer once, and an answer changed before sending again is stored as
//! well: nothing the patient sent is lost.

pub mod codes;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use tm_protocol::Reading;

pub use codes::{Severity, Symptom};

/// The `readings.kind` of a stored answer.
pub const KIND: &str = "symptom";

/// The `readings.record_order` of every stored answer. The store's key is (session, record
/// order, id); an answer's times change when the same form is sent again, its id does not, so
/// answers are told apart by their id alone. (A device record's order is what keeps the
/// index's writes local; a session has a few answers a day.)
pub const RECORD_ORDER: i64 = 0;

/// One symptom the patient rated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymptomAnswer {
    /// Stable id (hex SHA-256 of session, submission, symptom and severity): the row's
    /// `reading_id` and the Observation's identifier.
    pub answer_id: String,
    /// Which symptom.
    pub symptom: &'static Symptom,
    /// How bad it was.
    pub severity: Severity,
    /// When the patient opened the check-in page.
    pub start: DateTime<FixedOffset>,
    /// When the patient sent it (the time the answer counts at).
    pub end: DateTime<FixedOffset>,
    /// The check-in it was sent with.
    pub submission: String,
}

impl SymptomAnswer {
    /// The answer to `symptom` in the check-in `submission` of session `telemonitoring_id`.
    pub fn new(
        telemonitoring_id: &str,
        submission: &str,
        symptom: &'static Symptom,
        severity: Severity,
        start: DateTime<FixedOffset>,
        end: DateTime<FixedOffset>,
    ) -> Self {
        let mut input = Vec::new();
        let parts = [
            "tm-symptom-v1",
            telemonitoring_id,
            submission,
            symptom.code,
            severity.code(),
        ];
        for part in parts {
            input.extend_from_slice(part.as_bytes());
            input.push(0);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, &input);
        Self {
            answer_id: hex::encode(digest.as_ref()),
            symptom,
            severity,
            start,
            end,
            submission: submission.to_owned(),
        }
    }

    /// The payload a `readings` row stores.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Wire::from(self)).expect("an answer always serializes")
    }

    /// An answer from its stored payload.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let w: Wire = serde_json::from_str(text)?;
        use serde::de::Error as _;
        let symptom = codes::symptom(&w.symptom)
            .ok_or_else(|| serde_json::Error::custom(format!("unknown symptom {}", w.symptom)))?;
        let severity = Severity::from_code(&w.severity)
            .ok_or_else(|| serde_json::Error::custom(format!("unknown severity {}", w.severity)))?;
        Ok(Self {
            answer_id: w.answer_id,
            symptom,
            severity,
            start: w.start,
            end: w.end,
            submission: w.submission,
        })
    }
}

/// The stored form: codes as text.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    answer_id: String,
    symptom: String,
    severity: String,
    start: DateTime<FixedOffset>,
    end: DateTime<FixedOffset>,
    submission: String,
}

impl From<&SymptomAnswer> for Wire {
    fn from(a: &SymptomAnswer) -> Self {
        Self {
            answer_id: a.answer_id.clone(),
            symptom: a.symptom.code.to_owned(),
            severity: a.severity.code().to_owned(),
            start: a.start,
            end: a.end,
            submission: a.submission.clone(),
        }
    }
}

/// The answers in the order the outputs list them: by time, then symptom (in the ValueSet's
/// order), each answer once.
pub fn sorted_answers(answers: &[SymptomAnswer]) -> Vec<&SymptomAnswer> {
    let rank = |a: &SymptomAnswer| {
        codes::HEART_FAILURE_SYMPTOMS
            .iter()
            .position(|s| s.code == a.symptom.code)
            .unwrap_or(usize::MAX)
    };
    let mut sorted: Vec<&SymptomAnswer> = answers.iter().collect();
    sorted.sort_by(|a, b| (a.end, rank(a), &a.answer_id).cmp(&(b.end, rank(b), &b.answer_id)));
    sorted.dedup_by(|a, b| a.answer_id == b.answer_id);
    sorted
}

/// A session's stored rows, told apart by their kind: device readings and the patient's
/// answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Device readings, in the order read.
    pub readings: Vec<Reading>,
    /// Symptom answers, in the order read.
    pub symptoms: Vec<SymptomAnswer>,
    /// Rows whose payload did not decode.
    pub undecodable: usize,
}

/// One decoded row.
#[derive(Debug)]
pub enum Row {
    /// A device reading.
    Reading(Box<Reading>),
    /// A symptom answer.
    Symptom(SymptomAnswer),
}

impl Row {
    /// The row of `kind` with `payload`.
    pub fn decode(kind: &str, payload: &str) -> Result<Self, serde_json::Error> {
        if kind == KIND {
            SymptomAnswer::from_json(payload).map(Row::Symptom)
        } else {
            serde_json::from_str(payload).map(|r| Row::Reading(Box::new(r)))
        }
    }

    /// The row whose payload is `payload`, told by its shape where the kind is not at hand
    /// (a PostgreSQL column decoder sees one column): the two shapes are disjoint, since an
    /// answer's JSON has exactly an answer's fields and never a reading's `reading_id`.
    pub fn from_payload(payload: &str) -> Result<Self, serde_json::Error> {
        match SymptomAnswer::from_json(payload) {
            Ok(a) => Ok(Row::Symptom(a)),
            Err(_) => serde_json::from_str(payload).map(|r| Row::Reading(Box::new(r))),
        }
    }
}

impl Rows {
    /// Adds the row of `kind` with `payload`; one that does not decode is counted.
    pub fn push(&mut self, kind: &str, payload: &str) {
        match Row::decode(kind, payload) {
            Ok(Row::Reading(r)) => self.readings.push(*r),
            Ok(Row::Symptom(s)) => self.symptoms.push(s),
            Err(_) => self.undecodable += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(submission: &str) -> SymptomAnswer {
        let t = DateTime::parse_from_rfc3339("2026-03-29T08:10:00+02:00").unwrap();
        SymptomAnswer::new(
            "tm-1",
            submission,
            codes::symptom("267036007").unwrap(),
            Severity::Moderate,
            t,
            t + chrono::Duration::minutes(2),
        )
    }

    #[test]
    fn an_answer_round_trips_and_its_id_is_stable() {
        let a = answer("s-1");
        assert_eq!(SymptomAnswer::from_json(&a.to_json()).unwrap(), a);
        assert_eq!(answer("s-1").answer_id, a.answer_id);
        assert_ne!(answer("s-2").answer_id, a.answer_id);
        assert_eq!(a.answer_id.len(), 64);
    }

    #[test]
    fn rows_are_told_apart_by_kind_and_bad_ones_counted() {
        let mut rows = Rows::default();
        rows.push(KIND, &answer("s-1").to_json());
        rows.push(KIND, r#"{"answer_id":"x","symptom":"1","severity":"2667000","start":"2026-03-29T08:10:00+02:00","end":"2026-03-29T08:10:00+02:00","submission":"s"}"#);
        rows.push("weight", "{}");
        assert_eq!(rows.symptoms.len(), 1);
        assert_eq!(rows.undecodable, 2);
    }
}
