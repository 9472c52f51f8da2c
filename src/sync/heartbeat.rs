//! The heartbeat actor: every interval (a minute by default) it sends a signed
//! [`tm_protocol::Heartbeat`] (version, uptime, backlog depth and age, disk use, clock state,
//! last error and alarms) so operations can see a gateway they never visit. A heartbeat that
//! cannot be sent is skipped: the next one replaces it.

use std::sync::Arc;
use std::time::Duration;

use tm_protocol::{
    Backlog, ClockState, DiskUse, GatewayId, Heartbeat, MessageKind, PROTOCOL_VERSION, SigningKey,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Link;
use crate::store::{OutboxHandle, OutboxStatus};

/// Builds the heartbeat from the outbox status.
pub fn build(gateway: &GatewayId, uptime: Duration, status: &OutboxStatus) -> Heartbeat {
    let now = chrono::Utc::now();
    let last_error = status
        .alarms
        .last()
        .map(|a| format!("{}: {}", a.kind, a.message))
        .or_else(|| status.last_error.clone())
        .map(|mut e| {
            truncate(&mut e, tm_protocol::limits::MAX_TEXT_BYTES);
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
        devices: vec![],
        clock: clock_state(),
        disk: DiskUse {
            used_bytes: status.used_bytes,
            quota_bytes: status.quota_bytes,
        },
        last_error,
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// systemd-timesyncd creates this file once the clock is synchronized.
fn clock_state() -> ClockState {
    if std::path::Path::new("/run/systemd/timesync/synchronized").exists() {
        ClockState::Synchronized
    } else {
        ClockState::Unknown
    }
}

/// Sends heartbeats until `cancel`.
pub async fn run(
    outbox: OutboxHandle,
    link: Link,
    gateway: GatewayId,
    key: Arc<SigningKey>,
    interval: Duration,
    cancel: CancellationToken,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(status) = outbox.status().await else {
            return;
        };
        let heartbeat = build(&gateway, started.elapsed(), &status);
        let payload = tm_protocol::encode(&heartbeat);
        let frame = tm_protocol::seal(MessageKind::Heartbeat, gateway.as_str(), &payload, &key);
        if let Err(e) = link.send_heartbeat(frame).await {
            tracing::debug!(stage = "heartbeat", error = %e, "heartbeat not sent");
        }
    }
}
