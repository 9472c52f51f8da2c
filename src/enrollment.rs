//! The gateway's enrollment: what `tm-gateway enroll` received from the provider, kept in the
//! state directory as `enrollment.json` (mode 0600, written atomically). Its presence means the
//! gateway is enrolled; the agent reads its gateway id, the provider's public key and the sync
//! settings from it. It holds no patient data.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tm_protocol::{GatewayId, SyncSettings, VerifyingKey};

/// File name inside the state directory.
pub const FILE_NAME: &str = "enrollment.json";

/// Why the enrollment file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EnrollmentError {
    /// No enrollment yet.
    #[error(
        "this gateway is not enrolled ({path} missing): run `tm-gateway enroll --provider URL --code CODE`"
    )]
    NotEnrolled {
        /// The expected file.
        path: PathBuf,
    },
    /// Read or write failure.
    #[error("enrollment file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid JSON of the expected shape.
    #[error("enrollment file {path} is corrupt ({message}): enroll the gateway again")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// The stored enrollment. Written once by `tm-gateway enroll` (a new enrollment replaces it);
/// the agent only reads it, at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// The gateway's id as the provider's answer named it: the signer of every frame the
    /// gateway sends, the MQTT client id and part of its topics.
    pub gateway_id: GatewayId,
    /// The provider base URL given to `enroll`; shown by `doctor`. Syncing uses the URLs in
    /// `sync`, which may differ.
    pub provider_url: String,
    /// The provider's Ed25519 public key (32 bytes, base64 in the file): receipts and commands
    /// are accepted only under it. Not a valid key: the agent refuses to start.
    #[serde(with = "tm_protocol::messages::b64")]
    pub provider_public_key: Vec<u8>,
    /// The transport, the HTTPS and broker URLs and the heartbeat interval, as the provider
    /// chose them; `[sync] heartbeat_interval_s` in the configuration overrides the interval.
    pub sync: SyncSettings,
    /// When `enroll` stored the provider's answer (the gateway's clock).
    pub enrolled_at: chrono::DateTime<chrono::Utc>,
}

impl Enrollment {
    /// The path of the enrollment file in `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Loads the enrollment from `state_dir`.
    pub fn load(state_dir: &Path) -> Result<Self, EnrollmentError> {
        let path = Self::path(state_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EnrollmentError::NotEnrolled { path });
            }
            Err(source) => return Err(EnrollmentError::Io { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| EnrollmentError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// Saves atomically with mode 0600.
    pub fn save(&self, state_dir: &Path) -> Result<(), EnrollmentError> {
        let path = Self::path(state_dir);
        let bytes = serde_json::to_vec_pretty(self).expect("enrollment always serializes");
        tm_protocol::identity::write_private(&path, &bytes).map_err(|e| match e {
            tm_protocol::IdentityError::Io { path, source } => EnrollmentError::Io { path, source },
            other => EnrollmentError::Io {
                path,
                source: std::io::Error::other(other.to_string()),
            },
        })
    }

    /// The provider's verifying key; `None` when `provider_public_key` is not a valid key.
    pub fn provider_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.provider_public_key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tm_protocol::Transport;

    #[test]
    fn save_load_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = Enrollment::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("tm-gateway enroll"), "{err}");
        let e = Enrollment {
            gateway_id: GatewayId::new("gw-1").unwrap(),
            provider_url: "https://provider.example".into(),
            provider_public_key: vec![7; 32],
            sync: SyncSettings {
                transport: Transport::Https,
                https_url: "https://provider.example".into(),
                mqtt_url: None,
                heartbeat_interval_s: 60,
            },
            enrolled_at: chrono::Utc::now(),
        };
        e.save(dir.path()).unwrap();
        assert_eq!(Enrollment::load(dir.path()).unwrap(), e);
        std::fs::write(Enrollment::path(dir.path()), b"{").unwrap();
        assert!(matches!(
            Enrollment::load(dir.path()),
            Err(EnrollmentError::Corrupt { .. })
        ));
    }
}
