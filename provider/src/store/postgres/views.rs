//! The operations pages' reads on PostgreSQL, each page on one pooled connection.
//!
//! Each page is the SQLite side's reads, statement for statement, returning the same records:
//! the gateways' health with their alerts ([`super::fleet::load`], [`super::alerts::list`]),
//! the unresolved alerts and the undelivered HUB updates ([`super::hub_outbox::undelivered`])
//! for the overview, a gateway's audit trail and its latest commands
//! ([`super::commands::list`]) for its own page. They are reads of committed state and take no
//! lock: a page is as consistent as SQLite's, whose reads are separate statements too.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::{PgStore, alerts, commands, fleet, hub_outbox};
use crate::store::StoreError;
use crate::store::views::{FleetOverview, GatewayDetail, GatewayPage, GatewayRows};

/// Alert rows read with the gateways, at most.
const GATEWAY_ALERTS_LIMIT: u32 = 10_000;

async fn rows(
    c: &impl GenericClient,
    only: Option<&str>,
) -> Result<GatewayRows, tokio_postgres::Error> {
    let alerts = alerts::list(c, only, false, GATEWAY_ALERTS_LIMIT).await?;
    let gateways = fleet::load(c, only).await?;
    Ok(GatewayRows { gateways, alerts })
}

/// Gateways with their alerts; `only` restricts to one.
pub async fn gateway_rows(pg: &PgStore, only: Option<&str>) -> Result<GatewayRows, StoreError> {
    let client = pg.client().await?;
    rows(&**client, only).await.map_err(pg.sql())
}

/// The fleet overview.
pub async fn overview(
    pg: &PgStore,
    unresolved_limit: u32,
    hub_limit: u32,
) -> Result<FleetOverview, StoreError> {
    let client = pg.client().await?;
    let c = &**client;
    let read = async {
        Ok::<_, tokio_postgres::Error>(FleetOverview {
            rows: rows(c, None).await?,
            unresolved: alerts::list(c, None, true, unresolved_limit).await?,
            hub_updates: hub_outbox::undelivered(c, hub_limit).await?,
        })
    };
    read.await.map_err(pg.sql())
}

/// One gateway and its audit trail.
pub async fn detail(
    pg: &PgStore,
    gateway: &str,
    audit_limit: u32,
) -> Result<GatewayDetail, StoreError> {
    let client = pg.client().await?;
    let c = &**client;
    let read = async {
        Ok::<_, tokio_postgres::Error>(GatewayDetail {
            rows: rows(c, Some(gateway)).await?,
            audit: super::audit::list(c, Some(gateway), audit_limit).await?,
        })
    };
    read.await.map_err(pg.sql())
}

/// One gateway's page: its rows, audit trail and commands at `now`.
pub async fn page(
    pg: &PgStore,
    gateway: &str,
    now: DateTime<Utc>,
    audit_limit: u32,
    commands_limit: u32,
) -> Result<GatewayPage, StoreError> {
    let client = pg.client().await?;
    let c = &**client;
    let read = async {
        Ok::<_, tokio_postgres::Error>(GatewayPage {
            rows: rows(c, Some(gateway)).await?,
            audit: super::audit::list(c, Some(gateway), audit_limit).await?,
            commands: commands::list(c, gateway, now, commands_limit).await?,
        })
    };
    read.await.map_err(pg.sql())
}
