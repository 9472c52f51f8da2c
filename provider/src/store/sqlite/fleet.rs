//! The health model's statements on SQLite: the fleet read, and what ingest writes from each
//! verified heartbeat and MQTT status, inside ingest's own transactions.
//!
//! A verified heartbeat changes, beyond the latest-heartbeat row: the backlog trend
//! (`backlog_growing_since`), the heartbeat count, the per-device health rows, and the audit
//! entries for devices that appeared, left or were replaced ([`record_heartbeat`]). History is
//! kept only as far as alerts need it: the previous backlog depth and the instant the backlog
//! started growing; older heartbeats are not stored.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::Heartbeat;

use super::audit;
use super::parse_time;
use crate::store::fleet::{
    DeviceChange, DeviceRecord, GatewayHealth, backlog_trend, device_changes,
};
use crate::store::time_text;

const FLEET: &str = "SELECT g.gateway_id, g.state, g.telemonitoring_id, g.enrolled_at, \
    h.received_at, h.payload, o.mqtt_status, o.mqtt_status_at, o.backlog_growing_since, \
    COALESCE(o.heartbeats_total, 0) \
    FROM gateways g LEFT JOIN gateway_heartbeats h ON h.gateway_id = g.gateway_id \
    LEFT JOIN ops_gateway_health o ON o.gateway_id = g.gateway_id";
const DEVICES: &str = "SELECT gateway_id, address, model, last_seen, last_reading, battery_pct, \
    rssi_dbm, paired_at FROM ops_devices";

const PREVIOUS: &str =
    "SELECT backlog_depth, backlog_growing_since FROM ops_gateway_health WHERE gateway_id = ?1";
const UPSERT: &str = "INSERT INTO ops_gateway_health (gateway_id, heartbeats_total, backlog_depth, \
    backlog_growing_since) VALUES (?1, 1, ?2, ?3) ON CONFLICT(gateway_id) DO UPDATE SET \
    heartbeats_total = heartbeats_total + 1, backlog_depth = excluded.backlog_depth, \
    backlog_growing_since = excluded.backlog_growing_since";
const UPSERT_DEVICE: &str = "INSERT INTO ops_devices (gateway_id, address, model, last_seen, \
    last_reading, battery_pct, rssi_dbm, paired_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
    ON CONFLICT(gateway_id, address) DO UPDATE SET model = excluded.model, \
    last_seen = COALESCE(excluded.last_seen, last_seen), \
    last_reading = COALESCE(excluded.last_reading, last_reading), \
    battery_pct = COALESCE(excluded.battery_pct, battery_pct), \
    rssi_dbm = COALESCE(excluded.rssi_dbm, rssi_dbm)";
