//! MQTT topics and HTTP routes, defined once for both sides.
//!
//! Topics are per gateway under `tm/v1/gw/{gateway_id}/...`. A [`GatewayId`] is a validated
//! slug, so it can never contain `+`, `#` or `/`. The broker's ACL should let a gateway publish
//! only under its own prefix and read only its own receipts and commands.

use crate::messages::GatewayId;

/// MQTT topics.
pub mod mqtt {
    use super::GatewayId;

    /// Prefix of every topic; the version changes with [`crate::PROTOCOL_VERSION`].
    pub const PREFIX: &str = "tm/v1/gw";

    /// Maximum MQTT packet size of the fleet: a full frame plus topic and headers. Gateways
    /// never publish larger packets, and the broker is configured to refuse anything larger
    /// (mosquitto `max_packet_size 1052672`: the client that sends it is disconnected and the
    /// message never queued). The provider reads packets well above it (see its MQTT ingest),
    /// so a broker configured without the limit cannot wedge the provider's session either.
    pub const MAX_PACKET_BYTES: usize = crate::limits::MAX_FRAME_BYTES + 4096;

    /// Gateway -> provider: signed reading batches (QoS 1).
    pub fn readings(gw: &GatewayId) -> String {
        format!("{PREFIX}/{gw}/readings")
    }
    /// Provider -> gateway: signed receipts (QoS 1).
    pub fn receipts(gw: &GatewayId) -> String {
        format!("{PREFIX}/{gw}/receipts")
    }
    /// Gateway -> provider: signed heartbeats (QoS 1).
    pub fn heartbeat(gw: &GatewayId) -> String {
        format!("{PREFIX}/{gw}/heartbeat")
    }
    /// Gateway liveness, retained: a signed [`crate::Status`] frame, `online` on connect and
    /// `offline` as the last-will, both naming the same connection.
    pub fn status(gw: &GatewayId) -> String {
        format!("{PREFIX}/{gw}/status")
    }
    /// Provider -> gateway: signed commands (QoS 1, not retained: the broker keeps them for
    /// the gateway's persistent session while it is offline).
    pub fn commands(gw: &GatewayId) -> String {
        format!("{PREFIX}/{gw}/commands")
    }
    /// Gateway -> provider: signed results of executed commands (QoS 1).
    pub fn command_results(gw: &GatewayId) -> String {
        format!("{PREFIX}/{gw}/command-results")
    }

    /// The provider's subscription to every gateway's readings.
    pub const ALL_READINGS: &str = "tm/v1/gw/+/readings";
    /// The provider's subscription to every gateway's heartbeats.
    pub const ALL_HEARTBEATS: &str = "tm/v1/gw/+/heartbeat";
    /// The provider's subscription to every gateway's command results.
    pub const ALL_COMMAND_RESULTS: &str = "tm/v1/gw/+/command-results";
    /// The provider's subscription to every gateway's status.
    pub const ALL_STATUS: &str = "tm/v1/gw/+/status";
    /// Shared-subscription group, so several provider instances split the load (MQTT 5 and
    /// mosquitto's `$share`).
    pub const SHARE_GROUP: &str = "tm-provider";

    /// `$share/{group}/{filter}`.
    pub fn shared(filter: &str) -> String {
        format!("$share/{SHARE_GROUP}/{filter}")
    }

    /// The gateway id and the last segment of a topic under [`PREFIX`], for example
    /// `("gw-1", "readings")`.
    pub fn parse(topic: &str) -> Option<(GatewayId, &str)> {
        let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let (gw, leaf) = rest.split_once('/')?;
        if leaf.contains('/') {
            return None;
        }
        Some((GatewayId::new(gw).ok()?, leaf))
    }
}

/// HTTP routes of the provider's gateway API.
pub mod http {
    use super::GatewayId;

    /// POST an enrollment request frame; the answer is an enrollment response frame.
    pub const ENROLL: &str = "/api/v1/enroll";
    /// POST a claim hello frame of an unenrolled gateway; 202 while it is unclaimed, else an
    /// enrollment response frame.
    pub const CLAIM_HELLO: &str = "/api/v1/claims/hello";
    /// POST a reading batch frame; the answer is a receipt frame.
    pub const READINGS: &str = "/api/v1/readings";
    /// POST a heartbeat frame.
    pub const HEARTBEAT: &str = "/api/v1/heartbeat";
    /// GET pending command frames for a gateway (the HTTPS poll), axum path syntax.
    pub const COMMANDS: &str = "/api/v1/gateways/{gateway_id}/commands";

    /// POST a command result frame (answer: 204).
    pub const COMMAND_RESULTS: &str = "/api/v1/command-results";

    /// The command poll path for one gateway.
    pub fn commands(gw: &GatewayId) -> String {
        format!("/api/v1/gateways/{gw}/commands")
    }

    /// Content type of a signed frame body.
    pub const FRAME_CONTENT_TYPE: &str = "application/vnd.tm.frame";
    /// Header carrying the batch id on retries (draft-ietf-httpapi-idempotency-key-header).
    pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_broker_limit_is_the_packet_limit() {
        assert_eq!(mqtt::MAX_PACKET_BYTES, 1_052_672);
    }

    #[test]
    fn topics_round_trip_through_parse() {
        let gw = GatewayId::new("gw-42").unwrap();
        let topic = mqtt::readings(&gw);
        let (parsed, leaf) = mqtt::parse(&topic).unwrap();
        assert_eq!((parsed, leaf), (gw.clone(), "readings"));
        assert_eq!(mqtt::parse(&mqtt::status(&gw)).unwrap().1, "status");
        assert_eq!(
            mqtt::parse(&mqtt::command_results(&gw)).unwrap().1,
            "command-results"
        );
        assert_eq!(
            mqtt::ALL_COMMAND_RESULTS.replace('+', "gw-42"),
            mqtt::command_results(&gw)
        );
        assert!(mqtt::parse("tm/v1/gw/+/readings").is_none());
        assert!(mqtt::parse("tm/v1/gw/gw-1/a/b").is_none());
        assert!(mqtt::parse("other/gw-1/readings").is_none());
        assert_eq!(
            mqtt::shared(mqtt::ALL_READINGS),
            "$share/tm-provider/tm/v1/gw/+/readings"
        );
    }

    #[test]
    fn command_route_matches_the_axum_pattern() {
        let gw = GatewayId::new("gw-42").unwrap();
        assert_eq!(
            http::commands(&gw),
            http::COMMANDS.replace("{gateway_id}", "gw-42")
        );
    }
}
