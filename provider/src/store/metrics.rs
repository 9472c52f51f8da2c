//! The fleet figures `/metrics` reports as gauges, read from the store at scrape time so every
//! provider instance sharing the store reports the same value (the exposition itself, and the
//! instance's own counters, are the operations': `ops::metrics`).

use super::alerts::AlertRow;
use super::fleet::GatewayHealth;
use super::{Backend, Store, StoreError, postgres, sqlite};

/// What the store says about the fleet, for the gauges.
#[derive(Debug, Clone, Default)]
pub struct FleetFigures {
    /// Every enrolled gateway.
    pub gateways: Vec<GatewayHealth>,
    /// Unresolved alerts.
    pub unresolved_alerts: Vec<AlertRow>,
    /// HUB status updates waiting to be sent.
    pub hub_pending: i64,
    /// HUB status updates the HUB kept refusing, held for an operator.
    pub hub_held: i64,
}

impl Store {
    /// The fleet figures, in one read.
    pub async fn fleet_figures(&self) -> Result<FleetFigures, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::metrics::figures(pg).await,
            Backend::Sqlite(db) => db.read(sqlite::metrics::figures).await,
        }
    }
}
