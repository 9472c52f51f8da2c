//! The operations pages' reads on SQLite, each on one connection.

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::{alerts, audit, commands, fleet};
use crate::store::views::{FleetOverview, GatewayDetail, GatewayPage, GatewayRows};

/// Alert rows read with the gateways, at most.
const GATEWAY_ALERTS_LIMIT: u32 = 10_000;

/// Gateways with their alerts; `only` restricts to one.
pub fn gateway_rows(conn: &Connection, only: Option<&str>) -> rusqlite::Result<GatewayRows> {
    let alerts = alerts::list(conn, only, false, GATEWAY_ALERTS_LIMIT)?;
    let gateways = fleet::load(conn, only)?;
    Ok(GatewayRows { gateways, alerts })
}

/// The fleet overview.
pub fn overview(
    conn: &Connection,
    unresolved_limit: u32,
    hub_limit: u32,
) -> rusqlite::Result<FleetOverview> {
    Ok(FleetOverview {
        rows: gateway_rows(conn, None)?,
        unresolved: alerts::list(conn, None, true, unresolved_limit)?,
        hub_updates: super::hub_outbox::undelivered(conn, hub_limit)?,
    })
}

/// One gateway and its audit trail.
pub fn detail(
    conn: &Connection,
    gateway: &str,
    audit_limit: u32,
) -> rusqlite::Result<GatewayDetail> {
    Ok(GatewayDetail {
        rows: gateway_rows(conn, Some(gateway))?,
        audit: audit::list(conn, Some(gateway), audit_limit)?,
    })
}

/// One gateway's page: its rows, audit trail and commands at `now`.
pub fn page(
    conn: &Connection,
    gateway: &str,
    now: DateTime<Utc>,
    audit_limit: u32,
    commands_limit: u32,
) -> rusqlite::Result<GatewayPage> {
    Ok(GatewayPage {
        rows: gateway_rows(conn, Some(gateway))?,
        audit: audit::list(conn, Some(gateway), audit_limit)?,
        commands: commands::list(conn, gateway, now, commands_limit)?,
    })
}
