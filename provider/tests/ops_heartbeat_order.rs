//! Heartbeats out of order: one sent before the stored one (a late delivery, a redelivery)
//! changes nothing, neither the latest heartbeat nor device health nor the audit log; one sent
//! long before it (the gateway's clock was set back) is taken.

mod fixtures;
mod ops_support;

use chrono::{Duration, Utc};
use ops_support::{device, start};

#[tokio::test]
async fn a_late_heartbeat_changes_nothing_and_a_clock_set_back_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = start(dir.path()).await;
    let gw = fleet.gateway(7).await;
    let cuff = || device("A4:C1:38:00:00:01", "omron-bp", 90);
    let scale = || device("C8:47:8C:00:00:09", "mi-scale-2", 70);
    let now = Utc::now();
    let sent = |at: chrono::DateTime<Utc>, depth: u64, devices: Vec<tm_protocol::DeviceHealth>| {
        move |hb: &mut tm_protocol::Heartbeat| {
            hb.sent_at = at;
            hb.backlog.depth = depth;
            hb.devices = devices;
        }
    };
    assert_eq!(
        fleet
            .heartbeat(&gw, sent(now, 40, vec![cuff(), scale()]))
            .await,
        204
    );
    // Sent a minute earlier, delivered now; then the newer one again (a redelivery).
    assert_eq!(
        fleet
            .heartbeat(&gw, sent(now - Duration::minutes(1), 0, vec![cuff()]))
            .await,
        204
    );
    assert_eq!(
        fleet
            .heartbeat(&gw, sent(now, 40, vec![cuff(), scale()]))
            .await,
        204
    );
    let state = || async { fleet.json("/ops/api/gateways/gw-7").await["gateway"].clone() };
    let unpaired = || async {
        let json = fleet.json("/ops/api/audit?gateway=gw-7").await;
        let entries = json["audit"].as_array().unwrap().clone();
        entries.iter().filter(|e| e["action"] == "unpaired").count()
    };
    let counted = || async {
        fleet
            .db
            .value("SELECT heartbeats_total FROM ops_gateway_health WHERE gateway_id = 'gw-7'")
            .parse::<i64>()
            .unwrap()
    };
    let g = state().await;
    assert_eq!(g["backlog_depth"], 40, "{g}");
    assert_eq!(g["devices"].as_array().unwrap().len(), 2, "{g}");
    assert_eq!(counted().await, 1, "only the first one counted");
    assert_eq!(unpaired().await, 0);

    // The gateway's clock is set back by an hour: its heartbeats are taken again.
    assert_eq!(
        fleet
            .heartbeat(&gw, sent(now - Duration::hours(1), 3, vec![cuff()]))
            .await,
        204
    );
    let g = state().await;
    assert_eq!(g["backlog_depth"], 3, "{g}");
    assert_eq!(g["devices"].as_array().unwrap().len(), 1, "{g}");
    assert_eq!(counted().await, 2);
    assert_eq!(unpaired().await, 1, "the scale left");
    fleet.stop().await;
}
