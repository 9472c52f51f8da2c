//! `[mqtt]`: where the broker is, how the provider proves who it is, and how it verifies the
//! broker.
//!
//! The file shape ([`MqttFile`]) is checked when the configuration is loaded and becomes
//! [`MqttSettings`]; every error names the key at fault. The files it names (password, CA,
//! client certificate and key) are read when the provider starts
//! ([`super::MqttIngestConfig::load`]), so a missing or unreadable file stops the start with a
//! message naming its key, instead of a connection that keeps failing.
//!
//! - `mqtt://host[:port]` (default port 1883) is plain TCP: for a broker on loopback or behind a
//!   TLS-terminating sidecar. The TLS keys are refused with it, so a configuration never looks
//!   encrypted when it is not.
//! - `mqtts://host[:port]` (default port 8883) is TLS (rustls, ring). The broker's certificate
//!   is verified against the roots in `ca_file` only, which is therefore required (as on the
//!   gateway): brokers for this fleet carry certificates of a private CA, and trusting every
//!   public CA as well would accept any certificate issued for the broker's name.
//!   `client_cert_file` and `client_key_file` (both or neither) present a client certificate to
//!   a broker that requires one (mutual TLS); `username` and `password_file` work on both.

use std::path::PathBuf;

use serde::Deserialize;
use tm_protocol::config_file::ConfigError;

/// Port of `mqtt://` without one.
pub const DEFAULT_PORT: u16 = 1883;
/// Port of `mqtts://` without one.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// `[mqtt]` as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttFile {
    /// `mqtts://host[:port]` (TLS), or `mqtt://host[:port]` (loopback or a TLS-terminating
    /// broker sidecar).
    pub url: String,
    /// Client id; unique per provider instance (the subscription is shared). With a PostgreSQL
    /// store (several instances) it is the base of each instance's own id:
    /// `{client_id}-{host name}-{HTTP port}`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (only with `username`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file with the CA certificate(s) the broker's certificate must chain to; required
    /// with `mqtts://`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file with the provider's client certificate, then its intermediates (mutual TLS).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM file with the client certificate's private key; must not be readable by others.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

fn default_client_id() -> String {
    "tm-provider".into()
}

/// The validated `[mqtt]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// Broker host (name or IP address; a name is also what the certificate must carry).
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS files, with `mqtts://`; `None` is plain TCP.
    pub tls: Option<MqttTlsFiles>,
    /// MQTT client id.
    pub client_id: String,
    /// User name, when the broker needs one.
    pub username: Option<String>,
    /// The password's file, with `username`.
    pub password_file: Option<PathBuf>,
}

/// What `mqtts://` reads at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTlsFiles {
    /// The roots the broker's certificate is verified against.
    pub ca_file: PathBuf,
    /// The client certificate and key, for a broker that requires one.
    pub client_identity: Option<ClientIdentityFiles>,
}

/// A client certificate chain and its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentityFiles {
    /// Certificate, then intermediates.
    pub cert_file: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// `(tls, host, port)` of a broker URL.
fn parse_url(url: &str) -> Result<(bool, String, u16), ConfigError> {
    let bad = |why: &str| {
        invalid(format!(
            "mqtt.url {url:?}: {why} (expected mqtts://host[:port] or mqtt://host[:port])"
        ))
    };
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        return Err(bad("must start with mqtts:// or mqtt://"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#', '[', ']']) {
        return Err(bad("only a host and a port may follow the scheme"));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(p) if p > 0 => (host, p),
            _ => return Err(bad("bad port")),
        },
        None if tls => (rest, DEFAULT_TLS_PORT),
        None => (rest, DEFAULT_PORT),
    };
    if host.is_empty() || host.contains(':') {
        return Err(bad("no host"));
    }
    Ok((tls, host.to_owned(), port))
}

impl TryFrom<MqttFile> for MqttSettings {
    type Error = ConfigError;

