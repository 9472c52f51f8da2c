//! Liveness towards systemd: `READY=1` once the agent runs, `STOPPING=1` on shutdown, and a
//! watchdog that pings `WATCHDOG=1` **only while every registered loop makes progress**.
//!
//! The agent registers two loops, the BLE supervisor ([`crate::ble::supervisor`], with its
//! central) and the syncer. Each holds a [`Beat`] and ticks it at every turn, idle turns
//! included: a loop that waits (for an event, for a retry while BlueZ is missing) still wakes
//! at least every [`Beat::pulse`], a quarter of the watchdog interval, so "progress" means the
//! loop is alive and turning, not that it has work. The watchdog actor pings at half the
//! interval systemd asks for (`WATCHDOG_USEC`) when every loop ticked within the last whole
//! interval; otherwise it stops pinging and logs which loop is stuck, so systemd restarts the
//! agent (`Restart=always`). A stuck loop is the failure a process that merely stays alive
//! hides.
//!
//! Ticks are read on the monotonic clock (tokio's, so tests can pause it): setting the wall
//! clock (NTP on a Pi without a real-time clock) neither stalls nor revives a loop.
//!
//! The notify protocol is a datagram to `$NOTIFY_SOCKET` (a path, or an abstract name starting
//! with `@`). Without that variable (not under systemd) every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where notifications go. Cheap to clone; the agent, the outbox opener and the watchdog
/// actor each hold one.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// `$NOTIFY_SOCKET`: a path, or an abstract name starting with `@`. `None` outside
    /// systemd: every notification is then dropped silently.
    socket: Option<String>,
    /// `$WATCHDOG_USEC` as a duration; `None` when unset, unparsable or zero (no watchdog).
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

/// Shortest and longest [`Beat::pulse`].
const PULSE_MIN: Duration = Duration::from_millis(10);
const PULSE_MAX: Duration = Duration::from_secs(5);

/// The set of loops the watchdog watches. Built by the agent, which registers each loop,
/// then handed to the watchdog actor.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The instant tick times are counted from (milliseconds on tokio's monotonic clock).
    base: Instant,
    /// The pulse handed to every [`Beat`]: a quarter of the watchdog interval, 10 ms to 5 s
    /// (5 s without a watchdog).
    pulse: Duration,
    /// Each loop's name (logged when it stalls) and its last tick, shared with its [`Beat`].
    loops: Vec<(&'static str, Arc<AtomicU64>)>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new(None)
    }
}

/// A loop's heartbeat; tick it at every turn of the loop. Clones tick the same loop (the BLE
/// supervisor shares its beat with each central it starts).
#[derive(Debug, Clone)]
pub struct Beat {
    /// The [`Progress`] base the tick is measured from.
    base: Instant,
    /// Milliseconds since `base` of the last tick; written here, read by the watchdog.
    last: Arc<AtomicU64>,
    /// See [`Self::pulse`].
    pulse: Duration,
}

impl Beat {
    /// Records progress now.
    pub fn tick(&self) {
        self.last
            .store(millis_since(self.base, Instant::now()), Ordering::Relaxed);
    }

    /// The longest a loop holding this beat may wait without a turn: a quarter of the watchdog
    /// interval (so a window holds several ticks), between 10 ms and 5 s.
    pub fn pulse(&self) -> Duration {
        self.pulse
    }
}

fn millis_since(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX)
}

impl Progress {
    /// The loops of an agent whose watchdog interval is `watchdog` (none: not under a systemd
    /// watchdog; the loops still pulse, slowly).
    pub fn new(watchdog: Option<Duration>) -> Self {
        let pulse = watchdog.map_or(PULSE_MAX, |w| (w / 4).clamp(PULSE_MIN, PULSE_MAX));
        Self {
            base: Instant::now(),
            pulse,
            loops: Vec::new(),
        }
    }

