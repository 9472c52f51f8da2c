//! The heartbeat actor: every interval (a minute by default) it sends a signed
//! [`tm_protocol::Heartbeat`] (version, uptime, backlog depth and age, the paired devices' last
//! contact and battery, disk use, clock state, last error and alarms) so operations can see a
//! gateway they never visit. A heartbeat that cannot be sent is skipped: the next one replaces
//! it. The devices come from the paired-devices file ([`crate::ble::paired`]), read afresh for
//! each heartbeat. Every raised alarm kind is named in the heartbeat's `last_error`
//! ([`alarm_summary`]); the provider turns the ones an operator must act on into alerts.
//!
//! **Setup mode** ([`crate::setup`]): while it is on, a heartbeat goes every
//! [`crate::setup::SETUP_HEARTBEAT`], at once when a pairing reaches a new step or a `setup`
//! command changes the mode, and each carries the [`tm_protocol::setup::SetupState`] (devices
//! in range, pairings) for the nurse's page. When it ends, one more heartbeat goes without it
//! (the page sees setup is over) and the interval is the normal one again.

use std::sync::Arc;
use std::time::Duration;

use tm_protocol::{
    Backlog, ClockState, DeviceHealth, DiskUse, GatewayId, Heartbeat, MessageKind,
    PROTOCOL_VERSION, SigningKey,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Link;
use crate::ble::paired::{PairedDevice, PairedStore};
use crate::store::{OutboxHandle, OutboxStatus};

/// What the heartbeat says about a paired device (no readings, no patient data).
pub fn device_health(device: &PairedDevice) -> DeviceHealth {
    DeviceHealth {
        address: device.address.clone(),
        model: device.model_id.clone().or_else(|| device.model.clone()),
        last_seen: device.last_seen,
        last_reading: device.last_reading_at,
        battery_pct: device.battery_pct,
        rssi_dbm: None,
    }
}

/// The paired devices for the heartbeat, at most the protocol's limit; `None` (with a log
/// line) when the file cannot be read: the heartbeat then says the list is unknown, so the
/// provider does not take every device as unpaired.
async fn paired_devices(store: &PairedStore) -> Option<Vec<DeviceHealth>> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.load()).await {
        Ok(Ok(devices)) => Some(
            devices
                .iter()
                .take(tm_protocol::limits::MAX_DEVICES_PER_HEARTBEAT)
                .map(device_health)
                .collect(),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "paired devices unreadable; the heartbeat says so");
            None
        }
        Err(_) => None,
    }
}

/// Builds the heartbeat from the outbox status and the paired devices.
pub fn build(
    gateway: &GatewayId,
    uptime: Duration,
    status: &OutboxStatus,
    devices: Option<Vec<DeviceHealth>>,
) -> Heartbeat {
    let now = chrono::Utc::now();
    let last_error = alarm_summary(&status.alarms)
        .or_else(|| status.last_error.clone())
        .map(|mut e| {
            tm_protocol::limits::fit_text(&mut e);
            e
        });
    Heartbeat {
        v: PROTOCOL_VERSION,
        gateway_id: gateway.clone(),
        sent_at: now,
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: uptime.as_secs(),
        backlog: Backlog {
            depth: status.backlog(),
            oldest_age_s: status
                .oldest_unacknowledged_ms
                .map(|ms| u64::try_from((now.timestamp_millis() - ms).max(0) / 1000).unwrap_or(0)),
            rejected: status.rejected,
        },
        devices_unreadable: devices.is_none(),
        devices: devices.unwrap_or_default(),
        clock: clock_state(),
        disk: DiskUse {
            used_bytes: status.used_bytes,
            quota_bytes: status.quota_bytes,
        },
        last_error,
        setup: None,
    }
}

/// The alarms in the heartbeat's `last_error`: `kind: message` of the most severe one
/// ([`crate::store::alarm::SEVERITY`]), the kinds of the others after it with `+`
/// (`disk-full +provider-refuses-gateway: ...`), so the provider sees every raised kind even
/// when the text is cut to the protocol's limit.
pub fn alarm_summary(alarms: &[crate::store::Alarm]) -> Option<String> {
    let rank = |kind: &str| {
        crate::store::alarm::SEVERITY
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(usize::MAX)
    };
    let mut sorted: Vec<_> = alarms.iter().collect();
    sorted.sort_by_key(|a| (rank(&a.kind), std::cmp::Reverse(a.raised_at_ms)));
    let (first, rest) = sorted.split_first()?;
    let mut kinds = first.kind.clone();
    for a in rest {
        kinds.push_str(" +");
        kinds.push_str(&a.kind);
    }
    Some(format!("{kinds}: {}", first.message))
}

/// systemd-timesyncd creates this file once the clock is synchronized.
fn clock_state() -> ClockState {
    if std::path::Path::new("/run/systemd/timesync/synchronized").exists() {
        ClockState::Synchronized
    } else {
        ClockState::Unknown
    }
}

