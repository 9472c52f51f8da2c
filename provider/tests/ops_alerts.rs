//! Fleet alerts driven by simulated gateways posting signed heartbeats and readings over HTTP:
//! offline, backlog, battery, clock, disk, rejected readings and missed measurements open once,
//! do not open again while they hold (also across a restart), and resolve when they clear.

mod fixtures;
mod ops_support;

use chrono::{Duration, Utc};
use ops_support::{device, opened, resolved, start};
use tm_protocol::ClockState;

fn pair(kind: &str, subject: &str) -> (String, String) {
    (kind.to_owned(), subject.to_owned())
}

#[tokio::test]
async fn offline_gateway_alert_opens_once_survives_restart_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = fleet.gateway(1).await;
    assert_eq!(fleet.heartbeat(&gw, |_| {}).await, 204);
    let now = Utc::now();
    assert!(opened(&fleet.evaluate(now).await).is_empty(), "healthy");

    // Three hours without a heartbeat (threshold 2 h).
    let later = now + Duration::hours(3);
    assert_eq!(
        opened(&fleet.evaluate(later).await),
        vec![pair("gateway-offline", "gw-1")]
    );
    assert!(fleet.evaluate(later).await.is_empty(), "raised once");

    // The provider restarts: the alert is still there and is not raised again.
    fleet.stop().await;
    let fleet = start(dir.path()).await;
    assert!(
        fleet
            .evaluate(later + Duration::minutes(1))
            .await
            .is_empty()
    );
    let json: serde_json::Value = fleet.get("/ops/api/gateways").await.json().await.unwrap();
    let g = &json["gateways"][0];
    assert_eq!(g["gateway_id"], "gw-1");
    assert!(g["last_seen"].is_string());
    assert_eq!(g["alerts"][0]["kind"], "gateway-offline");
    assert_eq!(g["alerts"][0]["state"], "open");

    // It comes back.
    assert_eq!(fleet.heartbeat(&gw, |_| {}).await, 204);
    assert_eq!(
        resolved(&fleet.evaluate(Utc::now()).await),
        vec![pair("gateway-offline", "gw-1")]
    );
    assert_eq!(
        fleet.alert_rows().await,
        vec![("gateway-offline".into(), "gw-1".into(), "resolved".into())]
    );
    fleet.stop().await;
}

#[tokio::test]
async fn gateway_health_alerts_follow_the_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = fleet.gateway(2).await;
    // A backlog that grows over three heartbeats, 7 h old, a weak battery, an unsynchronized
    // clock, a nearly full outbox and readings the provider rejected.
    for depth in [10, 20, 30] {
        let status = fleet
            .heartbeat(&gw, |hb| {
                hb.backlog.depth = depth;
                hb.backlog.oldest_age_s = Some(7 * 3600);
                hb.backlog.rejected = 2;
                hb.devices = vec![device("A4:C1:38:00:00:01", "omron-bp", 12)];
                hb.clock = ClockState::Unsynchronized;
                hb.disk.used_bytes = 90 << 20;
            })
            .await;
        assert_eq!(status, 204);
    }
    let now = Utc::now();
    assert_eq!(
        opened(&fleet.evaluate(now).await),
        vec![
            pair("backlog-stale", "gw-2"),
            pair("battery-low", "gw-2/A4:C1:38:00:00:01"),
            pair("clock-unsynchronized", "gw-2"),
            pair("disk-high", "gw-2"),
            pair("readings-rejected", "gw-2"),
        ]
    );
    // Still growing three hours later (threshold 2 h), while still online at that time.
    assert_eq!(
        fleet
            .heartbeat(&gw, |hb| {
                hb.backlog.depth = 40;
                hb.backlog.oldest_age_s = Some(7 * 3600);
                hb.backlog.rejected = 2;
                hb.devices = vec![device("A4:C1:38:00:00:01", "omron-bp", 12)];
                hb.clock = ClockState::Unsynchronized;
                hb.disk.used_bytes = 90 << 20;
            })
            .await,
        204
    );
    let t = fleet.evaluate(now + Duration::minutes(1)).await;
    assert!(t.is_empty(), "nothing raised twice: {t:?}");
    let json: serde_json::Value = fleet
        .get("/ops/api/gateways/gw-2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(json["gateway"]["backlog_depth"], 40);
    assert_eq!(json["gateway"]["devices"][0]["battery_pct"], 12);
    assert!(json["gateway"]["backlog_growing_since"].is_string());

    // Acknowledge one; it stays until the condition clears.
    let id = json["gateway"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "disk-high")
        .unwrap()["alert_id"]
        .as_i64()
        .unwrap();
    let ack = |id: i64| {
        fleet
            .http
            .post(format!("{}/ops/api/alerts/{id}/ack", fleet.base))
            .basic_auth("alice", Some(ops_support::TOKEN))
            .send()
    };
    assert_eq!(ack(id).await.unwrap().status(), 204);
    assert_eq!(ack(id).await.unwrap().status(), 409, "not open any more");
    assert!(fleet.evaluate(now + Duration::minutes(2)).await.is_empty());

    // Everything clears: healthy heartbeat (battery replaced, backlog shipped).
    assert_eq!(fleet.heartbeat(&gw, |_| {}).await, 204);
    let r = resolved(&fleet.evaluate(Utc::now()).await);
    assert_eq!(r.len(), 5, "{r:?}");
    let rows = fleet.alert_rows().await;
    assert!(rows.iter().all(|(_, _, s)| s == "resolved"), "{rows:?}");
    fleet.stop().await;
}

