//! The signed frame: the envelope of every message on MQTT and HTTPS.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "TMF1"
//! 4       1     kind (MessageKind)
//! 5       1     signer id length n (1..=64)
//! 6       n     signer id (gateway id, or "provider", or "enroll")
//! 6+n     64    Ed25519 signature
//! 70+n    ...   payload: the message's JSON bytes, exactly as signed
//! ```
//!
//! The signature covers `"tm-frame/v1" || kind || n || signer id || payload`: the kind and the
//! signer are bound to the payload, so a valid heartbeat cannot be replayed as a batch, nor one
//! gateway's bytes be presented under another's id. The payload is verified as bytes *before*
//! it is parsed, so a forged frame never reaches the JSON parser.
//!
//! Usage: the receiver calls [`Frame::parse`] to learn the signer, looks up that signer's
//! enrolled key, then [`Frame::verify`] returns the authenticated payload.

use crate::identity::{BadSignature, SIGNATURE_LEN, SigningKey, VerifyingKey};
use crate::limits::{MAX_FRAME_BYTES, MAX_ID_BYTES};

const MAGIC: &[u8; 4] = b"TMF1";
const DOMAIN: &[u8] = b"tm-frame/v1";
const HEADER_LEN: usize = 6;

/// What a frame carries; part of the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    /// A [`crate::ReadingBatch`], signed by the gateway.
    ReadingBatch = 1,
    /// A [`crate::Receipt`], signed by the provider.
    Receipt = 2,
    /// A [`crate::Heartbeat`], signed by the gateway.
    Heartbeat = 3,
    /// A [`crate::Command`], signed by the provider.
    Command = 4,
    /// An [`crate::EnrollmentRequest`], signed by the new gateway key.
    EnrollmentRequest = 5,
    /// An [`crate::EnrollmentResponse`], signed by the provider.
    EnrollmentResponse = 6,
    /// A [`crate::CommandResult`], signed by the gateway.
    CommandResult = 7,
    /// A [`crate::Status`] (MQTT liveness), signed by the gateway.
    Status = 8,
    /// A [`crate::setup::ClaimHello`], signed by the unenrolled gateway's key.
    ClaimHello = 9,
}

impl MessageKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::ReadingBatch,
            2 => Self::Receipt,
            3 => Self::Heartbeat,
            4 => Self::Command,
            5 => Self::EnrollmentRequest,
            6 => Self::EnrollmentResponse,
            7 => Self::CommandResult,
            8 => Self::Status,
            9 => Self::ClaimHello,
            _ => return None,
        })
    }
}

/// Why bytes are not an acceptable frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Larger than the frame limit.
    #[error("frame of {0} bytes exceeds MAX_FRAME_BYTES ({MAX_FRAME_BYTES})")]
    TooLarge(usize),
    /// Shorter than its own header says.
    #[error("frame truncated: {0} bytes")]
    Truncated(usize),
    /// Not a frame of this protocol version.
    #[error("not a tm frame (bad magic); the peer may speak another protocol version")]
    BadMagic,
    /// Unknown message kind byte.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// Signer id empty, too long or not a slug.
    #[error("invalid signer id in frame")]
    BadSigner,
    /// The frame holds another kind than expected.
    #[error("expected a {expected:?} frame, got {found:?}")]
    WrongKind {
        /// What the receiver expected.
        expected: MessageKind,
        /// What the frame holds.
        found: MessageKind,
    },
    /// The signature does not verify against the signer's key.
    #[error(transparent)]
    BadSignature(#[from] BadSignature),
}

/// A parsed, not yet verified frame borrowing the received bytes.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    kind: MessageKind,
    signer: &'a str,
    signature: &'a [u8],
    payload: &'a [u8],
}

fn signed_message(kind: MessageKind, signer: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 2 + signer.len() + payload.len());
    m.extend_from_slice(DOMAIN);
    m.push(kind as u8);
    // The signer length is bounded by MAX_ID_BYTES (64), so it fits a byte.
    m.push(u8::try_from(signer.len()).unwrap_or(u8::MAX));
    m.extend_from_slice(signer.as_bytes());
    m.extend_from_slice(payload);
    m
}

