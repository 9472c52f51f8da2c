//! The provider's HTTP server: one axum router assembled from each feature's routes, served on a
//! listener the caller binds (tests bind `127.0.0.1:0`), stopped by a cancellation token; over
//! HTTPS when `[tls]` is configured ([`tls`]). Features register their routes through
//! [`Routes`], which lists what the router serves (see [`routes`]).

pub mod routes;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::portal::Portal;

pub use routes::{Method, Routes};

/// State shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub db: Db,
    /// Portal, enrollment and HUB settings and run-time state.
    pub portal: Arc<Portal>,
}

/// The Portal endpoints, the enrollment page and API, and `/healthz`; with the fallback that
/// answers every unknown path (404 `{"message": "no such route"}`) of the assembled router.
pub fn routes(state: AppState) -> Routes {
    Routes::new()
        .get("/healthz", || async { "ok" })
        .post(
            crate::portal::PRESCRIPTION_ROUTE,
            crate::portal::prescription,
        )
        .post(crate::portal::ACTION_ROUTE, crate::portal::action)
        .get(crate::enroll::PAGE_ROUTE, crate::enroll::page::show)
        .post(crate::enroll::PAGE_ROUTE, crate::enroll::page::issue)
        .post(
            tm_protocol::routes::http::ENROLL,
            crate::enroll::api::enroll,
        )
        .map_router(|router| {
            router
                .fallback(|| async {
                    (
                        StatusCode::NOT_FOUND,
                        axum::Json(serde_json::json!({ "message": "no such route" })),
                    )
                })
                .with_state(state)
        })
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
