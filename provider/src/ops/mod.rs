//! Fleet operations: what staff watching hundreds of homes they never visit need.
//!
//! - [`health`]: per gateway online/offline (heartbeat age and the MQTT last-will), last seen,
//!   version, uptime, backlog depth and age, clock, disk, last error; per device last seen, last
//!   reading, battery, RSSI. The store updates it from each verified heartbeat
//!   ([`crate::store::sqlite::fleet::record_heartbeat`]).
//! - [`alerts`]: conditions computed from stored state by the [`evaluator`] actor, with the
//!   states open, acknowledged, resolved; one open row per condition. [`adherence`] is the
//!   "blue alarm": a scheduled measurement missing at its deadline in the patient's time zone.
//! - the audit log ([`crate::store::audit`]): append-only, enrollments, device pairings and
//!   operator actions.
//! - [`hub_updates`]: HUB status updates the HUB kept refusing, held for an operator, who
//!   sees them and re-queues them.
//! - [`api`], [`dashboard`], [`metrics`]: the JSON API under `/ops/api/...`, the server-rendered
//!   dashboard under `/ops`, Prometheus text at `/metrics`; all behind the ops token
//!   ([`auth`]), never the Portal's headers.
//! - [`commands`]: remote commands signed with the provider key, pushed over MQTT and served to
//!   the gateway's poll; the gateways' reports of what each command did.
//! - [`release`]: an operator releases a gateway from its session (a signed `Release`), so a
//!   nurse can claim it for another home.

pub mod adherence;
pub mod alerts;
pub mod api;
mod auth;
pub mod commands;
pub mod dashboard;
pub mod evaluator;
pub mod health;
pub mod hub_updates;
pub mod metrics;
pub mod release;
pub mod settings;
pub mod views;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use settings::{OpsSection, Thresholds};
use tm_protocol::SigningKey;

use crate::store::Store;

/// Why operations cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The token file could not be read.
    #[error("cannot read the ops token file {path}: {source}")]
    Token {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("the ops token file {0} is empty")]
    EmptyToken(PathBuf),
    /// A threshold is invalid.
    #[error(transparent)]
    Config(#[from] tm_protocol::config_file::ConfigError),
}

impl From<crate::http::access::TokenError> for OpsError {
    fn from(e: crate::http::access::TokenError) -> Self {
        use crate::http::access::TokenError;
        match e {
            TokenError::Read { path, source } => Self::Token { path, source },
            TokenError::Empty(path) => Self::EmptyToken(path),
        }
    }
}

/// Fleet operations; cheap to clone (the HTTP routes hold one, the alert evaluator gets a
/// copy of what it needs).
#[derive(Debug, Clone)]
pub struct Ops {
    /// The provider store: health, alerts and audit are read from it, so a restarted provider
    /// knows what it knew.
    pub store: Store,
    /// The `[ops]` thresholds, validated once at start; shared read-only by the routes, and
    /// copied into the evaluator.
    pub thresholds: Arc<Thresholds>,
    /// The section as configured (the evaluation interval, the command lifetime).
    pub section: Arc<OpsSection>,
    /// The trimmed contents of `token_file`; `None` when none is configured: every operations
    /// route then answers 404.
    token: Option<Arc<str>>,
    /// The provider key, shared with ingest and enrollment; signs the commands operators issue.
    key: Arc<SigningKey>,
    /// Commands are also pushed over the provider's MQTT connection while it runs; without
    /// one the gateways' HTTPS poll is the only path.
    mqtt: crate::ingest::mqtt::publisher::MqttPublisher,
    /// Shared with the HUB outbox actor: wakes it when an operator re-queues an update. Its
    /// own default (nobody listening) until [`Self::with_hub_wake`].
    hub_wake: Arc<tokio::sync::Notify>,
    /// What this instance's ingest counted (`/metrics`); zero counters until
    /// [`Self::with_counters`].
    counters: Arc<crate::ingest::counters::IngestCounters>,
}

impl Ops {
    /// Reads the token file (if configured) and validates the thresholds.
    pub fn new(store: Store, section: OpsSection, key: Arc<SigningKey>) -> Result<Self, OpsError> {
        let token = match &section.token_file {
            Some(path) => Some(Arc::from(
                crate::http::access::read_token(path).map_err(OpsError::from)?,
            )),
            None => {
                tracing::warn!("no ops.token_file configured: the operations dashboard is off");
                None
            }
        };
        Ok(Self {
            store,
            thresholds: Arc::new(section.thresholds()?),
            section: Arc::new(section),
            token,
            key,
            mqtt: crate::ingest::mqtt::publisher::MqttPublisher::default(),
            hub_wake: Arc::default(),
            counters: Arc::default(),
        })
    }

    /// Pushes issued commands over `mqtt` (the ingest's connection) too.
    pub fn with_mqtt(mut self, mqtt: crate::ingest::mqtt::publisher::MqttPublisher) -> Self {
        self.mqtt = mqtt;
        self
    }

    /// Reports the ingest's counters in `/metrics`.
    pub fn with_counters(mut self, counters: Arc<crate::ingest::counters::IngestCounters>) -> Self {
        self.counters = counters;
        self
    }

    /// Wakes the HUB outbox (`wake`) when an operator re-queues a held update.
    pub fn with_hub_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Self {
        self.hub_wake = wake;
        self
    }

    /// The alert evaluator actor; run it with a cancellation token.
    pub fn evaluator(&self) -> evaluator::Evaluator {
        evaluator::Evaluator {
            store: self.store.clone(),
            thresholds: (*self.thresholds).clone(),
            interval: Duration::from_secs(self.section.evaluate_interval_s.max(1)),
            mqtt: self.mqtt.clone(),
        }
    }

    /// Dashboard, JSON API and metrics (authenticated), and the gateways' command poll.
    pub fn routes(&self) -> crate::http::Routes {
        api::routes(self.clone())
    }
}
