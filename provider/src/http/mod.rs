//! The provider's HTTP server: one axum router assembled from each feature's routes, served on a
//! listener the caller binds (tests bind `127.0.0.1:0`), stopped by a cancellation token; over
//! HTTPS when `[tls]` is configured ([`tls`]), within the limits of `[http]` ([`server`]:
//! header and body timeouts, a connection cap, accept errors that never end the server).
//! Features register their routes through [`Routes`], which lists what the router serves (see
//! [`routes`]).

pub mod body;
pub mod linger;
pub mod routes;
pub mod server;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::portal::Portal;

pub use routes::{Method, Routes};
pub use server::HttpSection;

/// State shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The provider store (clones share its one writer connection).
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

/// Serves `router` on `listener` with the default limits until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, None, router, shutdown).await
}

/// Serves `router` on `listener`, over TLS with `certificates` when given, with the default
/// limits until `shutdown` is cancelled.
pub async fn serve_with(
    listener: TcpListener,
    certificates: Option<Arc<tls::Certificates>>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with_limits(
        listener,
        certificates,
        router,
        HttpSection::default(),
        shutdown,
    )
    .await
}

/// Serves `router` on `listener`, over TLS with `certificates` when given, within `limits`
/// until `shutdown` is cancelled; returns only then.
pub async fn serve_with_limits(
    listener: TcpListener,
    certificates: Option<Arc<tls::Certificates>>,
    router: Router,
    limits: HttpSection,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let tls = certificates.map(|c| c.server_config());
    server::run(listener, tls, router, limits, shutdown).await
}
