//! `GET /metrics`: Prometheus text exposition (version 0.0.4) of the fleet: gateways by state,
//! backlog, alerts by kind and state, heartbeats received, reading ingest rate, HUB outbox depth
//! and the HUB updates held for an operator.
//! Computed from the store at scrape time, so every provider instance reports the same figures.
//! The MQTT ingest's counters (messages refused by reason, connections, connections lost to an
//! oversized packet, broker queues shed) are this instance's, counted in memory since it started
//! ([`crate::ingest::mqtt::stats`]).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::alerts::AlertKind;
use super::health::{self, Liveness};
use super::{Ops, views};
use crate::ingest::mqtt::{MqttStats, Refusal};

/// Window for the ingest rate.
const RATE_WINDOW_S: i64 = 300;

/// Renders the metrics text at `now`.
pub fn render(
    conn: &rusqlite::Connection,
    ops: &Ops,
    now: chrono::DateTime<chrono::Utc>,
) -> rusqlite::Result<String> {
    let gateways = health::load(conn, None)?;
    let mut by_state = [0usize; 4];
    let (mut backlog, mut oldest, mut heartbeats) = (0u64, 0u64, 0u64);
    for g in &gateways {
        let i = match (g.is_active(), g.liveness(now, &ops.thresholds)) {
            (false, _) => 3,
            (true, Liveness::Online) => 0,
            (true, Liveness::Offline) => 1,
            (true, Liveness::NeverSeen) => 2,
        };
        by_state[i] += 1;
        heartbeats += g.heartbeats_total;
        if let Some(hb) = &g.heartbeat {
            backlog += hb.backlog.depth;
            oldest = oldest.max(hb.backlog.oldest_age_s.unwrap_or(0));
        }
    }
    let alerts = views::alerts(conn, None, true, 100_000)?;
    let since = (now - chrono::Duration::seconds(RATE_WINDOW_S)).to_rfc3339();
    let recent: i64 = conn.query_row(
        "SELECT COUNT(*) FROM readings WHERE ingested_at >= ?1",
        [since],
        |r| r.get(0),
    )?;
    let hub_pending: i64 =
        conn.query_row("SELECT COUNT(*) FROM hub_outbox WHERE state = 0", [], |r| {
            r.get(0)
        })?;

    let hub_held: i64 =
        conn.query_row("SELECT COUNT(*) FROM hub_outbox WHERE state = 2", [], |r| {
            r.get(0)
        })?;

    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# HELP tm_gateways Enrolled gateways by state.\n# TYPE tm_gateways gauge"
    );
    for (i, state) in ["online", "offline", "never-seen", "inactive"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(w, "tm_gateways{{state=\"{state}\"}} {}", by_state[i]);
    }
    let _ = writeln!(
        w,
        "# HELP tm_gateway_backlog_readings Unacknowledged readings on all gateways.\n# TYPE tm_gateway_backlog_readings gauge\ntm_gateway_backlog_readings {backlog}"
    );
    let _ = writeln!(
        w,
        "# HELP tm_gateway_backlog_oldest_seconds Age of the oldest unacknowledged reading on any gateway.\n# TYPE tm_gateway_backlog_oldest_seconds gauge\ntm_gateway_backlog_oldest_seconds {oldest}"
    );
    let _ = writeln!(
        w,
        "# HELP tm_alerts Unresolved alerts by kind and state.\n# TYPE tm_alerts gauge"
    );
    for kind in AlertKind::ALL {
        for state in ["open", "acknowledged"] {
            let n = alerts
                .iter()
                .filter(|a| a.kind == kind.as_str() && a.state == state)
                .count();
            let _ = writeln!(
                w,
                "tm_alerts{{kind=\"{}\",state=\"{state}\"}} {n}",
                kind.as_str()
            );
        }
    }
    let _ = writeln!(
        w,
        "# HELP tm_heartbeats_received_total Verified heartbeats received.\n# TYPE tm_heartbeats_received_total counter\ntm_heartbeats_received_total {heartbeats}"
    );
    #[allow(clippy::cast_precision_loss)]
    let rate = recent as f64 / RATE_WINDOW_S as f64;
    let _ = writeln!(
        w,
        "# HELP tm_readings_ingested_per_second Readings stored per second over the last 5 minutes.\n# TYPE tm_readings_ingested_per_second gauge\ntm_readings_ingested_per_second {rate}"
    );
    let _ = writeln!(
        w,
        "# HELP tm_hub_outbox_depth HUB status updates waiting to be sent.\n# TYPE tm_hub_outbox_depth gauge\ntm_hub_outbox_depth {hub_pending}"
    );
    let _ = writeln!(
        w,
        "# HELP tm_hub_outbox_held HUB status updates the HUB kept refusing, held for an operator.\n# TYPE tm_hub_outbox_held gauge\ntm_hub_outbox_held {hub_held}"
    );
    mqtt_counters(w, ops.mqtt.stats());
    Ok(out)
}

fn mqtt_counters(w: &mut String, stats: &MqttStats) {
    let _ = writeln!(
        w,
        "# HELP tm_mqtt_messages_refused_total MQTT messages refused (and acknowledged) by this instance, by reason.\n# TYPE tm_mqtt_messages_refused_total counter"
    );
    for reason in Refusal::ALL {
        let _ = writeln!(
            w,
            "tm_mqtt_messages_refused_total{{reason=\"{}\"}} {}",
            reason.as_str(),
            stats.refused_total(reason)
        );
    }
    let (connections, oversized, shed) = stats.connection_totals();
    let _ = writeln!(
        w,
        "# HELP tm_mqtt_connections_total MQTT connections this instance made to the broker.\n# TYPE tm_mqtt_connections_total counter\ntm_mqtt_connections_total {connections}"
    );
    let _ = writeln!(
        w,
        "# HELP tm_mqtt_oversized_packets_total MQTT connections lost to a packet larger than the provider reads.\n# TYPE tm_mqtt_oversized_packets_total counter\ntm_mqtt_oversized_packets_total {oversized}"
    );
    let _ = writeln!(
        w,
        "# HELP tm_mqtt_sessions_shed_total Reconnects with a clean session that dropped the broker's queue for this instance.\n# TYPE tm_mqtt_sessions_shed_total counter\ntm_mqtt_sessions_shed_total {shed}"
    );
}

/// `GET /metrics`.
pub async fn metrics(State(ops): State<Ops>) -> Response {
    let o = ops.clone();
    match ops
        .db
        .read(move |c| render(c, &o, chrono::Utc::now()))
        .await
    {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => {
            tracing::error!(stage = "ops", error = %e, "metrics unavailable");
            axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
