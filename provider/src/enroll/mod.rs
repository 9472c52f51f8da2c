//! Enrollment: the nurse's page ([`page`]) issues a one-time code; the gateway redeems it with
//! a signed `EnrollmentRequest` frame ([`api`]) and gets a signed `EnrollmentResponse`. The
//! session then becomes accepted at the HUB with its carepath. The codes, the failed-attempt
//! window and the enrollment transaction are the store's ([`crate::store::enrollment`]).

pub mod api;
pub mod page;

/// The enrollment page route (axum syntax).
pub const PAGE_ROUTE: &str = "/enroll/{token}";

/// An unguessable URL token (128 bits, hex).
pub fn random_token() -> String {
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .expect("system randomness");
    hex::encode(raw)
}
