//! The Portal's side: when an HCP clicks "prescribe", a prescription request goes to the
//! provider's URI; when they click "stop" or "cancel", an action goes to the Action URI. Both
//! carry the provider's fixed headers (from the command line) and the prescriber-specific
//! headers (per request, as a hospital configures them). Triggered through the control API.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use tm_protocol::prescription::PRESCRIPTION_FIELDS;

use crate::AppState;
use crate::state::{EventKind, SimSession};

/// What the control API asks the Portal to prescribe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Prescribe {
    /// The session id the Portal assigns.
    pub telemonitoring_id: String,
    /// The hospital's pseudonymous patient id.
    pub patient_id: String,
    /// The prescriber (hospital) id.
    pub prescriber_id: String,
    /// Optional fields by dotted path (must be in [`PRESCRIPTION_FIELDS`]).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Prescriber-specific headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// What the control API asks the Portal to send as an action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Act {
    /// The session.
    pub telemonitoring_id: String,
    /// `stop` or `cancel`.
    pub action: String,
    /// Prescriber-specific headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The provider's answer as the Portal saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    /// HTTP status, 0 when the provider could not be reached.
    pub status: u16,
    /// The body: JSON when it parsed, a string otherwise, null when empty.
    pub body: Value,
}

/// Builds the prescription body: defaults plus the optional fields, nested by path.
pub fn prescription_body(p: &Prescribe) -> Result<Value, String> {
    let mut body = json!({
        "telemonitoringId": p.telemonitoring_id,
        "patientId": p.patient_id,
        "prescriber": { "id": p.prescriber_id },
    });
    for (path, value) in &p.fields {
        if !PRESCRIPTION_FIELDS.contains(&path.as_str()) {
            return Err(format!("{path:?} is not a field of the contract"));
        }
        let mut node = body.as_object_mut().expect("object");
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            node = node
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .ok_or_else(|| format!("{path:?} collides with another field"))?;
        }
        node.insert(
            parts[parts.len() - 1].to_owned(),
            Value::String(value.clone()),
        );
    }
    Ok(body)
}

async fn send(app: &AppState, url: &str, body: &Value, extra: &BTreeMap<String, String>) -> Answer {
    let mut request = app.http.post(url).json(body);
    for (name, value) in app
        .config
        .fixed_headers
        .iter()
        .map(|(n, v)| (n, v))
        .chain(extra.iter())
    {
        request = request.header(name, value);
    }
    match request.send().await {
        Err(e) => Answer {
            status: 0,
            body: Value::String(tm_protocol::report::error_chain(&e)),
        },
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let body = if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            Answer { status, body }
        }
    }
}

/// Creates the session at the HUB (status requested) and sends the prescription request.
pub async fn prescribe(app: &AppState, p: Prescribe) -> Result<Answer, String> {
    let url = app
        .config
        .provider_url
        .clone()
        .ok_or("no --provider-url configured")?;
    let body = prescription_body(&p)?;
    app.hub.with(|s| {
        s.sessions
            .entry(p.telemonitoring_id.clone())
            .or_insert_with(|| SimSession {
                status: "requested".into(),
                prescriber_id: p.prescriber_id.clone(),
                carepath: None,
                attachments: Vec::new(),
                timeline: Vec::new(),
            });
    });
    let answer = send(app, &url, &body, &p.headers).await;
    if answer.status == 200
        && !(answer.body.is_null()
            || answer.body.get("url").is_some_and(Value::is_string)
                && answer.body.as_object().is_some_and(|o| o.len() == 1))
    {
        app.hub.record(
            &p.telemonitoring_id,
            EventKind::Violation {
                message: "a 200 answer must be empty or {\"url\": ...}".into(),
            },
        );
    }
    if answer.status != 200 && !answer.body.get("message").is_some_and(Value::is_string) {
        app.hub.record(
            &p.telemonitoring_id,
            EventKind::Warning {
                message: "a refusal without {\"message\"}".into(),
            },
        );
    }
    app.hub.record(
        &p.telemonitoring_id,
        EventKind::Prescription {
            request: body,
            status: answer.status,
            response: answer.body.clone(),
        },
    );
    Ok(answer)
}

/// Sends an action for a session the Portal knows.
pub async fn act(app: &AppState, a: Act) -> Result<Answer, String> {
    let url = app
        .config
        .action_url
        .clone()
        .ok_or("no --action-url configured")?;
    if a.action != "stop" && a.action != "cancel" {
        return Err(format!("action must be stop or cancel, not {:?}", a.action));
    }
    let prescriber = app
        .hub
        .with(|s| {
            s.sessions
                .get(&a.telemonitoring_id)
                .map(|x| x.prescriber_id.clone())
        })
        .ok_or("unknown telemonitoringId")?;
    let body = json!({
        "telemonitoringId": a.telemonitoring_id,
        "prescriber": { "id": prescriber },
        "action": a.action,
    });
    let answer = send(app, &url, &body, &a.headers).await;
    app.hub.record(
        &a.telemonitoring_id,
        EventKind::Action {
            request: body,
            status: answer.status,
            response: answer.body.clone(),
        },
    );
    Ok(answer)
}
