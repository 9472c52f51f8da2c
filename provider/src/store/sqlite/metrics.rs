//! The fleet figures' read on SQLite.

use rusqlite::Connection;

use super::{alerts, fleet};
use crate::store::metrics::FleetFigures;

/// Unresolved alerts counted, at most.
const ALERTS_LIMIT: u32 = 100_000;

/// The fleet figures, on one connection.
pub fn figures(conn: &Connection) -> rusqlite::Result<FleetFigures> {
    let gateways = fleet::load(conn, None)?;
    let unresolved_alerts = alerts::list(conn, None, true, ALERTS_LIMIT)?;
    // Outbox row states: 0 pending, 2 held (`crate::store::hub_outbox::RowState`).
    let count = |state: i64| -> rusqlite::Result<i64> {
        conn.query_row(
            "SELECT COUNT(*) FROM hub_outbox WHERE state = ?1",
            [state],
            |r| r.get(0),
        )
    };
    Ok(FleetFigures {
        gateways,
        unresolved_alerts,
        hub_pending: count(0)?,
        hub_held: count(2)?,
    })
}
