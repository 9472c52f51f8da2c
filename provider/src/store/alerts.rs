//! Alerts' records: conditions computed from stored state, each kept as one row per occurrence
//! with the states open → acknowledged → resolved.
//!
//! Every condition has a key `(kind, subject)`; a partial unique index on the open rows makes
//! raising the same condition twice impossible even if two evaluators raced. An acknowledged
//! alert stays until its condition clears.
//!
//! The rules that say which conditions hold are the operations' (`ops::alerts`); the evaluator
//! runs them inside its transaction through [`Store::evaluate_alerts`], so what it reads and
//! what it writes cannot drift apart. `hub-update-held` (one per session, [`hub_update_held`])
//! is also opened by the HUB outbox in the transaction that holds a refused update, and
//! resolved in the one that delivers the session's last held or re-queued update
//! ([`super::sqlite::alerts::resolve`]), so it shows without waiting for the evaluator.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::adherence::SessionAdherence;
use super::fleet::GatewayHealth;
use super::hub_outbox::FlaggedSession;
use super::{Backend, Store, StoreError, postgres, sqlite};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// Not heard for longer than `offline_alert_h`.
    GatewayOffline,
    /// The oldest unacknowledged reading is older than `backlog_max_age_h`.
    BacklogStale,
    /// The backlog has grown for longer than `backlog_growing_h`.
    BacklogGrowing,
    /// A device's battery is below `battery_low_pct`.
    BatteryLow,
    /// The gateway's clock is not synchronized.
    ClockUnsynchronized,
    /// The outbox uses more than `disk_max_pct` of its quota.
    DiskHigh,
    /// The provider rejected readings the gateway still holds.
    ReadingsRejected,
    /// A scheduled measurement is missing at its deadline (blue alarm).
    MeasurementMissed,
    /// The HUB kept refusing a session's status update: it and the session's later updates
    /// are held until an operator re-queues it (open until they are delivered).
    HubUpdateHeld,
    /// The MQTT ingest refused messages recently (forged, malformed, too large, ...).
    MqttMessagesRefused,
    /// The broker delivered a packet larger than the provider reads: its limit must be set.
    MqttPacketTooLarge,
    /// The gateway's heartbeat names its `disk-full` alarm: its disk is full, new readings stay
    /// on the devices until space is freed.
    GatewayDiskFull,
    /// The gateway's heartbeat names its `outbox-reset` alarm: its outbox was found reset or
    /// lost its last writes; readings may be lost.
    GatewayOutboxReset,
    /// The gateway's heartbeat names its `provider-refuses-gateway` alarm: its readings are
    /// refused (or unanswered) for its identity and are kept on the gateway.
    GatewayRefused,
}

impl AlertKind {
    /// Every kind (metrics list each, even at zero).
    pub const ALL: [Self; 14] = [
        Self::GatewayOffline,
        Self::BacklogStale,
        Self::BacklogGrowing,
        Self::BatteryLow,
        Self::ClockUnsynchronized,
        Self::DiskHigh,
        Self::ReadingsRejected,
        Self::MeasurementMissed,
        Self::HubUpdateHeld,
        Self::MqttMessagesRefused,
        Self::MqttPacketTooLarge,
        Self::GatewayDiskFull,
        Self::GatewayOutboxReset,
        Self::GatewayRefused,
    ];

    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GatewayOffline => "gateway-offline",
            Self::BacklogStale => "backlog-stale",
            Self::BacklogGrowing => "backlog-growing",
            Self::BatteryLow => "battery-low",
            Self::ClockUnsynchronized => "clock-unsynchronized",
            Self::DiskHigh => "disk-high",
            Self::ReadingsRejected => "readings-rejected",
            Self::MeasurementMissed => "measurement-missed",
            Self::HubUpdateHeld => "hub-update-held",
            Self::MqttMessagesRefused => "mqtt-messages-refused",
            Self::MqttPacketTooLarge => "mqtt-packet-too-large",
            Self::GatewayDiskFull => "disk-full",
            Self::GatewayOutboxReset => "outbox-reset",
            Self::GatewayRefused => "provider-refuses-gateway",
        }
    }
}

