//! Enrollment: binding a gateway to the session of a prescription, and setting the home up.
//!
//! The nurse's page ([`page`], in her phone's language: [`words`], [`view`]) is reached through
//! the unguessable URL answered to the Portal. On it she chooses the carepath and claims the
//! gateway by the claim code on its box ([`claim`]); the gateway, announcing itself unclaimed
//! ([`hello`]), gets its enrollment at its next hello. The same page then drives the setup
//! ([`setup`], its markup [`setup_page`], its JSON [`setup_state`], the script [`assets`]): pairing the devices, a first
//! measurement, the summary; and hands the patient's check-in link over ([`checkin`]).
//!
//! A technician can still enroll from the gateway: the page issues a one-time code, the gateway
//! redeems it with a signed `EnrollmentRequest` frame ([`api`]). Either way the session
//! becomes accepted at the HUB with its carepath, in the transaction that binds the gateway
//! (the store's [`crate::store::enrollment`] and [`crate::store::claims`]). docs/setup.md
//! tells the whole flow and its security argument.

pub mod api;
pub mod assets;
pub mod checkin;
pub mod claim;
pub mod hello;
pub mod page;
pub mod setup;
pub mod setup_page;
pub mod setup_state;
pub mod view;
pub mod words;

/// The enrollment page route (axum syntax).
pub const PAGE_ROUTE: &str = "/enroll/{token}";

/// An unguessable URL token (128 bits, hex).
pub fn random_token() -> String {
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .expect("system randomness");
    hex::encode(raw)
}

/// The enrollment pages' frame around `body`, in English (the check-in handover's answers).
pub fn frame(body: &str) -> String {
    view::frame(words::PageLanguage::En, body)
}
