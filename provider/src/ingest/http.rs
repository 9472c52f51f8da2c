//! HTTPS ingest routes: `POST /api/v1/readings` (answer: the signed receipt frame),
//! `POST /api/v1/heartbeat` and `POST /api/v1/command-results` (answer: 204). Bodies above the frame limit get 413 before they are read whole.
//!
//! Status codes: 200 receipt; 400 malformed or mismatched; 401 bad signature; 403 unknown,
//! revoked or unbound gateway; 413 too large; 503 store unavailable (the gateway retries).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tm_protocol::routes::http as routes;

use crate::http::Routes;

use super::{Ingest, IngestError};

/// The ingest routes.
pub fn routes(ingest: Ingest) -> Routes {
    Routes::new()
        .post(routes::READINGS, readings)
        .post(routes::HEARTBEAT, heartbeat)
        .post(routes::COMMAND_RESULTS, command_result)
        .map_router(|router| {
            router
                .layer(DefaultBodyLimit::max(tm_protocol::limits::MAX_FRAME_BYTES))
                .with_state(ingest)
        })
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Malformed(_) | Self::Mismatch(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::UnknownGateway | Self::NotActive(_) => StatusCode::FORBIDDEN,
            Self::Store(_) | Self::Commit(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "store unavailable");
            return (
                status,
                [(header::RETRY_AFTER, "5")],
                "store unavailable, retry",
            )
                .into_response();
        }
        tracing::warn!(error = %self, "frame refused");
        (status, self.to_string()).into_response()
    }
}

async fn readings(
    State(ingest): State<Ingest>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IngestError> {
    let key = headers
        .get(routes::IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok());
    let done = ingest.readings(&body, key).await?;
    Ok((
        [(header::CONTENT_TYPE, routes::FRAME_CONTENT_TYPE)],
        done.receipt_frame,
    )
        .into_response())
}

async fn heartbeat(State(ingest): State<Ingest>, body: Bytes) -> Result<StatusCode, IngestError> {
    ingest.heartbeat(&body).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn command_result(
    State(ingest): State<Ingest>,
    body: Bytes,
) -> Result<StatusCode, IngestError> {
    ingest.command_result(&body).await?;
    Ok(StatusCode::NO_CONTENT)
}
