//! The health model's statements on PostgreSQL: the fleet read, and what ingest writes from
//! each verified heartbeat and MQTT status, inside ingest's own transactions.
//!
//! The records are those of the SQLite side ([`crate::store::sqlite::fleet`]); what differs is
//! how several provider instances sharing the database stay right without a single writer:
//! - **Heartbeats.** [`record_heartbeat`] runs in the transaction that has just upserted the
//!   gateway's `gateway_heartbeats` row ([`super::readings::save_heartbeat`]); that upsert locks
//!   the row, so two heartbeats of one gateway received by two instances are applied one after
//!   the other, and only when the upsert took the heartbeat (a late one changes nothing). The
//!   previous backlog depth is then read `FOR UPDATE`, and the device list is diffed against
//!   the stored one with the same plan as SQLite's ([`device_changes`]): the audit trail gets
//!   the same entries in the same order.
//! - **Statuses.** [`record_status`] is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`: the
//!   connection-number rule (an older connection's last-will cannot override a newer
//!   connection's `online`) is decided against the latest stored row, locked by the statement
//!   itself, never against a value read earlier.
//! - **The fleet read** ([`load`]) is two plain statements (gateways, then devices), as on
//!   SQLite, ordered byte-wise (`COLLATE "C"`) as SQLite orders text.
//!
//! Times are `timestamptz` (microseconds); the SQLite side writes its text times cut to the
//! microsecond ([`crate::store::time_text`]), so both read back the same instants.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tm_protocol::Heartbeat;
use tokio_postgres::GenericClient;

use super::PgStore;
use crate::store::StoreError;
use crate::store::audit::AuditAction;
use crate::store::fleet::{
    DeviceChange, DeviceRecord, GatewayHealth, backlog_trend, device_changes,
};

const FLEET: &str = "SELECT g.gateway_id, g.state, g.telemonitoring_id, g.enrolled_at, \
    h.received_at, h.payload, o.mqtt_status, o.mqtt_status_at, o.backlog_growing_since, \
    COALESCE(o.heartbeats_total, 0) \
    FROM gateways g LEFT JOIN gateway_heartbeats h ON h.gateway_id = g.gateway_id \
    LEFT JOIN ops_gateway_health o ON o.gateway_id = g.gateway_id";
const DEVICES: &str = "SELECT gateway_id, address, model, last_seen, last_reading, battery_pct, \
    rssi_dbm, paired_at FROM ops_devices";

/// Gateways, and devices by gateway and address, ordered byte-wise as SQLite orders text,
/// whatever the database's collation.
const BY_GATEWAY: &str = "g.gateway_id COLLATE \"C\"";
const BY_DEVICE: &str = "gateway_id COLLATE \"C\", address COLLATE \"C\"";

const PREVIOUS: &str = "SELECT backlog_depth, backlog_growing_since FROM ops_gateway_health \
    WHERE gateway_id = $1 FOR UPDATE";
const UPSERT: &str = "INSERT INTO ops_gateway_health (gateway_id, heartbeats_total, backlog_depth, \
    backlog_growing_since) VALUES ($1, 1, $2, $3) ON CONFLICT (gateway_id) DO UPDATE SET \
    heartbeats_total = ops_gateway_health.heartbeats_total + 1, \
    backlog_depth = excluded.backlog_depth, \
    backlog_growing_since = excluded.backlog_growing_since";
const SESSION_OF: &str = "SELECT telemonitoring_id FROM gateways WHERE gateway_id = $1";
const KNOWN_DEVICES: &str = "SELECT address, model FROM ops_devices WHERE gateway_id = $1";
const UPSERT_DEVICE: &str = "INSERT INTO ops_devices (gateway_id, address, model, last_seen, \
    last_reading, battery_pct, rssi_dbm, paired_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (gateway_id, address) DO UPDATE SET model = excluded.model, \
    last_seen = COALESCE(excluded.last_seen, ops_devices.last_seen), \
    last_reading = COALESCE(excluded.last_reading, ops_devices.last_reading), \
    battery_pct = COALESCE(excluded.battery_pct, ops_devices.battery_pct), \
    rssi_dbm = COALESCE(excluded.rssi_dbm, ops_devices.rssi_dbm)";
const REMOVE_DEVICE: &str = "DELETE FROM ops_devices WHERE gateway_id = $1 AND address = $2";
const AUDIT: &str = "INSERT INTO ops_audit (at, actor, action, gateway_id, telemonitoring_id, \
    device, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)";
