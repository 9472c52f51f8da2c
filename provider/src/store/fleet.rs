//! The health model's records: what operations know about each gateway and each paired device,
//! read from stored state only (the registry, the latest heartbeat, the MQTT status,
//! `ops_devices`), so a restarted provider knows exactly what it knew before.
//!
//! What a verified heartbeat changes beyond the latest-heartbeat row kept by ingest (the backlog
//! trend, the heartbeat count, the per-device rows and the audit entries for devices that
//! appeared, left or were replaced) is written in the ingest's heartbeat transaction
//! ([`super::sqlite::fleet::record_heartbeat`]). History is kept only as far as alerts need
//! it: the previous backlog depth and the instant the backlog started growing
//! ([`backlog_trend`]); older heartbeats are not stored.
//!
//! Statuses are signed by the gateway and numbered by connection
//! ([`super::sqlite::fleet::record_status`]): only the gateway can flip its own status, and an
//! older connection's last-will cannot override a newer connection's `online`.
//!
//! How a record is judged (online or offline, by the `[ops]` thresholds) is the operations'
//! business (`ops::health`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tm_protocol::{ClockState, Heartbeat};

use super::audit::AuditAction;

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

/// One step of what a heartbeat's device list changes, in the order both backends apply them
/// (the audit trail's order is part of what operators read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChange<'h> {
    /// Insert or update the row of this device (fields the heartbeat left empty keep their
    /// stored value).
    Upsert(&'h tm_protocol::DeviceHealth),
    /// Remove the row of the device at this address.
    Remove(String),
    /// Append an audit entry about a device (`device`: its address and model).
    Audit {
        /// Paired, replaced or unpaired.
        action: AuditAction,
        /// The device, as [`device_label`] names it.
        device: String,
        /// For a replacement, the device it replaces.
        detail: String,
    },
}

/// A device as the audit trail names it: `address (model)`, or the address alone.
pub fn device_label(address: &str, model: Option<&str>) -> String {
    match model {
        Some(m) => format!("{address} ({m})"),
        None => address.to_owned(),
    }
}

/// What `devices` (a heartbeat's list) changes given the gateway's `known` devices (address to
/// model): every listed device is upserted; a new one is audited as replacing a gone device of
/// the same model (removed at once) or as paired; the gone devices left over are removed and
/// audited as unpaired, in address order.
pub fn device_changes<'h>(
    known: &HashMap<String, Option<String>>,
    devices: &'h [tm_protocol::DeviceHealth],
) -> Vec<DeviceChange<'h>> {
    let mut gone: Vec<(&String, &Option<String>)> = known
        .iter()
        .filter(|(a, _)| !devices.iter().any(|d| &d.address == *a))
        .collect();
    gone.sort();
    let mut changes = Vec::new();
    for d in devices {
        changes.push(DeviceChange::Upsert(d));
        if known.contains_key(&d.address) {
            continue;
        }
        let replaced = gone
            .iter()
            .position(|(_, m)| m.is_some() && **m == d.model)
            .map(|i| gone.remove(i));
        let (action, detail) = match replaced {
            Some((old, old_model)) => {
                changes.push(DeviceChange::Remove(old.clone()));
                (
                    AuditAction::Replaced,
                    format!("replaces {}", device_label(old, old_model.as_deref())),
                )
            }
            None => (AuditAction::Paired, String::new()),
        };
        changes.push(DeviceChange::Audit {
            action,
            device: device_label(&d.address, d.model.as_deref()),
            detail,
        });
    }
    for (address, model) in gone {
        changes.push(DeviceChange::Remove(address.clone()));
        changes.push(DeviceChange::Audit {
            action: AuditAction::Unpaired,
            device: device_label(address, model.as_deref()),
            detail: String::new(),
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(address: &str, model: Option<&str>) -> tm_protocol::DeviceHealth {
        tm_protocol::DeviceHealth {
            address: address.into(),
            model: model.map(str::to_owned),
            last_seen: None,
            last_reading: None,
            battery_pct: None,
            rssi_dbm: None,
        }
    }

    #[test]
    fn a_device_list_is_diffed_into_upserts_removals_and_audit_entries_in_order() {
        let known: HashMap<String, Option<String>> = [
            ("AA:01", Some("omron-bp")),
            ("AA:02", Some("mi-scale-2")),
            ("AA:03", None),
        ]
        .into_iter()
        .map(|(a, m)| (a.to_owned(), m.map(str::to_owned)))
        .collect();
        let listed = [
            device("AA:01", Some("omron-bp")),
            device("BB:01", Some("mi-scale-2")),
        ];
        let audit = |action, device: &str, detail: &str| DeviceChange::Audit {
            action,
            device: device.to_owned(),
            detail: detail.to_owned(),
        };
        assert_eq!(
            device_changes(&known, &listed),
            vec![
                DeviceChange::Upsert(&listed[0]),
                DeviceChange::Upsert(&listed[1]),
                DeviceChange::Remove("AA:02".into()),
                audit(
                    AuditAction::Replaced,
                    "BB:01 (mi-scale-2)",
                    "replaces AA:02 (mi-scale-2)"
                ),
                DeviceChange::Remove("AA:03".into()),
                audit(AuditAction::Unpaired, "AA:03", ""),
            ]
        );
        assert!(device_changes(&HashMap::new(), &[]).is_empty());
    }

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
