//! HTTPS for the provider's server: rustls with the ring provider, TLS 1.2 and 1.3, the
//! certificate chain and private key read from PEM files (`[tls]` in the configuration).
//!
//! Each handshake runs in its connection's own task ([`super::server`]), bounded by
//! [`HANDSHAKE_TIMEOUT`], so a client that opens a connection and says nothing cannot hold up
//! anyone else. The certificate is read again on [`Certificates::reload`]
//! (the server calls it on SIGHUP, which `systemctl reload tm-provider` sends): a renewed
//! certificate is served to new connections without a restart, and a renewal that does not
//! load (unreadable, mismatched key) is refused with an error while the current one stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

/// Installs ring as the process's rustls provider (never aws-lc); harmless when already done.
/// Every TLS user of the provider (this server, the HUB client, the MQTT ingest) calls it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Longest a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[tls]`: serve HTTPS with this certificate.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file with the server certificate first, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1); must not be readable by others.
    pub key_file: PathBuf,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The key file may be read by any user.
    #[error("{0}: the private key is readable by other users; chmod 0600 or 0640 it")]
    KeyExposed(PathBuf),
    /// rustls refused the pair (unsupported key, key not matching the certificate).
    #[error("certificate and key refused: {0}")]
    Refused(String),
}

/// The served certificate, replaceable while running.
#[derive(Debug)]
pub struct Certificates {
    files: TlsSection,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Loads the files named by `files`.
    pub fn load(files: TlsSection) -> Result<Arc<Self>, TlsError> {
        let current = RwLock::new(load_pair(&files)?);
        Ok(Arc::new(Self { files, current }))
    }

    /// Reads the files again; on success new handshakes use the new certificate, on failure the
    /// current one stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_pair(&self.files)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// A rustls server configuration presenting the current certificate.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn load_pair(files: &TlsSection) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| file_error(&files.cert_file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(&files.cert_file, e))?;
    if chain.is_empty() {
        return Err(file_error(&files.cert_file, "no CERTIFICATE in the file"));
    }
    refuse_exposed_key(&files.key_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| file_error(&files.key_file, e))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| TlsError::Refused(e.to_string()))?;
    Ok(Arc::new(certified))
}

fn refuse_exposed_key(path: &Path) -> Result<(), TlsError> {
    if readable_by_others(path).map_err(|e| file_error(path, e))? {
        return Err(TlsError::KeyExposed(path.to_path_buf()));
    }
    Ok(())
}

/// Whether any user may read `path` (a private key must not be); the MQTT client key is held
/// to the same rule.
#[cfg(unix)]
pub(crate) fn readable_by_others(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt as _;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
pub(crate) fn readable_by_others(path: &Path) -> std::io::Result<bool> {
    std::fs::metadata(path).map(|_| false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let files = TlsSection {
            cert_file: dir.path().join("absent.pem"),
            key_file: empty.clone(),
        };
        let err = Certificates::load(files).unwrap_err().to_string();
        assert!(err.contains("absent.pem"), "{err}");
        let files = TlsSection {
            cert_file: empty,
            key_file: dir.path().join("k.pem"),
        };
        let err = Certificates::load(files).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}