    /// Registers a loop; it counts as having ticked now.
    pub fn register(&mut self, name: &'static str) -> Beat {
        let cell = Arc::new(AtomicU64::new(millis_since(self.base, Instant::now())));
        self.loops.push((name, cell.clone()));
        Beat {
            base: self.base,
            last: cell,
            pulse: self.pulse,
        }
    }

    /// Loops that have not ticked within `max_age` before `now`.
    pub fn stalled(&self, now: Instant, max_age: Duration) -> Vec<&'static str> {
        let now = millis_since(self.base, now);
        let max = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        self.loops
            .iter()
            .filter(|(_, last)| now.saturating_sub(last.load(Ordering::Relaxed)) > max)
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
        let stalled = progress.stalled(Instant::now(), interval);
        if stalled.is_empty() {
            notifier.notify("WATCHDOG=1");
            if reported {
                tracing::warn!("every loop makes progress again: pinging the watchdog");
            }
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

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_ticking_is_stalled() {
        let mut p = Progress::new(Some(Duration::from_secs(8)));
        let ble = p.register("ble");
        let sync = p.register("sync");
        assert_eq!(ble.pulse(), Duration::from_secs(2));
        assert!(
            p.stalled(Instant::now(), Duration::from_secs(10))
                .is_empty()
        );
        tokio::time::sleep(Duration::from_secs(20)).await;
        sync.tick();
        assert_eq!(
            p.stalled(Instant::now(), Duration::from_secs(10)),
            vec!["ble"]
        );
        ble.tick();
        assert!(
            p.stalled(Instant::now(), Duration::from_secs(10))
                .is_empty()
        );
        // The pulse stays within its bounds.
        assert_eq!(
            Progress::new(Some(Duration::from_millis(4)))
                .register("x")
                .pulse(),
            PULSE_MIN
        );
        assert_eq!(Progress::new(None).register("x").pulse(), PULSE_MAX);
    }

    /// Drains the datagrams sent so far; every one must be a watchdog ping.
    fn pings(server: &UnixDatagram) -> usize {
        let mut buf = [0u8; 64];
        let mut n = 0;
        while let Ok(len) = server.recv(&mut buf) {
            assert_eq!(&buf[..len], b"WATCHDOG=1");
            n += 1;
        }
        n
    }

    /// Ticks `beats` every 20 ms for `total` (paused clock: exact).
    async fn run_for(total: Duration, beats: &[&Beat]) {
        let step = Duration::from_millis(20);
        let mut elapsed = Duration::ZERO;
        while elapsed < total {
            for b in beats {
                b.tick();
            }
            tokio::time::sleep(step).await;
            elapsed += step;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_pings_only_while_both_loops_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        server.set_nonblocking(true).unwrap();
        let interval = Duration::from_millis(200);
        let mut progress = Progress::new(Some(interval));
        let ble = progress.register("ble");
        let sync = progress.register("sync");
        let cancel = CancellationToken::new();
        let n = Notifier::new(Some(path), Some(interval));
        let task = tokio::spawn(watchdog(n, progress, cancel.clone()));

        // Both loops turn: a ping every 100 ms.
        run_for(Duration::from_millis(1000), &[&ble, &sync]).await;
        let both = pings(&server);
        assert!((9..=11).contains(&both), "pinged {both} times in 1 s");

        // The BLE loop stalls while sync keeps turning: within one interval the pings stop.
        run_for(Duration::from_millis(300), &[&sync]).await;
        assert!(pings(&server) <= 3);
        run_for(Duration::from_millis(1000), &[&sync]).await;
        assert_eq!(pings(&server), 0, "no ping while the BLE loop is stalled");

        // The sync loop stalls instead: still no ping.
        run_for(Duration::from_millis(300), &[&ble]).await;
        let _ = pings(&server);
        run_for(Duration::from_millis(1000), &[&ble]).await;
        assert_eq!(pings(&server), 0, "no ping while the sync loop is stalled");

        // Both turn again: the pings come back.
        run_for(Duration::from_millis(500), &[&ble, &sync]).await;
        assert!(pings(&server) >= 4);
        cancel.cancel();
        task.await.unwrap();
    }
}
