//! TLS for both transports: rustls with the ring provider only (never aws-lc). Roots come from
//! the configured CA file (`[sync] ca_file`); client certificates (MQTT mutual TLS) from PEM
//! files. Every HTTPS client of the agent (`enroll`, the sync link, the command poll, `doctor`)
//! gets its roots from [`https_client_builder`], so a provider whose certificate a private CA
//! signs is trusted by all of them or by none.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::LinkError;
use super::config::SyncConfig;

/// Makes ring the process-wide rustls provider (reqwest is built without one).
pub fn install_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client builder trusting the system roots and, when `[sync] ca_file` is set, every
/// CA certificate in that PEM file.
pub fn https_client_builder(cfg: &SyncConfig) -> Result<reqwest::ClientBuilder, LinkError> {
    install_ring_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca).map_err(|source| LinkError::Credential {
            path: ca.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| LinkError::Tls(format!("sync.ca_file {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(LinkError::Tls(format!(
                "sync.ca_file {} holds no PEM certificate",
                ca.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

/// A rustls client configuration for the broker, from the `[sync]` settings.
pub fn mqtt_client_config(cfg: &SyncConfig) -> Result<Arc<rustls::ClientConfig>, LinkError> {
    let tls = |e: &dyn std::fmt::Display| LinkError::Tls(e.to_string());
    let ca = cfg.ca_file.as_ref().ok_or_else(|| {
        LinkError::Tls("mqtts:// needs sync.ca_file (the CA of the broker's certificate)".into())
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls(&e))? {
        roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(&e))?
    .with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| tls(&e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls(&e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls(&e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
