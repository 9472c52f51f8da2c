//! The patient's symptom answers as Observations, as the IG's `ReducedAppetiteExample` has
//! them: `code` the symptom from `heart-failure-symptoms`, `valueCodeableConcept` the severity
//! from `symptom-severity` (both SNOMED CT, with the IG's displays), `effectivePeriod` from
//! opening the check-in page to sending it, the subject by its identifier. Beyond the
//! example: `performer` is the patient (by the subject's identifier: the answer is
//! self-reported), `category` survey, `identifier` in the provider's system and `issued` (when
//! the provider received it). A code from the Belgian extension keeps SNOMED CT's system and
//! names the edition in `version`, as FHIR's rules for SNOMED CT want, and is repeated in a
//! second coding under the edition URI as its system, as the IG's ValueSet includes it.

use serde_json::{Value, json};

use super::ids::stable_uuid;
use super::provenance::issued;
use super::rules::{OBSERVATION_CATEGORY, PATIENT_IDENTIFIER_SYSTEM};
use super::values::timestamp;
use crate::symptom::SymptomAnswer;
use crate::symptom::codes::SNOMED;

/// The Observation of `answer` for patient `patient_id`: its `fullUrl` and resource.
pub fn observation(
    answer: &SymptomAnswer,
    patient_id: &str,
    identifier_system: &str,
) -> (String, Value) {
    let id = stable_uuid("Observation", &answer.answer_id);
    let patient = json!({"system": PATIENT_IDENTIFIER_SYSTEM, "value": patient_id});
    let mut codings = vec![json!({
        "system": SNOMED,
        "code": answer.symptom.code,
        "display": answer.symptom.display,
    })];
    if let Some(edition) = answer.symptom.edition {
        codings[0]["version"] = json!(edition);
        // The same concept as the IG's ValueSet writes it, for an EHR that checks the code
        // against that ValueSet's expansion.
        codings.push(json!({
            "system": edition,
            "code": answer.symptom.code,
            "display": answer.symptom.display,
        }));
    }
    let resource = json!({
        "resourceType": "Observation",
        "id": id,
        "identifier": [{"system": identifier_system, "value": answer.answer_id}],
        "status": "final",
        "category": [{"coding": [{
            "system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"
        }]}],
        "code": {"coding": codings},
        "subject": {"identifier": patient},
        "effectivePeriod": {
            "start": timestamp(&answer.start, false),
            "end": timestamp(&answer.end, false),
        },
        "issued": issued(&answer.end.with_timezone(&chrono::Utc)),
        "performer": [{"type": "Patient", "identifier": patient}],
        "valueCodeableConcept": {"coding": [{
            "system": SNOMED,
            "code": answer.severity.code(),
            "display": answer.severity.display(),
        }]},
    });
    (format!("urn:uuid:{id}"), resource)
}