/// A condition that holds. `kind` and `subject` together are its identity: an alert is opened
/// only when no unresolved alert has both, and resolved when the condition no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What is wrong.
    pub kind: AlertKind,
    /// What it is about: a gateway id, `gateway/address`, or `session/measure`.
    pub subject: String,
    /// The gateway concerned; `None` for conditions of a session without a gateway or of the
    /// MQTT ingest itself.
    pub gateway_id: Option<String>,
    /// The session concerned; `None` for an unbound gateway or the MQTT ingest.
    pub telemonitoring_id: Option<String>,
    /// For the operator (never a measured value or a patient id); not part of the identity,
    /// so a changing detail does not reopen the alert.
    pub detail: String,
}

/// An alert row not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    /// Row id in `ops_alerts`.
    pub alert_id: i64,
    /// Kind, as stored ([`AlertKind::as_str`]).
    pub kind: String,
    /// Subject, compared with a [`Condition`]'s to know whether it still holds.
    pub subject: String,
}

/// A change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Raise a new alert.
    Open(Condition),
    /// The condition cleared.
    Resolve(OpenAlert),
}

/// What the store holds that the alert rules judge, read in the evaluation's transaction.
#[derive(Debug, Clone, Default)]
pub struct AlertInputs {
    /// Every enrolled gateway.
    pub gateways: Vec<GatewayHealth>,
    /// Monitored sessions with a schedule.
    pub sessions: Vec<SessionAdherence>,
    /// Sessions whose HUB updates are held (or re-queued, not yet delivered).
    pub held_updates: Vec<FlaggedSession>,
    /// Alerts not yet resolved.
    pub open: Vec<OpenAlert>,
}

/// One alert row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    /// Id (for acknowledging).
    pub alert_id: i64,
    /// Kind.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Gateway.
    pub gateway_id: Option<String>,
    /// Session.
    pub telemonitoring_id: Option<String>,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    /// For the operator.
    pub detail: String,
    /// Opened.
    pub opened_at: String,
    /// Acknowledged.
    pub acknowledged_at: Option<String>,
    /// By whom.
    pub acknowledged_by: Option<String>,
    /// Resolved.
    pub resolved_at: Option<String>,
}

/// The condition of a session whose HUB update is held (subject: the session).
pub fn hub_update_held(f: &FlaggedSession) -> Condition {
    let answer = f.last_error.as_deref().unwrap_or("no answer recorded");
    Condition {
        kind: AlertKind::HubUpdateHeld,
        subject: f.telemonitoring_id.clone(),
        gateway_id: f.gateway_id.clone(),
        telemonitoring_id: Some(f.telemonitoring_id.clone()),
        detail: format!(
            "the HUB refused update #{} ({}): {}; the session's later updates wait until it is \
             re-queued and delivered",
            f.seq,
            f.status,
            answer.chars().take(200).collect::<String>()
        ),
    }
}

impl Store {
    /// One alert evaluation at `now`, in one write transaction: reads what the rules judge,
    /// asks `decide` for the transitions and applies them (an open that collides with an open
    /// row of the same key is ignored). Returns the transitions.
    pub async fn evaluate_alerts<F>(
        &self,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<Vec<Transition>, StoreError>
    where
        F: FnOnce(AlertInputs) -> Vec<Transition> + Send + 'static,
    {
        match &self.backend {
            Backend::Postgres(pg) => postgres::alerts::evaluate(pg, now, decide).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::alerts::evaluate(c, now, decide))
                    .await
            }
        }
    }

    /// Alerts, unresolved first (open before acknowledged), then newest first; `gateway`
    /// restricts to one gateway, `unresolved` drops resolved ones; at most `limit`.
    pub async fn list_alerts(
        &self,
        gateway: Option<String>,
        unresolved: bool,
        limit: u32,
    ) -> Result<Vec<AlertRow>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::alerts::alerts(pg, gateway.as_deref(), unresolved, limit).await
            }
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::alerts::list(c, gateway.as_deref(), unresolved, limit))
                    .await
            }
        }
    }

    /// Acknowledges open alert `alert_id` for `by` at `now`; false when it is not open.
    pub async fn acknowledge_alert(
        &self,
        alert_id: i64,
        by: String,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::alerts::acknowledge(pg, alert_id, &by, now).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::alerts::acknowledge(c, alert_id, &by, now))
                    .await
            }
        }
    }
}
