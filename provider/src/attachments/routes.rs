//! The download endpoint: `GET /attachments/{telemonitoring_id}/{attachment_id}?token=…`.
//!
//! Order of checks, so that nothing leaks: the token's MAC and expiry first (403 without
//! touching the store), then the session (a missing session is the same 403), then the
//! session's prescriber against the token's (403). A valid request gets the bytes with
//! `ETag`, `Content-MD5` and `Content-Length` equal to the announced metadata, or `304 Not
//! Modified` when `If-None-Match` names the current ETag. Dashboards carry the configured
//! Content-Security-Policy (`frame-ancestors`). Responses are `private, no-cache`: an EHR may
//! keep a copy but must revalidate.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::{AttachmentKind, Digests, OutputOptions, SessionSource, UriSigner};
use crate::http::Routes;

/// The route, for the router and for building URIs.
pub const ROUTE: &str = "/attachments/{session}/{attachment}";

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The path of an attachment.
pub fn path_of(session: &str, attachment: &str) -> String {
    format!("/attachments/{}/{}", segment(session), segment(attachment))
}

/// What the handler needs.
#[derive(Debug)]
pub struct AttachmentServer<S> {
    /// The session store.
    pub source: S,
    /// Token signer.
    pub signer: UriSigner,
    /// Rendering options.
    pub options: OutputOptions,
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The routes serving attachments; merge them into the provider's.
pub fn routes<S: SessionSource>(server: Arc<AttachmentServer<S>>) -> Routes {
    Routes::new()
        .get(ROUTE, download::<S>)
        .map_router(|router| router.with_state(server))
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "forbidden\n").into_response()
}

#[tracing::instrument(name = "attachment", skip_all)]
async fn download<S: SessionSource>(
    State(server): State<Arc<AttachmentServer<S>>>,
    Path((session, attachment)): Path<(String, String)>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = query.token else {
        return forbidden();
    };
    let grant = match server
        .signer
        .verify(&session, &attachment, &token, Utc::now())
    {
        Ok(g) => g,
        Err(e) => {
            tracing::info!(reason = %e, "attachment token refused");
            return forbidden();
        }
    };
    let Some(kind) = AttachmentKind::from_id(&attachment) else {
        return forbidden();
    };
    let data = match server.source.load(&session).await {
        Ok(Some(d)) if d.context.prescriber_id == grant.prescriber_id => d,
        Ok(_) => return forbidden(),
        Err(e) => {
            tracing::warn!(error = %e, "session store unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response();
        }
    };
    if let AttachmentKind::Pdf(lang) = kind
        && !data.context.languages.contains(&lang)
    {
        return forbidden();
    }
    let last_modified = data.last_modified;
    let server2 = Arc::clone(&server);
    let body = match tokio::task::spawn_blocking(move || kind.render(&data, &server2.options)).await
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "rendering failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let digests = Digests::of(&body);
    let mut out = HeaderMap::new();
    let mut set = |name, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    set(header::ETAG, &digests.etag);
    set(header::CACHE_CONTROL, "private, no-cache");
    set(
        header::LAST_MODIFIED,
        &last_modified
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string(),
    );
    if kind == AttachmentKind::Dashboard {
        set(
            header::CONTENT_SECURITY_POLICY,
            &server.options.dashboard.content_security_policy(),
        );
    }
    let not_modified = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == digests.etag);
    if not_modified {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    set(header::CONTENT_TYPE, kind.http_content_type());
    set(header::CONTENT_LENGTH, &digests.content_length.to_string());
    set(
        header::HeaderName::from_static("content-md5"),
        &digests.content_md5,
    );
    (StatusCode::OK, out, Body::from(body)).into_response()
}
