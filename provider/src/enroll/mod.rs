//! Enrollment: the nurse's page ([`page`]) issues a one-time code; the gateway redeems it with
//! a signed `EnrollmentRequest` frame ([`api`]) and gets a signed `EnrollmentResponse`. The
//! session then becomes accepted at the HUB with its carepath. The codes, the failed-attempt
//! window and the enrollment transaction are the store's ([`crate::store::enrollment`]). Once the
//! session is monitored, the same page hands the patient's check-in link over ([`checkin`]).

pub mod api;
pub mod checkin;
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

/// The enrollment pages' frame around `body`.
pub fn frame(body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Gateway enrollment</title><style>body{{font-family:sans-serif;margin:1em;\
         max-width:32em}}select,button{{font-size:1.2em;width:100%;margin:.5em 0;padding:.4em}}\
         .code{{font-size:2.4em;letter-spacing:.15em;font-family:monospace}}</style></head>\
         <body><h1>Gateway enrollment</h1>{body}</body></html>"
    )
}
