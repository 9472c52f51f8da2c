//! The provider's Ed25519 signing key: receipts (and later commands and enrollment answers) are
//! signed with it; gateways verify them against the public key they received at enrollment.
//! Created on first start as a PKCS#8 file with mode 0600; never logged (only its fingerprint).
//!
//! The store pins the fingerprints of the keys it is served with ([`pin`]): the signing key and
//! the attachment URI key, recorded at the first start. A provider started with another key
//! file (a restore that missed it, a second instance deployed with its own) refuses to serve,
//! since every gateway enrolled with the pinned key would refuse its receipts and resend for
//! ever, and every attachment URI an EHR holds would be refused.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::{IdentityError, SigningKey};

/// What a pinned key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Receipts, commands and enrollment answers (the provider key).
    Receipts,
    /// The attachment URIs handed to the HUB (the URI key).
    AttachmentUris,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Receipts => "receipts",
            Self::AttachmentUris => "attachment-uris",
        }
    }

    fn consequence(self) -> &'static str {
        match self {
            Self::Receipts => {
                "every gateway enrolled with the pinned key would refuse the receipts and send \
                 its readings again for ever"
            }
            Self::AttachmentUris => {
                "every attachment URI the EHRs hold would be refused until the next update"
            }
        }
    }
}

/// A key file that is not the one the store was served with.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {} key in {path} has fingerprint {found}, but this store is served with {pinned} \
     (pinned {pinned_at}): {}. The provider does not start: restore the key file from its \
     backup (every instance serves with the same key files); to serve with this key from now \
     on, start once with `tm-provider serve --accept-new-keys`",
    purpose.as_str(),
    purpose.consequence()
)]
pub struct KeyMismatch {
    /// What the key signs.
    pub purpose: Purpose,
    /// The key file found.
    pub path: PathBuf,
    /// Its fingerprint.
    pub found: String,
    /// The fingerprint pinned in the store.
    pub pinned: String,
    /// When it was pinned (RFC 3339).
    pub pinned_at: String,
}

/// Pins `fingerprint` for `purpose` in the store, or checks it against the pinned one; with
/// `accept_new` a different key replaces the pin (logged). The fingerprint is a digest, never
/// the key.
pub fn pin(
    conn: &Connection,
    purpose: Purpose,
    fingerprint: &str,
    path: &Path,
    accept_new: bool,
) -> rusqlite::Result<Result<(), KeyMismatch>> {
    let pinned: Option<(String, String)> = conn
        .query_row(
            "SELECT fingerprint, pinned_at FROM provider_keys WHERE purpose = ?1",
            [purpose.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match pinned {
        Some((pinned, _)) if pinned == fingerprint => return Ok(Ok(())),
        Some((pinned, pinned_at)) if !accept_new => {
            return Ok(Err(KeyMismatch {
                purpose,
                path: path.to_path_buf(),
                found: fingerprint.to_owned(),
                pinned,
                pinned_at,
            }));
        }
        Some((pinned, _)) => {
            tracing::warn!(purpose = purpose.as_str(), %pinned, found = fingerprint, "key accepted: the store is served with it from now on");
        }
        None => {}
    }
    conn.execute(
        "INSERT INTO provider_keys (purpose, fingerprint, pinned_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (purpose) DO UPDATE SET fingerprint = excluded.fingerprint, \
         pinned_at = excluded.pinned_at",
        params![
            purpose.as_str(),
            fingerprint,
            chrono::Utc::now().to_rfc3339()
        ],
    )?;
    Ok(Ok(()))
}

/// The fingerprint of a secret key (the first 8 bytes of its SHA-256, hex): names the key in
/// the store and in messages without revealing it.
pub fn secret_fingerprint(secret: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret);
    hex::encode(&d.as_ref()[..8])
}

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
