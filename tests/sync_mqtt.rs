//! The data path over MQTT with a real mosquitto: SIGKILLs of the agent mid-stream, a
//! broker restart without persistence, the provider's subscriber down for a while (batches
//! whose receipt never comes), and every receipt delivered twice. Afterwards the provider holds
//! every reading exactly once and the gateway's backlog is empty.

mod common;

use std::time::Duration;

use common::soak;
use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tm_protocol::Transport;

const FAST_RETRY: &str = "[sync]\nreceipt_timeout_ms = 1500\nbackoff_initial_ms = 50\n\
                          backoff_max_ms = 400\nbatch_max_readings = 200\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_mid_stream_lose_and_duplicate_nothing() {
    // 200 kills in CI; `scripts/soak-sync` runs 1,000 (TM_SOAK_KILLS).
    let kills: u32 = std::env::var("TM_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let broker = mosquitto(dir.path());
    let gw = GatewaySide::new(dir.path(), FAST_RETRY);
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    gw.enroll(&provider.key, Transport::Mqtt, &broker.url());
    let _ingest = provider.serve_mqtt(broker.port());

    let report = soak::kill_soak(&gw, &provider, kills, 8000, Duration::from_secs(180)).await;
    println!("soak over MQTT: {report}");
    assert_eq!(report.kills, kills);
    assert_eq!(
        report.mid_stream, kills,
        "every kill came mid-stream: {report}"
    );
    assert!(
        report.in_flight * 5 >= kills,
        "at least a fifth of the kills found readings in flight: {report}"
    );
    assert_eq!((report.lost, report.duplicated), (0, 0), "{report}");
    let status = gw.status();
    assert_eq!(status["rejected"], 0);
    assert_eq!(status["acknowledged"], report.readings);
}

/// Republishes every receipt on the gateway's receipt topic once more.
fn echo_receipts(port: u16, topic: String) -> tokio::task::JoinHandle<()> {
    let mut options = MqttOptions::new("receipt-echo", "127.0.0.1", port);
    options.set_max_packet_size(1 << 21, 1 << 21);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(&topic, QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    // Each receipt is echoed once: the gateway gets it twice.
                    if seen.insert(p.payload.clone()) {
                        let _ =
                            client.try_publish(&topic, QoS::AtLeastOnce, false, p.payload.to_vec());
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_provider_outage_and_duplicate_receipts() {
    const COUNT: u32 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = mosquitto(dir.path());
    let gw = GatewaySide::new(dir.path(), FAST_RETRY);
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    gw.enroll(&provider.key, Transport::Mqtt, &broker.url());
    let ingest = provider.serve_mqtt(broker.port());
    let echo = echo_receipts(broker.port(), tm_protocol::routes::mqtt::receipts(&gw.id));
    let mut agent = gw.spawn_agent(COUNT, 1000);

    tokio::time::sleep(Duration::from_millis(800)).await;
    broker.restart();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let during_outage = provider.count().await;
    ingest.cancel();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let _ingest = provider.serve_mqtt(broker.port());

    assert!(
        during_outage < u64::from(COUNT),
        "the outage happened mid-stream"
    );
    assert_all_delivered(&gw, &provider, COUNT, Duration::from_secs(60)).await;
    kill(&mut agent);
    echo.abort();
    assert_exactly_once(&provider, COUNT).await;
    assert_eq!(gw.status()["acknowledged"], COUNT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_the_provider_leaves_unanswered_raise_an_alarm_and_are_all_delivered_later() {
    const COUNT: u32 = 300;
    let dir = tempfile::tempdir().unwrap();
    let broker = mosquitto(dir.path());
    let gw = GatewaySide::new(
        dir.path(),
        "[sync]\nreceipt_timeout_ms = 400\nbackoff_initial_ms = 50\nbackoff_max_ms = 200\n\
         in_flight_batches = 1\nbatch_max_readings = 100\n",
    );
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    // The provider refuses the gateway: over MQTT it answers with no receipt at all.
    provider
        .set_gateway_state(&gw.id, tm_provider::store::gateways::GatewayState::Revoked)
        .await;
    gw.enroll(&provider.key, Transport::Mqtt, &broker.url());
    let _ingest = provider.serve_mqtt(broker.port());
    let mut agent = gw.spawn_agent(COUNT, 0);
    let alarmed = eventually(Duration::from_secs(30), || async {
        has_alarm(&gw.status(), "provider-refuses-gateway")
    })
    .await;
    let status = gw.status();
    assert!(alarmed, "{status}");
    assert_eq!(status["rejected"], 0);
    assert_eq!(status["backlog"], COUNT);

    provider
        .set_gateway_state(&gw.id, tm_provider::store::gateways::GatewayState::Active)
        .await;
    assert_all_delivered(&gw, &provider, COUNT, Duration::from_secs(60)).await;
    let cleared = eventually(Duration::from_secs(10), || async {
        !has_alarm(&gw.status(), "provider-refuses-gateway")
    })
    .await;
    kill(&mut agent);
    assert!(cleared, "{}", gw.status());
}
