//! What the Portal endpoints and the enrollment page and API share at run time: the store and
//! [`Portal`] (their settings, the provider key, the publisher and the HUB outbox's wake-up). The assembly ([`crate::app`]) builds it once; every handler gets
//! a clone.

use std::sync::Arc;

use crate::portal::settings::{EnrollmentSection, PortalSection};
use crate::store::Store;

/// State shared by the Portal and enrollment handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The provider store (clones share its one writer connection).
    pub store: Store,
    /// Settings and run-time state of the Portal and enrollment features.
    pub portal: Arc<Portal>,
}

/// What the Portal, enrollment and HUB features share at run time.
#[derive(Debug)]
pub struct Portal {
    /// `[portal]`: the fixed headers, the prescribers who activated the provider, the patient
    /// fields kept, the body limit.
    pub section: PortalSection,
    /// `[enrollment]`: codes, their lifetime and rate limit, what gateways are told to use.
    pub enrollment: EnrollmentSection,
    /// The provider's public base URL (enrollment links, the gateways' HTTPS URL).
    pub public_url: String,
    /// Wakes the HUB outbox actor after a status change.
    pub wake_outbox: Arc<tokio::sync::Notify>,
    /// The provider's Ed25519 key (signs enrollment answers).
    pub provider_key: Arc<tm_protocol::SigningKey>,
    /// Announces attachment sets (a stop sends the final set with `completed`).
    pub publisher: Arc<crate::publish::Publisher>,
    /// The provider's MQTT connection (while it runs): the setup page's commands are pushed
    /// over it too, besides the gateway's poll.
    pub mqtt: crate::ingest::mqtt::publisher::MqttPublisher,
    /// The patients' time zone (`[ops] patient_time_zone`): the times the setup page shows.
    pub tz: chrono_tz::Tz,
}
