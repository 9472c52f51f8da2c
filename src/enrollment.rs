//! The gateway's enrollment: what the provider answered, kept in the state directory as
//! `enrollment.json` (mode 0600, written atomically). Its presence means the gateway is
//! enrolled; the agent reads its gateway id, the provider's public key and the sync settings
//! from it. It holds no patient data.
//!
//! Two ways lead to it, and both check the provider's answer with [`Enrollment::from_answer`]:
//! `tm-gateway enroll` (the nurse's one-time code) and the claim hello of an unenrolled
//! `tm-gateway run` ([`crate::claim`]). The answer is a frame signed by `provider` that
//! carries the provider's public key; it must verify under that very key, so a corrupted or
//! substituted answer is refused. (Trust in the key itself comes from the TLS connection to the
//! configured provider.)
//!
//! A `release` command ([`Enrollment::release`]) moves the file aside as
//! `enrollment.json.released`: the gateway is then unenrolled, keeps its key (and so its claim
//! code) and its outbox, and announces itself again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tm_protocol::{GatewayId, SyncSettings, VerifyingKey};

/// File name inside the state directory.
pub const FILE_NAME: &str = "enrollment.json";
/// Where a released enrollment is kept (the newest release replaces an older one), for an
/// operator who wants to know what the gateway was enrolled as.
pub const RELEASED_FILE_NAME: &str = "enrollment.json.released";
/// The signer id of the provider's frames.
pub const PROVIDER_SIGNER: &str = "provider";

/// Why the provider's enrollment answer is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The body is not a signed frame.
    #[error("the provider's answer is not a frame: {0}")]
    NotAFrame(String),
    /// Signed by someone else than `provider`.
    #[error("the answer is not signed by the provider (signer {0:?})")]
    WrongSigner(String),
    /// The payload is not an enrollment response.
    #[error("the provider's answer is not an enrollment response: {0}")]
    Malformed(String),
    /// The key the answer carries is not an Ed25519 public key.
    #[error("the provider's answer carries no valid provider key")]
    BadKey,
    /// The signature does not verify under the key the answer carries.
    #[error("the provider's answer does not verify: {0}")]
    Forged(String),
}

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
    /// Checks the provider's answer `body` (an `EnrollmentResponse` frame, signed by
    /// `provider` under the key it carries) and builds the enrollment it grants, as enrolled
    /// with the provider at `provider_url` at `now`. Nothing is saved.
    pub fn from_answer(
        body: &[u8],
        provider_url: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self, AnswerError> {
        let frame =
            tm_protocol::Frame::parse(body).map_err(|e| AnswerError::NotAFrame(e.to_string()))?;
        if frame.signer() != PROVIDER_SIGNER {
            return Err(AnswerError::WrongSigner(frame.signer().to_owned()));
        }
        let response: tm_protocol::EnrollmentResponse =
            tm_protocol::decode(frame.unverified_payload())
                .map_err(|e| AnswerError::Malformed(e.to_string()))?;
        let provider_key = VerifyingKey::from_bytes(&response.provider_public_key)
            .map_err(|_| AnswerError::BadKey)?;
        frame
            .verify(tm_protocol::MessageKind::EnrollmentResponse, &provider_key)
            .map_err(|e| AnswerError::Forged(e.to_string()))?;
        Ok(Self {
            gateway_id: response.gateway_id,
            provider_url: provider_url.trim_end_matches('/').to_owned(),
            provider_public_key: response.provider_public_key,
            sync: response.sync,
            enrolled_at: now,
        })
    }

    /// Moves the enrollment of `state_dir` aside to [`RELEASED_FILE_NAME`] (atomically, over
    /// an older one): from then on the gateway is not enrolled. Returns the new path.
    pub fn release(state_dir: &Path) -> Result<PathBuf, EnrollmentError> {
        let from = Self::path(state_dir);
        let to = state_dir.join(RELEASED_FILE_NAME);
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(to),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(EnrollmentError::NotEnrolled { path: from })
            }
            Err(source) => Err(EnrollmentError::Io { path: from, source }),
        }
    }

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
        // Released: moved aside, and the gateway is no longer enrolled.
        let aside = Enrollment::release(dir.path()).unwrap();
        assert_eq!(aside, dir.path().join(RELEASED_FILE_NAME));
        assert!(matches!(
            Enrollment::load(dir.path()),
            Err(EnrollmentError::NotEnrolled { .. })
        ));
        assert!(matches!(
            Enrollment::release(dir.path()),
            Err(EnrollmentError::NotEnrolled { .. })
        ));
    }

    fn answer(
        signer: &str,
        carried: &tm_protocol::SigningKey,
        signing: &tm_protocol::SigningKey,
    ) -> Vec<u8> {
        let response = tm_protocol::EnrollmentResponse {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: GatewayId::new("gw-claimed").unwrap(),
            provider_public_key: carried.verifying_key().as_bytes().to_vec(),
            sync: SyncSettings {
                transport: Transport::Https,
                https_url: "https://provider.example".into(),
                mqtt_url: None,
                heartbeat_interval_s: 60,
            },
        };
        tm_protocol::seal(
            tm_protocol::MessageKind::EnrollmentResponse,
            signer,
            &tm_protocol::encode(&response),
            signing,
        )
    }

    #[test]
    fn an_answer_is_accepted_only_under_the_key_it_carries() {
        let (provider, _) = tm_protocol::SigningKey::generate().unwrap();
        let (other, _) = tm_protocol::SigningKey::generate().unwrap();
        let now = chrono::Utc::now();
        let ok = Enrollment::from_answer(
            &answer("provider", &provider, &provider),
            "https://provider.example/",
            now,
        )
        .unwrap();
        assert_eq!(ok.gateway_id.as_str(), "gw-claimed");
        assert_eq!(ok.provider_url, "https://provider.example");
        assert_eq!(ok.provider_key(), Some(provider.verifying_key()));
        assert!(matches!(
            Enrollment::from_answer(&answer("provider", &provider, &other), "x", now),
            Err(AnswerError::Forged(_))
        ));
        assert!(matches!(
            Enrollment::from_answer(&answer("gw-1", &provider, &provider), "x", now),
            Err(AnswerError::WrongSigner(_))
        ));
        assert!(matches!(
            Enrollment::from_answer(b"{\"status\":\"unclaimed\"}", "x", now),
            Err(AnswerError::NotAFrame(_))
        ));
    }
}