/// Sends a heartbeat every `interval` (the first at once; a late one delays the next ones
/// rather than bunching them), or at the setup rhythm while `setup` mode is on, until `cancel`
/// or until the outbox writer is gone. One whose status cannot be read, or that the link
/// cannot send, is skipped, not queued.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    outbox: OutboxHandle,
    paired: PairedStore,
    link: Link,
    gateway: GatewayId,
    key: Arc<SigningKey>,
    interval: Duration,
    setup: Option<crate::setup::SetupMode>,
    cancel: CancellationToken,
) {
    let started = Instant::now();
    let mut until = setup.as_ref().map(crate::setup::SetupMode::watch_until);
    let mut pairings = setup.as_ref().map(crate::setup::SetupMode::watch_pairings);
    let mut next = Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
            () = changed(&mut until) => {}
            () = changed(&mut pairings) => {}
        }
        let status = match outbox.status().await {
            Ok(status) => status,
            Err(crate::store::StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "outbox status unreadable; heartbeat skipped");
                next = Instant::now() + period(setup.as_ref(), interval);
                continue;
            }
        };
        let devices = paired_devices(&paired).await;
        let mut heartbeat = build(&gateway, started.elapsed(), &status, devices);
        heartbeat.setup = setup.as_ref().and_then(|s| s.state(chrono::Utc::now()));
        let payload = tm_protocol::encode(&heartbeat);
        let frame = tm_protocol::seal(MessageKind::Heartbeat, gateway.as_str(), &payload, &key);
        if let Err(e) = link.send_heartbeat(frame).await {
            tracing::debug!(error = %e, "heartbeat not sent");
        }
        next = Instant::now() + period(setup.as_ref(), interval);
    }
}

/// The time to the next heartbeat: the setup rhythm (never past the end of setup mode, so the
/// heartbeat that says it ended goes at once) or `interval`.
fn period(setup: Option<&crate::setup::SetupMode>, interval: Duration) -> Duration {
    setup.map_or(interval, |s| {
        s.period(interval, crate::setup::SETUP_HEARTBEAT, chrono::Utc::now())
    })
}

/// The next change seen on `rx`; never without one (or once its sender is gone).
async fn changed<T>(rx: &mut Option<tokio::sync::watch::Receiver<T>>) {
    if let Some(r) = rx {
        if r.changed().await.is_ok() {
            return;
        }
        *rx = None;
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn heartbeat_lists_paired_devices_with_last_contact_and_battery() {
        let dir = tempfile::tempdir().unwrap();
        let store = PairedStore::in_state_dir(dir.path());
        assert_eq!(
            paired_devices(&store).await,
            Some(vec![]),
            "no file yet: no device"
        );
        let seen = chrono::Utc::now();
        let mut scale = PairedDevice::new("c0:26:da:01:02:03");
        scale.model_id = Some("sig-weight-scale".into());
        scale.battery_pct = Some(71);
        scale.last_seen = Some(seen);
        scale.last_reading_at = Some(seen);
        store.upsert(scale).unwrap();
        store
            .upsert(PairedDevice::new("c0:26:da:0a:0b:0c"))
            .unwrap();

        let devices = paired_devices(&store).await;
        let gateway = GatewayId::new("gw-1").unwrap();
        let heartbeat = build(
            &gateway,
            Duration::from_secs(5),
            &OutboxStatus::default(),
            devices,
        );
        // The heartbeat passes the provider's strict decoding.
        let decoded: Heartbeat = tm_protocol::decode(&tm_protocol::encode(&heartbeat)).unwrap();
        assert_eq!(decoded.devices.len(), 2);
        let d = decoded
            .devices
            .iter()
            .find(|d| d.address == "C0:26:DA:01:02:03")
            .unwrap();
        assert_eq!(d.battery_pct, Some(71));
        assert_eq!(d.model.as_deref(), Some("sig-weight-scale"));
        assert_eq!(d.last_seen.map(|t| t.timestamp()), Some(seen.timestamp()));
        let never = decoded
            .devices
            .iter()
            .find(|d| d.address == "C0:26:DA:0A:0B:0C")
            .unwrap();
        assert_eq!((never.last_seen, never.battery_pct), (None, None));

        assert!(!decoded.devices_unreadable);

        // An unreadable file: the heartbeat still goes, and says the list is unknown.
        std::fs::write(dir.path().join("paired-devices.json"), b"{not json").unwrap();
        let devices = paired_devices(&store).await;
        assert_eq!(devices, None);
        let heartbeat = build(
            &gateway,
            Duration::from_secs(5),
            &OutboxStatus::default(),
            devices,
        );
        let decoded: Heartbeat = tm_protocol::decode(&tm_protocol::encode(&heartbeat)).unwrap();
        assert!(decoded.devices.is_empty() && decoded.devices_unreadable);
    }
}
