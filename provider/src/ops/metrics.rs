//! `GET /metrics`: the OpenMetrics text exposition, through the Prometheus client crate.
//!
//! Two kinds of figures, told apart because several provider instances share one store:
//!
//! - **Fleet gauges, from the store at scrape time**, so every instance reports the same value:
//!   gateways by state, their backlog and its oldest reading, unresolved alerts by kind and
//!   state, the HUB outbox's depth and the updates held for an operator
//!   ([`crate::store::Store::fleet_figures`]), and the clinical alerts by rule and state
//!   (`tm_clinical_alerts`, [`crate::store::Store::clinical_alert_counts`]). They describe
//!   state (take `max` across instances, not `sum`).
//! - **This instance's counters, in memory since it started** (Prometheus expects them to
//!   restart at zero): readings stored and heartbeats received by its ingest
//!   ([`crate::ingest::counters::IngestCounters`]; `rate(tm_readings_ingested_total[5m])` is the ingest
//!   rate), and its MQTT connection's messages refused by reason, connections, connections lost
//!   to an oversized packet and broker queues shed ([`crate::ingest::mqtt::stats`]). They add up
//!   across instances.
//!
//! A scrape builds a registry of its own: fresh gauges set from the store, and the instance's
//! counters registered as they are (they are shared handles, not copies).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Ops;
use super::alerts::AlertKind;
use super::health::Liveness;
use crate::ingest::mqtt::stats::Labels;
use crate::store::metrics::FleetFigures;
use crate::triage::rules::RuleKind;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the store says about the fleet at `now`.
struct Fleet {
    gateways: Family<Labels, Gauge>,
    backlog: Gauge,
    oldest: Gauge,
    alerts: Family<Labels, Gauge>,
    hub_pending: Gauge,
    hub_held: Gauge,
}

fn gauge(value: impl TryInto<i64>) -> Gauge {
    let g = Gauge::default();
    g.set(value.try_into().unwrap_or(i64::MAX));
    g
}

fn fleet(figures: FleetFigures, ops: &Ops, now: chrono::DateTime<chrono::Utc>) -> Fleet {
    let gateways = Family::<Labels, Gauge>::default();
    for state in ["online", "offline", "never-seen", "inactive"] {
        let _ = gateways.get_or_create(&vec![("state", state)]);
    }
    let (mut backlog, mut oldest) = (0u64, 0u64);
    for g in figures.gateways {
        let state = match (g.is_active(), g.liveness(now, &ops.thresholds)) {
            (false, _) => "inactive",
            (true, Liveness::Online) => "online",
            (true, Liveness::Offline) => "offline",
            (true, Liveness::NeverSeen) => "never-seen",
        };
        gateways.get_or_create(&vec![("state", state)]).inc();
        if let Some(hb) = &g.heartbeat {
            backlog += hb.backlog.depth;
            oldest = oldest.max(hb.backlog.oldest_age_s.unwrap_or(0));
        }
    }
    let alerts = Family::<Labels, Gauge>::default();
    for kind in AlertKind::ALL {
        for state in ["open", "acknowledged"] {
            let _ = alerts.get_or_create(&vec![("kind", kind.as_str()), ("state", state)]);
        }
    }
    for a in figures.unresolved_alerts {
        let kind = AlertKind::ALL.iter().find(|k| k.as_str() == a.kind);
        let state = ["open", "acknowledged"].into_iter().find(|s| *s == a.state);
        if let (Some(kind), Some(state)) = (kind, state) {
            alerts
                .get_or_create(&vec![("kind", kind.as_str()), ("state", state)])
                .inc();
        }
    }
    Fleet {
        gateways,
        backlog: gauge(backlog),
        oldest: gauge(oldest),
        alerts,
        hub_pending: gauge(figures.hub_pending),
        hub_held: gauge(figures.hub_held),
    }
}

/// Clinical alerts per rule and state, every known pair listed even at zero.
fn clinical(counts: &[(String, String, i64)]) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    for rule in RuleKind::ALL {
        for state in ["open", "acknowledged", "resolved"] {
            let _ = family.get_or_create(&vec![("rule", rule.name()), ("state", state)]);
        }
    }
    for (rule, state, n) in counts {
        let rule = RuleKind::from_name(rule);
        let state = ["open", "acknowledged", "resolved"]
            .into_iter()
            .find(|s| s == state);
        if let (Some(rule), Some(state)) = (rule, state) {
            family
                .get_or_create(&vec![("rule", rule.name()), ("state", state)])
                .set(*n);
        }
    }
    family
}

/// Renders the exposition of the store's `figures` and clinical alert counts at `now`.
pub fn render(
    figures: FleetFigures,
    clinical_counts: &[(String, String, i64)],
    ops: &Ops,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, std::fmt::Error> {
    let fleet = fleet(figures, ops, now);
    let mut r = Registry::default();
    r.register("tm_gateways", "Enrolled gateways by state.", fleet.gateways);
    r.register(
        "tm_gateway_backlog_readings",
        "Unacknowledged readings on all gateways (their last heartbeats).",
        fleet.backlog,
    );
    r.register(
        "tm_gateway_backlog_oldest_seconds",
        "Age of the oldest unacknowledged reading on any gateway.",
        fleet.oldest,
    );
    r.register(
        "tm_alerts",
        "Unresolved alerts by kind and state.",
        fleet.alerts,
    );
    r.register(
        "tm_clinical_alerts",
        "Clinical alerts raised by the triage rules, by rule and state.",
        clinical(clinical_counts),
    );
    r.register(
        "tm_hub_outbox_depth",
        "HUB status updates waiting to be sent.",
        fleet.hub_pending,
    );
    r.register(
        "tm_hub_outbox_held",
        "HUB status updates the HUB kept refusing, held for an operator.",
        fleet.hub_held,
    );
    r.register(
        "tm_readings_ingested",
        "Readings newly stored by this instance since it started.",
        ops.counters.readings.clone(),
    );
    r.register(
        "tm_heartbeats_received",
        "Verified heartbeats stored by this instance since it started.",
        ops.counters.heartbeats.clone(),
    );
    let mqtt = ops.mqtt.stats();
    r.register(
        "tm_mqtt_messages_refused",
        "MQTT messages refused (and acknowledged) by this instance, by reason.",
        mqtt.refused.clone(),
    );
    r.register(
        "tm_mqtt_connections",
        "MQTT connections this instance made to the broker.",
        mqtt.connections.clone(),
    );
    r.register(
        "tm_mqtt_oversized_packets",
        "MQTT connections lost to a packet larger than the provider reads.",
        mqtt.oversized.clone(),
    );
    r.register(
        "tm_mqtt_sessions_shed",
        "Reconnects with a clean session that dropped the broker's queue for this instance.",
        mqtt.shed.clone(),
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r)?;
    Ok(out)
}

/// `GET /metrics`.
#[tracing::instrument(name = "ops", skip_all)]
pub async fn metrics(State(ops): State<Ops>) -> Response {
    let stored = match ops.store.fleet_figures().await {
        Ok(figures) => ops
            .store
            .clinical_alert_counts()
            .await
            .map(|counts| (figures, counts)),
        Err(e) => Err(e),
    };
    let text = match stored {
        Ok((figures, counts)) => {
            render(figures, &counts, &ops, chrono::Utc::now()).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics unavailable");
            axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
