//! What the nurse's setup page reads and records once her session has its gateway
//! (`enroll::setup`): the gateway bound to the session, its newest heartbeat since the claim
//! (the setup state in it), the setup mode the provider already commanded, and the reading of
//! each paired device the page shows (`setup_first_readings`).
//!
//! Everything here is read from stored state, so the page shows the same thing from any
//! provider instance and after a restart. The page polls every second: [`Store::setup_view`]
//! is one read; a write happens only when something is new (a first reading to record, a
//! step to audit).

use chrono::{DateTime, Utc};
use tm_protocol::{GatewayId, Heartbeat, Reading};

use super::audit::AuditAction;
use super::{Backend, Store, StoreError, postgres, sqlite};

/// The session's gateway as the setup page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupView {
    /// The gateway bound to the session (active).
    pub gateway_id: GatewayId,
    /// When it was bound to the session (claimed or enrolled).
    pub claimed_at: DateTime<Utc>,
    /// When the nurse finished the setup; `None` while it runs.
    pub setup_done_at: Option<DateTime<Utc>>,
    /// The newest heartbeat received since the claim, with its receive time (provider clock).
    pub heartbeat: Option<(DateTime<Utc>, Heartbeat)>,
    /// The latest `until` of the unexpired setup commands issued to the gateway.
    pub commanded_until: Option<DateTime<Utc>>,
    /// For each paired device of the heartbeat that has a reading in the session: the reading
    /// shown (the one recorded as shown, else the newest committed), in the heartbeat's order.
    pub readings: Vec<DeviceReading>,
}

/// The reading of one paired device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReading {
    /// The device's address.
    pub address: String,
    /// The reading.
    pub reading: Reading,
    /// Whether the page already recorded (and audited) it as the device's first reading.
    pub recorded: bool,
}

/// One step of the setup to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupStep {
    /// The session.
    pub telemonitoring_id: String,
    /// Its gateway.
    pub gateway_id: GatewayId,
    /// What happened.
    pub action: AuditAction,
    /// The device concerned.
    pub device: Option<String>,
    /// Anything else (never a secret, never a value).
    pub detail: String,
}

/// Who the audit names for the page's steps.
pub const ACTOR: &str = "nurse:setup-page";

impl Store {
    /// The setup view of session `telemonitoring_id` at `now`; `None` when no active gateway
    /// is bound to it.
    pub async fn setup_view(
        &self,
        telemonitoring_id: String,
        now: DateTime<Utc>,
    ) -> Result<Option<SetupView>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::setup::view(pg, &telemonitoring_id, now).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::setup::view(c, &telemonitoring_id, now))
                    .await
            }
        }
    }

    /// Records the reading `reading_id` of device `address` as shown, and audits it, unless
    /// one was recorded for that device already; whether this one was recorded.
    pub async fn record_first_reading(
        &self,
        step: SetupStep,
        reading_id: String,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::setup::first_reading(pg, &step, &reading_id, now).await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::setup::first_reading(c, &step, &reading_id, now))
                    .await
            }
        }
    }

    /// Audits a step of the setup.
    pub async fn audit_setup_step(
        &self,
        step: SetupStep,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::setup::audit(pg, &step, now).await,
            Backend::Sqlite(db) => db.write(move |c| sqlite::setup::audit(c, &step, now)).await,
        }
    }

    /// Marks the setup of the session's gateway finished and audits it; false when it was
    /// finished already (or the gateway is not the session's active one).
    pub async fn finish_setup(
        &self,
        step: SetupStep,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::setup::finish(pg, &step, now).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::setup::finish(c, &step, now))
                    .await
            }
        }
    }
}

/// The latest `until` among stored command actions (their JSON); other actions are skipped.
pub fn latest_setup_until<'a>(actions: impl IntoIterator<Item = &'a str>) -> Option<DateTime<Utc>> {
    actions
        .into_iter()
        .filter_map(|a| match serde_json::from_str(a).ok()? {
            tm_protocol::CommandAction::Setup { until } => Some(until),
            _ => None,
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_setup_until_is_read_from_the_stored_actions() {
        let a = r#"{"type":"setup","until":"2026-05-01T10:05:00Z"}"#;
        let b = r#"{"type":"setup","until":"2026-05-01T10:09:00Z"}"#;
        let other = r#"{"type":"pair-secret","address":"AA"}"#;
        let until = latest_setup_until([a, other, b]).unwrap();
        assert_eq!(until.to_rfc3339(), "2026-05-01T10:09:00+00:00");
        assert_eq!(latest_setup_until([other]), None);
    }
}
