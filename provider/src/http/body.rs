//! A request body with a deadline: the client must finish sending it within the configured body
//! timeout, counted from the moment its headers arrived. A body still incomplete at the deadline
//! ends with [`BodyTimeout`]; handlers reading it get an error (answered 408 by the Portal
//! routes), and the connection is closed after the answer since the rest of the body was never
//! read. A client trickling a byte every few seconds therefore holds a connection for at most
//! the body timeout, not forever. [`BodyEnd`] tells the server whether the body was read to its
//! end: an answer given while part of the body is unread carries `Connection: close`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

/// The body was not received in time.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// Whether `error` (from reading a request body) is a [`BodyTimeout`].
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Why a bounded body could not be read ([`read_limited`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// More than the limit was sent (413).
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// The client did not finish sending it in time (408).
    #[error("request body not received in time")]
    Timeout,
    /// The connection broke off before its end (400).
    #[error("request body incomplete")]
    Incomplete,
}

/// Reads at most `limit` bytes of a body.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let cause = e.into_inner();
        if is_timeout(cause.as_ref()) {
            BodyError::Timeout
        } else if is_length_limit(cause.as_ref()) {
            BodyError::TooLarge(limit)
        } else {
            BodyError::Incomplete
        }
    })
}

fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Whether a request body was read to its end; when it was not, the connection cannot carry
/// another request, and the answer says so (`Connection: close`) so that the client does not
/// send its next request on a connection about to close.
#[derive(Debug, Clone)]
pub struct BodyEnd(Arc<AtomicBool>);

impl BodyEnd {
    /// Whether the whole body was read (or there was none).
    pub fn reached(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `inner` bounded by `limit` from now, and what tells whether it was read to its end.
pub fn with_deadline(inner: Body, limit: Duration) -> (Body, BodyEnd) {
    let end = BodyEnd(Arc::new(AtomicBool::new(inner.is_end_stream())));
    let body = Body::new(DeadlineBody {
        inner,
        limit,
        deadline: Box::pin(tokio::time::sleep(limit)),
        end: end.clone(),
    });
    (body, end)
}

struct DeadlineBody {
    inner: Body,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
    end: BodyEnd,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if frame.is_none() || this.inner.is_end_stream() {
                this.end.0.store(true, Ordering::Release);
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that sent its headers and then nothing.
    struct Silent;

    impl HttpBody for Silent {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out_and_a_complete_one_does_not() {
        let (body, end) = with_deadline(Body::new(Silent), Duration::from_millis(100));
        let err = axum::body::to_bytes(body, 1024).await.unwrap_err();
        assert!(is_timeout(&err), "{err:?}");
        assert!(!end.reached());

        let (body, end) = with_deadline(Body::from("whole"), Duration::from_secs(3));
        assert!(!end.reached());
        assert_eq!(axum::body::to_bytes(body, 1024).await.unwrap(), "whole");
        assert!(end.reached());
        assert!(
            with_deadline(Body::empty(), Duration::from_secs(3))
                .1
                .reached()
        );
    }
}
