//! The health model: what operations know about each gateway and each paired device, read from
//! stored state only (the registry, the latest heartbeat, the MQTT status, `ops_devices`), so a
//! restarted provider knows exactly what it knew before.
//!
//! A gateway is [`Liveness::Online`] while its last heartbeat is recent (`online_within_s`) and
//! no MQTT last-will (`offline` on its status topic) arrived after that heartbeat; operations
//! judge by last-seen, never by a status flag alone. Statuses are signed by the gateway and
//! numbered by connection ([`record_status`]): only the gateway can flip its own status, and an
//! older connection's last-will cannot override a newer connection's `online`.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;
use tm_protocol::{ClockState, Heartbeat};

use super::settings::Thresholds;

/// Whether a gateway is reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Liveness {
    /// Heard recently.
    Online,
    /// Heartbeats stopped, or the broker delivered its last-will.
    Offline,
    /// Enrolled, never heard.
    NeverSeen,
}

impl Liveness {
    /// Display and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
            Self::NeverSeen => "never-seen",
        }
    }
}

/// One paired device as the gateway last reported it (a row of `ops_devices`, updated by each
/// heartbeat; a device missing from a heartbeat is removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    /// The device's fields as the latest heartbeat reported them; a field the latest heartbeat
    /// left empty (`last_seen`, `last_reading`, `battery_pct`, `rssi_dbm`) keeps the value an
    /// earlier one carried. A battery below `battery_low_pct` raises an alert.
    #[serde(flatten)]
    pub reported: tm_protocol::DeviceHealth,
    /// When it first appeared in a heartbeat of this gateway (the provider's clock).
    pub paired_at: DateTime<Utc>,
}

/// One gateway's health, read from the store (registry, latest heartbeat, ops rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayHealth {
    /// The gateway's id in the registry.
    pub gateway_id: String,
    /// Registry state (`active`, `unbound`, `revoked`); only active gateways raise alerts.
    pub registry_state: String,
    /// Its session, while bound; `None` once unbound.
    pub telemonitoring_id: Option<String>,
    /// Enrollment time; stands for `last_seen` in the offline alert of a gateway never heard.
    pub enrolled_at: DateTime<Utc>,
    /// When the provider received the latest heartbeat (the provider's clock, not the
    /// heartbeat's `sent_at`); `None`: never heard.
    pub last_seen: Option<DateTime<Utc>>,
    /// The latest heartbeat as sent (backlog, disk, clock, last error); `None`: never heard.
    pub heartbeat: Option<Heartbeat>,
    /// Latest applied MQTT status (`online`/`offline`) and when it arrived; an `offline` at or
    /// after `last_seen` makes the gateway offline at once. `None` over HTTPS.
    pub mqtt_status: Option<(String, DateTime<Utc>)>,
    /// Since when the reported backlog depth has risen without falling; `None` while it is
    /// zero, falls, or has not risen yet.
    pub backlog_growing_since: Option<DateTime<Utc>>,
    /// Verified heartbeats stored for this gateway id (kept across provider restarts).
    pub heartbeats_total: u64,
    /// Paired devices as of the latest heartbeat, ordered by address.
    pub devices: Vec<DeviceRecord>,
}

impl GatewayHealth {
    /// Online, offline or never seen, at `now`.
    pub fn liveness(&self, now: DateTime<Utc>, t: &Thresholds) -> Liveness {
        let Some(last) = self.last_seen else {
            return Liveness::NeverSeen;
        };
        if let Some((status, at)) = &self.mqtt_status
            && status == "offline"
            && *at >= last
        {
            return Liveness::Offline;
        }
        if now - last > t.online_within {
            Liveness::Offline
        } else {
            Liveness::Online
        }
    }

    /// Whether the registry still takes this gateway's data.
    pub fn is_active(&self) -> bool {
        self.registry_state == "active"
    }

    /// Outbox disk use in percent of its quota.
    pub fn disk_pct(&self) -> Option<u64> {
        let d = &self.heartbeat.as_ref()?.disk;
        (d.quota_bytes > 0).then(|| d.used_bytes.saturating_mul(100) / d.quota_bytes)
    }

    /// The clock state of the latest heartbeat.
    pub fn clock(&self) -> Option<ClockState> {
        self.heartbeat.as_ref().map(|h| h.clock)
    }
}

pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

const FLEET: &str = "SELECT g.gateway_id, g.state, g.telemonitoring_id, g.enrolled_at, \
    h.received_at, h.payload, o.mqtt_status, o.mqtt_status_at, o.backlog_growing_since, \
    COALESCE(o.heartbeats_total, 0) \
    FROM gateways g LEFT JOIN gateway_heartbeats h ON h.gateway_id = g.gateway_id \
    LEFT JOIN ops_gateway_health o ON o.gateway_id = g.gateway_id";
const DEVICES: &str = "SELECT gateway_id, address, model, last_seen, last_reading, battery_pct, \
    rssi_dbm, paired_at FROM ops_devices";

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
    use rusqlite::OptionalExtension as _;
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
        params![gateway_id, state, at.to_rfc3339(), connection],
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three gateways, devices for two of them and one for a gateway no longer enrolled.
    async fn fleet() -> (tempfile::TempDir, crate::db::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("p.db")).unwrap();
        db.write(|c| {
            for (i, gw) in ["gw-c", "gw-a", "gw-b"].into_iter().enumerate() {
                let session = format!("tm-{i}");
                tm_testkit::store::accepted_session(c, &session)?;
                let (key, _) = tm_protocol::SigningKey::generate().unwrap();
                let id = tm_protocol::GatewayId::new(gw).unwrap();
                crate::gateways::insert(c, &id, &key.verifying_key(), &session)?;
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
        (dir, db)
    }

    fn addresses(g: &GatewayHealth) -> Vec<&str> {
        g.devices
            .iter()
            .map(|d| d.reported.address.as_str())
            .collect()
    }

    #[tokio::test]
    async fn each_gateway_gets_its_own_devices() {
        let (_dir, db) = fleet().await;
        let all = db.read(|c| load(c, None)).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|g| g.gateway_id.as_str()).collect();
        assert_eq!(ids, ["gw-a", "gw-b", "gw-c"]);
        assert_eq!(addresses(&all[0]), ["AA:00:00:00:00:01"]);
        assert!(all[1].devices.is_empty());
        assert_eq!(
            addresses(&all[2]),
            ["AA:00:00:00:00:01", "AA:00:00:00:00:02"]
        );
        let one = db.read(|c| load(c, Some("gw-c"))).await.unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(addresses(&one[0]), addresses(&all[2]));
        let none = db.read(|c| load(c, Some("gw-gone"))).await.unwrap();
        assert!(none.is_empty(), "a device alone is no gateway");
    }
}
