//! The enrollment API's rate limit: failed attempts counted per minute, all gateways together.

use std::time::Duration;

use tokio::time::Instant;

/// Counts failed enrollment attempts per minute, all gateways together: with 40-bit codes and
/// a handful of failures a minute, guessing a live code is hopeless.
#[derive(Debug)]
pub struct FailureWindow {
    started: Instant,
    failures: u32,
}

impl Default for FailureWindow {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            failures: 0,
        }
    }
}

impl FailureWindow {
    const WINDOW: Duration = Duration::from_secs(60);

    fn roll(&mut self) {
        if self.started.elapsed() >= Self::WINDOW {
            self.started = Instant::now();
            self.failures = 0;
        }
    }

    /// Whether another attempt may be tried now.
    pub fn allows(&mut self, limit: u32) -> bool {
        self.roll();
        self.failures < limit
    }

    /// Records a failed attempt.
    pub fn record_failure(&mut self) {
        self.roll();
        self.failures = self.failures.saturating_add(1);
    }
}
