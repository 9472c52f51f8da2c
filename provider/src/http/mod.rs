//! The provider's HTTP server, infrastructure only (it knows no feature): a router served on a
//! listener the caller binds (tests bind `127.0.0.1:0`), stopped by a cancellation token; over
//! HTTPS when `[tls]` is configured ([`tls`]), within the limits of `[http]` ([`server`]:
//! header and body timeouts, a connection cap, accept errors that never end the server), with
//! bounded request bodies ([`body`]). Features register their routes through [`Routes`], which
//! lists what the router serves (see [`routes`]); the assembly ([`crate::app`]) merges them.

pub mod access;
pub mod body;
pub mod language;
pub mod linger;
pub mod routes;
pub mod server;
pub mod tls;
pub mod unavailable;

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use routes::{Method, Routes};
pub use server::HttpSection;

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
