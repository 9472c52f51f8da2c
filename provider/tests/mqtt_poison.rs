//! Poison messages on the provider's MQTT ingest, through a real mosquitto and the real
//! `tm-provider serve` with its persistent session and manual acknowledgements.
//!
//! - A broker without a packet limit lets through a message larger than any frame, garbage, a
//!   message on a topic that is not the protocol's, a forged frame, an unknown gateway's frame
//!   and another gateway's frame on this one's topic: each is refused, acknowledged once and counted by reason in `/metrics`, an alert
//!   is open, and the next valid batch is stored and receipted, with one connection. After a
//!   restart nothing of it comes back.
//! - A packet larger than the provider reads (a broker configured above the provider's limit)
//!   fails the connection before it can be acknowledged: after a bounded number of such
//!   failures the provider sheds the broker's queue with one clean-session connection, goes
//!   back to its persistent session, and valid batches flow again; the alert names the broker
//!   limit.
//! - A broker configured as documented (`max_packet_size`) refuses an oversized publish at
//!   the publisher; the provider never sees it.

mod mqtt_support;

use std::time::Duration;
use tm_testkit::backend::Backend;

use mqtt_support::*;
use tm_protocol::routes::mqtt as topics;
use tm_protocol::{GatewayId, SigningKey};

const RECEIPT_WITHIN: Duration = Duration::from_secs(20);

struct Fleet {
    dir: tempfile::TempDir,
    broker: Broker,
    setup: ProviderSetup,
    gateway: Gateway,
    other: GatewayId,
    provider_key: tm_protocol::VerifyingKey,
}

/// A broker (`extra` ends its configuration), two enrolled gateways in the provider's store,
/// the first one connected.
async fn fleet(extra: &str) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), extra);
    let (key, _) = SigningKey::generate().unwrap();
    let id = GatewayId::new("gw-poison-1").unwrap();
    let provider_key = register(dir.path(), &id, &key).await;
    let other = GatewayId::new("gw-poison-2").unwrap();
    let (other_key, _) = SigningKey::generate().unwrap();
    tm_testkit::backend::TestStore::in_dir(dir.path()).insert_gateway(
        other.as_str(),
        other_key.verifying_key().as_bytes(),
        "tm-1",
    );
    let setup = ProviderSetup::new(dir.path(), broker.port);
    let gateway = Gateway::connect(broker.port, id, key).await;
    Fleet {
        dir,
        broker,
        setup,
        gateway,
        other,
        provider_key,
    }
}

impl Fleet {
    fn start(&self, name: &str) -> Provider {
        Provider::start(&self.setup, self.dir.path().join(name))
    }

