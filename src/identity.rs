//! The gateway's identity: an Ed25519 key created on first start in the state directory
//! (mode 0600). Its public key is what the provider enrolls; its fingerprint is safe to log.

use std::path::Path;

pub use tm_protocol::identity::IdentityError;
use tm_protocol::{SigningKey, VerifyingKey};

/// The loaded identity.
#[derive(Debug)]
pub struct Identity {
    /// The Ed25519 key from `gateway.key` (PKCS#8, mode 0600); never logged, only its
    /// fingerprint.
    key: SigningKey,
    /// True when the key was created by this load (first start): a new identity that the
    /// provider does not know until the gateway enrolls.
    pub created: bool,
}

impl Identity {
    /// Loads the key at `path`, creating it on first start.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        let (key, created) = SigningKey::load_or_create(path)?;
        if created {
            tracing::info!(fingerprint = %key.verifying_key().fingerprint(), "created gateway identity");
        }
        Ok(Self { key, created })
    }

    /// The signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The signing key, owned (the agent shares it between its actors).
    pub fn into_signing_key(self) -> SigningKey {
        self.key
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}
