//! The fleet figures' read on PostgreSQL: what `/metrics` reports as gauges, read at scrape time
//! from the shared database, so every instance reports the same values.
//!
//! A scrape stays cheap whatever the number of readings: it reads the gateways with their
//! health rows and devices ([`super::fleet::load`]), the unresolved alerts (the rows of the
//! partial unique index's predicate, at most [`ALERTS_LIMIT`]), and counts the undelivered HUB
//! updates by state in one statement over `hub_outbox_pending (state, seq)`. No statement
//! touches `readings`.

use super::{PgStore, alerts, fleet};
use crate::store::StoreError;
use crate::store::metrics::FleetFigures;

/// Unresolved alerts counted, at most.
const ALERTS_LIMIT: u32 = 100_000;

/// Outbox rows pending (state 0) and held (state 2) (`crate::store::hub_outbox::RowState`).
const HUB_COUNTS: &str = "SELECT COUNT(*) FILTER (WHERE state = 0), \
    COUNT(*) FILTER (WHERE state = 2) FROM hub_outbox WHERE state IN (0, 2)";

/// The fleet figures, on one connection.
pub async fn figures(pg: &PgStore) -> Result<FleetFigures, StoreError> {
    let client = pg.client().await?;
    let c = &**client;
    let gateways = fleet::load(c, None).await.map_err(pg.sql())?;
    let unresolved_alerts = alerts::list(c, None, true, ALERTS_LIMIT)
        .await
        .map_err(pg.sql())?;
    let counts = c.query_one(HUB_COUNTS, &[]).await.map_err(pg.sql())?;
    Ok(FleetFigures {
        gateways,
        unresolved_alerts,
        hub_pending: counts.try_get(0).map_err(pg.sql())?,
        hub_held: counts.try_get(1).map_err(pg.sql())?,
    })
}
