//! Bounded polling: every wait has a deadline.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `done` every 50 ms until it holds (`true`) or `limit` passes (`false`).
pub async fn eventually<F, Fut>(limit: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Polls `done` every `every` until it holds; panics naming `what` once `limit` has passed.
pub async fn until<F, Fut>(what: &str, limit: Duration, every: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Polls `probe` every `every` until its value satisfies `done` or `limit` passes; returns the
/// last value seen either way (for the caller to assert on).
pub async fn settle<T, F, Fut>(
    limit: Duration,
    every: Duration,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + limit;
    loop {
        let seen = probe().await;
        if done(&seen) || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `probe` every 100 ms (blocking the thread) until it gives a value or `limit` passes;
/// on timeout panics with what the last probe saw.
pub fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Waits (up to `limit`, blocking the thread) until the file at `path` holds `needle` at least
/// `times` times; panics with the file's text otherwise.
pub fn wait_for_text(path: &std::path::Path, needle: &str, times: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(needle).count() >= times {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
