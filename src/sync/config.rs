//! The `[store]` and `[sync]` sections of the agent's configuration file. The transport and the
//! URLs come from the enrollment; these are the local knobs (quota, batch size, timeouts, TLS
//! material, broker credentials).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[store]`: how much disk the outbox may take and how long settled rows stay on it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Hard disk quota of the outbox in MiB (1..=1048576; default 512). An alarm is raised at
    /// 80 %; at the quota, acknowledged rows are evicted and then new readings refused (never
    /// dropped silently). A 32nd of it (256 KiB to 16 MiB) is kept as the disk-full reserve.
    pub quota_mb: u64,
    /// Hours an acknowledged row is kept for local audit before it is pruned (default 24; 0
    /// prunes at the next 30 s sweep). Waived at the quota and on a full disk.
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

/// `[sync]`: batching, timing and credentials. Read by the syncer (lease limits, window,
/// backoff), by both links (timeouts, TLS) and by the heartbeat (interval).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Most readings per batch: 1..=`tm_protocol::limits::MAX_READINGS_PER_BATCH`, which is
    /// also the default (the provider refuses a larger batch).
    pub batch_max_readings: usize,
    /// Most KiB of reading JSON per batch (4..=1000; default 960, leaving room for the
    /// envelope and signature under the 1 MiB frame limit). A single larger reading is still
    /// sent, alone.
    pub batch_max_kib: usize,
    /// Readings of each batch taken newest-first before the oldest-first backlog fills the
    /// rest (default 16), so a live reading overtakes the backlog; 0 ships strictly oldest
    /// first. Capped by `batch_max_readings`.
    pub live_lane: usize,
    /// Batches sent and waiting for their receipts at once (1..=64; default 8). Also sizes the
    /// MQTT client's request queue and in-flight window (twice this plus 8).
    pub in_flight_batches: usize,
    /// MQTT only: how long a published batch waits for its receipt before it fails and its
    /// rows go back to pending (at least 100; default 30 s).
    pub receipt_timeout_ms: u64,
    /// HTTPS only: timeout of each whole request (a batch and its receipt, a heartbeat, a
    /// command poll or result; at least 100; default 30 s); connecting is capped at 10 s.
    pub request_timeout_ms: u64,
    /// First backoff after a retryable failure (> 0; default 500 ms); doubles up to
    /// `backoff_max_ms`, full jitter. A success resets it.
    pub backoff_initial_ms: u64,
    /// Longest backoff of the syncer (>= `backoff_initial_ms`; default 5 min). The MQTT
    /// reconnect loop uses the same policy capped at 30 s.
    pub backoff_max_ms: u64,
    /// Pause before a batch is sent again after the provider refused the gateway itself
    /// (HTTP 401/403/404/410, unanswered MQTT batches); jittered between half and all of it
    /// (at least 100; default 10 min: such a refusal needs an operator, not a quick retry).
    pub refused_retry_ms: u64,
    /// Seconds between heartbeats (and between command polls); overrides the enrollment's
    /// value when set, must then be at least 1. `None`: the enrollment's value.
    pub heartbeat_interval_s: Option<u32>,
    /// PEM file of CA certificates. HTTPS trusts them in addition to the system roots; MQTT
    /// over `mqtts://` trusts only them and cannot connect without this file.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for MQTT mutual TLS; set together with
    /// `client_key_file` or not at all. Not used over HTTPS.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file` (keep it mode 0600).
    pub client_key_file: Option<PathBuf>,
    /// MQTT user name; `None` connects without credentials. Not used over HTTPS.
    pub mqtt_username: Option<String>,
    /// File holding the MQTT password, read once at start with its trailing newline trimmed;
    /// ignored without `mqtt_username`, an empty password when unset. Secrets never go inline
    /// in the configuration.
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

    /// `receipt_timeout_ms` as a duration (MQTT receipt wait).
    pub fn receipt_timeout(&self) -> Duration {
        Duration::from_millis(self.receipt_timeout_ms)
    }

    /// `request_timeout_ms` as a duration (every HTTPS request).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
