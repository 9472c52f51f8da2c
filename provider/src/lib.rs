//! # tm-provider: the Telemonitoring Provider backend
//!
//! Map of the crate (ARCHITECTURE §4):
//! - [`config`]: the provider's configuration file, validated at load.
//! - [`db`]: the SQLite store (embedded default): one writer, migrations at open. Each feature
//!   owns its tables and adds its migrations to [`db::MIGRATIONS`].
//! - [`gateways`]: enrolled gateways and their public keys, shared by enrollment (which writes
//!   them) and ingest (which verifies frames against them).
//! - [`http`]: the HTTP server: one axum router assembled from each feature's routes.
//! - [`keys`]: the provider's signing key (receipts), created on first start.
//! - [`ingest`]: readings and heartbeats from gateways over HTTPS and MQTT: verify, de-duplicate,
//!   commit, then answer with a signed receipt.
//!
//! Features arrive in their own modules: the Portal-facing endpoints and the HUB client, the
//! gateway ingest (HTTPS and MQTT) with receipts, the clinical outputs (FHIR, PDF, dashboard),
//! and fleet operations.

pub mod config;
pub mod db;
pub mod gateways;
pub mod http;
pub mod ingest;
pub mod keys;
