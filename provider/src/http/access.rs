//! Access to the staff pages and APIs (operations, the clinical worklist), each behind a token
//! of its own: `Authorization: Bearer <token>` or basic auth with the token as the password
//! (any user name; it is recorded as who acted). Compared in constant time. And the check
//! that a form post comes from the page itself, not from another site.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// Who made an authenticated request: the basic-auth user name (letters, digits and
/// `-_.@`, at most 64), `basic` without one, or `token` for a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller when `headers` carry `token`.
pub fn caller(headers: &HeaderMap, token: &str) -> Option<Caller> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(t) = value.strip_prefix("Bearer ") {
        return equal(t.trim().as_bytes(), token.as_bytes()).then(|| Caller("token".into()));
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        .take(64)
        .collect();
    equal(password.as_bytes(), token.as_bytes()).then(|| {
        Caller(if user.is_empty() {
            "basic".into()
        } else {
            user
        })
    })
}

/// A staff area behind a token: what its answers say when the token is not configured or not
/// carried.
#[derive(Debug, Clone, Copy)]
pub struct Area {
    /// The basic-auth realm (`tm-provider operations`).
    pub realm: &'static str,
    /// The 404's text when no token is configured.
    pub not_configured: &'static str,
    /// The 401's text when the request does not carry the token.
    pub token_required: &'static str,
}

/// Middleware body: 404 when `token` is `None`, 401 with a basic-auth challenge when the
/// request does not carry it; otherwise the request goes on with its [`Caller`] as an
/// extension.
pub async fn admit(area: Area, token: Option<&str>, mut request: Request, next: Next) -> Response {
    let Some(token) = token else {
        return (StatusCode::NOT_FOUND, area.not_configured).into_response();
    };
    match caller(request.headers(), token) {
        Some(c) => {
            request.extensions_mut().insert(c);
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!("Basic realm=\"{}\"", area.realm),
            )],
            area.token_required,
        )
            .into_response(),
    }
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the browser says the request came from another site (`Sec-Fetch-Site`, or an
/// `Origin` naming another host than `Host`).
pub fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        return !matches!(site, "same-origin" | "none");
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Reads a token file: its content trimmed, refused when empty.
pub fn read_token(path: &std::path::Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(TokenError::Empty(path.to_owned()));
    }
    Ok(token)
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// It could not be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It holds nothing.
    #[error("token file {0} is empty")]
    Empty(std::path::PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_and_basic_carry_the_token_and_name_the_caller() {
        let basic = base64::engine::general_purpose::STANDARD.encode("nurse.an:s3cret");
        assert_eq!(
            caller(&headers(&[("authorization", "Bearer s3cret")]), "s3cret"),
            Some(Caller("token".into()))
        );
        assert_eq!(
            caller(
                &headers(&[("authorization", &format!("Basic {basic}"))]),
                "s3cret"
            ),
            Some(Caller("nurse.an".into()))
        );
        assert_eq!(
            caller(&headers(&[("authorization", "Bearer s3cre")]), "s3cret"),
            None
        );
        assert_eq!(caller(&headers(&[]), "s3cret"), None);
    }

    #[test]
    fn a_form_from_another_site_is_told_apart() {
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "provider.example")
        ])));
        assert!(!cross_site(&headers(&[
            ("origin", "https://provider.example"),
            ("host", "provider.example")
        ])));
        assert!(!cross_site(&headers(&[])));
    }
}