/// Every enrolled gateway's health, ordered by gateway id; `only` restricts to one gateway
/// (and reads only its devices).
pub fn load(conn: &Connection, only: Option<&str>) -> rusqlite::Result<Vec<GatewayHealth>> {
    let sql = if only.is_some() {
        format!("{FLEET} WHERE g.gateway_id = ?1 ORDER BY g.gateway_id")
    } else {
        format!("{FLEET} WHERE ?1 IS NULL ORDER BY g.gateway_id")
    };
    let mut stmt = conn.prepare(&sql)?;
    let mut gateways: Vec<GatewayHealth> = stmt
        .query_map(params![only], |r| {
            let status: Option<String> = r.get(6)?;
            let status_at: Option<String> = r.get(7)?;
            let payload: Option<String> = r.get(5)?;
            Ok(GatewayHealth {
                gateway_id: r.get(0)?,
                registry_state: r.get(1)?,
                telemonitoring_id: r.get(2)?,
                enrolled_at: parse_time(&r.get::<_, String>(3)?).unwrap_or_default(),
                last_seen: r
                    .get::<_, Option<String>>(4)?
                    .as_deref()
                    .and_then(parse_time),
                heartbeat: payload.and_then(|p| tm_protocol::decode(p.as_bytes()).ok()),
                mqtt_status: status.zip(status_at.as_deref().and_then(parse_time)),
                backlog_growing_since: r
                    .get::<_, Option<String>>(8)?
                    .as_deref()
                    .and_then(parse_time),
                heartbeats_total: r.get::<_, i64>(9)?.try_into().unwrap_or(0),
                devices: vec![],
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let devices = if only.is_some() {
        format!("{DEVICES} WHERE gateway_id = ?1 ORDER BY gateway_id, address")
    } else {
        format!("{DEVICES} WHERE ?1 IS NULL ORDER BY gateway_id, address")
    };
    let mut stmt = conn.prepare(&devices)?;
    let rows = stmt.query_map(params![only], |r| {
        let time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
            Ok(r.get::<_, Option<String>>(i)?
                .as_deref()
                .and_then(parse_time))
        };
        Ok((
            r.get::<_, String>(0)?,
            DeviceRecord {
                reported: tm_protocol::DeviceHealth {
                    address: r.get(1)?,
                    model: r.get(2)?,
                    last_seen: time(3)?,
                    last_reading: time(4)?,
                    battery_pct: r
                        .get::<_, Option<i64>>(5)?
                        .and_then(|v| u8::try_from(v).ok()),
                    rssi_dbm: r
                        .get::<_, Option<i64>>(6)?
                        .and_then(|v| i16::try_from(v).ok()),
                },
                paired_at: time(7)?.unwrap_or_default(),
            },
        ))
    })?;
    // One pass over the devices, each attached through an index of the gateways: the fleet
    // costs gateways + devices, not their product.
    let index: std::collections::HashMap<String, usize> = gateways
        .iter()
        .enumerate()
        .map(|(i, g)| (g.gateway_id.clone(), i))
        .collect();
    for row in rows {
        let (gateway, device) = row?;
        // A device of a gateway no longer enrolled has nobody to attach to.
        if let Some(&i) = index.get(&gateway) {
            gateways[i].devices.push(device);
        }
    }
    Ok(gateways)
}

/// Records a gateway's verified MQTT status (`online`, or `offline`: its last-will). An
/// `offline` counts only when it belongs to the connection of the latest status or a newer one,
/// and an `online` only when its connection is newer than the latest status's (or repeats it),
/// so a replayed last-will of an older connection changes nothing. Returns whether the status
/// was applied.
pub fn record_status(
    conn: &Connection,
    status: &tm_protocol::Status,
    at: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let gateway_id = status.gateway_id.as_str();
    let latest: Option<(Option<String>, Option<i64>)> = conn
        .query_row(
            "SELECT mqtt_status, mqtt_status_connection FROM ops_gateway_health \
             WHERE gateway_id = ?1",
            [gateway_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    // Connection numbers are milliseconds since 1970: far below i64::MAX.
    let connection = i64::try_from(status.connection).unwrap_or(i64::MAX);
    let (state, applies) = match (status.state, latest) {
        (tm_protocol::LinkState::Offline, Some((_, Some(c)))) => ("offline", connection >= c),
        (tm_protocol::LinkState::Online, Some((s, Some(c)))) => (
            "online",
            connection > c || (connection == c && s.as_deref() == Some("online")),
        ),
        (tm_protocol::LinkState::Offline, _) => ("offline", true),
        (tm_protocol::LinkState::Online, _) => ("online", true),
    };
    if !applies {
        return Ok(false);
    }
    conn.execute(
        "INSERT INTO ops_gateway_health (gateway_id, mqtt_status, mqtt_status_at, \
         mqtt_status_connection) \
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM gateways WHERE gateway_id = ?1) \
         ON CONFLICT(gateway_id) DO UPDATE SET mqtt_status = excluded.mqtt_status, \
         mqtt_status_at = excluded.mqtt_status_at, \
         mqtt_status_connection = excluded.mqtt_status_connection",
        params![gateway_id, state, time_text(at), connection],
    )?;
    Ok(true)
}

/// Applies a verified heartbeat received at `now` (inside the caller's transaction, the one
/// that stores it as the gateway's latest).
pub fn record_heartbeat(
    conn: &Connection,
    hb: &Heartbeat,
    now: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let gateway = hb.gateway_id.as_str();
    let previous = conn
        .query_row(PREVIOUS, params![gateway], |r| {
            Ok((
                u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                r.get::<_, Option<String>>(1)?
                    .as_deref()
                    .and_then(parse_time),
            ))
        })
        .optional()?;
    let since = backlog_trend(previous, hb.backlog.depth, now);
    conn.execute(
        UPSERT,
        params![
            gateway,
            i64::try_from(hb.backlog.depth).unwrap_or(i64::MAX),
            since.map(time_text)
        ],
    )?;
    if hb.devices_unreadable {
        // The gateway could not read its paired-devices file: its list is unknown, not empty.
        tracing::warn!(gateway = %hb.gateway_id, "the gateway cannot read its paired devices; device records kept as they are");
        return Ok(());
    }
    devices(conn, hb, now)
}

fn devices(conn: &Connection, hb: &Heartbeat, now: DateTime<Utc>) -> rusqlite::Result<()> {
    let gateway = hb.gateway_id.as_str();
    let session: Option<String> = conn
        .query_row(
            "SELECT telemonitoring_id FROM gateways WHERE gateway_id = ?1",
            params![gateway],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let mut stmt = conn.prepare("SELECT address, model FROM ops_devices WHERE gateway_id = ?1")?;
    let known: HashMap<String, Option<String>> = stmt
        .query_map(params![gateway], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let actor = format!("gateway:{gateway}");
    for change in device_changes(&known, &hb.devices) {
        match change {
            DeviceChange::Upsert(d) => {
                let time = |t: Option<DateTime<Utc>>| t.map(time_text);
                conn.execute(
                    UPSERT_DEVICE,
                    params![
                        gateway,
                        d.address,
                        d.model,
                        time(d.last_seen),
                        time(d.last_reading),
                        d.battery_pct,
                        d.rssi_dbm,
                        time_text(now)
                    ],
                )?;
            }
            DeviceChange::Remove(address) => {
                conn.execute(
                    "DELETE FROM ops_devices WHERE gateway_id = ?1 AND address = ?2",
                    params![gateway, address],
                )?;
            }
            DeviceChange::Audit {
                action,
                device,
                detail,
            } => audit::record(
                conn,
                now,
                &actor,
                action,
                gateway,
                session.as_deref(),
                Some(&device),
                &detail,
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three gateways, devices for two of them and one for a gateway no longer enrolled.
    async fn fleet() -> (tempfile::TempDir, crate::store::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("p.db")).unwrap();
        store
            .sqlite()
            .expect("a SQLite store")
            .write(|c| {
                for (i, gw) in ["gw-c", "gw-a", "gw-b"].into_iter().enumerate() {
                    let session = format!("tm-{i}");
                    tm_testkit::store::accepted_session(c, &session)?;
                    let (key, _) = tm_protocol::SigningKey::generate().unwrap();
                    let id = tm_protocol::GatewayId::new(gw).unwrap();
                    crate::store::sqlite::gateways::insert(c, &id, &key.verifying_key(), &session)?;
                }
                for (gw, address) in [
                    ("gw-c", "AA:00:00:00:00:02"),
                    ("gw-a", "AA:00:00:00:00:01"),
                    ("gw-c", "AA:00:00:00:00:01"),
                    ("gw-gone", "AA:00:00:00:00:09"),
                ] {
                    c.execute(
                        "INSERT INTO ops_devices (gateway_id, address, paired_at) \
                     VALUES (?1, ?2, '2026-12-01T08:00:00Z')",
                        params![gw, address],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        (dir, store)
    }

    fn addresses(g: &GatewayHealth) -> Vec<&str> {
        g.devices
            .iter()
            .map(|d| d.reported.address.as_str())
            .collect()
    }

    #[tokio::test]
    async fn each_gateway_gets_its_own_devices() {
        let (_dir, store) = fleet().await;
        let all = store
            .sqlite()
            .expect("a SQLite store")
            .read(|c| load(c, None))
            .await
            .unwrap();
        let ids: Vec<&str> = all.iter().map(|g| g.gateway_id.as_str()).collect();
        assert_eq!(ids, ["gw-a", "gw-b", "gw-c"]);
        assert_eq!(addresses(&all[0]), ["AA:00:00:00:00:01"]);
        assert!(all[1].devices.is_empty());
        assert_eq!(
            addresses(&all[2]),
            ["AA:00:00:00:00:01", "AA:00:00:00:00:02"]
        );
        let one = store
            .sqlite()
            .expect("a SQLite store")
            .read(|c| load(c, Some("gw-c")))
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(addresses(&one[0]), addresses(&all[2]));
        let none = store
            .sqlite()
            .expect("a SQLite store")
            .read(|c| load(c, Some("gw-gone")))
            .await
            .unwrap();
        assert!(none.is_empty(), "a device alone is no gateway");
    }
}
