//! The agent's liveness status over MQTT, with a real mosquitto, the real agent process and the
//! provider's MQTT ingest: the agent publishes a signed retained `online` when it connects, and
//! its last-will is the signed `offline` of the same connection, so the broker flips it offline
//! when the agent dies. A forged `offline` changes nothing, and the last-will of the agent's
//! previous connection, replayed after it reconnected, changes nothing either.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tm_protocol::routes::mqtt as topics;
use tm_protocol::{GatewayId, LinkState, MessageKind, SigningKey, Status};

/// The stored status and its connection number.
async fn stored(provider: &ProviderSide, gw: &GatewayId) -> (Option<String>, Option<i64>) {
    let id = gw.to_string();
    provider
        .db
        .read(move |c| {
            let row = c.query_row(
                "SELECT mqtt_status, mqtt_status_connection FROM ops_gateway_health \
                 WHERE gateway_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            );
            match row {
                Err(rusqlite::Error::QueryReturnedNoRows) => Ok((None, None)),
                other => other,
            }
        })
        .await
        .unwrap()
}

/// Status frames seen on the topic, each with what it says.
type Seen = Arc<Mutex<Vec<(Vec<u8>, Status)>>>;

/// Every status frame published on the gateway's topic, verified with its key.
struct Statuses {
    client: AsyncClient,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Statuses {
    async fn watch(port: u16, gw: &GatewayId, key: tm_protocol::VerifyingKey) -> Self {
        let (client, mut eventloop) =
            AsyncClient::new(MqttOptions::new("test-status", "127.0.0.1", port), 16);
        let seen: Seen = Arc::default();
        let topic = topics::status(gw);
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let task = {
            let (client, seen) = (client.clone(), seen.clone());
            tokio::spawn(async move {
                let mut subscribed_tx = Some(subscribed_tx);
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            let _ = client.try_subscribe(&topic, QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            if let Some(tx) = subscribed_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let bytes = p.payload.to_vec();
                            let status = tm_protocol::Frame::parse(&bytes)
                                .and_then(|f| {
                                    f.verify(MessageKind::Status, &key).map(<[u8]>::to_vec)
                                })
                                .ok()
                                .and_then(|payload| tm_protocol::decode::<Status>(&payload).ok());
                            if let Some(status) = status {
                                seen.lock().unwrap().push((bytes, status));
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("subscribed to the status topic")
            .unwrap();
        Self { client, seen, task }
    }

    fn seen(&self) -> Vec<(Vec<u8>, Status)> {
        self.seen.lock().unwrap().clone()
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }
}

impl Drop for Statuses {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_signed_last_will_flips_it_offline_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let gw = GatewaySide::new(
        dir.path(),
        "[sync]\nbackoff_initial_ms = 50\nbackoff_max_ms = 400\n",
    );
    let provider = ProviderSide::new(dir.path(), &gw.id, &gw.key).await;
    let (addr, _http) = provider.serve_http("127.0.0.1:0".parse().unwrap()).await;
    let _ingest = provider.serve_mqtt(broker.port);
    gw.enroll_with(
        &provider.key,
        &format!("http://{addr}"),
        Some(&broker.url()),
    );
    let statuses = Statuses::watch(broker.port, &gw.id, gw.key.verifying_key()).await;
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
            stored(&provider, &gw.id).await
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
        stored(&provider, &gw.id).await,
        (Some("online".into()), Some(i64::try_from(first).unwrap()))
    );

    // Killed: the broker publishes the agent's last-will, signed, of the same connection.
    kill(&mut agent);
    let offline = || async {
        stored(&provider, &gw.id).await
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
        stored(&provider, &gw.id).await
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