/// Applies a status unless the stored one belongs to a newer connection (or, for an `online`,
/// to the same connection after its `offline`); only for a registered gateway. Returns whether
/// a row was written and whether the gateway is registered.
const RECORD_STATUS: &str = "WITH registered AS ( \
        SELECT EXISTS (SELECT 1 FROM gateways WHERE gateway_id = $1) AS yes), \
    written AS ( \
        INSERT INTO ops_gateway_health (gateway_id, mqtt_status, mqtt_status_at, \
        mqtt_status_connection) SELECT $1::text, $2::text, $3::timestamptz, $4::bigint \
        FROM registered WHERE registered.yes \
        ON CONFLICT (gateway_id) DO UPDATE SET mqtt_status = excluded.mqtt_status, \
        mqtt_status_at = excluded.mqtt_status_at, \
        mqtt_status_connection = excluded.mqtt_status_connection \
        WHERE ops_gateway_health.mqtt_status_connection IS NULL \
           OR (excluded.mqtt_status = 'offline' \
               AND excluded.mqtt_status_connection >= ops_gateway_health.mqtt_status_connection) \
           OR (excluded.mqtt_status = 'online' \
               AND (excluded.mqtt_status_connection > ops_gateway_health.mqtt_status_connection \
                    OR (excluded.mqtt_status_connection = ops_gateway_health.mqtt_status_connection \
                        AND ops_gateway_health.mqtt_status = 'online'))) \
        RETURNING 1) \
    SELECT EXISTS (SELECT 1 FROM written), (SELECT yes FROM registered)";

/// Every enrolled gateway's health, ordered by gateway id; `only` restricts to one gateway
/// (and reads only its devices).
pub async fn load(
    c: &impl GenericClient,
    only: Option<&str>,
) -> Result<Vec<GatewayHealth>, tokio_postgres::Error> {
    let rows = match only {
        Some(id) => {
            let sql = format!("{FLEET} WHERE g.gateway_id = $1 ORDER BY {BY_GATEWAY}");
            c.query(&sql, &[&id]).await?
        }
        None => {
            c.query(&format!("{FLEET} ORDER BY {BY_GATEWAY}"), &[])
                .await?
        }
    };
    let mut gateways = rows
        .iter()
        .map(gateway_health)
        .collect::<Result<Vec<_>, _>>()?;
    let rows = match only {
        Some(id) => {
            let sql = format!("{DEVICES} WHERE gateway_id = $1 ORDER BY {BY_DEVICE}");
            c.query(&sql, &[&id]).await?
        }
        None => {
            let sql = format!("{DEVICES} ORDER BY {BY_DEVICE}");
            c.query(&sql, &[]).await?
        }
    };
    // One pass over the devices, each attached through an index of the gateways: the fleet
    // costs gateways + devices, not their product.
    let index: HashMap<String, usize> = gateways
        .iter()
        .enumerate()
        .map(|(i, g)| (g.gateway_id.clone(), i))
        .collect();
    for row in &rows {
        let gateway: String = row.try_get(0)?;
        // A device of a gateway no longer enrolled has nobody to attach to.
        if let Some(&i) = index.get(&gateway) {
            gateways[i].devices.push(device_record(row)?);
        }
    }
    Ok(gateways)
}

fn gateway_health(r: &tokio_postgres::Row) -> Result<GatewayHealth, tokio_postgres::Error> {
    let status: Option<String> = r.try_get(6)?;
    let status_at: Option<DateTime<Utc>> = r.try_get(7)?;
    let payload: Option<String> = r.try_get(5)?;
    Ok(GatewayHealth {
        gateway_id: r.try_get(0)?,
        registry_state: r.try_get(1)?,
        telemonitoring_id: r.try_get(2)?,
        enrolled_at: r.try_get(3)?,
        last_seen: r.try_get(4)?,
        heartbeat: payload.and_then(|p| tm_protocol::decode(p.as_bytes()).ok()),
        mqtt_status: status.zip(status_at),
        backlog_growing_since: r.try_get(8)?,
        heartbeats_total: r.try_get::<_, i64>(9)?.try_into().unwrap_or(0),
        devices: vec![],
    })
}

fn device_record(r: &tokio_postgres::Row) -> Result<DeviceRecord, tokio_postgres::Error> {
    Ok(DeviceRecord {
        reported: tm_protocol::DeviceHealth {
            address: r.try_get(1)?,
            model: r.try_get(2)?,
            last_seen: r.try_get(3)?,
            last_reading: r.try_get(4)?,
            battery_pct: r
                .try_get::<_, Option<i32>>(5)?
                .and_then(|v| u8::try_from(v).ok()),
            rssi_dbm: r
                .try_get::<_, Option<i32>>(6)?
                .and_then(|v| i16::try_from(v).ok()),
        },
        paired_at: r.try_get(7)?,
    })
}

