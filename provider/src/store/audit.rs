//! The audit log: who enrolled or claimed which gateway, paired, unpaired or replaced which
//! device on which gateway for which session, each step of a setup from the nurse's page
//! (pairing asked, secret relayed without its value, first reading shown, setup completed),
//! which operator re-queued which held HUB update or released which gateway, and when. Append-only: the
//! table's triggers refuse every UPDATE and DELETE, so not even a bug in this crate can rewrite
//! history.
//!
//! Enrollment is recorded in the enrollment transaction
//! ([`super::sqlite::audit::record_enrollment`], [`super::postgres::audit::record_enrollment`]); device events are derived from the device
//! lists of consecutive heartbeats ([`super::sqlite::fleet::record_heartbeat`]); an operator
//! action in the transaction that makes it ([`Store::requeue_hub_update`]). An entry about a
//! session that never had a gateway has an empty `gateway_id`.

use serde::Serialize;

use super::{Backend, Store, StoreError, postgres, sqlite};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// A gateway was enrolled on a session.
    Enrolled,
    /// A device appeared in a gateway's paired list.
    Paired,
    /// A device left the list.
    Unpaired,
    /// A device left the list and another of the same model took its place.
    Replaced,
    /// An operator re-queued a HUB status update that was held.
    HubUpdateRequeued,
    /// A nurse's page claimed an unclaimed gateway by its claim code (and enrolled it).
    Claimed,
    /// The setup page asked the gateway to pair a device.
    PairRequested,
    /// The setup page relayed a pairing's PIN, passkey or confirmation (never its value).
    SecretRelayed,
    /// The setup page asked the gateway to unpair a device.
    UnpairRequested,
    /// The setup page showed the first reading of a device.
    FirstReadingShown,
    /// The nurse finished the setup on her page.
    SetupCompleted,
    /// An operator released the gateway from its session (claimable again).
    Released,
}

impl AuditAction {
    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolled => "enrolled",
            Self::Paired => "paired",
            Self::Unpaired => "unpaired",
            Self::Replaced => "replaced",
            Self::HubUpdateRequeued => "hub-update-requeued",
            Self::Claimed => "claimed",
            Self::PairRequested => "pair-requested",
            Self::SecretRelayed => "secret-relayed",
            Self::UnpairRequested => "unpair-requested",
            Self::FirstReadingShown => "first-reading-shown",
            Self::SetupCompleted => "setup-completed",
            Self::Released => "released",
        }
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Order of insertion.
    pub seq: i64,
    /// When.
    pub at: String,
    /// Who (`nurse:enrollment-code`, `gateway:<id>`, `operator:<name>`).
    pub actor: String,
    /// What.
    pub action: String,
    /// On which gateway.
    pub gateway_id: String,
    /// For which session.
    pub telemonitoring_id: Option<String>,
    /// Which device (address and model).
    pub device: Option<String>,
    /// Anything else (carepath, the replaced device).
    pub detail: String,
}

impl Store {
    /// The newest `limit` audit entries first; `gateway` restricts to one gateway.
    pub async fn audit_trail(
        &self,
        gateway: Option<String>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::audit::trail(pg, gateway.as_deref(), limit).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::audit::list(c, gateway.as_deref(), limit))
                    .await
            }
        }
    }
}
