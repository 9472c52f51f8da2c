//! The operations dashboard: server-rendered HTML, no script. The overview shows counts by
//! state, the unresolved alerts (open first) and a gateway table sortable by a query parameter
//! (`?sort=last_seen|gateway|backlog|state|alerts`), and the HUB status updates that were not
//! delivered (held ones with a re-queue button, [`super::hub_updates`]); each gateway's page shows its health, its
//! devices, its alert history, its latest remote commands with their results, and its audit
//! trail.

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Ops;
use super::views::{self, GatewayView};
use crate::html::escape as esc;
use crate::http::unavailable::Unavailable;
use crate::store::alerts::AlertRow;

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "never".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}.online{color:#176f2c}\
.offline,.never-seen{color:#b00020}.open{font-weight:bold;color:#b00020}\
.counts span{display:inline-block;margin-right:1.5em;font-size:1.2em}";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

fn alert_table(out: &mut String, alerts: &[AlertRow]) {
    out.push_str(
        "<table class=\"alerts\"><tr><th>#</th><th>State</th><th>Kind</th><th>Subject</th>\
        <th>Detail</th><th>Opened</th><th>Acknowledged</th><th>Resolved</th></tr>",
    );
    for a in alerts {
        let _ = write!(
            out,
            "<tr class=\"{state}\" data-alert=\"{id}\"><td>{id}</td><td>{state}</td><td>{kind}</td>\
             <td>{subject}</td><td>{detail}</td><td>{opened}</td><td>{ack}</td><td>{resolved}</td></tr>",
            id = a.alert_id,
            state = esc(&a.state),
            kind = esc(&a.kind),
            subject = esc(&a.subject),
            detail = esc(&a.detail),
            opened = esc(&a.opened_at),
            ack = esc(&match (&a.acknowledged_at, &a.acknowledged_by) {
                (Some(at), Some(by)) => format!("{at} by {by}"),
                _ => String::new(),
            }),
            resolved = esc(a.resolved_at.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>");
}

#[derive(Debug, Deserialize)]
pub(super) struct Sort {
    #[serde(default)]
    sort: Option<String>,
}

fn sort(gateways: &mut [GatewayView], key: &str) {
    match key {
        "gateway" => gateways.sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id)),
        "backlog" => gateways.sort_by_key(|g| std::cmp::Reverse(g.backlog_depth.unwrap_or(0))),
        "state" => {
            gateways.sort_by(|a, b| (a.liveness, &a.gateway_id).cmp(&(b.liveness, &b.gateway_id)))
        }
        "alerts" => gateways.sort_by_key(|g| {
            std::cmp::Reverse(g.alerts.iter().filter(|a| a.state != "resolved").count())
        }),
        // Least recently seen first: the gateways that need attention.
        _ => gateways.sort_by_key(|g| g.last_seen),
    }
}

/// `GET /ops`.
pub(super) async fn overview(
    State(ops): State<Ops>,
    Query(q): Query<Sort>,
) -> Result<Response, Unavailable> {
    let now = Utc::now();
    let overview = ops.store.fleet_overview(500, 500).await?;
    let mut gateways = views::gateways(overview.rows, now, &ops.thresholds);
    let (open, hub_rows) = (overview.unresolved, overview.hub_updates);
    let key = q.sort.as_deref().unwrap_or("last_seen");
    sort(&mut gateways, key);
    let c = views::counts(&gateways, &open);
    let mut b = String::new();
    let _ = write!(
        b,
        "<p class=\"counts\"><span id=\"online\">Online: {}</span><span id=\"offline\">Offline: {}</span>\
         <span id=\"never-seen\">Never seen: {}</span><span id=\"inactive\">Inactive: {}</span>\
         <span id=\"alerts-open\">Open alerts: {}</span><span id=\"alerts-acknowledged\">Acknowledged: {}</span></p>",
        c.online, c.offline, c.never_seen, c.inactive, c.alerts_open, c.alerts_acknowledged
    );
    b.push_str("<h2>Unresolved alerts</h2>");
    alert_table(&mut b, &open);
    b.push_str("<h2>Gateways</h2><table id=\"gateways\"><tr>");
    for (k, label) in [
        ("gateway", "Gateway"),
        ("state", "State"),
        ("last_seen", "Last seen"),
        ("backlog", "Backlog"),
        ("alerts", "Alerts"),
    ] {
        let _ = write!(b, "<th><a href=\"/ops?sort={k}\">{label}</a></th>");
    }
    b.push_str(
        "<th>Version</th><th>Clock</th><th>Disk</th><th>Devices</th><th>Last error</th></tr>",
    );
    for g in &gateways {
        let unresolved = g.alerts.iter().filter(|a| a.state != "resolved").count();
        let _ = write!(
            b,
            "<tr data-gateway=\"{id}\"><td><a href=\"/ops/gateways/{id}\">{id}</a></td>\
             <td class=\"{live}\">{live}{reg}</td><td>{seen}</td><td>{depth}</td><td>{unresolved}</td>\
             <td>{version}</td><td>{clock}</td><td>{disk}</td><td>{devices}</td><td>{err}</td></tr>",
            id = esc(&g.gateway_id),
            live = g.liveness.as_str(),
            reg = if g.registry_state == "active" {
                String::new()
            } else {
                format!(" ({})", esc(&g.registry_state))
            },
            seen = time(g.last_seen),
            depth = opt(g.backlog_depth),
            version = esc(&opt(g.version.as_deref())),
            clock = opt(g.clock.map(|c| format!("{c:?}").to_lowercase())),
            disk = opt(g.disk_pct.map(|p| format!("{p}%"))),
            devices = g.devices.len(),
            err = esc(g.last_error.as_deref().unwrap_or("")),
        );
    }
    b.push_str("</table>");
    super::hub_updates::render(&mut b, &hub_rows);
    Ok(page("Fleet operations", &b).into_response())
}

/// `GET /ops/gateways/{id}`.
pub(super) async fn gateway(
    State(ops): State<Ops>,
    Path(id): Path<String>,
) -> Result<Response, Unavailable> {
    let now = Utc::now();
    let read = ops.store.gateway_page(id, now, 200, 20).await?;
    let gateways = views::gateways(read.rows, now, &ops.thresholds);
    let (trail, issued) = (read.audit, read.commands);
    let Some(g) = gateways.into_iter().next() else {
        return Ok((StatusCode::NOT_FOUND, "no such gateway").into_response());
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><a href=\"/ops\">Fleet</a></p><dl><dt>State</dt><dd class=\"{live}\" id=\"liveness\">{live}</dd>\
         <dt>Registry</dt><dd>{reg}</dd><dt>Session</dt><dd>{session}</dd><dt>Last seen</dt><dd>{seen}</dd>\
         <dt>Version</dt><dd>{version}</dd><dt>Uptime</dt><dd>{uptime}</dd><dt>Backlog</dt><dd id=\"backlog\">{depth} (oldest {age} s)</dd>\
         <dt>Clock</dt><dd>{clock}</dd><dt>Disk</dt><dd>{disk}</dd><dt>Last error</dt><dd>{err}</dd></dl>",
        live = g.liveness.as_str(),
        reg = esc(&g.registry_state),
        session = esc(g.telemonitoring_id.as_deref().unwrap_or("–")),
        seen = time(g.last_seen),
        version = esc(&opt(g.version.as_deref())),
        uptime = opt(g.uptime_s.map(|s| format!("{s} s"))),
        depth = opt(g.backlog_depth),
        age = opt(g.backlog_oldest_age_s),
        clock = opt(g.clock.map(|c| format!("{c:?}").to_lowercase())),
        disk = opt(g.disk_pct.map(|p| format!("{p}%"))),
        err = esc(g.last_error.as_deref().unwrap_or("")),
    );
    b.push_str(
        "<h2>Devices</h2><table id=\"devices\"><tr><th>Address</th><th>Model</th><th>Last seen</th>\
        <th>Last reading</th><th>Battery</th><th>RSSI</th><th>Paired</th></tr>",
    );
    for record in &g.devices {
        let d = &record.reported;
        let _ = write!(
            b,
            "<tr data-device=\"{a}\"><td>{a}</td><td>{m}</td><td>{s}</td><td>{r}</td><td>{bat}</td><td>{rssi}</td><td>{p}</td></tr>",
            a = esc(&d.address),
            m = esc(d.model.as_deref().unwrap_or("")),
            s = time(d.last_seen),
            r = time(d.last_reading),
            bat = opt(d.battery_pct.map(|p| format!("{p}%"))),
            rssi = opt(d.rssi_dbm.map(|r| format!("{r} dBm"))),
            p = time(Some(record.paired_at)),
        );
    }
    b.push_str("</table><h2>Alerts</h2>");
    alert_table(&mut b, &g.alerts);
    b.push_str(
        "<h2>Commands</h2><table id=\"commands\"><tr><th>Issued</th><th>By</th><th>Command</th>\
        <th>State</th><th>Result</th><th>Reported</th></tr>",
    );
    for c in &issued {
        let _ = write!(
            b,
            "<tr data-command=\"{id}\"><td>{at}</td><td>{by}</td><td>{what}</td><td>{state}</td><td>{detail}</td><td>{reported}</td></tr>",
            id = esc(&c.command_id),
            at = esc(&c.issued_at),
            by = esc(&c.issued_by),
            what = esc(c.action["type"].as_str().unwrap_or("")),
            state = esc(&c.state),
            detail = esc(c.detail.as_deref().unwrap_or("")),
            reported = esc(c.reported_at.as_deref().unwrap_or("")),
        );
    }
    b.push_str("</table>");
    b.push_str("<h2>Audit</h2><table id=\"audit\"><tr><th>When</th><th>Who</th><th>What</th><th>Device</th><th>Session</th><th>Detail</th></tr>");
    for e in &trail {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.at),
            esc(&e.actor),
            esc(&e.action),
            esc(e.device.as_deref().unwrap_or("")),
            esc(e.telemonitoring_id.as_deref().unwrap_or("")),
            esc(&e.detail)
        );
    }
    b.push_str("</table>");
    Ok(page(&format!("Gateway {}", g.gateway_id), &b).into_response())
}
