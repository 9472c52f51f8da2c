//! Gateway liveness from the MQTT status topic, through a real mosquitto (configured as
//! documented) and the real `tm-provider serve`: only the gateway's own signed statuses count,
//! a last-will the broker publishes for a vanished connection flips the gateway offline, and an
//! older connection's last-will, replayed, does not override a newer connection's `online`.

mod mqtt_support;

use mqtt_support::*;
use tm_protocol::routes::mqtt as topics;
use tm_protocol::{GatewayId, LinkState, SigningKey};

/// The stored status and its connection number.
async fn stored_status(dir: &std::path::Path, gw: &GatewayId) -> (Option<String>, Option<i64>) {
    tm_testkit::backend::TestStore::in_dir(dir).mqtt_status(gw.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_gateways_own_signed_status_changes_its_liveness() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        dir.path(),
        &format!("max_packet_size {}", topics::MAX_PACKET_BYTES),
    );
    let (key, _) = SigningKey::generate().unwrap();
    let gw = GatewayId::new("gw-status-1").unwrap();
    register(dir.path(), &gw, &key).await;
    let setup = ProviderSetup::new(dir.path(), broker.port);
    let provider = Provider::start(&setup, dir.path().join("provider.log"));
    provider.wait_for_log("MQTT ingest connected").await;
    eventually("the provider subscribed", || async {
        broker.log().contains("tm/v1/gw/+/status")
    })
    .await;
    let gateway = Gateway::connect(broker.port, gw.clone(), key).await;
    let key = &gateway.key;
    let status_topic = topics::status(&gw);

    gateway
        .publish(&topics::heartbeat(&gw), gateway.heartbeat())
        .await;
    eventually("the heartbeat made it online", || async {
        provider.liveness(&gw).await == "online"
    })
    .await;

    // Anyone can publish on the topic; an unsigned or forged offline changes nothing.
    let mut attacker = Publisher::connect(broker.port, "attacker", None).await;
    attacker
        .publish(&status_topic, b"offline".to_vec(), true)
        .await;
    let (forger, _) = SigningKey::generate().unwrap();
    attacker
        .publish(
            &status_topic,
            status(&gw, &forger, LinkState::Offline, u64::MAX / 2),
            true,
        )
        .await;
    eventually("both refused", || async {
        provider.refused("malformed").await == 1 && provider.refused("bad-signature").await == 1
    })
    .await;
    assert_eq!(provider.liveness(&gw).await, "online");
    assert_eq!(stored_status(dir.path(), &gw).await, (None, None));

    // A connection of the gateway: its signed online, then the broker's last-will for it.
    let first = 1_764_547_200_000u64;
    let will = status(&gw, key, LinkState::Offline, first);
    let mut connection = Publisher::connect(
        broker.port,
        "gw-status-1-first",
        Some((status_topic.clone(), will.clone())),
    )
    .await;
    connection
        .publish(
            &status_topic,
            status(&gw, key, LinkState::Online, first),
            true,
        )
        .await;
    eventually("online stored", || async {
        stored_status(dir.path(), &gw).await
            == (Some("online".into()), Some(i64::try_from(first).unwrap()))
    })
    .await;
    connection.vanish();
    eventually("the last-will made it offline", || async {
        provider.liveness(&gw).await == "offline"
    })
    .await;

    // A newer connection comes online; the old last-will, replayed, changes nothing.
    let second = first + 60_000;
    let mut connection = Publisher::connect(
        broker.port,
        "gw-status-1-second",
        Some((
            status_topic.clone(),
            status(&gw, key, LinkState::Offline, second),
        )),
    )
    .await;
    connection
        .publish(
            &status_topic,
            status(&gw, key, LinkState::Online, second),
            true,
        )
        .await;
    gateway
        .publish(&topics::heartbeat(&gw), gateway.heartbeat())
        .await;
    eventually("online again", || async {
        provider.liveness(&gw).await == "online"
    })
    .await;
    attacker.publish(&status_topic, will, true).await;
    eventually("the replay counted as stale", || async {
        provider.refused("stale-status").await == 1
    })
    .await;
    assert_eq!(provider.liveness(&gw).await, "online");
    assert_eq!(
        stored_status(dir.path(), &gw).await,
        (Some("online".into()), Some(i64::try_from(second).unwrap()))
    );

    // The current connection's last-will still counts.
    connection.vanish();
    eventually("the current last-will made it offline", || async {
        provider.liveness(&gw).await == "offline"
    })
    .await;
    provider.wait_for_alert("mqtt-messages-refused").await;
}
