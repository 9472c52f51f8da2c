//! The operations token ([`crate::http::access`]): `Authorization: Bearer <token>` or basic
//! auth with the token as the password (any user name; it is recorded as who acknowledged an
//! alert). The Portal's headers are never accepted here.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Ops;

/// Who made an authenticated request (the basic-auth user name, or `token`).
#[derive(Debug, Clone)]
pub struct Operator(pub String);

/// Middleware: 404 when no token is configured, 401 with a challenge when the request does not
/// carry it.
pub async fn require(State(ops): State<Ops>, mut request: Request, next: Next) -> Response {
    let Some(token) = ops.token.as_deref() else {
        return (StatusCode::NOT_FOUND, "operations dashboard not configured").into_response();
    };
    match crate::http::access::caller(request.headers(), token) {
        Some(c) => {
            request.extensions_mut().insert(Operator(c.0));
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
