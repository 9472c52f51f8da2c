//! [`IngestCounters`]: what this provider instance ingested, counted in memory for `/metrics`.

/// What one provider instance ingested since it started: real counters, read by `/metrics`
/// (Prometheus takes the rate; the sum over instances is the fleet's).
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Readings newly stored (a duplicate is not counted again).
    pub readings: prometheus_client::metrics::counter::Counter,
    /// Verified heartbeats stored.
    pub heartbeats: prometheus_client::metrics::counter::Counter,
}