    fn try_from(f: MqttFile) -> Result<Self, ConfigError> {
        let (tls, host, port) = parse_url(&f.url)?;
        if f.client_id.is_empty() {
            return Err(invalid("mqtt.client_id must not be empty"));
        }
        if f.password_file.is_some() && f.username.is_none() {
            return Err(invalid("mqtt.password_file needs mqtt.username"));
        }
        let client_identity = match (f.client_cert_file, f.client_key_file) {
            (Some(cert_file), Some(key_file)) => Some(ClientIdentityFiles {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "mqtt.client_cert_file needs mqtt.client_key_file (both or neither)",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "mqtt.client_key_file needs mqtt.client_cert_file (both or neither)",
                ));
            }
        };
        let tls = if tls {
            let ca_file = f.ca_file.ok_or_else(|| {
                invalid(format!(
                    "mqtt.url {:?} is TLS: set mqtt.ca_file to the PEM file of the CA that \
                     issued the broker's certificate",
                    f.url
                ))
            })?;
            Some(MqttTlsFiles {
                ca_file,
                client_identity,
            })
        } else {
            if f.ca_file.is_some() || client_identity.is_some() {
                return Err(invalid(format!(
                    "mqtt.ca_file, mqtt.client_cert_file and mqtt.client_key_file apply to \
                     TLS only: use an mqtts:// url (got {:?})",
                    f.url
                )));
            }
            None
        };
        Ok(Self {
            host,
            port,
            tls,
            client_id: f.client_id,
            username: f.username,
            password_file: f.password_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<MqttSettings, String> {
        let file: MqttFile = toml::from_str(text).map_err(|e| e.to_string())?;
        MqttSettings::try_from(file).map_err(|e| e.to_string())
    }

    #[test]
    fn urls_and_default_ports() {
        let s = settings("url = 'mqtt://127.0.0.1'").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.tls), ("127.0.0.1", 1883, None));
        let s = settings("url = 'mqtts://broker.example/'\nca_file = 'ca.pem'").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("broker.example", 8883));
        assert_eq!(
            s.tls,
            Some(MqttTlsFiles {
                ca_file: "ca.pem".into(),
                client_identity: None
            })
        );
        let s = settings("url = 'mqtts://b:8884'\nca_file = 'ca.pem'").unwrap();
        assert_eq!(s.port, 8884);
        for (url, why) in [
            ("tcp://b:1883", "must start with"),
            ("mqtt://:1883", "no host"),
            ("mqtt://b:0", "bad port"),
            ("mqtt://b:99999", "bad port"),
            ("mqtt://b:x", "bad port"),
            ("mqtt://u@b:1883", "only a host and a port"),
            ("mqtt://b:1883/topic", "only a host and a port"),
        ] {
            let err = settings(&format!("url = '{url}'")).unwrap_err();
            assert!(
                err.contains("mqtt.url") && err.contains(why),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn tls_needs_a_ca_and_a_complete_client_identity() {
        let err = settings("url = 'mqtts://b'").unwrap_err();
        assert!(err.contains("mqtt.ca_file"), "{err}");
        let err = settings("url = 'mqtts://b'\nca_file = 'ca.pem'\nclient_cert_file = 'c.pem'")
            .unwrap_err();
        assert!(err.contains("mqtt.client_key_file"), "{err}");
        let err = settings("url = 'mqtts://b'\nca_file = 'ca.pem'\nclient_key_file = 'k.pem'")
            .unwrap_err();
        assert!(err.contains("mqtt.client_cert_file"), "{err}");
        let s = settings(
            "url = 'mqtts://b'\nca_file = 'ca.pem'\nclient_cert_file = 'c.pem'\n\
             client_key_file = 'k.pem'\nusername = 'p'\npassword_file = 'pw'",
        )
        .unwrap();
        let identity = s.tls.unwrap().client_identity.unwrap();
        assert_eq!(
            (identity.cert_file, identity.key_file),
            ("c.pem".into(), "k.pem".into())
        );
        assert_eq!(s.username.as_deref(), Some("p"));
    }

    #[test]
    fn tls_keys_are_refused_on_plain_tcp() {
        for extra in [
            "ca_file = 'ca.pem'",
            "client_cert_file = 'c.pem'\nclient_key_file = 'k.pem'",
        ] {
            let err = settings(&format!("url = 'mqtt://b'\n{extra}")).unwrap_err();
            assert!(err.contains("mqtts://"), "{extra}: {err}");
        }
    }

    #[test]
    fn a_password_needs_a_user_and_unknown_keys_are_refused() {
        let err = settings("url = 'mqtt://b'\npassword_file = 'pw'").unwrap_err();
        assert!(err.contains("mqtt.username"), "{err}");
        let err = settings("url = 'mqtt://b'\ncafile = 'ca.pem'").unwrap_err();
        assert!(err.contains("unknown field `cafile`"), "{err}");
    }
}
