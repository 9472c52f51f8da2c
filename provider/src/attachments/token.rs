//! Signed attachment URIs: unguessable, bound to the prescriber, time-limited.
//!
//! `token = <expires>.<prescriber, base64url>.<mac, base64url>` with
//! `mac = HMAC-SHA256(key, domain | session | attachment | prescriber | expires)`, every field
//! length-prefixed. The MAC is checked before anything is looked up, so a wrong, tampered or
//! expired token learns nothing about whether the session exists; after it, the session's own
//! prescriber must equal the token's (a token minted for one hospital is refused for another).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::hmac;

const DOMAIN: &[u8] = b"tm-provider-attachment-uri/v1";
/// A key shorter than this is refused: HMAC-SHA256 wants at least its output size.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cannot read the attachment signing key {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Too short to be a key.
    #[error(
        "the attachment signing key has {0} bytes; it needs at least {MIN_KEY_BYTES} (e.g. `head -c 32 /dev/urandom > key`)"
    )]
    TooShort(usize),
}

/// Why a token is refused. The HTTP layer answers all of them with the same 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the token's shape.
    #[error("malformed token")]
    Malformed,
    /// The MAC does not match: tampered, or for another session or attachment.
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("expired")]
    Expired,
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The prescriber the URI was issued to.
    pub prescriber_id: String,
    /// When it stops working.
    pub expires: DateTime<Utc>,
}

/// Signs and verifies attachment tokens with one HMAC key.
pub struct UriSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for UriSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UriSigner(<key>)")
    }
}

impl UriSigner {
    /// A signer over `key` (at least [`MIN_KEY_BYTES`]).
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(key.len()));
        }
        Ok(UriSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    /// Reads the key from a file (raw bytes; keep it mode 0600, never in the config file).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let key = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::new(&key)
    }

    fn message(session: &str, attachment: &str, prescriber: &str, expires: i64) -> Vec<u8> {
        let mut msg = Vec::new();
        for part in [
            DOMAIN,
            session.as_bytes(),
            attachment.as_bytes(),
            prescriber.as_bytes(),
            &expires.to_be_bytes(),
        ] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            msg.extend_from_slice(&len.to_be_bytes());
            msg.extend_from_slice(part);
        }
        msg
    }

    /// A token for `attachment` of `session`, issued to `prescriber`, valid until `expires`.
    pub fn sign(
        &self,
        session: &str,
        attachment: &str,
        prescriber: &str,
        expires: DateTime<Utc>,
    ) -> String {
        let t = expires.timestamp();
        let tag = hmac::sign(
            &self.key,
            &Self::message(session, attachment, prescriber, t),
        );
        format!(
            "{t}.{}.{}",
            URL_SAFE_NO_PAD.encode(prescriber),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// Checks `token` for `attachment` of `session` at `now`.
    pub fn verify(
        &self,
        session: &str,
        attachment: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Grant, TokenError> {
        let mut parts = token.splitn(3, '.');
        let (Some(t), Some(p), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let t: i64 = t.parse().map_err(|_| TokenError::Malformed)?;
        let prescriber = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(TokenError::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(
            &self.key,
            &Self::message(session, attachment, &prescriber, t),
            &mac,
        )
        .map_err(|_| TokenError::BadSignature)?;
        let expires = DateTime::from_timestamp(t, 0).ok_or(TokenError::Malformed)?;
        if now >= expires {
            return Err(TokenError::Expired);
        }
        Ok(Grant {
            prescriber_id: prescriber,
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn signer() -> UriSigner {
        UriSigner::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn a_token_verifies_only_for_its_session_attachment_and_time() {
        let s = signer();
        let now = Utc::now();
        let tok = s.sign("tm-1", "pdf-en", "hosp-a", now + Duration::hours(1));
        let g = s.verify("tm-1", "pdf-en", &tok, now).unwrap();
        assert_eq!(g.prescriber_id, "hosp-a");
        assert_eq!(
            s.verify("tm-2", "pdf-en", &tok, now),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            s.verify("tm-1", "fhir", &tok, now),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            s.verify("tm-1", "pdf-en", &tok, now + Duration::hours(2)),
            Err(TokenError::Expired)
        );
        // Another prescriber in the token, or a later expiry, breaks the MAC.
        let parts: Vec<&str> = tok.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode("hosp-b"),
            parts[2]
        );
        assert_eq!(
            s.verify("tm-1", "pdf-en", &forged, now),
            Err(TokenError::BadSignature)
        );
        let later = format!("{}.{}.{}", now.timestamp() + 99_999, parts[1], parts[2]);
        assert_eq!(
            s.verify("tm-1", "pdf-en", &later, now),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            s.verify("tm-1", "pdf-en", "x", now),
            Err(TokenError::Malformed)
        );
        let other = UriSigner::new(&[8u8; 32]).unwrap();
        assert_eq!(
            other.verify("tm-1", "pdf-en", &tok, now),
            Err(TokenError::BadSignature)
        );
        assert!(matches!(
            UriSigner::new(&[1; 16]),
            Err(KeyError::TooShort(16))
        ));
    }
}
