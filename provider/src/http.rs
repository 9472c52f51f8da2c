//! The provider's HTTP server: one axum router assembled from each feature's routes, served on a
//! listener the caller binds (tests bind `127.0.0.1:0`), stopped by a cancellation token.

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::db::Db;

/// State shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub db: Db,
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
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
