//! # Clinical outputs: what the EHR downloads for a telemonitoring session
//!
//! Three renderings of the same input, a [`SessionContext`] plus the session's readings
//! (`tm_protocol::Reading`, as ingested):
//! - [`fhir`]: a `collection` Bundle of R4 vital-sign Observations (`application/fhir+json`);
//! - [`pdf`]: a human-readable report with trend charts, one per language;
//! - [`dashboard`]: a server-rendered HTML page the EHR embeds in an iframe (`x-tm-dashboard`).
//!
//! Everything here is pure: same inputs, same bytes. That is what makes an attachment's ETag and
//! Content-MD5 stable until a reading actually changes it (see [`crate::attachments`]).
//! [`series`] turns readings into the per-measurement series the PDF and the dashboard chart,
//! with the configurable normal [`series::Ranges`] that mark out-of-range values.

pub mod dashboard;
pub mod fhir;
pub mod findings;
pub mod labels;
pub mod pdf;
pub mod series;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// The carepath identifier a status PUT carries (`carepath {id, version}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carepath {
    /// The carepath's URI.
    pub id: String,
    /// Its version.
    pub version: String,
}

impl Carepath {
    /// The heart-failure carepath of the patient-monitoring IG (docs/fhir.md §3): note `https` and
    /// `hl7belgium.org`, which is not the IG's canonical base.
    pub fn heart_failure() -> Self {
        Carepath {
            id: "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure".into(),
            version: "1.0.0".into(),
        }
    }
}

impl Default for Carepath {
    fn default() -> Self {
        Self::heart_failure()
    }
}

/// A language a report is rendered in (`contentLanguage` of the PDF attachment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// English.
    En,
    /// Dutch.
    Nl,
    /// French.
    Fr,
}

impl Language {
    /// Every language the reports are translated into.
    pub const ALL: [Language; 3] = [Language::En, Language::Nl, Language::Fr];

    /// `words` in this language.
    pub fn pick(self, words: crate::symptom::codes::Words) -> &'static str {
        match self {
            Language::En => words.en,
            Language::Nl => words.nl,
            Language::Fr => words.fr,
        }
    }

    /// The BCP 47 tag, as `contentLanguage` carries it.
    pub fn tag(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Nl => "nl",
            Language::Fr => "fr",
        }
    }
}

impl crate::http::language::Tagged for Language {
    fn tag(self) -> &'static str {
        Language::tag(self)
    }
}

/// The monitoring period of a session: from acceptance until stop (open while in progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// Start of monitoring.
    pub start: DateTime<FixedOffset>,
    /// End of monitoring; `None` while the session runs.
    pub end: Option<DateTime<FixedOffset>>,
}

/// What the outputs need to know about a session besides its readings. Built by the session
/// store from the Portal's prescription request; nothing here is sent to a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionContext {
    /// The Portal's `telemonitoringId`.
    pub telemonitoring_id: String,
    /// The Portal's pseudonymous `patientId` (the FHIR subject identifier's value).
    pub patient_id: String,
    /// The prescriber (hospital) id: attachment tokens are bound to it.
    pub prescriber_id: String,
    /// The carepath.
    pub carepath: Carepath,
    /// Languages the PDF report is produced in (at least one).
    pub languages: Vec<Language>,
    /// The monitoring period.
    pub period: Period,
}
