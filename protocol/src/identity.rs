//! Ed25519 identities (ring): the gateway's key, and the provider's key that signs receipts and
//! commands.
//!
//! The private key lives in a PKCS#8 (v2) DER file created with mode 0600. Loading refuses a
//! file that group or others can read: a leaked gateway key lets anyone write readings into a
//! patient's record, so a misconfigured file is an error the operator must fix, not a warning.
//! The public key (32 bytes) is the identity registered at enrollment.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Why a key could not be created, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key file can be read by group or others.
    #[error(
        "key file {path} has mode {mode:o}: it must be readable by its owner only (chmod 600 {path})"
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a valid Ed25519 PKCS#8 document.
    #[error("key file {path} is not an Ed25519 PKCS#8 key; move it aside to create a new identity")]
    InvalidKey {
        /// The key file.
        path: PathBuf,
    },
    /// The system random generator failed.
    #[error("could not generate a key: the system random source failed")]
    Random,
    /// A public key of the wrong length.
    #[error("public key has {0} bytes, expected 32")]
    PublicKeyLength(usize),
}

/// A signature that does not verify. Deliberately carries no detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("signature verification failed")]
pub struct BadSignature;

/// An Ed25519 private key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("public", &self.verifying_key())
            .finish()
    }
}

impl SigningKey {
    /// Generates a new key; returns it with its PKCS#8 document for storage.
    pub fn generate() -> Result<(Self, Vec<u8>), IdentityError> {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| IdentityError::Random)?;
        let pkcs8 = doc.as_ref().to_vec();
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| IdentityError::Random)?;
        Ok((Self { pair }, pkcs8))
    }

    /// Parses a PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Option<Self> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .ok()
            .map(|pair| Self { pair })
    }

    /// Loads the key at `path`, refusing a file readable by group or others.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = fs::read(path).map_err(io)?;
        Self::from_pkcs8(&bytes).ok_or_else(|| IdentityError::InvalidKey {
            path: path.to_path_buf(),
        })
    }

    /// Loads the key at `path`, or creates it (mode 0600, written atomically) when absent.
    /// Returns the key and whether it was created now.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), IdentityError> {
        match Self::load(path) {
            Ok(key) => Ok((key, false)),
            Err(IdentityError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let (key, pkcs8) = Self::generate()?;
                write_private(path, &pkcs8)?;
                Ok((key, true))
            }
            Err(e) => Err(e),
        }
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        let mut bytes = [0u8; PUBLIC_KEY_LEN];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        VerifyingKey(bytes)
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

/// Writes `bytes` to `path` with mode 0600: a temporary file in the same directory, fsync,
/// rename, fsync of the directory. A crash leaves either no key or the whole key.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerifyingKey([u8; PUBLIC_KEY_LEN]);

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", self.fingerprint())
    }
}

impl VerifyingKey {
    /// Wraps 32 public-key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: [u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| IdentityError::PublicKeyLength(bytes.len()))?;
        Ok(Self(arr))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// A short, loggable fingerprint of the key ([`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.0)
    }

    /// Verifies `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .map_err(|_| BadSignature)
    }
}

/// A short fingerprint of a key's bytes: the first 8 bytes of their SHA-256, in hex. Names a
/// key in logs and records without revealing it (a secret key too).
pub fn fingerprint(key: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    hex::encode(&d.as_ref()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/gateway.key");
        let (key, created) = SigningKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = SigningKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.verifying_key(), again.verifying_key());
    }

    #[test]
    fn key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.key");
        SigningKey::load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load(&path).unwrap_err();
        assert!(
            matches!(err, IdentityError::InsecurePermissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn garbage_key_file_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.key");
        write_private(&path, b"not a key").unwrap();
        let err = SigningKey::load(&path).unwrap_err();
        assert!(matches!(err, IdentityError::InvalidKey { .. }));
    }

    #[test]
    fn debug_output_holds_no_private_key() {
        let (key, pkcs8) = SigningKey::generate().unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode(&pkcs8[16..48])));
        assert!(shown.contains(&key.verifying_key().fingerprint()));
    }
}
