//! The connection loop of the provider's HTTP server (HTTP/1.1, plain or TLS), with the limits
//! of `[http]` ([`HttpSection`]):
//!
//! - **Connections**: at most `max_connections` at once (TLS handshakes included). A connection
//!   beyond the cap is answered `503` with `Retry-After` and a JSON message, then closed
//!   ([`refuse_busy`]), and logged (`connection limit reached`, at most every 10 s with the count
//!   refused); connections already open are not disturbed. Those answers are themselves bounded
//!   ([`BUSY_ANSWERS`] at once, each within [`BUSY_ANSWER_TIME`]); beyond that a connection is
//!   closed without one. The cap keeps file descriptors free for the store.
//! - **Headers**: a request's headers must arrive within `header_timeout_s`, counted from the
//!   first read on a new or idle keep-alive connection; otherwise the connection is closed. A
//!   client that connects and says nothing, or sends its headers a byte at a time, or keeps an
//!   idle connection open, holds it for at most that long.
//! - **Bodies**: a request body must arrive whole within `body_timeout_s` of its headers
//!   ([`super::body`]). An answer given before the body was read to its end (413, 408, a route
//!   that takes no body) carries `Connection: close`, and the connection ends after it: the
//!   client does not send another request on it.
//! - **Accept errors** (out of file descriptors, `EMFILE`/`ENFILE`, and the like) never end the
//!   server: they are logged (at most every 10 s, with the count) and accepting resumes after a
//!   short pause; the connections the kernel queued meanwhile are accepted then.
//! - **Closing**: after the last answer on a connection, the server flushes it, ends its sending
//!   side (TLS `close_notify`, then TCP FIN) and reads and discards what the client still sends,
//!   for up to [`super::linger::LINGER`], before closing ([`super::linger`]). A client still
//!   uploading a body that was refused (413) therefore reads the answer instead of a reset
//!   connection.
//!
//! On shutdown the listener is closed, idle connections end at once, and the server returns
//! once the requests in flight are answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tm_protocol::config_file::ConfigError;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::linger::Linger;
use super::tls::HANDSHAKE_TIMEOUT;

/// Pause after an accept error such as `EMFILE`, before accepting again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);
/// Repeated warnings (accept errors, refused connections) are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Connections beyond the cap being answered `503` at once; small, so that refusing cannot
/// itself hold many file descriptors.
pub const BUSY_ANSWERS: usize = 32;
/// Longest time spent answering one connection beyond the cap (TLS handshake, reading its
/// request head, writing the answer).
pub const BUSY_ANSWER_TIME: Duration = Duration::from_secs(2);
/// Most bytes of a request head read before the `503` is written anyway.
const BUSY_HEAD_BYTES: usize = 8 * 1024;

/// `[http]`: limits of the HTTP server.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Seconds a client may take to send a request's headers (also how long an idle
    /// keep-alive connection stays open).
    pub header_timeout_s: u64,
    /// Seconds a client may take to send a request's body, after its headers.
    pub body_timeout_s: u64,
    /// Most connections open at once; further ones are answered `503` and closed.
    pub max_connections: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            header_timeout_s: 10,
            body_timeout_s: 30,
            max_connections: 512,
        }
    }
}

impl HttpSection {
    /// Refuses zero limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.header_timeout_s == 0 || self.body_timeout_s == 0 || self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "http.header_timeout_s, http.body_timeout_s and http.max_connections must be \
                 above 0"
                    .into(),
            ));
        }
        Ok(())
    }

    fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_s)
    }

    fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_s)
    }
}

/// Counts repeated events and says when to log them.
#[derive(Debug, Default)]
struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    /// Records one event; returns how many happened since the last log line when it is time
    /// for the next one.
    fn hit(&mut self) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.count))
    }
}

struct Shared {
    builder: http1::Builder,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    body_timeout: Duration,
    shutdown: CancellationToken,
}

/// Serves `router` on `listener` (over TLS with `tls`) within `limits` until `shutdown`.
/// Returns only on shutdown.
#[tracing::instrument(name = "http", skip_all)]
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    limits: HttpSection,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout());
    let shared = Arc::new(Shared {
        builder,
        acceptor: tls.map(TlsAcceptor::from),
        router,
        body_timeout: limits.body_timeout(),
        shutdown: shutdown.clone(),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let busy_slots = Arc::new(Semaphore::new(BUSY_ANSWERS));
    let connections = TaskTracker::new();
    let (mut accept_errors, mut refused) = (Throttled::default(), Throttled::default());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                if let Some(count) = accept_errors.hit() {
                    tracing::warn!(error = %e, count,
                        "accepting connections failed; retrying");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Ok(busy) = busy_slots.clone().try_acquire_owned() {
                let acceptor = shared.acceptor.clone();
                connections.spawn(async move {
                    let _ =
                        tokio::time::timeout(BUSY_ANSWER_TIME, refuse_busy(stream, acceptor)).await;
                    drop(busy);
                });
            }
            if let Some(count) = refused.hit() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    count,
                    "connection limit reached; new connections are answered 503"
                );
            }
            continue;
        };
        connections.spawn(connection(shared.clone(), stream, slot).in_current_span());
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Answers a connection beyond the cap: (after the TLS handshake) reads its request head, as
/// far as it comes, and writes `503 Service Unavailable` with `Retry-After: 1` and
/// `Connection: close`, then ends the connection. The caller bounds the time it takes.
async fn refuse_busy(stream: TcpStream, acceptor: Option<TlsAcceptor>) -> std::io::Result<()> {
    match acceptor {
        None => answer_busy(stream).await,
        Some(acceptor) => answer_busy(acceptor.accept(stream).await?).await,
    }
}

async fn answer_busy<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < BUSY_HEAD_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut chunk).await? {
            0 => break,
            n => head.extend_from_slice(&chunk[..n]),
        }
    }
    let body = r#"{"message":"the server is busy: too many connections; retry in a second"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    io.write_all(answer.as_bytes()).await?;
    io.shutdown().await
}

/// Errors about one connection that the client already gave up on.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
}

async fn connection(shared: Arc<Shared>, stream: TcpStream, _slot: OwnedSemaphorePermit) {
    let Some(acceptor) = &shared.acceptor else {
        return serve_connection(&shared, stream).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_connection(&shared, tls).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

async fn serve_connection<I>(shared: &Shared, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = TowerToHyperService::new(shared.router.clone());
    let body_timeout = shared.body_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let (parts, body) = request.into_parts();
        let (body, end) = super::body::with_deadline(Body::new(body), body_timeout);
        let answer = hyper::service::Service::call(&app, hyper::Request::from_parts(parts, body));
        async move {
            let mut response = answer.await?;
            if !end.reached() {
                // The rest of the body is not read: this connection carries no further request.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = shared
        .builder
        .serve_connection(TokioIo::new(Linger::new(io)), service);
    let mut conn = std::pin::pin!(conn);
    let mut stop = std::pin::pin!(shared.shutdown.cancelled());
    let mut stopping = false;
    let done = std::future::poll_fn(|cx| {
        if !stopping && stop.as_mut().poll(cx).is_ready() {
            stopping = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = done {
        tracing::debug!(error = %e, "connection closed");
    }
}
