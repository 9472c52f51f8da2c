//! What the operations dashboard and JSON API read, one read per page: the gateways' health with
//! their alert rows, and what each page shows beside them (unresolved alerts, undelivered HUB
//! updates, a gateway's audit trail and commands). Building the views from these rows
//! (liveness, counts, sorting) is the operations' (`ops::views`).

use chrono::{DateTime, Utc};

use super::alerts::AlertRow;
use super::audit::AuditEntry;
use super::commands::CommandView;
use super::fleet::GatewayHealth;
use super::hub_outbox::OutboxRow;
use super::{Backend, Store, StoreError, postgres, sqlite};

/// Gateways' health and their alert rows, read together.
#[derive(Debug, Clone, Default)]
pub struct GatewayRows {
    /// Every enrolled gateway (or the one asked for), ordered by id.
    pub gateways: Vec<GatewayHealth>,
    /// Their alerts, resolved ones too, unresolved first, then newest first.
    pub alerts: Vec<AlertRow>,
}

/// What the fleet overview shows.
#[derive(Debug, Clone, Default)]
pub struct FleetOverview {
    /// Every gateway with its alerts.
    pub rows: GatewayRows,
    /// Unresolved alerts, open first.
    pub unresolved: Vec<AlertRow>,
    /// Undelivered HUB status updates in queue order.
    pub hub_updates: Vec<OutboxRow>,
}

/// One gateway and its audit trail (the JSON API's gateway).
#[derive(Debug, Clone, Default)]
pub struct GatewayDetail {
    /// The gateway (none when it is not enrolled) with its alerts.
    pub rows: GatewayRows,
    /// Its audit entries, newest first.
    pub audit: Vec<AuditEntry>,
}

/// What a gateway's dashboard page shows.
#[derive(Debug, Clone, Default)]
pub struct GatewayPage {
    /// The gateway (none when it is not enrolled) with its alerts.
    pub rows: GatewayRows,
    /// Its audit entries, newest first.
    pub audit: Vec<AuditEntry>,
    /// Its latest commands, newest first.
    pub commands: Vec<CommandView>,
}

impl Store {
    /// Gateways with their alerts; `only` restricts to one gateway.
    pub async fn gateway_rows(&self, only: Option<String>) -> Result<GatewayRows, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::views::gateway_rows(pg, only.as_deref()).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::views::gateway_rows(c, only.as_deref()))
                    .await
            }
        }
    }

    /// The fleet overview: every gateway with its alerts, at most `unresolved_limit` unresolved
    /// alerts and `hub_limit` undelivered HUB updates.
    pub async fn fleet_overview(
        &self,
        unresolved_limit: u32,
        hub_limit: u32,
    ) -> Result<FleetOverview, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::views::overview(pg, unresolved_limit, hub_limit).await
            }
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::views::overview(c, unresolved_limit, hub_limit))
                    .await
            }
        }
    }

    /// `gateway` with its alerts and its latest `audit_limit` audit entries.
    pub async fn gateway_detail(
        &self,
        gateway: String,
        audit_limit: u32,
    ) -> Result<GatewayDetail, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::views::detail(pg, &gateway, audit_limit).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::views::detail(c, &gateway, audit_limit))
                    .await
            }
        }
    }

    /// `gateway` with its alerts, its latest `audit_limit` audit entries and its latest
    /// `commands_limit` commands with their state at `now`.
    pub async fn gateway_page(
        &self,
        gateway: String,
        now: DateTime<Utc>,
        audit_limit: u32,
        commands_limit: u32,
    ) -> Result<GatewayPage, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::views::page(pg, &gateway, now, audit_limit, commands_limit).await
            }
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::views::page(c, &gateway, now, audit_limit, commands_limit))
                    .await
            }
        }
    }
}
