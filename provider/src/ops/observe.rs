//! What a verified heartbeat changes beyond the latest-heartbeat row kept by ingest: the
//! backlog trend (`backlog_growing_since`), the heartbeat count, the per-device health rows,
//! and the audit entries for devices that appeared, left or were replaced. One transaction.
//!
//! History is kept only as far as alerts need it: the previous backlog depth and the instant
//! the backlog started growing; older heartbeats are not stored.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::Heartbeat;

use super::audit::{self, AuditAction};
use super::health::parse_time;

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

/// The new `backlog_growing_since`: set when the depth rises, kept while it does not fall,
/// cleared when it falls or reaches zero.
pub fn backlog_trend(
    previous: Option<(u64, Option<DateTime<Utc>>)>,
    depth: u64,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let Some((before, since)) = previous else {
        return (depth > 0).then_some(now);
    };
    if depth == 0 || depth < before {
        None
    } else if depth > before {
        Some(since.unwrap_or(now))
    } else {
        since
    }
}

/// Applies a verified heartbeat received at `now` (inside the caller's transaction).
pub fn heartbeat(conn: &Connection, hb: &Heartbeat, now: DateTime<Utc>) -> rusqlite::Result<()> {
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
            since.map(|t| t.to_rfc3339())
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
    let mut gone: Vec<(&String, &Option<String>)> = known
        .iter()
        .filter(|(a, _)| !hb.devices.iter().any(|d| &d.address == *a))
        .collect();
    gone.sort();
    let actor = format!("gateway:{gateway}");
    let label = |address: &str, model: &Option<String>| match model {
        Some(m) => format!("{address} ({m})"),
        None => address.to_owned(),
    };
    for d in &hb.devices {
        let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339());
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
                now.to_rfc3339()
            ],
        )?;
        if known.contains_key(&d.address) {
            continue;
        }
        let replaced = gone
            .iter()
            .position(|(_, m)| m.is_some() && **m == d.model)
            .map(|i| gone.remove(i));
        let (action, detail) = match replaced {
            Some((old, old_model)) => {
                conn.execute(
                    "DELETE FROM ops_devices WHERE gateway_id = ?1 AND address = ?2",
                    params![gateway, old],
                )?;
                (
                    AuditAction::Replaced,
                    format!("replaces {}", label(old, old_model)),
                )
            }
            None => (AuditAction::Paired, String::new()),
        };
        audit::record(
            conn,
            now,
            &actor,
            action,
            gateway,
            session.as_deref(),
            Some(&label(&d.address, &d.model)),
            &detail,
        )?;
    }
    for (address, model) in gone {
        conn.execute(
            "DELETE FROM ops_devices WHERE gateway_id = ?1 AND address = ?2",
            params![gateway, address],
        )?;
        audit::record(
            conn,
            now,
            &actor,
            AuditAction::Unpaired,
            gateway,
            session.as_deref(),
            Some(&label(address, model)),
            "",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_trend_follows_rises_and_falls() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::minutes(1);
        assert_eq!(backlog_trend(None, 0, t0), None);
        assert_eq!(backlog_trend(None, 5, t0), Some(t0));
        assert_eq!(backlog_trend(Some((5, Some(t0))), 9, t1), Some(t0));
        assert_eq!(backlog_trend(Some((9, Some(t0))), 9, t1), Some(t0));
        assert_eq!(backlog_trend(Some((9, None)), 12, t1), Some(t1));
        assert_eq!(backlog_trend(Some((9, Some(t0))), 3, t1), None);
        assert_eq!(backlog_trend(Some((9, Some(t0))), 0, t1), None);
    }
}
