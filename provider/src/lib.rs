//! # tm-provider: the Telemonitoring Provider backend
//!
//! Map of the crate (docs/architecture.md §4):
//! - [`config`]: the provider's configuration file, validated at load.
//! - [`store`]: the store behind one handle, one method per unit of work; SQLite is the
//!   embedded default (one writer, migrations at open in `store::sqlite::migrations`).
//! - [`http`]: the HTTP server: one axum router assembled from each feature's routes.
//! - [`html`]: HTML escaping for the server-rendered pages.
//! - [`portal`]: the Portal-facing endpoints (prescription URI, Action URI) and their settings.
//! - [`enroll`]: the nurse's enrollment page, one-time codes, the gateway enrollment API.
//! - [`sessions`]: session statuses; every change queues its HUB update in the same commit.
//! - [`hub`]: our reading of the contract, the HUB client and its durable outbox.
//! - [`app`]: wiring from a configuration to the running pieces.
//! - [`outputs`]: the clinical outputs of a session (FHIR Bundle, PDF report, dashboard page),
//!   pure functions of a session context and its readings.
//! - [`attachments`]: attachment metadata (id, length, MD5, ETag) and the signed,
//!   prescriber-bound, time-limited URIs the EHR downloads them from.
//! - [`publish`]: a session's published snapshot (what the HUB announced and the attachment
//!   routes serve), the publisher that announces a new set with each status update, and the
//!   updater actor that moves sessions to in-progress and updates them within the carepath's
//!   limits.
//! - [`keys`]: the provider's signing key (receipts), created on first start; what a store is
//!   served as (key fingerprints, the FHIR identifier system) is pinned in it at its first
//!   start (`store::pins`).
//! - [`ingest`]: readings and heartbeats from gateways over HTTPS and MQTT: verify, de-duplicate,
//!   commit, then answer with a signed receipt.
//! - [`ops`]: fleet operations: gateway and device health, alerts, the audit log, the
//!   operations dashboard, metrics and remote commands.
//! - [`triage`] and [`worklist`]: the carepath's rules over each patient's readings and
//!   answers, and the clinical worklist of the alerts they raise.
//! - [`symptom`] and [`checkin`]: the symptoms a patient reports on the daily check-in page,
//!   coded with the IG's ValueSets and stored with the session's readings.
//!
//! Features arrive in their own modules: the Portal-facing endpoints and the HUB client, the
//! gateway ingest (HTTPS and MQTT) with receipts, the clinical outputs (FHIR, PDF, dashboard),
//! and fleet operations.

pub mod app;
pub mod attachments;
pub mod checkin;
pub mod config;
pub mod enroll;
pub mod html;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod keys;
pub mod lease;
pub mod normal_range;
pub mod ops;
pub mod outputs;
pub mod portal;
pub mod publish;
pub mod store;
pub mod store_id;
pub mod symptom;
pub mod triage;
pub mod worklist;

pub use http::tls::install_crypto_provider;
