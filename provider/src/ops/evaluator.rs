//! The alert evaluator actor: every `evaluate_interval_s` it reads the fleet state, computes the
//! transitions ([`super::alerts::evaluate`]) and applies them, all in one write transaction, so
//! what it reads and what it writes cannot drift apart. Besides the stored state it judges this
//! instance's recent MQTT ingest events (refused messages, oversized packets). Stopped by its cancellation token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::alerts::{self, FleetState, Transition};
use super::settings::Thresholds;
use crate::ingest::mqtt::publisher::MqttPublisher;
use crate::ingest::mqtt::stats::MqttActivity;
use crate::lease::Leader;
use crate::store::leases::Duty;
use crate::store::{Store, StoreError};

/// One evaluation at `now`, with no MQTT ingest events; returns what changed.
pub async fn run_once(
    store: &Store,
    thresholds: &Thresholds,
    now: DateTime<Utc>,
) -> Result<Vec<Transition>, StoreError> {
    run_with(store, thresholds, MqttActivity::default(), now).await
}

/// One evaluation at `now` with this instance's recent MQTT ingest events: the store reads the
/// fleet, [`alerts::evaluate`] decides and the store applies, in one transaction
/// ([`Store::evaluate_alerts`]).
pub async fn run_with(
    store: &Store,
    thresholds: &Thresholds,
    mqtt: MqttActivity,
    now: DateTime<Utc>,
) -> Result<Vec<Transition>, StoreError> {
    let t = thresholds.clone();
    store
        .evaluate_alerts(now, move |stored| {
            alerts::evaluate(&FleetState::new(stored, mqtt), now, &t)
        })
        .await
}

/// The actor; one runs per provider, built by [`super::Ops::evaluator`].
#[derive(Debug)]
pub struct Evaluator {
    /// The provider store: each run reads the fleet and writes its transitions in one
    /// transaction on the writer connection.
    pub store: Store,
    /// The `[ops]` thresholds, a copy of [`super::Ops::thresholds`] taken at start.
    pub thresholds: Thresholds,
    /// Time between runs (`evaluate_interval_s`, at least 1 s); the first run is at once, and
    /// a late run delays the next ones instead of bunching them.
    pub interval: Duration,
    /// The MQTT connection's counters (its recent refusals and oversized packets raise
    /// alerts); counts nothing without `[mqtt]`.
    pub mqtt: MqttPublisher,
}

impl Evaluator {
    /// Runs until `cancel`. A failed run is logged and retried at the next tick.
    #[tracing::instrument(name = "ops", skip_all)]
    ///
    /// With several instances on one store, only the holder of [`Duty::AlertEvaluator`]
    /// evaluates (and judges its own MQTT counters); the others skip their ticks.
    pub async fn run(self, cancel: CancellationToken) {
        let leader = Leader::start(
            self.store.clone(),
            Duty::AlertEvaluator,
            None,
            cancel.clone(),
        );
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !leader.is_held() {
                continue;
            }
            let now = Utc::now();
            let mqtt = self.mqtt.stats().activity(now);
            match run_with(&self.store, &self.thresholds, mqtt, now).await {
                Ok(changes) => {
                    for c in &changes {
                        match c {
                            Transition::Open(c) => {
                                tracing::warn!(kind = c.kind.as_str(), subject = %c.subject, "alert opened")
                            }
                            Transition::Resolve(a) => {
                                tracing::info!(kind = %a.kind, subject = %a.subject, "alert resolved")
                            }
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "alert evaluation failed"),
            }
        }
    }
}