    /// A valid batch is stored and receipted in time.
    async fn valid_batch_flows(&mut self, batch_id: &str, series: u8) {
        let before = stored(self.dir.path()).await;
        let (frame, sent) = self.gateway.batch(batch_id, series, 3);
        let receipt = self
            .gateway
            .deliver(&frame, &self.provider_key, RECEIPT_WITHIN)
            .await
            .unwrap_or_else(|| panic!("no receipt for {batch_id} within {RECEIPT_WITHIN:?}"));
        assert_eq!(receipt.accepted.len(), sent.len(), "{receipt:?}");
        assert!(receipt.rejected.is_empty(), "{receipt:?}");
        assert_eq!(stored(self.dir.path()).await, before + 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_refused_once_and_never_block_the_next() {
    let mut fleet = fleet("").await;
    let provider = fleet.start("provider-1.log");
    provider.wait_for_log("MQTT ingest connected").await;
    // Subscribed before anything is published (the first SUBACK is logged by the broker).
    eventually("the provider subscribed", || async {
        fleet.broker.log().contains("tm/v1/gw/+/readings")
    })
    .await;

    let gw = fleet.gateway.id.clone();
    let mut attacker = Publisher::connect(fleet.broker.port, "attacker", None).await;
    // Larger than the fleet's packet limit (a broker without max_packet_size lets it through).
    attacker
        .publish(
            &topics::readings(&gw),
            vec![0x5a; 2 * topics::MAX_PACKET_BYTES],
            false,
        )
        .await;
    attacker
        .publish(&topics::readings(&gw), b"\x00garbage\xff".to_vec(), false)
        .await;
    // Not a protocol topic: the gateway id is not a slug.
    let (valid_elsewhere, _) = fleet.gateway.batch("poison-elsewhere", 9, 1);
    attacker
        .publish("tm/v1/gw/GW_POISON/readings", valid_elsewhere, false)
        .await;
    // Forged: the gateway's id, another key.
    let (forger, _) = SigningKey::generate().unwrap();
    let (forged_frame, _) = batch_frame(&gw, &forger, "poison-forged", 8, 1);
    attacker
        .publish(&topics::readings(&gw), forged_frame, false)
        .await;
    // A gateway nobody enrolled, on its own topic.
    let stranger = GatewayId::new("gw-poison-stranger").unwrap();
    let (stranger_key, _) = SigningKey::generate().unwrap();
    let (stranger_frame, _) = batch_frame(&stranger, &stranger_key, "poison-stranger", 7, 1);
    attacker
        .publish(&topics::readings(&stranger), stranger_frame, false)
        .await;
    // The other enrolled gateway's id in the frame, on this gateway's topic.
    let mismatched = tm_protocol::seal(
        tm_protocol::MessageKind::Heartbeat,
        fleet.other.as_str(),
        b"{}",
        &fleet.gateway.key,
    );
    attacker
        .publish(&topics::heartbeat(&gw), mismatched, false)
        .await;
    // An unsigned last-will.
    attacker
        .publish(&topics::status(&gw), b"offline".to_vec(), false)
        .await;

    // The fleet's next batch goes through, on the same connection.
    fleet.valid_batch_flows("poison-valid-1", 1).await;
    let reasons = [
        ("too-large", 1),
        ("malformed", 2),
        ("wrong-topic", 1),
        ("bad-signature", 1),
        ("signer-mismatch", 1),
        ("unknown-gateway", 1),
    ];
    for (reason, n) in reasons {
        eventually(&format!("{n} refused as {reason}"), || async {
            provider.refused(reason).await == n
        })
        .await;
    }
    provider.wait_for_alert("mqtt-messages-refused").await;
    // No reconnect loop: one connection, by the provider's count and by the broker's log.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(provider.metric("tm_mqtt_connections_total").await, 1);
    assert_eq!(provider.metric("tm_mqtt_oversized_packets_total").await, 0);
    assert_eq!(fleet.broker.provider_connections(), 1);
    let log = provider.log();
    assert!(
        log.contains("reason=\"too-large\"") || log.contains("reason=too-large"),
        "{log}"
    );
    assert!(!log.contains("garbage"), "a payload was logged:\n{log}");
    drop(provider);

    // Restarted on the same persistent session: nothing refused comes back.
    let provider = fleet.start("provider-2.log");
    provider.wait_for_log("MQTT ingest connected").await;
    fleet.valid_batch_flows("poison-valid-2", 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (reason, _) in reasons {
        assert_eq!(
            provider.refused(reason).await,
            0,
            "{reason} delivered again"
        );
    }
    assert_eq!(provider.metric("tm_mqtt_connections_total").await, 1);
    assert_eq!(fleet.broker.provider_connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_above_the_read_limit_sheds_the_queue_once_instead_of_looping() {
    let mut fleet = fleet("").await;
    let provider = fleet.start("provider-1.log");
    provider.wait_for_log("MQTT ingest connected").await;
    eventually("the provider subscribed", || async {
        fleet.broker.log().contains("tm/v1/gw/+/readings")
    })
    .await;
    let gw = fleet.gateway.id.clone();
    let mut attacker = Publisher::connect(fleet.broker.port, "attacker", None).await;
    attacker
        .publish(
            &topics::readings(&gw),
            vec![0x5a; tm_provider::ingest::mqtt::READ_LIMIT_BYTES + 1024],
            false,
        )
        .await;

    fleet.valid_batch_flows("shed-valid-1", 1).await;
    // One provider keeps a persistent session, which holds the packet until it is shed; one of
    // several instances (a PostgreSQL store) has a clean session, which loses it at the first
    // failure.
    let persistent =
        tm_testkit::backend::TestStore::in_dir(fleet.dir.path()).backend() == Backend::Sqlite;
    let failures = if persistent {
        u64::from(tm_provider::ingest::mqtt::SHED_AFTER)
    } else {
        1
    };
    assert_eq!(
        provider.metric("tm_mqtt_oversized_packets_total").await,
        failures
    );
    assert_eq!(
        provider.metric("tm_mqtt_sessions_shed_total").await,
        u64::from(persistent)
    );
    provider.wait_for_alert("mqtt-packet-too-large").await;
    // Bounded: the first connection, one per failure, then the persistent session again.
    let connections = provider.metric("tm_mqtt_connections_total").await;
    assert_eq!(connections, failures + 1 + u64::from(persistent));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        provider.metric("tm_mqtt_connections_total").await,
        connections,
        "the provider kept reconnecting"
    );
    let log = provider.log();
    assert!(log.contains("max_packet_size"), "{log}");
    fleet.valid_batch_flows("shed-valid-2", 2).await;
    drop(provider);

    // The poison is gone from the broker: a restarted provider just works.
    let provider = fleet.start("provider-2.log");
    provider.wait_for_log("MQTT ingest connected").await;
    fleet.valid_batch_flows("shed-valid-3", 3).await;
    assert_eq!(provider.metric("tm_mqtt_oversized_packets_total").await, 0);
    assert_eq!(provider.metric("tm_mqtt_connections_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_broker_limit_refuses_an_oversized_publish_at_the_publisher() {
    let limit = format!("max_packet_size {}", topics::MAX_PACKET_BYTES);
    let mut fleet = fleet(&limit).await;
    let provider = fleet.start("provider-1.log");
    provider.wait_for_log("MQTT ingest connected").await;
    let gw = fleet.gateway.id.clone();
    let mut attacker = Publisher::connect(fleet.broker.port, "attacker", None).await;
    attacker
        .client
        .publish(
            topics::readings(&gw),
            rumqttc::QoS::AtLeastOnce,
            false,
            vec![0x5a; 2 * topics::MAX_PACKET_BYTES],
        )
        .await
        .unwrap();
    let dropped = tokio::time::timeout(Duration::from_secs(10), attacker.disconnected.recv())
        .await
        .expect("the broker disconnected the publisher");
    assert!(dropped.is_some());
    fleet.valid_batch_flows("limit-valid-1", 1).await;
    assert_eq!(provider.refused("too-large").await, 0);
    assert_eq!(provider.metric("tm_mqtt_connections_total").await, 1);
    // The largest frame the fleet sends still passes the broker.
    let (frame, _) = fleet.gateway.batch("limit-valid-2", 2, 1);
    assert!(frame.len() + 64 < topics::MAX_PACKET_BYTES);
}
