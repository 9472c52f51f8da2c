//! Every advisory lock key the provider takes on PostgreSQL, in one place so that no two
//! purposes share a key (a lease and a transaction lock on one key would wait on each other
//! for ever). Each key is "tm_" and a tag, as bytes.

/// Migrations at connect (transaction lock).
pub const MIGRATION: i64 = 0x746d_5f6d_6967_7261; // "tm_migra"
/// Pinning the store's keys at the first start (transaction lock).
pub const PIN: i64 = 0x746d_5f70_696e_7300; // "tm_pins\0"
/// One alert evaluation at a time (transaction lock).
pub const EVALUATION: i64 = 0x746d_5f65_7661_6c75; // "tm_evalu"
/// The lease of the HUB outbox's delivery (session lock, [`super::lease`]).
pub const HUB_OUTBOX_LEASE: i64 = 0x746d_5f68_7562_6f78; // "tm_hubox"
/// The lease of the alert evaluator (session lock).
pub const ALERT_EVALUATOR_LEASE: i64 = 0x746d_5f61_6c65_7274; // "tm_alert"
/// The lease of the attachment sweep (session lock).
pub const ATTACHMENT_SWEEP_LEASE: i64 = 0x746d_5f73_7765_6570; // "tm_sweep"
/// The lease of clinical triage (session lock).
pub const TRIAGE_LEASE: i64 = 0x746d_5f74_7269_6167; // "tm_triag"

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_purpose_has_its_own_key() {
        let mut keys = [
            MIGRATION,
            PIN,
            EVALUATION,
            HUB_OUTBOX_LEASE,
            ALERT_EVALUATOR_LEASE,
            ATTACHMENT_SWEEP_LEASE,
            TRIAGE_LEASE,
        ];
        keys.sort_unstable();
        assert!(keys.windows(2).all(|w| w[0] != w[1]));
    }
}
