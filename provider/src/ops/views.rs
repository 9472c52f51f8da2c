//! What the dashboard and the JSON API show: gateways with their health and alerts, alert rows,
//! fleet counts. Plain data, serialized as is for `/ops/api/...` and rendered by
//! [`super::dashboard`]; built from the rows the store reads for each page
//! ([`crate::store::views`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::health::Liveness;
use super::settings::Thresholds;
use crate::store::alerts::AlertRow;
use crate::store::fleet::{DeviceRecord, GatewayHealth};
use crate::store::views::GatewayRows;

/// One gateway as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayView {
    /// Id.
    pub gateway_id: String,
    /// Online, offline, never seen.
    pub liveness: Liveness,
    /// Registry state.
    pub registry_state: String,
    /// Session.
    pub telemonitoring_id: Option<String>,
    /// Last heartbeat received.
    pub last_seen: Option<DateTime<Utc>>,
    /// Agent version.
    pub version: Option<String>,
    /// Agent uptime in seconds.
    pub uptime_s: Option<u64>,
    /// Unacknowledged readings.
    pub backlog_depth: Option<u64>,
    /// Oldest unacknowledged reading, seconds.
    pub backlog_oldest_age_s: Option<u64>,
    /// Since when the backlog grows.
    pub backlog_growing_since: Option<DateTime<Utc>>,
    /// Clock state.
    pub clock: Option<tm_protocol::ClockState>,
    /// Outbox use in percent of its quota.
    pub disk_pct: Option<u64>,
    /// Last error reported.
    pub last_error: Option<String>,
    /// Paired devices.
    pub devices: Vec<DeviceRecord>,
    /// Its alerts, unresolved first, newest first.
    pub alerts: Vec<AlertRow>,
}

impl GatewayView {
    fn new(g: GatewayHealth, alerts: Vec<AlertRow>, now: DateTime<Utc>, t: &Thresholds) -> Self {
        let hb = g.heartbeat.as_ref();
        Self {
            liveness: g.liveness(now, t),
            disk_pct: g.disk_pct(),
            clock: g.clock(),
            version: hb.map(|h| h.version.clone()),
            uptime_s: hb.map(|h| h.uptime_s),
            backlog_depth: hb.map(|h| h.backlog.depth),
            backlog_oldest_age_s: hb.and_then(|h| h.backlog.oldest_age_s),
            last_error: hb.and_then(|h| h.last_error.clone()),
            gateway_id: g.gateway_id,
            registry_state: g.registry_state,
            telemonitoring_id: g.telemonitoring_id,
            last_seen: g.last_seen,
            backlog_growing_since: g.backlog_growing_since,
            devices: g.devices,
            alerts,
        }
    }
}

/// The gateways' views at `now`, each with its latest 50 alerts (unresolved first).
pub fn gateways(rows: GatewayRows, now: DateTime<Utc>, t: &Thresholds) -> Vec<GatewayView> {
    let GatewayRows { gateways, alerts } = rows;
    gateways
        .into_iter()
        .map(|g| {
            let mine: Vec<AlertRow> = alerts
                .iter()
                .filter(|a| a.gateway_id.as_deref() == Some(g.gateway_id.as_str()))
                .take(50)
                .cloned()
                .collect();
            GatewayView::new(g, mine, now, t)
        })
        .collect()
}

/// Counts by state for the overview.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FleetCounts {
    /// Active gateways online.
    pub online: usize,
    /// Active gateways offline.
    pub offline: usize,
    /// Active gateways never heard.
    pub never_seen: usize,
    /// Gateways unbound or revoked.
    pub inactive: usize,
    /// Alerts open.
    pub alerts_open: usize,
    /// Alerts acknowledged.
    pub alerts_acknowledged: usize,
}

/// Counts the fleet.
pub fn counts(gateways: &[GatewayView], open: &[AlertRow]) -> FleetCounts {
    let mut c = FleetCounts::default();
    for g in gateways {
        match (g.registry_state.as_str(), g.liveness) {
            ("active", Liveness::Online) => c.online += 1,
            ("active", Liveness::Offline) => c.offline += 1,
            ("active", Liveness::NeverSeen) => c.never_seen += 1,
            _ => c.inactive += 1,
        }
    }
    c.alerts_open = open.iter().filter(|a| a.state == "open").count();
    c.alerts_acknowledged = open.iter().filter(|a| a.state == "acknowledged").count();
    c
}
