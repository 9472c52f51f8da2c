//! [`Unavailable`]: how every staff page and API (operations, the clinical worklist) answers a
//! store failure (503, logged once with the error; the user sees that the store, not the page,
//! failed).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// A store failure: 503, logged.
#[derive(Debug)]
pub struct Unavailable(StoreError);

impl From<StoreError> for Unavailable {
    fn from(e: StoreError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Unavailable {
    fn into_response(self) -> Response {
        tracing::error!(error = %self.0, "store unavailable");
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
    }
}
