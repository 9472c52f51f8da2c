//! Pure checks of what the Portal sends: the declared headers, and the prescription and action
//! bodies (required fields, sizes). No I/O; every refusal is a [`Refusal`] that becomes one of
//! the contract's 4xx answers with `{"message": ...}` (also what the enrollment API answers).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use crate::hub::contract::Action;

/// Longest id (telemonitoringId, patientId, prescriber id) accepted.
pub const MAX_ID_LEN: usize = 128;
/// Longest optional field value accepted.
pub const MAX_FIELD_LEN: usize = 256;

/// A refusal: HTTP status and the message for the Portal (never contains header values or
/// patient data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The 4xx.
    pub status: StatusCode,
    /// The explanation.
    pub message: String,
}

impl axum::response::IntoResponse for Refusal {
    fn into_response(self) -> axum::response::Response {
        let body = axum::Json(serde_json::json!({ "message": self.message }));
        (self.status, body).into_response()
    }
}

impl From<crate::http::body::BodyError> for Refusal {
    fn from(e: crate::http::body::BodyError) -> Self {
        use crate::http::body::BodyError;
        let status = match e {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyError::Incomplete => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

impl Refusal {
    /// Builds a refusal.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Compares a received secret without leaking, through timing, how much of it matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// Every expected header must be present with its value.
pub fn check_headers(
    headers: &HeaderMap,
    expected: &BTreeMap<String, String>,
) -> Result<(), Refusal> {
    for (name, value) in expected {
        let given = headers.get(name.as_str()).map(|v| v.as_bytes());
        if !given.is_some_and(|g| constant_time_eq(g, value.as_bytes())) {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                format!("header {name} is missing or wrong"),
            ));
        }
    }
    Ok(())
}

/// A validated prescription request.
#[derive(Debug, Clone, PartialEq)]
pub struct Prescription {
    /// The Portal's session id.
    pub telemonitoring_id: String,
    /// Pseudonymous patient id.
    pub patient_id: String,
    /// Prescriber (hospital) id.
    pub prescriber_id: String,
    /// The declared optional fields that were present, by dotted path.
    pub kept_fields: BTreeMap<String, String>,
}

fn id_field(v: Option<&Value>, name: &str) -> Result<String, Refusal> {
    match v {
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control) =>
        {
            Ok(s.clone())
        }
        Some(Value::String(_)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("{name} must be 1 to {MAX_ID_LEN} printable characters"),
        )),
        _ => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("{name} is required"),
        )),
    }
}

fn lookup<'a>(obj: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut node = obj.get(parts.next()?)?;
    for p in parts {
        node = node.as_object()?.get(p)?;
    }
    Some(node)
}

/// The body as a JSON object, or the refusal that says why it is not one.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object",
        )),
        Err(e) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("body is not valid JSON: {e}"),
        )),
    }
}

/// Validates a prescription body; keeps only the `needed` optional fields.
pub fn parse_prescription(body: &[u8], needed: &[String]) -> Result<Prescription, Refusal> {
    let obj = &json_object(body)?;
    let telemonitoring_id = id_field(obj.get("telemonitoringId"), "telemonitoringId")?;
    let patient_id = id_field(obj.get("patientId"), "patientId")?;
    let prescriber_id = id_field(lookup(obj, "prescriber.id"), "prescriber.id")?;
    let mut kept_fields = BTreeMap::new();
    for path in needed {
        match lookup(obj, path) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.len() <= MAX_FIELD_LEN => {
                kept_fields.insert(path.clone(), s.clone());
            }
            Some(_) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("{path} must be a string of at most {MAX_FIELD_LEN} bytes"),
                ));
            }
        }
    }
    Ok(Prescription {
        telemonitoring_id,
        patient_id,
        prescriber_id,
        kept_fields,
    })
}

/// A validated action request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    /// The session.
    pub telemonitoring_id: String,
    /// The prescriber sending it.
    pub prescriber_id: String,
    /// What to do.
    pub action: Action,
}

/// Validates an action body.
pub fn parse_action(body: &[u8]) -> Result<ActionRequest, Refusal> {
    let obj = &json_object(body)?;
    let action = match obj.get("action").and_then(Value::as_str) {
        Some("stop") => Action::Stop,
        Some("cancel") => Action::Cancel,
        _ => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "action must be \"stop\" or \"cancel\"",
            ));
        }
    };
    Ok(ActionRequest {
        telemonitoring_id: id_field(obj.get("telemonitoringId"), "telemonitoringId")?,
        prescriber_id: id_field(lookup(obj, "prescriber.id"), "prescriber.id")?,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_fields_are_kept() {
        let body = br#"{"telemonitoringId":"tm-1","patientId":"p","prescriber":{"id":"rx"},
            "patient":{"firstName":"Ann","language":"nl"}}"#;
        let p = parse_prescription(body, &["patient.language".into()]).unwrap();
        assert_eq!(p.kept_fields.len(), 1);
        assert_eq!(p.kept_fields["patient.language"], "nl");
    }

    #[test]
    fn required_fields_and_sizes() {
        for body in [
            &b"{}"[..],
            br#"{"telemonitoringId":"t","patientId":"p"}"#,
            br#"{"telemonitoringId":"","patientId":"p","prescriber":{"id":"r"}}"#,
            br#"[1]"#,
            b"not json",
        ] {
            assert_eq!(
                parse_prescription(body, &[]).unwrap_err().status,
                StatusCode::BAD_REQUEST
            );
        }
        let long = format!(
            r#"{{"telemonitoringId":"{}","patientId":"p","prescriber":{{"id":"r"}}}}"#,
            "x".repeat(MAX_ID_LEN + 1)
        );
        assert!(parse_prescription(long.as_bytes(), &[]).is_err());
        assert!(
            parse_action(br#"{"telemonitoringId":"t","prescriber":{"id":"r"},"action":"pause"}"#)
                .is_err()
        );
    }
}