fn valid_signer(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_BYTES
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Seals `payload` into a frame signed by `key` on behalf of `signer`.
///
/// Panics if `signer` is not a valid id (1-64 of `a-z0-9-`): signer ids come from
/// [`crate::GatewayId`] or constants, never from outside input.
pub fn seal(kind: MessageKind, signer: &str, payload: &[u8], key: &SigningKey) -> Vec<u8> {
    assert!(
        valid_signer(signer),
        "signer id must be a slug of at most 64 bytes"
    );
    let signature = key.sign(&signed_message(kind, signer, payload));
    let mut out = Vec::with_capacity(HEADER_LEN + signer.len() + SIGNATURE_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.push(u8::try_from(signer.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(signer.as_bytes());
    out.extend_from_slice(&signature);
    out.extend_from_slice(payload);
    out
}

impl<'a> Frame<'a> {
    /// Parses the frame structure without verifying the signature.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(bytes.len()));
        }
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::Truncated(bytes.len()));
        }
        if &bytes[..4] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        let kind = MessageKind::from_u8(bytes[4]).ok_or(FrameError::UnknownKind(bytes[4]))?;
        let n = usize::from(bytes[5]);
        let sig_start = HEADER_LEN + n;
        let payload_start = sig_start + SIGNATURE_LEN;
        if bytes.len() < payload_start {
            return Err(FrameError::Truncated(bytes.len()));
        }
        let signer = std::str::from_utf8(&bytes[HEADER_LEN..sig_start])
            .map_err(|_| FrameError::BadSigner)?;
        if !valid_signer(signer) {
            return Err(FrameError::BadSigner);
        }
        Ok(Self {
            kind,
            signer,
            signature: &bytes[sig_start..payload_start],
            payload: &bytes[payload_start..],
        })
    }

    /// The message kind.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Who claims to have signed it; look up that signer's key, then [`Self::verify`].
    pub fn signer(&self) -> &'a str {
        self.signer
    }

    /// Checks the kind, then the signature; returns the authenticated payload bytes.
    pub fn verify(
        &self,
        expected: MessageKind,
        key: &VerifyingKey,
    ) -> Result<&'a [u8], FrameError> {
        if self.kind != expected {
            return Err(FrameError::WrongKind {
                expected,
                found: self.kind,
            });
        }
        key.verify(
            &signed_message(self.kind, self.signer, self.payload),
            self.signature,
        )?;
        Ok(self.payload)
    }

    /// The payload before verification: only for reading the claimed signer's own data when
    /// the key is inside the payload (enrollment, where the frame proves possession of it).
    pub fn unverified_payload(&self) -> &'a [u8] {
        self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (key, _) = SigningKey::generate().unwrap();
        let framed = seal(MessageKind::Heartbeat, "gw-1", b"{\"v\":1}", &key);
        let frame = Frame::parse(&framed).unwrap();
        assert_eq!(frame.signer(), "gw-1");
        assert_eq!(frame.kind(), MessageKind::Heartbeat);
        let payload = frame
            .verify(MessageKind::Heartbeat, &key.verifying_key())
            .unwrap();
        assert_eq!(payload, b"{\"v\":1}");
    }

    #[test]
    fn kind_is_bound_to_the_signature() {
        let (key, _) = SigningKey::generate().unwrap();
        let mut framed = seal(MessageKind::Heartbeat, "gw-1", b"{}", &key);
        framed[4] = MessageKind::ReadingBatch as u8;
        let frame = Frame::parse(&framed).unwrap();
        let err = frame
            .verify(MessageKind::ReadingBatch, &key.verifying_key())
            .unwrap_err();
        assert!(matches!(err, FrameError::BadSignature(_)));
    }

    #[test]
    fn wrong_kind_is_reported() {
        let (key, _) = SigningKey::generate().unwrap();
        let framed = seal(MessageKind::Heartbeat, "gw-1", b"{}", &key);
        let err = Frame::parse(&framed)
            .unwrap()
            .verify(MessageKind::ReadingBatch, &key.verifying_key())
            .unwrap_err();
        assert!(matches!(err, FrameError::WrongKind { .. }));
    }

    #[test]
    fn structural_errors() {
        assert_eq!(Frame::parse(b"TM").unwrap_err(), FrameError::Truncated(2));
        assert_eq!(
            Frame::parse(b"XXXX\x01\x01a").unwrap_err(),
            FrameError::BadMagic
        );
        assert_eq!(
            Frame::parse(b"TMF1\x10\x01a").unwrap_err(),
            FrameError::UnknownKind(16)
        );
        assert_eq!(
            Frame::parse(b"TMF1\x01\x00").unwrap_err(),
            FrameError::Truncated(6)
        );
        let big = vec![0u8; MAX_FRAME_BYTES + 1];
        assert_eq!(
            Frame::parse(&big).unwrap_err(),
            FrameError::TooLarge(MAX_FRAME_BYTES + 1)
        );
        let mut bad_signer = b"TMF1\x01\x02A!".to_vec();
        bad_signer.extend_from_slice(&[0u8; 64]);
        assert_eq!(
            Frame::parse(&bad_signer).unwrap_err(),
            FrameError::BadSigner
        );
    }
}
