//! `[hub]`: where the HUB is, our client credentials, and how updates are retried.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tm_protocol::config_file::ConfigError;

/// `[hub]`: the HUB client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    /// Base URL of the HUB, e.g. `https://api.telemonitoring-prescription.com`.
    pub url: String,
    /// Our client id.
    pub client_id: String,
    /// File holding our client secret (never inline in the config).
    pub client_secret_file: PathBuf,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// First retry delay; doubles up to `retry_max_ms`.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// How long an update the HUB refuses (4xx other than 401) is retried, with the same
    /// doubling delays, after its first refusal; a refusal after that holds it (and the later
    /// updates of its session) until an operator re-queues it. 0 holds at the first refusal.
    #[serde(default = "default_refused_retry_window_ms")]
    pub refused_retry_window_ms: u64,
    /// A token is renewed this long before `expires_in` runs out (must be well below the
    /// HUB's token lifetime).
    #[serde(default = "default_token_margin_s")]
    pub token_margin_s: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}
fn default_retry_initial_ms() -> u64 {
    500
}
fn default_retry_max_ms() -> u64 {
    60_000
}
fn default_refused_retry_window_ms() -> u64 {
    3_600_000
}
fn default_token_margin_s() -> u64 {
    60
}

impl HubSection {
    /// Per-request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(ConfigError::Invalid(
                "hub.url must be an http(s) URL".into(),
            ));
        }
        if self.retry_initial_ms == 0 || self.retry_initial_ms > self.retry_max_ms {
            return Err(ConfigError::Invalid(
                "hub.retry_initial_ms must be > 0 and <= hub.retry_max_ms".into(),
            ));
        }
        Ok(())
    }
}
