//! What the broker connection needs, read from the files named by `[mqtt]` when the provider
//! starts: the password, and for `mqtts://` a rustls client configuration (ring provider, passed
//! explicitly; never aws-lc) trusting only the roots of `mqtt.ca_file`, presenting the client
//! certificate when one is configured.
//!
//! Every failure names its key and file. A client key readable by other users is refused, as
//! the server key of `[tls]` is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::settings::{ClientIdentityFiles, MqttSettings, MqttTlsFiles};

/// Why the MQTT connection cannot be set up from its files.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    /// A file could not be read or holds nothing usable.
    #[error("mqtt.{key} {path}: {message}")]
    File {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The client key may be read by any user.
    #[error(
        "mqtt.client_key_file {0}: the private key is readable by other users; chmod 0600 or 0640 it"
    )]
    KeyExposed(PathBuf),
    /// rustls refused the client certificate and key (unsupported key, key not matching).
    #[error("mqtt.client_cert_file and mqtt.client_key_file refused: {0}")]
    ClientIdentity(String),
}

fn file_error(key: &'static str, path: &Path, message: impl ToString) -> MqttSetupError {
    MqttSetupError::File {
        key,
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Where the broker is and who we are, ready to connect.
#[derive(Debug, Clone)]
pub struct MqttIngestConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id (unique per provider instance).
    pub client_id: String,
    /// User name and password, when the broker needs them.
    pub credentials: Option<(String, String)>,
    /// TLS to the broker; `None` is plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Keep a persistent session (`clean_session = false`): what the broker queues while the
    /// provider restarts waits for it. Off for one of several instances sharing a store: a
    /// member's session then ends with its connection, so the broker gives its share of the
    /// messages to the instances still connected instead of keeping them for a member that may
    /// never come back.
    pub persistent_session: bool,
}

impl MqttIngestConfig {
    /// Reads the files named by the validated `[mqtt]` section.
    pub fn load(settings: &MqttSettings) -> Result<Self, MqttSetupError> {
        let credentials = match &settings.username {
            Some(user) => {
                let password = match &settings.password_file {
                    Some(path) => std::fs::read_to_string(path)
                        .map_err(|e| file_error("password_file", path, e))?
                        .trim_end_matches(['\r', '\n'])
                        .to_owned(),
                    None => String::new(),
                };
                Some((user.clone(), password))
            }
            None => None,
        };
        let tls = settings.tls.as_ref().map(client_config).transpose()?;
        Ok(Self {
            host: settings.host.clone(),
            port: settings.port,
            client_id: settings.client_id.clone(),
            credentials,
            tls,
            persistent_session: true,
        })
    }
}

/// The client id of one of several instances sharing a store: `{base}-{host}-{port}`, from
/// the machine's host name and the instance's HTTP port. Stable across the instance's
/// restarts (it finds its persistent session again and drains what the broker queued for it)
/// and distinct between instances (two connections with one client id would take the session
/// from each other in turn).
pub fn instance_client_id(base: &str, listen: std::net::SocketAddr) -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let host = if host.is_empty() { "host".into() } else { host };
    format!("{base}-{host}-{}", listen.port())
}

/// A rustls client configuration trusting only the roots of `files.ca_file`.
pub fn client_config(files: &MqttTlsFiles) -> Result<Arc<rustls::ClientConfig>, MqttSetupError> {
    let ca = &files.ca_file;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error("ca_file", ca, e))? {
        let cert = cert.map_err(|e| file_error("ca_file", ca, e))?;
        roots.add(cert).map_err(|e| file_error("ca_file", ca, e))?;
    }
    if roots.is_empty() {
        return Err(file_error("ca_file", ca, "no CERTIFICATE in the file"));
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| MqttSetupError::ClientIdentity(e.to_string()))?
    .with_root_certificates(roots);
    let config = match &files.client_identity {
        Some(identity) => {
            let (chain, key) = load_identity(identity)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| MqttSetupError::ClientIdentity(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn load_identity(
    files: &ClientIdentityFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), MqttSetupError> {
    let cert = &files.cert_file;
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error("client_cert_file", cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("client_cert_file", cert, e))?;
    if chain.is_empty() {
        return Err(file_error(
            "client_cert_file",
            cert,
            "no CERTIFICATE in the file",
        ));
    }
    let key = &files.key_file;
    let exposed = crate::http::tls::readable_by_others(key)
        .map_err(|e| file_error("client_key_file", key, e))?;
    if exposed {
        return Err(MqttSetupError::KeyExposed(key.clone()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("client_key_file", key, e))?;
    Ok((chain, private))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_has_a_client_id_of_its_own_that_survives_its_restarts() {
        let a = instance_client_id("tm-provider", "127.0.0.1:8443".parse().unwrap());
        let b = instance_client_id("tm-provider", "127.0.0.1:8444".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(
            a,
            instance_client_id("tm-provider", "0.0.0.0:8443".parse().unwrap())
        );
        assert!(a.starts_with("tm-provider-") && a.ends_with("-8443"), "{a}");
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{a}"
        );
    }

    fn tls(ca_file: PathBuf, identity: Option<(PathBuf, PathBuf)>) -> MqttTlsFiles {
        MqttTlsFiles {
            ca_file,
            client_identity: identity.map(|(cert_file, key_file)| ClientIdentityFiles {
                cert_file,
                key_file,
            }),
        }
    }

    #[test]
    fn unreadable_and_empty_files_are_named_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = client_config(&tls(dir.path().join("absent.pem"), None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mqtt.ca_file") && err.contains("absent.pem"),
            "{err}"
        );
        let err = client_config(&tls(empty.clone(), None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mqtt.ca_file") && err.contains("no CERTIFICATE"),
            "{err}"
        );

        let settings = MqttSettings {
            host: "127.0.0.1".into(),
            port: 1883,
            tls: None,
            client_id: "p".into(),
            username: Some("p".into()),
            password_file: Some(dir.path().join("no-password")),
        };
        let err = MqttIngestConfig::load(&settings).unwrap_err().to_string();
        assert!(err.contains("mqtt.password_file"), "{err}");
    }

    #[test]
    fn a_client_identity_loads_unless_its_key_is_exposed_or_foreign() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["tm-provider".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let (cert_file, key_file) = (dir.path().join("client.pem"), dir.path().join("client.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let mode = |m| std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(m));

        mode(0o600).unwrap();
        let identity = Some((cert_file.clone(), key_file.clone()));
        client_config(&tls(ca_file.clone(), identity.clone())).unwrap();

        mode(0o644).unwrap();
        let err = client_config(&tls(ca_file.clone(), identity.clone())).unwrap_err();
        assert!(
            matches!(&err, MqttSetupError::KeyExposed(p) if *p == key_file),
            "{err}"
        );

        // A key that does not belong to the certificate.
        std::fs::write(
            &key_file,
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        mode(0o600).unwrap();
        let err = client_config(&tls(ca_file, identity)).unwrap_err();
        assert!(matches!(err, MqttSetupError::ClientIdentity(_)), "{err}");
    }

    #[test]
    fn the_password_is_read_without_its_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let settings = MqttSettings {
            host: "broker".into(),
            port: 8883,
            tls: None,
            client_id: "p".into(),
            username: Some("provider".into()),
            password_file: Some(file),
        };
        let cfg = MqttIngestConfig::load(&settings).unwrap();
        assert_eq!(
            cfg.credentials,
            Some(("provider".to_owned(), "s3cret".to_owned()))
        );
        assert!(cfg.tls.is_none());
    }
}
