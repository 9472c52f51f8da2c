//! Enrollment: one-time codes, the failed-attempt window, and the transaction that enrolls a
//! gateway.
//!
//! Codes: 8 characters from an alphabet without look-alikes (40 bits), stored only as a
//! SHA-256 digest ([`digest`]), expiring after `code_ttl_s`, single use, and at most
//! `codes_per_session_per_hour` issued per session. Issuing a new code retires the older
//! unused ones of the same session ([`Store::issue_enrollment_code`]).
//!
//! The enrollment API's rate limit: failed attempts (codes unknown, used or expired) counted per
//! minute in the store, all gateways together, so the limit holds for every provider instance
//! and across restarts ([`Store::enrollment_attempt_allowed`]). With 40-bit codes and a handful
//! of failures a minute, guessing a live code is hopeless.
//!
//! In one transaction ([`Store::enroll_gateway`]) the code is consumed, the gateway registered
//! and bound to the session, and the session moved to accepted with its carepath (which queues
//! the HUB update). A refusal after the code was consumed rolls everything back, the code
//! included.

use tm_protocol::{GatewayId, VerifyingKey};

use crate::hub::contract::{Carepath, Status};

use super::sessions::TransitionError;
use super::{Backend, Store, StoreError, postgres, sqlite};

/// The code alphabet: no 0/O, 1/I/L.
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789#";
const CODE_LEN: usize = 8;

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The stored digest of a code (case and separators do not matter to the nurse).
pub fn digest(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        normal.as_bytes(),
    ))
}

/// A new random code.
pub(super) fn new_code() -> String {
    let mut raw = [0u8; CODE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .expect("system randomness");
    // 31 symbols used ('#' excluded by the modulo); a tiny bias is irrelevant at 8 symbols
    // with single use, expiry and rate limits.
    raw.iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % 31]))
        .collect()
}

/// A code issued for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    /// The code, shown once to the nurse (only its digest is stored).
    pub code: String,
    /// When it expires (milliseconds since the epoch).
    pub expires_at_ms: i64,
}

/// Why no code is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeRefusal {
    /// The session's hourly limit is reached.
    #[error("too many codes issued for this session in the last hour; use the last one or wait")]
    TooMany,
}

/// What an enrollment attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentOutcome {
    /// The gateway is enrolled and the session accepted (its HUB update is queued).
    Enrolled,
    /// The code is unknown, used or expired (the failure is counted).
    BadCode,
    /// The gateway is already enrolled (nothing changed).
    AlreadyEnrolled,
    /// The code's session no longer waits for enrollment (nothing changed).
    NotWaiting,
    /// The session could not be accepted (nothing changed).
    NotAccepted(TransitionError),
}

/// The session an enrollment page is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentPage {
    /// The session.
    pub telemonitoring_id: String,
    /// Its pseudonymous patient id.
    pub patient_id: String,
    /// Its status (enrollment is open while `requested`).
    pub status: Status,
}

impl Store {
    /// Issues a code for a session, or says why not: at most `per_hour` codes an hour, each
    /// valid `ttl_ms`; the session's older unused codes are retired.
    pub async fn issue_enrollment_code(
        &self,
        telemonitoring_id: String,
        carepath: Carepath,
        ttl_ms: i64,
        per_hour: u32,
    ) -> Result<Result<IssuedCode, CodeRefusal>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::enrollment::issue(pg, &telemonitoring_id, &carepath, ttl_ms, per_hour)
                    .await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| {
                    sqlite::enrollment::issue(c, &telemonitoring_id, &carepath, ttl_ms, per_hour)
                })
                .await
            }
        }
    }

    /// Whether another enrollment attempt may be tried at `now_ms`: fewer than `limit` failed
    /// attempts this minute.
    pub async fn enrollment_attempt_allowed(
        &self,
        limit: u32,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::enrollment::allows(pg, limit, now_ms).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::enrollment::allows(c, limit, now_ms))
                    .await
            }
        }
    }

    /// Enrolls `gateway_id` with `key` by redeeming `code`, in one transaction: the code is
    /// consumed (a bad one is counted as a failed attempt), the gateway registered and bound
    /// to the code's session, the enrollment audited and the session accepted with the code's
    /// carepath.
    pub async fn enroll_gateway(
        &self,
        code: String,
        gateway_id: GatewayId,
        key: VerifyingKey,
    ) -> Result<EnrollmentOutcome, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::enrollment::enroll(pg, &code, &gateway_id, &key).await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::enrollment::enroll(c, &code, &gateway_id, &key))
                    .await
            }
        }
    }

    /// The session the enrollment page of `token` is for, if the token is known.
    pub async fn enrollment_page(
        &self,
        token: String,
    ) -> Result<Option<EnrollmentPage>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::enrollment::page(pg, &token).await,
            Backend::Sqlite(db) => db.read(move |c| sqlite::enrollment::page(c, &token)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_case_and_separators() {
        assert_eq!(digest("abcd-efgh"), digest("ABCDEFGH"));
        let c = new_code();
        assert_eq!(c.len(), CODE_LEN);
        assert!(c.bytes().all(|b| ALPHABET[..31].contains(&b)));
    }
}
