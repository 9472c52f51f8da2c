//! What the dashboard and the JSON API show: gateways with their health and alerts, alert rows,
//! fleet counts. Plain data, serialized as is for `/ops/api/...` and rendered by
//! [`super::dashboard`].

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

use super::health::{self, DeviceRecord, GatewayHealth, Liveness};
use super::settings::Thresholds;

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

const ALERT_COLUMNS: &str = "SELECT alert_id, kind, subject, gateway_id, telemonitoring_id, state, \
    detail, opened_at, acknowledged_at, acknowledged_by, resolved_at FROM ops_alerts";
/// Unresolved first (open before acknowledged), then newest first.
const ALERT_ORDER: &str = "ORDER BY CASE state WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 \
    ELSE 2 END, alert_id DESC";

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        alert_id: r.get(0)?,
        kind: r.get(1)?,
        subject: r.get(2)?,
        gateway_id: r.get(3)?,
        telemonitoring_id: r.get(4)?,
        state: r.get(5)?,
        detail: r.get(6)?,
        opened_at: r.get(7)?,
        acknowledged_at: r.get(8)?,
        acknowledged_by: r.get(9)?,
        resolved_at: r.get(10)?,
    })
}

/// Alerts, unresolved first; `gateway` restricts to one gateway, `unresolved` drops resolved.
pub fn alerts(
    conn: &Connection,
    gateway: Option<&str>,
    unresolved: bool,
    limit: u32,
) -> rusqlite::Result<Vec<AlertRow>> {
    let sql = format!(
        "{ALERT_COLUMNS} WHERE (?1 IS NULL OR gateway_id = ?1) AND (?2 = 0 OR state <> 'resolved') \
         {ALERT_ORDER} LIMIT ?3"
    );
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map(params![gateway, unresolved, limit], alert_row)?
        .collect()
}

/// Acknowledges an open alert; false when it is not open.
pub fn acknowledge(
    conn: &Connection,
    alert_id: i64,
    by: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE ops_alerts SET state = 'acknowledged', acknowledged_at = ?2, acknowledged_by = ?3 \
         WHERE alert_id = ?1 AND state = 'open'",
        params![alert_id, now.to_rfc3339(), by],
    )?;
    Ok(n == 1)
}

/// Gateways with health and alerts; `only` restricts to one.
pub fn gateways(
    conn: &Connection,
    only: Option<&str>,
    now: DateTime<Utc>,
    t: &Thresholds,
) -> rusqlite::Result<Vec<GatewayView>> {
    let all = alerts(conn, only, false, 10_000)?;
    let gateways = health::load(conn, only)?;
    Ok(gateways
        .into_iter()
        .map(|g| {
            let mine: Vec<AlertRow> = all
                .iter()
                .filter(|a| a.gateway_id.as_deref() == Some(g.gateway_id.as_str()))
                .take(50)
                .cloned()
                .collect();
            GatewayView::new(g, mine, now, t)
        })
        .collect())
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
