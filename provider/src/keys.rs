//! The provider's Ed25519 signing key: receipts (and later commands and enrollment answers) are
//! signed with it; gateways verify them against the public key they received at enrollment.
//! Created on first start as a PKCS#8 file with mode 0600; never logged (only its fingerprint).
//!
//! The store pins the fingerprints of the keys it is served with, and a provider started with
//! another key file refuses to serve ([`crate::store::pins`]).

use std::path::Path;

use tm_protocol::{IdentityError, SigningKey};

/// Signer id the provider puts in its frames.
pub const PROVIDER_SIGNER: &str = "provider";

/// Loads the key at `path`, creating it (mode 0600) on first start.
pub fn load_or_create(path: &Path) -> Result<SigningKey, IdentityError> {
    let (key, created) = SigningKey::load_or_create(path)?;
    if created {
        tracing::info!(fingerprint = %key.verifying_key().fingerprint(), path = %path.display(), "created provider signing key");
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_private_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider.key");
        let a = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
    }
}
