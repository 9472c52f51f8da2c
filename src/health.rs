//! Liveness towards systemd: `READY=1` once the agent runs, `STOPPING=1` on shutdown, and a
//! watchdog that pings `WATCHDOG=1` **only while every registered loop makes progress**.
//!
//! Each long-running loop (BLE central, sync) holds a [`Beat`] and ticks it at every turn,
//! including idle turns (they all wake at least every few seconds). The watchdog actor pings at
//! half the interval systemd asks for (`WATCHDOG_USEC`); when a loop has not ticked for the
//! whole interval it stops pinging and logs which loop is stuck, so systemd restarts the agent
//! (`Restart=always`). A stuck loop is the failure a process that merely stays alive hides.
//!
//! The notify protocol is a datagram to `$NOTIFY_SOCKET` (a path, or an abstract name starting
//! with `@`). Without that variable (not under systemd) every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Where notifications go.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC`, as systemd sets them for `Type=notify`.
    pub fn from_env() -> Self {
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0)
            .map(Duration::from_micros);
        Self {
            socket: std::env::var("NOTIFY_SOCKET").ok(),
            watchdog,
        }
    }

    /// An explicit socket path and watchdog interval (tests).
    pub fn new(socket: Option<PathBuf>, watchdog: Option<Duration>) -> Self {
        Self {
            socket: socket.map(|p| p.to_string_lossy().into_owned()),
            watchdog,
        }
    }

    /// The watchdog interval systemd asked for, if any.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one notification (`READY=1`, `WATCHDOG=1`, `STATUS=...`). Failures are logged,
    /// never fatal: the agent's work does not depend on systemd hearing it.
    pub fn notify(&self, state: &str) {
        let Some(socket) = &self.socket else { return };
        let sent = UnixDatagram::unbound().and_then(|sock| {
            if let Some(name) = socket.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt as _;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                sock.send_to_addr(state.as_bytes(), &addr)
            } else {
                sock.send_to(state.as_bytes(), socket)
            }
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not notify systemd");
        }
    }
}

/// The set of loops the watchdog watches.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    loops: Vec<(&'static str, Arc<AtomicI64>)>,
}

/// A loop's heartbeat; tick it at every turn of the loop.
#[derive(Debug, Clone)]
pub struct Beat(Arc<AtomicI64>);

impl Beat {
    /// Records progress now.
    pub fn tick(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Progress {
    /// Registers a loop; it counts as having ticked now.
    pub fn register(&mut self, name: &'static str) -> Beat {
        let cell = Arc::new(AtomicI64::new(now_ms()));
        self.loops.push((name, cell.clone()));
        Beat(cell)
    }

    /// Loops that have not ticked within `max_age` before `now_ms`.
    pub fn stalled(&self, now_ms: i64, max_age: Duration) -> Vec<&'static str> {
        let max = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        self.loops
            .iter()
            .filter(|(_, last)| now_ms - last.load(Ordering::Relaxed) > max)
            .map(|(name, _)| *name)
            .collect()
    }
}

/// Pings the watchdog at half its interval while every loop progresses; stops when `cancel`
/// fires. Returns at once when systemd asked for no watchdog.
pub async fn watchdog(notifier: Notifier, progress: Progress, cancel: CancellationToken) {
    let Some(interval) = notifier.watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(interval / 2);
    let mut reported = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let stalled = progress.stalled(now_ms(), interval);
        if stalled.is_empty() {
            notifier.notify("WATCHDOG=1");
            reported = false;
        } else if !reported {
            tracing::error!(loops = ?stalled, "a loop made no progress: not pinging the watchdog, systemd will restart the agent");
            reported = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(path), None);
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        // Without a socket nothing happens and nothing fails.
        Notifier::new(None, None).notify("READY=1");
    }

    #[test]
    fn a_loop_that_stops_ticking_is_stalled() {
        let mut p = Progress::default();
        let ble = p.register("ble");
        let sync = p.register("sync");
        let t0 = now_ms();
        assert!(p.stalled(t0, Duration::from_secs(10)).is_empty());
        ble.0.store(t0 - 20_000, Ordering::Relaxed);
        sync.tick();
        assert_eq!(p.stalled(t0, Duration::from_secs(10)), vec!["ble"]);
        ble.tick();
        assert!(p.stalled(now_ms(), Duration::from_secs(10)).is_empty());
    }

    #[tokio::test]
    async fn the_watchdog_pings_only_while_loops_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let mut progress = Progress::default();
        let beat = progress.register("sync");
        let cancel = CancellationToken::new();
        let n = Notifier::new(Some(path), Some(Duration::from_millis(200)));
        let task = tokio::spawn(watchdog(n, progress, cancel.clone()));
        for _ in 0..6 {
            beat.tick();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut buf = [0u8; 64];
        let mut pings = 0;
        while let Ok(len) = server.recv(&mut buf) {
            assert_eq!(&buf[..len], b"WATCHDOG=1");
            pings += 1;
        }
        assert!(pings >= 2, "pinged {pings} times while progressing");
        // The loop stops ticking: after the interval, no more pings.
        tokio::time::sleep(Duration::from_millis(450)).await;
        while server.recv(&mut buf).is_ok() {}
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(server.recv(&mut buf).is_err(), "no ping while stalled");
        cancel.cancel();
        task.await.unwrap();
    }
}
