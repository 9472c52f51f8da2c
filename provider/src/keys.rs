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

use rusqlite::Connection;
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

    fn pin_name(self) -> &'static str {
        match self {
            Self::Receipts => "key:receipts",
            Self::AttachmentUris => "key:attachment-uris",
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

/// A key file that is not the one the store is served with.
#[derive(Debug, thiserror::Error)]
pub enum KeyMismatch {
    /// Another key than the pinned one.
    #[error(
        "the {} key in {path} has fingerprint {found}, but this store is served with {pinned} \
         (pinned {pinned_at}): {}. The provider does not start: {WHAT_TO_DO}",
        purpose.as_str(),
        purpose.consequence()
    )]
    Other {
        /// What the key signs.
        purpose: Purpose,
        /// The key file found.
        path: PathBuf,
        /// Its fingerprint.
        found: String,
        /// The fingerprint pinned in the store.
        pinned: String,
        /// When it was pinned (RFC 3339).
        pinned_at: String,
    },
    /// The key file is gone, and the store is served with a key: a new one is not made.
    #[error(
        "the {} key file {path} is missing, but this store is served with the key of \
         fingerprint {pinned} (pinned {pinned_at}); a new key is not made, since {}. The \
         provider does not start: {WHAT_TO_DO}",
        purpose.as_str(),
        purpose.consequence()
    )]
    Missing {
        /// What the key signs.
        purpose: Purpose,
        /// The key file expected.
        path: PathBuf,
        /// The fingerprint pinned in the store.
        pinned: String,
        /// When it was pinned (RFC 3339).
        pinned_at: String,
    },
}

/// What an operator does about a key that is not the store's.
const WHAT_TO_DO: &str = "restore the key file from its backup (every instance serves with the \
    same key files); to serve with another key from now on, start once with \
    `tm-provider serve --accept-new-keys`";

fn pinned(conn: &Connection, purpose: Purpose) -> rusqlite::Result<Option<(String, String)>> {
    crate::pins::get(conn, purpose.pin_name())
}

/// Refuses a missing key file whose key the store is served with (before anything would make
/// a new one), unless `accept_new`.
pub fn check_present(
    conn: &Connection,
    files: &[(Purpose, PathBuf)],
    accept_new: bool,
) -> rusqlite::Result<Result<(), KeyMismatch>> {
    for (purpose, path) in files {
        if accept_new || path.exists() {
            continue;
        }
        if let Some((pinned, pinned_at)) = pinned(conn, *purpose)? {
            return Ok(Err(KeyMismatch::Missing {
                purpose: *purpose,
                path: path.clone(),
                pinned,
                pinned_at,
            }));
        }
    }
    Ok(Ok(()))
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
    match pinned(conn, purpose)? {
        Some((pinned, _)) if pinned == fingerprint => return Ok(Ok(())),
        Some((pinned, pinned_at)) if !accept_new => {
            return Ok(Err(KeyMismatch::Other {
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
    crate::pins::set(conn, purpose.pin_name(), fingerprint)?;
    Ok(Ok(()))
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
