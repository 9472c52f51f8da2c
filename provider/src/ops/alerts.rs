//! Alerts: conditions computed from stored state, each kept as one row per occurrence with the
//! states open → acknowledged → resolved.
//!
//! [`evaluate`] is a pure function of the fleet state and an instant: it lists the conditions
//! that hold now ([`conditions`]), opens those without an open row and resolves open rows whose
//! condition no longer holds. Every condition has a key `(kind, subject)`; a partial unique
//! index on the open rows makes raising the same condition twice impossible even if two
//! evaluators raced. An acknowledged alert stays until its condition clears.
//!
//! `hub-update-held` (one per session) is also opened by the HUB outbox in the transaction
//! that holds a refused update, and resolved in the one that delivers the session's last held
//! or re-queued update ([`resolve`]), so it shows without waiting for the evaluator; the
//! evaluator judges the same stored rows ([`crate::store::Store::flagged_hub_sessions`]). The records and
//! their statements are the store's ([`crate::store::alerts`]); the evaluator runs [`evaluate`]
//! inside its transaction ([`crate::store::Store::evaluate_alerts`]).
//! Two conditions are about the provider's own MQTT ingest rather than a gateway, judged from
//! the in-memory counters of this instance ([`crate::ingest::mqtt::stats`]): messages refused
//! in the last 15 minutes (`mqtt-messages-refused`), and connections lost to a packet larger
//! than the provider reads (`mqtt-packet-too-large`: the broker's `max_packet_size` is missing
//! or too high). Each has the subject `mqtt-ingest`, so one alert is open per kind; it
//! resolves 15 minutes after the last such event.

use chrono::{DateTime, Utc};
use tm_protocol::ClockState;

use super::adherence;
use super::health::Liveness;
use super::settings::Thresholds;
use crate::ingest::mqtt::stats::{MqttActivity, RECENT_WINDOW};
use crate::store::adherence::SessionAdherence;
use crate::store::alerts::AlertInputs;
pub use crate::store::alerts::{AlertKind, Condition, OpenAlert, Transition, hub_update_held};
use crate::store::fleet::GatewayHealth;
use crate::store::hub_outbox::FlaggedSession;

/// How a gateway's own alarms become alerts.
impl AlertKind {
    /// The alert a gateway alarm kind named in a heartbeat becomes, for the kinds an operator
    /// must act on.
    pub fn from_gateway_alarm(kind: &str) -> Option<Self> {
        match kind {
            "disk-full" => Some(Self::GatewayDiskFull),
            "outbox-reset" => Some(Self::GatewayOutboxReset),
            "provider-refuses-gateway" => Some(Self::GatewayRefused),
            _ => None,
        }
    }
}

/// The alarm kinds a gateway names at the start of its heartbeat's `last_error`:
/// `kind +other +third: message of the first` (the gateway's alarm summary).
pub fn gateway_alarm_kinds(last_error: &str) -> Vec<&str> {
    let Some((head, _)) = last_error.split_once(": ") else {
        return Vec::new();
    };
    let kinds: Vec<&str> = head.split(" +").map(str::trim).collect();
    let kebab = |k: &str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if kinds.iter().all(|k| kebab(k)) {
        kinds
    } else {
        Vec::new()
    }
}

/// At most 200 bytes of `text`, cut at a character boundary.
fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    let mut end = line.len().min(200);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// Everything [`evaluate`] looks at.
#[derive(Debug, Clone, Default)]
pub struct FleetState {
    /// Every enrolled gateway.
    pub gateways: Vec<GatewayHealth>,
    /// Monitored sessions with a schedule.
    pub sessions: Vec<SessionAdherence>,
    /// Sessions whose HUB updates are held (or re-queued, not yet delivered).
    pub held_updates: Vec<FlaggedSession>,
    /// Alerts not yet resolved.
    pub open: Vec<OpenAlert>,
    /// This instance's recent MQTT ingest events.
    pub mqtt: MqttActivity,
}

impl FleetState {
    /// What the store holds ([`AlertInputs`]) with this instance's recent MQTT ingest events.
    pub fn new(stored: AlertInputs, mqtt: MqttActivity) -> Self {
        Self {
            gateways: stored.gateways,
            sessions: stored.sessions,
            held_updates: stored.held_updates,
            open: stored.open,
            mqtt,
        }
    }
}

/// Subject of the MQTT ingest's own alerts.
pub const MQTT_SUBJECT: &str = "mqtt-ingest";

fn hours(d: chrono::Duration) -> i64 {
    d.num_hours()
}

