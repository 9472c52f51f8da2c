//! Enrollment: the nurse's page ([`page`]) issues a one-time code ([`codes`]); the gateway
//! redeems it with a signed `EnrollmentRequest` frame ([`api`]) and gets a signed
//! `EnrollmentResponse`. The session then becomes accepted at the HUB with its carepath.

pub mod api;
pub mod codes;
pub mod failures;
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
