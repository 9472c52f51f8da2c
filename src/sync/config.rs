//! The `[store]` and `[sync]` sections of the agent's configuration file. The transport and the
//! URLs come from the enrollment; these are the local knobs (quota, batch size, timeouts, TLS
//! material, broker credentials).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[store]`: the outbox.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Hard disk quota of the outbox in MiB. An alarm is raised at 80 %; at the quota,
    /// acknowledged rows are evicted and then new readings refused (never dropped silently).
    pub quota_mb: u64,
    /// Hours an acknowledged row is kept for local audit before it is pruned.
    pub retain_acknowledged_h: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            quota_mb: 512,
            retain_acknowledged_h: 24,
        }
    }
}

impl StoreConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(1..=1_048_576).contains(&self.quota_mb) {
            return Err(format!(
                "store.quota_mb must be 1..=1048576, got {}",
                self.quota_mb
            ));
        }
        Ok(())
    }

    /// The quota in bytes.
    pub fn quota_bytes(&self) -> u64 {
        self.quota_mb.saturating_mul(1024 * 1024)
    }
}

/// `[sync]`: batching, timing and credentials.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Most readings per batch (at most `tm_protocol::limits::MAX_READINGS_PER_BATCH`).
    pub batch_max_readings: usize,
    /// Most KiB of readings per batch; must leave room under the 1 MiB frame limit.
    pub batch_max_kib: usize,
    /// Readings of each batch taken newest-first, so a live reading overtakes the backlog.
    pub live_lane: usize,
    /// Batches in flight at once (each waits for its receipt).
    pub in_flight_batches: usize,
    /// How long a batch waits for its receipt before its rows are leased again.
    pub receipt_timeout_ms: u64,
    /// HTTPS request timeout (connect + response).
    pub request_timeout_ms: u64,
    /// First backoff after a failure; doubles up to `backoff_max_ms`, full jitter.
    pub backoff_initial_ms: u64,
    /// Longest backoff.
    pub backoff_max_ms: u64,
    /// Pause before a batch is sent again after the provider refused the gateway itself
    /// (HTTP 401/403/404, unanswered MQTT batches); jittered between half and all of it.
    pub refused_retry_ms: u64,
    /// Seconds between heartbeats; overrides the enrollment's value when set.
    pub heartbeat_interval_s: Option<u32>,
    /// PEM file of the CA that signs the broker's / provider's certificate (else system roots
    /// for HTTPS; required for `mqtts://`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for MQTT mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate (mode 0600).
    pub client_key_file: Option<PathBuf>,
    /// MQTT user name.
    pub mqtt_username: Option<String>,
    /// File holding the MQTT password (never put secrets in this file).
    pub mqtt_password_file: Option<PathBuf>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            batch_max_readings: tm_protocol::limits::MAX_READINGS_PER_BATCH,
            batch_max_kib: 960,
            live_lane: 16,
            in_flight_batches: 8,
            receipt_timeout_ms: 30_000,
            request_timeout_ms: 30_000,
            backoff_initial_ms: 500,
            backoff_max_ms: 300_000,
            refused_retry_ms: 600_000,
            heartbeat_interval_s: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            mqtt_username: None,
            mqtt_password_file: None,
        }
    }
}

impl SyncConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let max = tm_protocol::limits::MAX_READINGS_PER_BATCH;
        if !(1..=max).contains(&self.batch_max_readings) {
            return Err(format!("sync.batch_max_readings must be 1..={max}"));
        }
        if !(4..=1000).contains(&self.batch_max_kib) {
            return Err("sync.batch_max_kib must be 4..=1000 (frames are at most 1 MiB)".into());
        }
        if !(1..=64).contains(&self.in_flight_batches) {
            return Err("sync.in_flight_batches must be 1..=64".into());
        }
        if self.receipt_timeout_ms < 100 || self.request_timeout_ms < 100 {
            return Err("sync timeouts must be at least 100 ms".into());
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err("sync.backoff_initial_ms must be > 0 and <= backoff_max_ms".into());
        }
        if self.refused_retry_ms < 100 {
            return Err("sync.refused_retry_ms must be at least 100".into());
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err("sync.client_cert_file and sync.client_key_file go together".into());
        }
        if self.heartbeat_interval_s == Some(0) {
            return Err("sync.heartbeat_interval_s must be at least 1".into());
        }
        Ok(())
    }

    /// Receipt timeout.
    pub fn receipt_timeout(&self) -> Duration {
        Duration::from_millis(self.receipt_timeout_ms)
    }

    /// HTTPS request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
