//! [`MqttPublisher`]: the provider's MQTT connection as the rest of the provider sees it (the
//! command issuer publishes through it, operations read what it counted). The ingest loop
//! ([`super::run`]) fills it while it is connected.

use std::sync::{Arc, RwLock};

use rumqttc::{AsyncClient, QoS};
use tm_protocol::routes::mqtt as topics;

use super::stats::MqttStats;

/// The provider's MQTT connection as seen by code outside the ingest: it publishes to gateways
/// (commands), and tells operations what the connection counted ([`MqttStats`]). It holds the
/// client while [`super::run`] runs, and nothing otherwise; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MqttPublisher {
    /// The ingest connection's client, set by [`super::run`] and cleared when it returns; `None`
    /// also without `[mqtt]`, and commands then go by the gateways' HTTPS poll only.
    client: Arc<RwLock<Option<AsyncClient>>>,
    /// Counted by the ingest loop, read by operations and `/metrics`; kept across
    /// reconnections, zero at each provider start.
    stats: Arc<MqttStats>,
}

impl MqttPublisher {
    /// What the MQTT ingest counted since the provider started.
    pub fn stats(&self) -> &MqttStats {
        &self.stats
    }

    pub(super) fn set(&self, client: Option<AsyncClient>) {
        *self
            .client
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
    }

    /// Publishes a signed command frame on `gateway`'s command topic (QoS 1, not retained).
    /// Never waits: returns false when the provider runs no MQTT connection or its request
    /// queue is full; the gateway's HTTPS poll serves the command anyway.
    pub fn publish_command(&self, gateway: &tm_protocol::GatewayId, frame: Vec<u8>) -> bool {
        let guard = self
            .client
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(client) = guard.as_ref() else {
            return false;
        };
        match client.try_publish(topics::commands(gateway), QoS::AtLeastOnce, false, frame) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(gateway = %gateway, error = %e, "command not published over MQTT; the gateway's poll will fetch it");
                false
            }
        }
    }
}
