//! The operations token: `Authorization: Bearer <token>` or basic auth with the token as the
//! password (any user name; it is recorded as who acknowledged an alert). Compared in constant
//! time. The Portal's headers are never accepted here.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::Ops;

/// Who made an authenticated request (the basic-auth user name, or `token`).
#[derive(Debug, Clone)]
pub struct Operator(pub String);

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn operator(headers: &HeaderMap, token: &str) -> Option<Operator> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(t) = value.strip_prefix("Bearer ") {
        return equal(t.trim().as_bytes(), token.as_bytes()).then(|| Operator("token".into()));
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
        Operator(if user.is_empty() {
            "basic".into()
        } else {
            user
        })
    })
}

/// Middleware: 404 when no token is configured, 401 with a challenge when the request does not
/// carry it.
pub async fn require(State(ops): State<Ops>, mut request: Request, next: Next) -> Response {
    let Some(token) = ops.token.as_deref() else {
        return (StatusCode::NOT_FOUND, "operations dashboard not configured").into_response();
    };
    match operator(request.headers(), token) {
        Some(op) => {
            request.extensions_mut().insert(op);
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"tm-provider operations\"",
            )],
            "operations token required",
        )
            .into_response(),
    }
}
