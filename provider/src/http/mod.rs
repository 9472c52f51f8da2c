//! The provider's HTTP server: one axum router assembled from each feature's routes, served on a
//! listener the caller binds (tests bind `127.0.0.1:0`), stopped by a cancellation token; over
//! HTTPS when `[tls]` is configured ([`tls`]).

pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::portal::Portal;

/// State shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub db: Db,
    /// Portal, enrollment and HUB settings and run-time state.
    pub portal: Arc<Portal>,
}

/// Every route the router serves, as (method, path); the OpenAPI document must list exactly
/// these (checked by a test).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("post", crate::portal::PRESCRIPTION_ROUTE),
    ("post", crate::portal::ACTION_ROUTE),
    ("get", crate::enroll::PAGE_ROUTE),
    ("post", crate::enroll::PAGE_ROUTE),
    ("post", tm_protocol::routes::http::ENROLL),
];

/// The whole router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            crate::portal::PRESCRIPTION_ROUTE,
            post(crate::portal::prescription),
        )
        .route(crate::portal::ACTION_ROUTE, post(crate::portal::action))
        .route(
            crate::enroll::PAGE_ROUTE,
            get(crate::enroll::page::show).post(crate::enroll::page::issue),
        )
        .route(
            tm_protocol::routes::http::ENROLL,
            post(crate::enroll::api::enroll),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({ "message": "no such route" })),
            )
        })
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Serves `router` on `listener`, over TLS with `certificates` when given, until `shutdown` is
/// cancelled.
pub async fn serve_with(
    listener: TcpListener,
    certificates: Option<Arc<tls::Certificates>>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match certificates {
        None => serve(listener, router, shutdown).await,
        Some(certificates) => {
            let listener = tls::TlsListener::new(listener, certificates.server_config())?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        }
    }
}
