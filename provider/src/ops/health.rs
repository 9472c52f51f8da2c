//! The health model: what operations know about each gateway and each paired device, read from
//! stored state only (the registry, the latest heartbeat, the MQTT status, `ops_devices`:
//! [`crate::store::fleet`]), so a restarted provider knows exactly what it knew before.
//!
//! A gateway is [`Liveness::Online`] while its last heartbeat is recent (`online_within_s`) and
//! no MQTT last-will (`offline` on its status topic) arrived after that heartbeat; operations
//! judge by last-seen, never by a status flag alone. Statuses are signed by the gateway and
//! numbered by connection ([`record_status`]): only the gateway can flip its own status, and an
//! older connection's last-will cannot override a newer connection's `online`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::settings::Thresholds;
use crate::store::fleet::GatewayHealth;
/// Ingest records each verified MQTT status inside its own transaction; the statement lives
/// with the store's (re-exported here for it).
pub use crate::store::sqlite::fleet::record_status;

/// Whether a gateway is reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Liveness {
    /// Heard recently.
    Online,
    /// Heartbeats stopped, or the broker delivered its last-will.
    Offline,
    /// Enrolled, never heard.
    NeverSeen,
}

impl Liveness {
    /// Display and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::NeverSeen => "never-seen",
        }
    }
}

/// How operations judge a stored gateway health (the record and its accessors:
/// [`crate::store::fleet`]).
impl GatewayHealth {
    /// Online, offline or never seen, at `now`.
    pub fn liveness(&self, now: DateTime<Utc>, t: &Thresholds) -> Liveness {
        let Some(last) = self.last_seen else {
            return Liveness::NeverSeen;
        };
        if let Some((status, at)) = &self.mqtt_status
            && status == "offline"
            && *at >= last
        {
            return Liveness::Offline;
        }
        if now - last > t.online_within {
            Liveness::Offline
        } else {
            Liveness::Online
        }
    }
}
