//! The operations dashboard, API and metrics over real HTTP: the token is required (and the
//! Portal's headers are not accepted), a command must be sent as JSON (415 otherwise), headless Chromium renders the dashboard with the fleet's
//! counts, gateways and alerts, and `/metrics` reports the same fleet.

use tm_testkit::browser;
mod ops_support;

use chrono::{Duration, Utc};
use ops_support::{TOKEN, device, start};

#[tokio::test]
async fn the_token_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    for path in ["/ops", "/ops/api/gateways", "/metrics"] {
        let url = format!("{}{path}", fleet.base);
        let r = fleet.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = fleet
            .http
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = fleet
            .http
            .get(&url)
            .header("x-tm-portal-key", "change-me")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(fleet.get(path).await.status(), 200, "{path}");
    }
    fleet.stop().await;
}

#[tokio::test]
async fn a_command_must_be_sent_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = fleet.gateway(1).await;
    let url = format!("{}/ops/api/gateways/{}/commands", fleet.base, gw.id);
    let issue = |content_type: Option<&'static str>| {
        let mut r = fleet
            .http
            .post(&url)
            .bearer_auth(TOKEN)
            .body(r#"{"type":"resync-now"}"#);
        if let Some(t) = content_type {
            r = r.header("content-type", t);
        }
        r.send()
    };
    for refused in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
    ] {
        let r = issue(refused).await.unwrap();
        assert_eq!(r.status(), 415, "{refused:?}");
        let answer: serde_json::Value = r.json().await.unwrap();
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{answer}"
        );
    }
    let r = issue(Some("Application/JSON; charset=utf-8"))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = fleet
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(r#"{"type":"reboot"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("invalid command")
    );
    fleet.stop().await;
}

#[tokio::test]
async fn chromium_shows_the_fleet_and_metrics_agree() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let healthy = fleet.gateway(1).await;
    let weak = fleet.gateway(2).await;
    let _silent = fleet.gateway(3).await;
    fleet.heartbeat(&healthy, |_| {}).await;
    fleet
        .heartbeat(&weak, |hb| {
            hb.devices = vec![device("A4:C1:38:00:00:07", "omron-bp", 9)];
            hb.backlog.depth = 17;
        })
        .await;
    fleet.evaluate(Utc::now()).await;

    // Basic auth in the URL: Chromium sends it on the top-level navigation.
    let url = format!(
        "{}/ops?sort=gateway",
        fleet
            .base
            .replace("http://", &format!("http://operator:{TOKEN}@"))
    );
    let (dom, out) = browser::dump_dom(&url).await;
    assert!(dom.contains("<h1>Fleet operations</h1>"), "{dom}\n{out:?}");
    assert!(dom.contains("Online: 2</span>"), "{dom}");
    assert!(dom.contains("Never seen: 1</span>"), "{dom}");
    assert!(dom.contains("Open alerts: 1</span>"), "{dom}");
    // Sorted by gateway id, each with its state; the battery alert listed as open.
    let rows: Vec<usize> = ["gw-1", "gw-2", "gw-3"]
        .iter()
        .map(|g| dom.find(&format!("data-gateway=\"{g}\"")).unwrap())
        .collect();
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "sorted: {rows:?}");
    assert!(dom.contains("<td class=\"never-seen\">never-seen</td>"));
    assert!(
        dom.contains("battery-low</td><td>gw-2/A4:C1:38:00:00:07"),
        "{dom}"
    );
    assert!(!dom.contains("<script"));

    // The gateway page: devices and alert history.
    let page = fleet.get("/ops/gateways/gw-2").await.text().await.unwrap();
    assert!(page.contains("data-device=\"A4:C1:38:00:00:07\""));
    assert!(page.contains("<td>9%</td>"));
    assert!(page.contains("class=\"open\""));

    let metrics = fleet.get("/metrics").await.text().await.unwrap();
    for line in [
        "tm_gateways{state=\"online\"} 2",
        "tm_gateways{state=\"never-seen\"} 1",
        "tm_gateway_backlog_readings 17",
        "tm_alerts{kind=\"battery-low\",state=\"open\"} 1",
        "tm_heartbeats_received_total 2",
        "tm_hub_outbox_depth 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    // Hours later the silent gateway and the others are offline: counts change.
    fleet.evaluate(Utc::now() + Duration::hours(3)).await;
    let json: serde_json::Value = fleet.get("/ops/api/alerts").await.json().await.unwrap();
    let offline = json["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "gateway-offline")
        .count();
    assert_eq!(offline, 3);
    fleet.stop().await;
}
