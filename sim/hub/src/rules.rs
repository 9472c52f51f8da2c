//! The HUB's rules for `PUT /prescription`, written from the contract text on purpose without
//! reusing any provider code: the emulator is an independent check of the provider.
//!
//! Everything here is pure: a JSON body and the session's current status in, a verdict out
//! ([`check_status_put`]). A verdict is either accepted (with warnings, for example past the soft
//! limit of attachments) or a list of violations that the HUB answers with a 4xx.

use base64::Engine as _;
use serde_json::Value;

/// The soft limit of attachments per session (the contract's "Attachment Limitations").
pub const SOFT_ATTACHMENT_LIMIT: usize = 10;

/// The statuses the contract names, as strings on the wire.
pub const STATUSES: [&str; 5] = [
    "requested",
    "accepted",
    "in-progress",
    "completed",
    "cancelled",
];

/// The attachment content types the HUB knows.
pub const CONTENT_TYPES: [&str; 3] = ["application/pdf", "application/fhir+json", "x-tm-dashboard"];

/// Whether `from -> to` is allowed. Re-sending the current status is an update (docs/portal-hub.md
/// §5), except for the final statuses, which never change again, and `requested`, which only
/// the Portal sets.
pub fn transition_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("requested", "accepted")
            | ("requested", "cancelled")
            | ("accepted", "accepted")
            | ("accepted", "in-progress")
            | ("accepted", "cancelled")
            | ("accepted", "completed")
            | ("in-progress", "in-progress")
            | ("in-progress", "completed")
    )
}

/// A status PUT that the HUB accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedPut {
    /// The session.
    pub telemonitoring_id: String,
    /// The new status.
    pub status: String,
    /// The carepath `(id, version)`, when sent.
    pub carepath: Option<(String, String)>,
    /// The attachments, when sent (the full set: one left out is deleted).
    pub attachments: Option<Vec<Value>>,
    /// Non-fatal remarks (soft limit exceeded).
    pub warnings: Vec<String>,
}

/// Checks the shape of a status PUT body and its fields, without the session context.
pub fn check_status_put(body: &Value) -> Result<AcceptedPut, Vec<String>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec!["body must be a JSON object".into()]);
    };
    for key in obj.keys() {
        if ![
            "telemonitoringId",
            "status",
            "providerContext",
            "carepath",
            "attachments",
        ]
        .contains(&key.as_str())
        {
            errors.push(format!("unknown field {key:?}"));
        }
    }
    let id = match obj.get("telemonitoringId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            errors.push("telemonitoringId must be a non-empty string".into());
            String::new()
        }
    };
    let status = match obj.get("status") {
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => s.clone(),
        other => {
            errors.push(format!("status must be one of {STATUSES:?}, got {other:?}"));
            String::new()
        }
    };
    if let Some(ctx) = obj.get("providerContext")
        && !ctx.is_string()
    {
        errors.push("providerContext must be a string".into());
    }
    let carepath = match obj.get("carepath") {
        None => None,
        Some(c) => match check_carepath(c) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    let mut warnings = Vec::new();
    let attachments = match obj.get("attachments") {
        None => None,
        Some(Value::Array(items)) => {
            if !matches!(status.as_str(), "in-progress" | "completed") {
                errors.push(format!(
                    "attachments are only allowed with in-progress or completed, not {status:?}"
                ));
            }
            errors.extend(check_attachments(items));
            if items.len() > SOFT_ATTACHMENT_LIMIT {
                warnings.push(format!(
                    "{} attachments exceed the soft limit of {SOFT_ATTACHMENT_LIMIT}",
                    items.len()
                ));
            }
            Some(items.clone())
        }
        Some(_) => {
            errors.push("attachments must be an array".into());
            None
        }
    };
    if errors.is_empty() {
        Ok(AcceptedPut {
            telemonitoring_id: id,
            status,
            carepath,
            attachments,
            warnings,
        })
    } else {
        Err(errors)
    }
}

