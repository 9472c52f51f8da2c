//! The one retry policy of every loop that waits after a failure: the agent's sync, its BLE
//! links and Bluetooth supervisor, its outbox on a full disk; the provider's HUB outbox and its
//! MQTT ingest connection.
//!
//! The delay before retry `n` (counted from 0 since the last success) has a ceiling of
//! `min(max, initial * 2^n)`. [`Jitter`] says how much of it is drawn at random: a fleet that
//! lost its provider at the same moment must not come back in lockstep (full jitter), a device
//! link wants a delay that still grows (half), and a local resource (a full disk, a missing
//! adapter) is simply looked at again (none). Random draws come from the system's secure
//! random source, so two processes started at the same instant do not draw alike.

use std::time::Duration;

/// How much of the ceiling is random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, ceiling]`.
    Full,
    /// Uniform in `[ceiling / 2, ceiling]`.
    Half,
    /// Exactly the ceiling.
    None,
}

/// Exponential backoff: the attempts since the last success and the policy.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: Jitter,
    attempt: u32,
}

impl Backoff {
    /// Starting at `initial`, doubling up to `max`, with full jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            jitter: Jitter::Full,
            attempt: 0,
        }
    }

    /// The same policy with another jitter.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The ceiling of retry `attempt` (from 0).
    pub fn ceiling_at(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        self.ceiling_at(self.attempt)
    }

    /// A delay for retry `attempt` (from 0), drawn by the policy; does not count an attempt.
    pub fn delay_at(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling_at(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let floor = match self.jitter {
            Jitter::Full => 0,
            Jitter::Half => nanos / 2,
            Jitter::None => return ceiling,
        };
        let span = nanos - floor;
        let drawn = if span == 0 {
            0
        } else {
            random_u64() % span.saturating_add(1)
        };
        Duration::from_nanos(floor + drawn)
    }

    /// The next delay, and one more attempt counted.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.delay_at(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Attempts counted since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// 64 bits from the system's secure random source.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system random source works");
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_ceiling_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(100 * MS, 2000 * MS).with_jitter(Jitter::None);
        let delays: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.attempts(), 7);
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
        // Far past the cap nothing overflows.
        assert_eq!(b.ceiling_at(u32::MAX), 2000 * MS);
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_ceiling() {
        let b = Backoff::new(1000 * MS, 1000 * MS);
        let draws: Vec<Duration> = (0..200).map(|_| b.delay_at(0)).collect();
        assert!(draws.iter().all(|d| *d <= 1000 * MS));
        assert!(draws.iter().any(|d| *d < 250 * MS));
        assert!(draws.iter().any(|d| *d > 750 * MS));
    }

    #[test]
    fn half_jitter_stays_in_the_upper_half() {
        let b = Backoff::new(1000 * MS, 1000 * MS).with_jitter(Jitter::Half);
        let draws: Vec<Duration> = (0..200).map(|_| b.delay_at(3)).collect();
        assert!(draws.iter().all(|d| *d >= 500 * MS && *d <= 1000 * MS));
        assert!(draws.iter().any(|d| *d < 625 * MS));
        assert!(draws.iter().any(|d| *d > 875 * MS));
    }

    #[test]
    fn a_zero_policy_never_waits() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay(), Duration::ZERO);
        assert_eq!(b.with_jitter(Jitter::Half).next_delay(), Duration::ZERO);
    }
}
