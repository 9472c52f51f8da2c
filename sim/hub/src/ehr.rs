//! The EHR's side: after the HUB accepts attachment metadata, every PDF and FHIR attachment is
//! downloaded from its `uri` with its listed headers, and what arrived is compared with the
//! metadata: `contentLength` (bytes received), `contentMD5` (base64 of the raw MD5 digest,
//! docs/portal-hub.md §5) and `etag` (the response's ETag header). Mismatches are violations.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde_json::Value;

use crate::AppState;
use crate::state::EventKind;

/// Downloads every document attachment in the background, one after the other.
pub fn download_all(app: AppState, telemonitoring_id: String, attachments: Vec<Value>) {
    tokio::spawn(async move {
        for a in attachments {
            let ty = a.get("contentType").and_then(Value::as_str).unwrap_or("");
            if ty == "x-tm-dashboard" {
                continue;
            }
            let id = a.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
            let problems = check_one(&app.http, &a).await;
            for p in &problems {
                app.hub.record(
                    &telemonitoring_id,
                    EventKind::Violation {
                        message: format!("attachment {id}: {p}"),
                    },
                );
            }
            app.hub.record(
                &telemonitoring_id,
                EventKind::Download {
                    id,
                    ok: problems.is_empty(),
                    problems,
                },
            );
        }
    });
}

/// Downloads one attachment and lists what does not match its metadata.
pub async fn check_one(http: &reqwest::Client, a: &Value) -> Vec<String> {
    let Some(uri) = a.get("uri").and_then(Value::as_str) else {
        return vec!["no uri".into()];
    };
    let mut request = http.get(uri);
    if let Some(headers) = a.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            if let Some(v) = value.as_str() {
                request = request.header(name, v);
            }
        }
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            return vec![format!(
                "download failed: {}",
                tm_protocol::report::error_chain(&e)
            )];
        }
    };
    if !response.status().is_success() {
        return vec![format!("download answered {}", response.status())];
    }
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return vec![format!(
                "download interrupted: {}",
                tm_protocol::report::error_chain(&e)
            )];
        }
    };
    let mut problems = Vec::new();
    if a.get("contentLength").and_then(Value::as_u64) != Some(bytes.len() as u64) {
        problems.push(format!(
            "contentLength {:?} but {} bytes received",
            a.get("contentLength"),
            bytes.len()
        ));
    }
    let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&bytes));
    if a.get("contentMD5").and_then(Value::as_str) != Some(md5.as_str()) {
        problems.push(format!(
            "contentMD5 {:?} but the content's is {md5:?}",
            a.get("contentMD5")
        ));
    }
    let declared = a.get("etag").and_then(Value::as_str);
    if etag.as_deref() != declared {
        problems.push(format!("etag {declared:?} but the server sent {etag:?}"));
    }
    problems
}
