//! Enrolled gateways: the provider's registry of gateway public keys.
//!
//! Enrollment inserts a row (key, session binding); ingest looks a frame's signer up here and
//! verifies the signature against the stored key. A gateway is `active` while bound to a
//! session, `unbound` when its session ended (its frames are refused, its identity kept for
//! audit), `revoked` when operations withdrew it, and `released` when operations released it
//! for another home (see [`crate::store::claims`]): a released gateway is bound to nothing,
//! its frames are refused as an unknown gateway's, and its row is bound again, to a new
//! session, when the gateway is claimed or enrolled again. Binding (`sqlite::gateways::bind`,
//! `postgres::gateways::insert`) is one upsert on both backends: a new key is inserted as
//! `active`; a `released` row is bound again (active, the new session, enrolled now, its setup
//! not done); any other row is left alone and the enrollment refused.
//!
//! A gateway's id and its claim code are both derived from its public key
//! ([`gateway_id_for`], [`tm_protocol::claim::ClaimCode::of`]), so a key is one gateway
//! whichever way it was enrolled, and its claim code finds it.

use tm_protocol::{GatewayId, VerifyingKey};

use super::{Backend, Store, StoreError, postgres, sqlite};

/// Lifecycle of a gateway at the provider. Stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayState {
    /// Enrolled and bound to a session: its readings are accepted.
    Active,
    /// Its session ended: frames refused, identity kept.
    Unbound,
    /// Withdrawn by operations: frames refused.
    Revoked,
    /// Released by operations from its session: bound to nothing, frames refused as an
    /// unknown gateway's; claimable again with the same claim code.
    Released,
}

/// The gateway id derived from its public key (stable, so a retried enrollment is detected).
pub fn gateway_id_for(key: &VerifyingKey) -> GatewayId {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    GatewayId::new(format!("gw-{}", hex::encode(&d.as_ref()[..8]))).expect("a valid slug")
}

impl GatewayState {
    /// Stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Unbound => "unbound",
            Self::Revoked => "revoked",
            Self::Released => "released",
        }
    }

    /// The state a stored text names; anything unknown is read as the safest state.
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "unbound" => Self::Unbound,
            "released" => Self::Released,
            _ => Self::Revoked,
        }
    }
}

/// One enrolled gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// Its id.
    pub gateway_id: GatewayId,
    /// Its Ed25519 public key.
    pub public_key: VerifyingKey,
    /// The session it writes readings for, while active.
    pub telemonitoring_id: Option<String>,
    /// Lifecycle state.
    pub state: GatewayState,
}

impl Store {
    /// Looks a gateway up by id.
    pub async fn gateway(&self, gateway_id: &str) -> Result<Option<Gateway>, StoreError> {
        let id = gateway_id.to_owned();
        match &self.backend {
            Backend::Postgres(pg) => postgres::gateways::lookup(pg, &id).await,
            Backend::Sqlite(db) => db.read(move |c| sqlite::gateways::find(c, &id)).await,
        }
    }

    /// Changes a gateway's state; false when no such gateway is enrolled.
    pub async fn set_gateway_state(
        &self,
        gateway_id: &GatewayId,
        state: GatewayState,
    ) -> Result<bool, StoreError> {
        let id = gateway_id.clone();
        match &self.backend {
            Backend::Postgres(pg) => postgres::gateways::change_state(pg, &id, state).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::gateways::set_state(c, &id, state))
                    .await
            }
        }
    }
}