/// A carepath is exactly `{id, version}`, both non-empty strings.
pub fn check_carepath(c: &Value) -> Result<(String, String), String> {
    let obj = c
        .as_object()
        .ok_or("carepath must be an object {id, version}")?;
    if obj.len() != 2 {
        return Err("carepath must have exactly the fields id and version".into());
    }
    match (obj.get("id"), obj.get("version")) {
        (Some(Value::String(id)), Some(Value::String(v))) if !id.is_empty() && !v.is_empty() => {
            Ok((id.clone(), v.clone()))
        }
        _ => Err("carepath id and version must be non-empty strings".into()),
    }
}

/// Checks every attachment; returns one message per problem.
pub fn check_attachments(items: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let Some(a) = item.as_object() else {
            errors.push(format!("attachment {i} is not an object"));
            continue;
        };
        let id = a.get("id").and_then(Value::as_str).unwrap_or_default();
        if id.is_empty() {
            errors.push(format!("attachment {i} has no id"));
        } else if !seen.insert(id.to_owned()) {
            errors.push(format!("attachment id {id:?} is not unique"));
        }
        let ty = a.get("contentType").and_then(Value::as_str).unwrap_or("");
        if !CONTENT_TYPES.contains(&ty) {
            errors.push(format!(
                "attachment {i}: contentType {ty:?} is not one of {CONTENT_TYPES:?}"
            ));
        }
        match a.get("uri").and_then(Value::as_str) {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => {}
            _ => errors.push(format!(
                "attachment {i}: uri must be an absolute http(s) URI"
            )),
        }
        if let Some(h) = a.get("headers") {
            let ok = h
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !ok {
                errors.push(format!("attachment {i}: headers must map names to strings"));
            }
        }
        let mut allowed = vec!["id", "contentType", "uri", "headers"];
        if ty != "x-tm-dashboard" {
            allowed.extend([
                "etag",
                "contentMD5",
                "contentLength",
                "lastModified",
                "contentLanguage",
            ]);
            errors.extend(check_document_fields(i, a));
        }
        for key in a.keys() {
            if !allowed.contains(&key.as_str()) {
                errors.push(format!(
                    "attachment {i}: field {key:?} does not belong to {ty:?}"
                ));
            }
        }
    }
    errors
}

fn check_document_fields(i: usize, a: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut errors = Vec::new();
    let etag = a.get("etag").and_then(Value::as_str).unwrap_or_default();
    if etag.is_empty() {
        errors.push(format!("attachment {i}: etag is required"));
    }
    let md5_ok = a
        .get("contentMD5")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .is_some_and(|d| d.len() == 16);
    if !md5_ok {
        errors.push(format!(
            "attachment {i}: contentMD5 must be base64 of the 16-byte MD5 digest"
        ));
    }
    if !a.get("contentLength").is_some_and(Value::is_u64) {
        errors.push(format!(
            "attachment {i}: contentLength must be a non-negative integer"
        ));
    }
    let modified_ok = a
        .get("lastModified")
        .and_then(Value::as_str)
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok());
    if !modified_ok {
        errors.push(format!(
            "attachment {i}: lastModified must be an RFC 3339 timestamp"
        ));
    }
    if let Some(lang) = a.get("contentLanguage") {
        let ok = lang
            .as_str()
            .is_some_and(|l| l.len() == 2 && l.bytes().all(|b| b.is_ascii_lowercase()));
        if !ok {
            errors.push(format!(
                "attachment {i}: contentLanguage must be 2 lowercase letters"
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_pair_of_statuses_is_judged_by_the_contract() {
        let legal = [
            ("requested", "accepted"),
            ("requested", "cancelled"),
            ("accepted", "accepted"),
            ("accepted", "in-progress"),
            ("accepted", "cancelled"),
            ("accepted", "completed"),
            ("in-progress", "in-progress"),
            ("in-progress", "completed"),
        ];
        for from in STATUSES {
            for to in STATUSES {
                assert_eq!(
                    transition_allowed(from, to),
                    legal.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn carepath_shape() {
        assert!(check_carepath(&json!({"id": "a", "version": "1"})).is_ok());
        assert!(check_carepath(&json!({"id": "a"})).is_err());
        assert!(check_carepath(&json!({"id": "a", "version": 1})).is_err());
        assert!(check_carepath(&json!({"id": "", "version": "1"})).is_err());
        assert!(check_carepath(&json!({"id": "a", "version": "1", "x": 1})).is_err());
        assert!(check_carepath(&json!("hl7-be/x")).is_err());
    }
}