#[tokio::test]
async fn a_backlog_growing_for_hours_raises_its_alert() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = fleet.gateway(3).await;
    for depth in [5, 9] {
        fleet.heartbeat(&gw, |hb| hb.backlog.depth = depth).await;
    }
    // Three hours later it has not been heard, and it has been growing since the first beat.
    let t = fleet.evaluate(Utc::now() + Duration::hours(3)).await;
    assert_eq!(
        opened(&t),
        vec![
            pair("backlog-growing", "gw-3"),
            pair("gateway-offline", "gw-3")
        ]
    );
    // Shrinking clears the trend.
    fleet.heartbeat(&gw, |hb| hb.backlog.depth = 4).await;
    assert_eq!(
        resolved(&fleet.evaluate(Utc::now()).await),
        vec![
            pair("backlog-growing", "gw-3"),
            pair("gateway-offline", "gw-3")
        ]
    );
    fleet.stop().await;
}

#[tokio::test]
async fn missed_measurements_raise_blue_alarms_until_the_patient_measures() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = fleet.gateway(4).await;
    // Two days after enrollment nothing was measured: weight, BP and heart rate are missed
    // (and the gateway, never heard, is offline).
    let then = Utc::now() + Duration::days(2);
    assert_eq!(
        opened(&fleet.evaluate(then).await)
            .into_iter()
            .filter(|(kind, _)| kind == "measurement-missed")
            .collect::<Vec<_>>(),
        vec![
            pair("measurement-missed", "tm-4/blood-pressure"),
            pair("measurement-missed", "tm-4/body-weight"),
            pair("measurement-missed", "tm-4/heart-rate"),
        ]
    );
    assert!(fleet.evaluate(then + Duration::minutes(5)).await.is_empty());

    // The patient measures BP (with pulse) twelve hours before: BP and heart rate clear.
    let at = (then - Duration::hours(12)).fixed_offset();
    let mut bp = fixtures::reading(
        "2A35",
        &fixtures::bp_frame(128, 82, 97, 66),
        fixtures::omron_cuff(),
        at,
        tm_protocol::TimeQuality::DeviceSynced,
    );
    // The evaluator runs two days ahead; the gateway received it by the provider's own clock
    // (a receive time ahead of that clock is refused).
    bp.received_at = Utc::now();
    assert_eq!(fleet.readings(&gw, "b-1", vec![bp.clone()]).await, 200);
    // The instance's ingest counter: the reading once, not again when it is sent twice.
    assert_eq!(fleet.readings(&gw, "b-2", vec![bp]).await, 200);
    let metrics = fleet.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l == "tm_readings_ingested_total 1"),
        "{metrics}"
    );
    let t = fleet.evaluate(then + Duration::minutes(10)).await;
    assert_eq!(
        resolved(&t),
        vec![
            pair("measurement-missed", "tm-4/blood-pressure"),
            pair("measurement-missed", "tm-4/heart-rate"),
        ]
    );
    assert!(opened(&t).is_empty());
    // Weight still missing, and still one alert for it.
    let rows = fleet.alert_rows().await;
    let open: Vec<_> = rows
        .iter()
        .filter(|r| r.2 == "open" && r.0 == "measurement-missed")
        .collect();
    assert_eq!(open.len(), 1, "{rows:?}");
    assert_eq!(open[0].1, "tm-4/body-weight");
    fleet.stop().await;
}

#[tokio::test]
async fn device_changes_are_audited_and_the_log_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = fleet.gateway(5).await;
    fleet.heartbeat(&gw, |_| {}).await;
    // The cuff is swapped for another of the same model, then a scale is paired, then removed.
    fleet
        .heartbeat(&gw, |hb| {
            hb.devices = vec![device("A4:C1:38:00:00:02", "omron-bp", 90)]
        })
        .await;
    fleet
        .heartbeat(&gw, |hb| {
            hb.devices = vec![
                device("A4:C1:38:00:00:02", "omron-bp", 90),
                device("C8:47:8C:00:00:09", "mi-scale-2", 70),
            ]
        })
        .await;
    fleet
        .heartbeat(&gw, |hb| {
            hb.devices = vec![device("A4:C1:38:00:00:02", "omron-bp", 90)]
        })
        .await;
    // The gateway cannot read its paired-devices file: its list is unknown, nothing is
    // unpaired (no audit entry, the cuff still listed).
    fleet
        .heartbeat(&gw, |hb| {
            hb.devices = vec![];
            hb.devices_unreadable = true;
        })
        .await;
    let page = fleet.get("/ops/gateways/gw-5").await.text().await.unwrap();
    assert!(page.contains("data-device=\"A4:C1:38:00:00:02\""), "{page}");
    let json: serde_json::Value = fleet
        .get("/ops/api/audit?gateway=gw-5")
        .await
        .json()
        .await
        .unwrap();
    let trail: Vec<(String, String)> = json["audit"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            assert_eq!(e["telemonitoring_id"], "tm-5");
            (
                e["action"].as_str().unwrap().to_owned(),
                e["device"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        vec![
            pair("paired", "A4:C1:38:00:00:01 (omron-bp)"),
            pair("replaced", "A4:C1:38:00:00:02 (omron-bp)"),
            pair("paired", "C8:47:8C:00:00:09 (mi-scale-2)"),
            pair("unpaired", "C8:47:8C:00:00:09 (mi-scale-2)"),
        ]
    );
    let tampering = (
        fleet
            .db
            .execute("UPDATE ops_audit SET actor = 'someone else'")
            .unwrap_err(),
        fleet.db.execute("DELETE FROM ops_audit").unwrap_err(),
    );
    assert!(tampering.0.contains("append-only"), "{tampering:?}");
    assert!(tampering.1.contains("append-only"), "{tampering:?}");
    fleet.stop().await;
}