/// The conditions that hold at `now`. Only active gateways are judged.
pub fn conditions(state: &FleetState, now: DateTime<Utc>, t: &Thresholds) -> Vec<Condition> {
    let mut out = Vec::new();
    for g in state.gateways.iter().filter(|g| g.is_active()) {
        let mut raise = |kind, subject: String, detail: String| {
            out.push(Condition {
                kind,
                subject,
                gateway_id: Some(g.gateway_id.clone()),
                telemonitoring_id: g.telemonitoring_id.clone(),
                detail,
            });
        };
        let id = &g.gateway_id;
        let silent_since = g.last_seen.unwrap_or(g.enrolled_at);
        if g.liveness(now, t) != Liveness::Online && now - silent_since > t.offline_after {
            raise(
                AlertKind::GatewayOffline,
                id.clone(),
                format!("not heard for {} h", hours(now - silent_since)),
            );
        }
        if let Some(since) = g.backlog_growing_since
            && now - since > t.backlog_growing_for
        {
            raise(
                AlertKind::BacklogGrowing,
                id.clone(),
                format!("backlog growing for {} h", hours(now - since)),
            );
        }
        let Some(hb) = &g.heartbeat else { continue };
        if let Some(age) = hb.backlog.oldest_age_s {
            let age = chrono::Duration::seconds(i64::try_from(age).unwrap_or(i64::MAX / 1000));
            if age > t.backlog_max_age {
                raise(
                    AlertKind::BacklogStale,
                    id.clone(),
                    format!(
                        "{} readings waiting, oldest {} h",
                        hb.backlog.depth,
                        hours(age)
                    ),
                );
            }
        }
        if hb.clock == ClockState::Unsynchronized {
            raise(
                AlertKind::ClockUnsynchronized,
                id.clone(),
                "gateway clock not synchronized".into(),
            );
        }
        if let Some(pct) = g.disk_pct()
            && pct > u64::from(t.disk_max_pct)
        {
            raise(
                AlertKind::DiskHigh,
                id.clone(),
                format!("outbox at {pct}% of its quota"),
            );
        }
        if let Some(last_error) = &hb.last_error {
            let message = last_error.split_once(": ").map_or("", |(_, m)| m);
            // The message is the first (most severe) alarm's; the others are named only.
            for (i, alarm) in gateway_alarm_kinds(last_error).into_iter().enumerate() {
                if let Some(kind) = AlertKind::from_gateway_alarm(alarm) {
                    let detail = if i == 0 {
                        format!("gateway alarm {alarm}: {}", first_line(message))
                    } else {
                        format!("gateway alarm {alarm} (see tm-gateway status)")
                    };
                    raise(kind, id.clone(), detail);
                }
            }
        }
        if hb.backlog.rejected > 0 {
            raise(
                AlertKind::ReadingsRejected,
                id.clone(),
                format!("{} readings rejected by the provider", hb.backlog.rejected),
            );
        }
        for d in g.devices.iter().map(|d| &d.reported) {
            if let Some(b) = d.battery_pct
                && b < t.battery_low_pct
            {
                raise(
                    AlertKind::BatteryLow,
                    format!("{id}/{}", d.address),
                    format!("device {} battery {b}%", d.address),
                );
            }
        }
    }
    let recent = |events: &[DateTime<Utc>]| {
        events
            .iter()
            .filter(|t| **t <= now && now - **t <= RECENT_WINDOW)
            .count()
    };
    let minutes = RECENT_WINDOW.num_minutes();
    let refused = recent(&state.mqtt.refused);
    if refused > 0 {
        out.push(Condition {
            kind: AlertKind::MqttMessagesRefused,
            subject: MQTT_SUBJECT.into(),
            gateway_id: None,
            telemonitoring_id: None,
            detail: format!(
                "{refused} MQTT messages refused in the last {minutes} min \
                 (reasons: tm_mqtt_messages_refused_total in /metrics)"
            ),
        });
    }
    let oversized = recent(&state.mqtt.oversized);
    if oversized > 0 {
        out.push(Condition {
            kind: AlertKind::MqttPacketTooLarge,
            subject: MQTT_SUBJECT.into(),
            gateway_id: None,
            telemonitoring_id: None,
            detail: format!(
                "the broker delivered {oversized} packets larger than the provider reads in the \
                 last {minutes} min: set max_packet_size {} in the broker's configuration",
                tm_protocol::routes::mqtt::MAX_PACKET_BYTES
            ),
        });
    }
    for s in &state.sessions {
        for (measure, since) in adherence::missed(s, now, t.time_zone, t.deadline) {
            out.push(Condition {
                kind: AlertKind::MeasurementMissed,
                subject: format!("{}/{}", s.telemonitoring_id, measure.as_str()),
                gateway_id: s.gateway_id.clone(),
                telemonitoring_id: Some(s.telemonitoring_id.clone()),
                detail: format!(
                    "no {} since {}",
                    measure.as_str(),
                    since
                        .with_timezone(&t.time_zone)
                        .format("%Y-%m-%d %H:%M %Z")
                ),
            });
        }
    }
    out.extend(state.held_updates.iter().map(hub_update_held));
    out
}

/// The transitions that bring the stored alerts in line with the conditions at `now`.
pub fn evaluate(state: &FleetState, now: DateTime<Utc>, t: &Thresholds) -> Vec<Transition> {
    let holding = conditions(state, now, t);
    let mut out: Vec<Transition> = state
        .open
        .iter()
        .filter(|a| {
            !holding
                .iter()
                .any(|c| c.kind.as_str() == a.kind && c.subject == a.subject)
        })
        .cloned()
        .map(Transition::Resolve)
        .collect();
    out.extend(
        holding
            .into_iter()
            .filter(|c| {
                !state
                    .open
                    .iter()
                    .any(|a| a.kind == c.kind.as_str() && a.subject == c.subject)
            })
            .map(Transition::Open),
    );
    out
}

#[cfg(test)]
mod gateway_alarm_tests {
    use super::*;

    #[test]
    fn heartbeat_alarm_kinds_are_read_from_the_summary() {
        assert_eq!(
            gateway_alarm_kinds("disk-full +provider-refuses-gateway: the file system is full"),
            vec!["disk-full", "provider-refuses-gateway"]
        );
        assert_eq!(gateway_alarm_kinds("outbox-reset: x"), vec!["outbox-reset"]);
        assert!(gateway_alarm_kinds("retryable: HTTP 500: boom").len() == 1);
        assert!(gateway_alarm_kinds("cannot connect to the provider").is_empty());
        assert!(gateway_alarm_kinds("HTTP 403: Forbidden: x").is_empty());
        assert_eq!(
            AlertKind::from_gateway_alarm("disk-full"),
            Some(AlertKind::GatewayDiskFull)
        );
        assert_eq!(AlertKind::from_gateway_alarm("retryable"), None);
    }
}
