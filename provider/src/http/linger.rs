//! A connection that lingers when it is closed: shutting it down ends the sending side (TLS
//! `close_notify`, then TCP FIN) and then reads and discards what the client still sends, until
//! the client closes its side, [`LINGER`] has passed or [`LINGER_BYTES`] were discarded.
//!
//! Closing a socket whose receive buffer still holds data makes the kernel send a reset, which
//! can destroy the answer the client has not read yet: a Portal still uploading a body above
//! the limit would see a cut connection instead of its 413. Lingering lets it read the answer.
//! The HTTP server shuts a connection down after its last answer (and flushes that answer
//! first), so every connection ends this way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Longest a closed connection keeps reading what the client still sends.
pub const LINGER: Duration = Duration::from_secs(5);
/// Most bytes discarded after the last answer.
pub const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// `I`, lingering on shutdown.
#[derive(Debug)]
pub struct Linger<I> {
    io: I,
    draining: Option<Draining>,
}

#[derive(Debug)]
struct Draining {
    deadline: Pin<Box<Sleep>>,
    discarded: usize,
    done: bool,
}

impl<I> Linger<I> {
    /// Wraps `io`.
    pub fn new(io: I) -> Self {
        Self { io, draining: None }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Linger<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.draining.is_none() {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.draining = Some(Draining {
                deadline: Box::pin(tokio::time::sleep(LINGER)),
                discarded: 0,
                done: false,
            });
        }
        let Some(draining) = this.draining.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0; 8192];
        while !draining.done {
            if draining.deadline.as_mut().poll(cx).is_ready() {
                draining.done = true;
                break;
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    draining.discarded += buf.filled().len();
                    draining.done = draining.discarded >= LINGER_BYTES;
                }
                // The client closed its side, or the connection broke: nothing left to wait for.
                Poll::Ready(end) => {
                    tracing::debug!(discarded = draining.discarded, end = ?end.err(),
                        "connection drained");
                    draining.done = true;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}
