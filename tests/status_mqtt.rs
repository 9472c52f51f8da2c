//! The agent's liveness status over MQTT, with a real mosquitto, the real agent process and the
//! provider's MQTT ingest: the agent publishes a signed retained `online` when it connects, and
//! its last-will is the signed `offline` of the same connection, so the broker flips it offline
//! when the agent dies. A forged `offline` changes nothing, and the last-will of the agent's
//! previous connection, replayed after it reconnected, changes nothing either.

mod common;

use std::time::Duration;

use common::*;
use tm_protocol::routes::mqtt as topics;
use tm_protocol::{GatewayId, LinkState, MessageKind, SigningKey, Status};

/// Every status frame published on the gateway's topic that its key verifies, with what it
/// says.
struct Statuses {
    client: TopicClient,
    key: tm_protocol::VerifyingKey,
}

impl Statuses {
    async fn watch(port: u16, gw: &GatewayId, key: tm_protocol::VerifyingKey) -> Self {
        let client = TopicClient::start("test-status", port, topics::status(gw)).await;
        Self { client, key }
    }

    fn seen(&self) -> Vec<(Vec<u8>, Status)> {
        self.client
            .seen()
            .into_iter()
            .filter_map(|bytes| {
                let status = tm_protocol::Frame::parse(&bytes)
                    .and_then(|f| f.verify(MessageKind::Status, &self.key).map(<[u8]>::to_vec))
                    .ok()
                    .and_then(|payload| tm_protocol::decode::<Status>(&payload).ok())?;
                Some((bytes, status))
            })
            .collect()
    }

    /// Publishes `payload` on `topic`, retained.
    async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client.publish(topic, payload, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_signed_last_will_flips_it_offline_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let broker = mosquitto(dir.path());
    let gw = GatewaySide::new(
        dir.path(),
        "[sync]\nbackoff_initial_ms = 50\nbackoff_max_ms = 400\n",
    );
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let (addr, _http) = provider.serve_http("127.0.0.1:0".parse().unwrap()).await;
    let _ingest = provider.serve_mqtt(broker.port());
    gw.enroll_with(
        &provider.key,
        &format!("http://{addr}"),
        Some(&broker.url()),
    );
    let statuses = Statuses::watch(broker.port(), &gw.id, gw.key.verifying_key()).await;
    let topic = topics::status(&gw.id);

    let mut agent = gw.spawn_agent_logged(&[], "info", &dir.path().join("agent-1.log"));
    let online = |n: usize| {
        let statuses = &statuses;
        move || async move {
            statuses
                .seen()
                .iter()
                .filter(|(_, s)| s.state == LinkState::Online)
                .count()
                >= n
        }
    };
    assert!(
        eventually(Duration::from_secs(20), online(1)).await,
        "no signed online"
    );
    let first = statuses.seen()[0].1.connection;
    assert!(
        eventually(Duration::from_secs(10), || async {
            provider.mqtt_status(&gw.id).await
                == (Some("online".into()), Some(i64::try_from(first).unwrap()))
        })
        .await
    );

    // Unsigned and forged offlines: refused, nothing changes.
    statuses.publish(&topic, b"offline".to_vec()).await;
    let (forger, _) = SigningKey::generate().unwrap();
    let forged = Status {
        v: tm_protocol::PROTOCOL_VERSION,
        gateway_id: gw.id.clone(),
        state: LinkState::Offline,
        connection: first + 1,
    };
    let forged = tm_protocol::seal(
        MessageKind::Status,
        gw.id.as_str(),
        &tm_protocol::encode(&forged),
        &forger,
    );
    statuses.publish(&topic, forged).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        provider.mqtt_status(&gw.id).await,
        (Some("online".into()), Some(i64::try_from(first).unwrap()))
    );

    // Killed: the broker publishes the agent's last-will, signed, of the same connection.
    kill(&mut agent);
    let offline = || async {
        provider.mqtt_status(&gw.id).await
            == (Some("offline".into()), Some(i64::try_from(first).unwrap()))
    };
    assert!(
        eventually(Duration::from_secs(10), offline).await,
        "the last-will did not count"
    );
    let (will, status) = statuses
        .seen()
        .into_iter()
        .find(|(_, s)| s.state == LinkState::Offline)
        .expect("the last-will, signed with the gateway key");
    assert_eq!(status.connection, first);

    // Started again: a newer connection; the old last-will, replayed, changes nothing.
    let _agent = gw.spawn_agent_logged(&[], "info", &dir.path().join("agent-2.log"));
    assert!(
        eventually(Duration::from_secs(20), online(2)).await,
        "no second online"
    );
    let second = statuses
        .seen()
        .iter()
        .filter(|(_, s)| s.state == LinkState::Online)
        .map(|(_, s)| s.connection)
        .max()
        .unwrap();
    assert!(second > first);
    let now_online = || async {
        provider.mqtt_status(&gw.id).await
            == (Some("online".into()), Some(i64::try_from(second).unwrap()))
    };
    assert!(eventually(Duration::from_secs(10), now_online).await);
    statuses.publish(&topic, will).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        now_online().await,
        "a replayed last-will overrode a newer online"
    );
    let refused = provider
        .ingest
        .mqtt_publisher()
        .stats()
        .refused_total(tm_provider::ingest::mqtt::Refusal::StaleStatus);
    assert_eq!(refused, 1);
}
