//! The operations token ([`crate::http::access`]): `Authorization: Bearer <token>` or basic
//! auth with the token as the password (any user name; it is recorded as who acknowledged an
//! alert). The Portal's headers are never accepted here.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::Ops;
use crate::http::access::{Area, admit};

/// Who made an authenticated request (the basic-auth user name, or `token`).
pub use crate::http::access::Caller as Operator;

const OPERATIONS: Area = Area {
    realm: "tm-provider operations",
    not_configured: "operations dashboard not configured",
    token_required: "operations token required",
};

/// Middleware: 404 when no token is configured, 401 with a challenge when the request does not
/// carry it.
pub async fn require(State(ops): State<Ops>, request: Request, next: Next) -> Response {
    admit(OPERATIONS, ops.token.as_deref(), request, next).await
}
