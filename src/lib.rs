//! # tm-gateway: the home-gateway agent
//!
//! Reads BLE health devices, keeps every reading in a local SQLite outbox until the provider
//! has confirmed it, and ships signed batches over MQTT or HTTPS (docs/architecture.md §3).
//!
//! Map of the crate:
//! - [`config`]: the agent's configuration file, validated at load.
//! - [`identity`]: the gateway's Ed25519 key in its state directory.
//! - [`enrollment`]: what the provider granted (gateway id, provider key, sync settings), by
//!   `tm-gateway enroll` or by a claim; the one check of the provider's signed answer.
//! - [`claim`]: an unenrolled `run` announcing itself until a nurse claims its code.
//! - [`setup`]: setup mode, the nurse's phone driving scans and pairings through commands.
//! - [`stash`]: the seam between capture and the outbox (commit before acknowledge).
//! - [`store`]: the SQLite outbox (one writer thread; pending -> leased -> acknowledged).
//! - [`sync`]: signed batches over MQTT or HTTPS, receipts, backoff, heartbeats.
//! - [`agent`]: `tm-gateway run`: waiting to be claimed, then the actors in one JoinSet,
//!   stopped by SIGTERM/SIGINT (a `release` goes back to waiting).
//! - `simulate`: SIMULATOR ONLY, synthetic readings for tests and benchmarks (cargo feature
//!   `simulator`, off in shipped builds).
//! - [`ble`]: BLE on btleplug: discovery, one link per paired device, pairing agent, capture.
//! - [`health`]: sd_notify READY/STOPPING and a watchdog pinged only while the loops progress.
//! - [`doctor`]: `tm-gateway doctor`, the gateway's health checks with fixes.
//! - [`cli`]: the command line (`tm-gateway <command>`).
//!

pub mod agent;
pub mod ble;
pub mod claim;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod enrollment;
pub mod health;
pub mod identity;
pub mod label;
pub mod setup;
#[cfg(any(test, feature = "simulator"))]
pub mod simulate;
pub mod stash;
pub mod store;
pub mod sync;
