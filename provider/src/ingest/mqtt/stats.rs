//! What the MQTT ingest counts: messages refused (by reason), connections made, connections
//! lost to a packet above the provider's read limit, and broker queues shed. The counters live
//! in memory, per provider instance, from its start (`/metrics` shows them as counters, which
//! Prometheus expects to restart at zero); the recent refusals and oversized packets are kept,
//! bounded, for the alert evaluator ([`crate::ops::alerts`]).

use std::collections::VecDeque;
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Labels of a metric: `(name, value)` pairs.
pub type Labels = Vec<(&'static str, &'static str)>;

use chrono::{DateTime, Utc};

/// Why a message was refused. Every refused message is still acknowledged to the broker, once,
/// so it is never delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Not a topic of the protocol (for example a gateway id that is not a slug).
    WrongTopic,
    /// The frame is signed by another gateway than the one its topic names.
    SignerMismatch,
    /// The signer is not an enrolled gateway.
    UnknownGateway,
    /// The gateway is revoked or unbound.
    InactiveGateway,
    /// The signature does not verify against the enrolled key.
    BadSignature,
    /// Not a frame, not the expected message, or the message names another gateway or batch.
    Malformed,
    /// Larger than a frame may be.
    TooLarge,
    /// A verified status of an older connection than the latest one seen: it changes nothing.
    StaleStatus,
}

impl Refusal {
    /// Every reason (metrics list each, even at zero).
    pub const ALL: [Self; 8] = [
        Self::WrongTopic,
        Self::SignerMismatch,
        Self::UnknownGateway,
        Self::InactiveGateway,
        Self::BadSignature,
        Self::Malformed,
        Self::TooLarge,
        Self::StaleStatus,
    ];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongTopic => "wrong-topic",
            Self::SignerMismatch => "signer-mismatch",
            Self::UnknownGateway => "unknown-gateway",
            Self::InactiveGateway => "inactive-gateway",
            Self::BadSignature => "bad-signature",
            Self::Malformed => "malformed",
            Self::TooLarge => "too-large",
            Self::StaleStatus => "stale-status",
        }
    }

    fn labels(self) -> Labels {
        vec![("reason", self.as_str())]
    }
}

/// How far back the recent events reach (the alert window).
pub const RECENT_WINDOW: chrono::Duration = chrono::Duration::minutes(15);
/// Most recent events kept of each sort.
const RECENT_MAX: usize = 1024;

/// The counters; shared by the ingest, `/metrics` (which registers them as they are) and the
/// alert evaluator.
#[derive(Debug)]
pub struct MqttStats {
    /// Messages refused, by `reason` ([`Refusal::as_str`]; every reason listed, even at zero).
    pub refused: Family<Labels, Counter>,
    /// CONNACKs received.
    pub connections: Counter,
    /// Connections lost to a packet above the read limit.
    pub oversized: Counter,
    /// Broker queues shed (reconnects with a clean session).
    pub shed: Counter,
    recent_refused: Mutex<VecDeque<DateTime<Utc>>>,
    recent_oversized: Mutex<VecDeque<DateTime<Utc>>>,
}

/// The events of the last [`RECENT_WINDOW`], for the alert evaluator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttActivity {
    /// When messages were refused.
    pub refused: Vec<DateTime<Utc>>,
    /// When the connection failed on a packet above the read limit.
    pub oversized: Vec<DateTime<Utc>>,
}

fn remember(list: &Mutex<VecDeque<DateTime<Utc>>>, at: DateTime<Utc>) {
    let mut list = list
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    while list
        .front()
        .is_some_and(|t| *t < at - RECENT_WINDOW || list.len() >= RECENT_MAX)
    {
        list.pop_front();
    }
    list.push_back(at);
}

fn recent(list: &Mutex<VecDeque<DateTime<Utc>>>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let list = list
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    list.iter()
        .copied()
        .filter(|t| *t >= now - RECENT_WINDOW)
        .collect()
}

impl Default for MqttStats {
    fn default() -> Self {
        let refused = Family::default();
        for reason in Refusal::ALL {
            let _ = refused.get_or_create(&reason.labels());
        }
        Self {
            refused,
            connections: Counter::default(),
            oversized: Counter::default(),
            shed: Counter::default(),
            recent_refused: Mutex::default(),
            recent_oversized: Mutex::default(),
        }
    }
}

impl MqttStats {
    /// Counts a refused message.
    pub fn refused(&self, reason: Refusal, at: DateTime<Utc>) {
        self.refused.get_or_create(&reason.labels()).inc();
        remember(&self.recent_refused, at);
    }

    /// Counts a CONNACK.
    pub fn connected(&self) {
        self.connections.inc();
    }

    /// Counts a connection lost to a packet above the read limit.
    pub fn oversized(&self, at: DateTime<Utc>) {
        self.oversized.inc();
        remember(&self.recent_oversized, at);
    }

    /// Counts a broker queue shed (a reconnect with a clean session).
    pub fn shed(&self) {
        self.shed.inc();
    }

    /// Messages refused for `reason` since start.
    pub fn refused_total(&self, reason: Refusal) -> u64 {
        self.refused.get_or_create(&reason.labels()).get()
    }

    /// The events of the last [`RECENT_WINDOW`] before `now`.
    pub fn activity(&self, now: DateTime<Utc>) -> MqttActivity {
        MqttActivity {
            refused: recent(&self.recent_refused, now),
            oversized: recent(&self.recent_oversized, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_keeps_only_the_recent_window() {
        let stats = MqttStats::default();
        let t0 = Utc::now();
        stats.refused(Refusal::TooLarge, t0 - chrono::Duration::hours(1));
        stats.refused(Refusal::TooLarge, t0);
        stats.refused(Refusal::WrongTopic, t0);
        stats.oversized(t0);
        assert_eq!(stats.refused_total(Refusal::TooLarge), 2);
        assert_eq!(stats.refused_total(Refusal::WrongTopic), 1);
        assert_eq!(stats.refused_total(Refusal::Malformed), 0);
        let activity = stats.activity(t0);
        assert_eq!((activity.refused.len(), activity.oversized.len()), (2, 1));
        assert!(stats.activity(t0 + RECENT_WINDOW * 2).refused.is_empty());
        for _ in 0..RECENT_MAX * 2 {
            stats.refused(Refusal::Malformed, t0);
        }
        assert_eq!(stats.activity(t0).refused.len(), RECENT_MAX);
    }
}
