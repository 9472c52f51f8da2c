//! What a store is served as, pinned in it at the first start (table `store_pins`): the
//! fingerprints of its keys and the system of the FHIR identifiers its attachments carry
//! ([`Store::fhir_identifier_system`]). Every instance and every later start reads the same
//! values, whatever its host name or key files.
//!
//! The store pins the fingerprints of the keys it is served with ([`Store::pin_keys`]): the
//! signing key and the attachment URI key ([`crate::keys`]), recorded at the first start. A
//! provider started with another key file (a restore that missed it, a second instance deployed
//! with its own) refuses to serve, since every gateway enrolled with the pinned key would refuse
//! its receipts and resend for ever, and every attachment URI an EHR holds would be refused.
//!
//! These run at start, before anything is served.

use std::path::PathBuf;

use super::{Backend, Store, StoreError, postgres, sqlite};

/// What a pinned key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Receipts, commands and enrollment answers (the provider key).
    Receipts,
    /// The attachment URIs handed to the HUB (the URI key).
    AttachmentUris,
}

impl Purpose {
    /// The name used in messages and logs.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Receipts => "receipts",
            Self::AttachmentUris => "attachment-uris",
        }
    }

    /// The name of its pin.
    pub(super) fn pin_name(self) -> &'static str {
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

/// What a key's pin says of a key file, on either backend.
pub(crate) enum PinCheck {
    /// This key is the pinned one: nothing to write.
    Pinned,
    /// Another key is pinned: refused.
    Refused(KeyMismatch),
    /// No pin yet, or another key accepted with `--accept-new-keys` (logged): pin this one.
    Write,
}

impl PinCheck {
    /// Judges the key of fingerprint `fingerprint` in `path` against the stored pin
    /// `(fingerprint, pinned at)`.
    pub(crate) fn of(
        purpose: Purpose,
        fingerprint: &str,
        path: &std::path::Path,
        pinned: Option<(String, String)>,
        accept_new: bool,
    ) -> Self {
        match pinned {
            Some((pinned, _)) if pinned == fingerprint => Self::Pinned,
            Some((pinned, pinned_at)) if !accept_new => Self::Refused(KeyMismatch::Other {
                purpose,
                path: path.to_path_buf(),
                found: fingerprint.to_owned(),
                pinned,
                pinned_at,
            }),
            Some((pinned, _)) => {
                tracing::warn!(purpose = purpose.as_str(), %pinned, found = fingerprint, "key accepted: the store is served with it from now on");
                Self::Write
            }
            None => Self::Write,
        }
    }
}

/// What an operator does about a key that is not the store's.
const WHAT_TO_DO: &str = "restore the key file from its backup (every instance serves with the \
    same key files); to serve with another key from now on, start once with \
    `tm-provider serve --accept-new-keys`";

impl Store {
    /// Refuses a missing key file (`(purpose, path)`) whose key the store is served with
    /// (before anything would make a new one), unless `accept_new`.
    pub async fn check_key_files_present(
        &self,
        files: &[(Purpose, PathBuf)],
        accept_new: bool,
    ) -> Result<Result<(), KeyMismatch>, StoreError> {
        let files = files.to_vec();
        match &self.backend {
            Backend::Postgres(pg) => postgres::pins::check_present(pg, &files, accept_new).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::pins::check_present(c, &files, accept_new))
                    .await
            }
        }
    }

    /// Pins each key's fingerprint (`(purpose, fingerprint, path)`) in the store, or checks it
    /// against the pinned one, in one transaction; with `accept_new` a different key replaces
    /// the pin (logged). The first mismatch refuses and pins nothing. A fingerprint is a
    /// digest, never the key.
    pub async fn pin_keys(
        &self,
        keys: &[(Purpose, String, PathBuf)],
        accept_new: bool,
    ) -> Result<Result<(), KeyMismatch>, StoreError> {
        let keys = keys.to_vec();
        match &self.backend {
            Backend::Postgres(pg) => postgres::pins::pin_keys(pg, &keys, accept_new).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::pins::pin_keys(c, &keys, accept_new))
                    .await
            }
        }
    }

    /// The system of `Observation.identifier`: `configured` (`[attachments]
    /// identifier_system`) when set, pinned from then on; else the one pinned; else, at the
    /// first start, `<public_url>/fhir/reading`, pinned, so a later change of the public URL
    /// does not change any identifier (an EHR that de-duplicates by identifier would store
    /// everything twice).
    pub async fn fhir_identifier_system(
        &self,
        configured: Option<&str>,
        public_url: &str,
    ) -> Result<String, StoreError> {
        let configured = configured.map(str::to_owned);
        let public_url = public_url.to_owned();
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::pins::identifier_system(pg, configured.as_deref(), &public_url).await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| {
                    sqlite::pins::identifier_system(c, configured.as_deref(), &public_url)
                })
                .await
            }
        }
    }
}