/// Records a gateway's verified MQTT status received at `at`, in one statement (see
/// [`RECORD_STATUS`]): an `offline` counts only when it belongs to the connection of the latest
/// status or a newer one, an `online` only when its connection is newer (or repeats the latest
/// `online`). Returns whether the status was applied; like the SQLite side, a status of a
/// gateway that is not registered stores nothing and is not called stale.
pub async fn record_status(
    pg: &PgStore,
    status: &tm_protocol::Status,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let state = match status.state {
        tm_protocol::LinkState::Online => "online",
        tm_protocol::LinkState::Offline => "offline",
    };
    // Connection numbers are milliseconds since 1970: far below i64::MAX.
    let connection = i64::try_from(status.connection).unwrap_or(i64::MAX);
    let client = pg.client().await?;
    let statement = client
        .prepare_cached(RECORD_STATUS)
        .await
        .map_err(pg.sql())?;
    let row = client
        .query_one(
            &statement,
            &[&status.gateway_id.as_str(), &state, &at, &connection],
        )
        .await
        .map_err(pg.sql())?;
    let written: bool = row.try_get(0).map_err(pg.sql())?;
    let registered: bool = row.try_get(1).map_err(pg.sql())?;
    Ok(written || !registered)
}

/// Applies a verified heartbeat received at `now`, inside the transaction that has just stored
/// it as the gateway's latest (and so holds that row's lock): the backlog trend, the heartbeat
/// count, the device rows and the audit entries of devices that appeared, left or were
/// replaced.
pub async fn record_heartbeat(
    tx: &deadpool_postgres::Transaction<'_>,
    hb: &Heartbeat,
    now: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let gateway = hb.gateway_id.as_str();
    let previous = tx
        .query_opt(&tx.prepare_cached(PREVIOUS).await?, &[&gateway])
        .await?
        .map(|r| -> Result<_, tokio_postgres::Error> {
            Ok((
                u64::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0),
                r.try_get::<_, Option<DateTime<Utc>>>(1)?,
            ))
        })
        .transpose()?;
    let since = backlog_trend(previous, hb.backlog.depth, now);
    let depth = i64::try_from(hb.backlog.depth).unwrap_or(i64::MAX);
    tx.execute(
        &tx.prepare_cached(UPSERT).await?,
        &[&gateway, &depth, &since],
    )
    .await?;
    if hb.devices_unreadable {
        // The gateway could not read its paired-devices file: its list is unknown, not empty.
        tracing::warn!(gateway = %hb.gateway_id, "the gateway cannot read its paired devices; device records kept as they are");
        return Ok(());
    }
    devices(tx, hb, now).await
}

/// Diffs the heartbeat's device list against the stored one and applies the changes in
/// [`device_changes`]' order.
async fn devices(
    tx: &deadpool_postgres::Transaction<'_>,
    hb: &Heartbeat,
    now: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let gateway = hb.gateway_id.as_str();
    let session: Option<String> = match tx
        .query_opt(&tx.prepare_cached(SESSION_OF).await?, &[&gateway])
        .await?
    {
        Some(row) => row.try_get(0)?,
        None => None,
    };
    let known: HashMap<String, Option<String>> = tx
        .query(&tx.prepare_cached(KNOWN_DEVICES).await?, &[&gateway])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let changes = device_changes(&known, &hb.devices);
    if changes.is_empty() {
        return Ok(());
    }
    let upsert = tx.prepare_cached(UPSERT_DEVICE).await?;
    let remove = tx.prepare_cached(REMOVE_DEVICE).await?;
    let audit = tx.prepare_cached(AUDIT).await?;
    let actor = format!("gateway:{gateway}");
    for change in changes {
        match change {
            DeviceChange::Upsert(d) => {
                let battery = d.battery_pct.map(i32::from);
                let rssi = d.rssi_dbm.map(i32::from);
                tx.execute(
                    &upsert,
                    &[
                        &gateway,
                        &d.address,
                        &d.model,
                        &d.last_seen,
                        &d.last_reading,
                        &battery,
                        &rssi,
                        &now,
                    ],
                )
                .await?;
            }
            DeviceChange::Remove(address) => {
                tx.execute(&remove, &[&gateway, &address]).await?;
            }
            DeviceChange::Audit {
                action,
                device,
                detail,
            } => {
                let action: &str = AuditAction::as_str(action);
                tx.execute(
                    &audit,
                    &[&now, &actor, &action, &gateway, &session, &device, &detail],
                )
                .await?;
            }
        }
    }
    Ok(())
}
