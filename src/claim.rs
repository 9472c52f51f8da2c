//! Waiting to be claimed: what an unenrolled `tm-gateway run` does when its configuration names
//! the provider (`[provider] url`).
//!
//! It logs its claim code once (the code on its label, derived from its public key; not a
//! secret and not patient data), tells systemd it is ready and waiting, then posts a signed
//! [`ClaimHello`] to `{url}/api/v1/claims/hello` every [`HELLO_INTERVAL`]:
//!
//! ```text
//!   Hello --202--> Unclaimed (wait HELLO_INTERVAL) --> Hello
//!   Hello --200 + answer verifies--> Claimed: enrollment.json saved, the agent runs
//!   Hello --network, 408, 429, 5xx, 200 that does not verify--> Backoff (bounded) --> Hello
//!   Hello --other 4xx--> Refused (provider's message logged, wait REFUSED_RETRY) --> Hello
//! ```
//!
//! The answer of a claimed gateway is the provider's signed enrollment response, checked like
//! `tm-gateway enroll` checks it ([`Enrollment::from_answer`]). Shutdown ends the wait at once.

use std::time::Duration;

use chrono::Utc;
use tm_protocol::backoff::Backoff;
use tm_protocol::claim::ClaimCode;
use tm_protocol::routes::http::{CLAIM_HELLO, FRAME_CONTENT_TYPE};
use tm_protocol::setup::{ClaimHello, HELLO_SIGNER};
use tm_protocol::{MessageKind, SigningKey};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::enrollment::{AnswerError, Enrollment, EnrollmentError};
use crate::health::Notifier;

/// Between two hellos while the provider answers "unclaimed".
pub const HELLO_INTERVAL: Duration = Duration::from_secs(3);
/// Between two hellos after the provider refused one (a 4xx other than 202): it will not
/// change its mind within seconds, and the log should not fill up.
pub const REFUSED_RETRY: Duration = Duration::from_secs(60);
/// First pause after a network error or a 5xx; doubles (full jitter) up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest pause after network errors, at most [`REFUSED_RETRY`]: a provider back from an
/// outage hears the gateway within a minute.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Longest a provider message is logged.
const MAX_MESSAGE: usize = 300;

/// Why waiting to be claimed cannot go on (the agent exits and systemd restarts it).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The HTTPS client cannot be built (the CA file of `[sync]`).
    #[error("cannot set up the HTTPS client for the provider: {0}")]
    Client(String),
    /// The enrollment the provider granted cannot be saved.
    #[error(transparent)]
    Save(#[from] EnrollmentError),
}

/// What one hello got.
#[derive(Debug)]
enum Answer {
    /// 202: nobody claimed the gateway yet.
    Unclaimed,
    /// 200 with an answer that verifies.
    Claimed(Box<Enrollment>),
    /// Worth trying again soon: the network, the provider overloaded, an answer that does not
    /// verify.
    Retry(String),
    /// The provider refused the hello (4xx) with this message.
    Refused(u16, String),
}

/// The hello frame of the gateway with `key`, sealed at `now`.
pub fn hello_frame(key: &SigningKey, now: chrono::DateTime<Utc>) -> Vec<u8> {
    let hello = ClaimHello {
        v: tm_protocol::PROTOCOL_VERSION,
        public_key: key.verifying_key().as_bytes().to_vec(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        sent_at: now,
    };
    tm_protocol::seal(
        MessageKind::ClaimHello,
        HELLO_SIGNER,
        &tm_protocol::encode(&hello),
        key,
    )
}

/// Posts hellos to `provider_url` until the gateway is claimed (the enrollment, saved in the
/// state directory) or `cancel` fires (`None`).
pub async fn wait_for_claim(
    config: &Config,
    provider_url: &str,
    key: &SigningKey,
    notifier: &Notifier,
    cancel: &CancellationToken,
) -> Result<Option<Enrollment>, ClaimError> {
    let code = ClaimCode::of(&key.verifying_key());
    tracing::info!(claim_code = %code, provider = provider_url, "not enrolled: waiting to be claimed");
    notifier.notify("READY=1");
    notifier.notify(&format!("STATUS=waiting to be claimed (code {code})"));
    let client = crate::sync::https_client_builder(&config.sync)
        .map_err(|e| ClaimError::Client(e.to_string()))?
        .timeout(config.sync.request_timeout())
        .connect_timeout(config.sync.request_timeout().min(Duration::from_secs(10)))
        .build()
        .map_err(|e| ClaimError::Client(e.to_string()))?;
    let url = format!("{provider_url}{CLAIM_HELLO}");
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    // Under a systemd watchdog the wait pings it: this loop is the agent's only one.
    let ping = notifier
        .watchdog_interval()
        .map_or(Duration::from_secs(3600), |w| w / 2);
    let mut watchdog = tokio::time::interval(ping);
    loop {
        let answer = tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            answer = hello(&client, &url, key, provider_url) => answer,
        };
        let pause = match answer {
            Answer::Claimed(enrollment) => {
                enrollment.save(&config.state_dir)?;
                tracing::info!(gateway = %enrollment.gateway_id, "claimed: enrolled with the provider");
                notifier.notify(&format!("STATUS=enrolled as {}", enrollment.gateway_id));
                return Ok(Some(*enrollment));
            }
            Answer::Unclaimed => {
                backoff.reset();
                tracing::debug!("not claimed yet");
                HELLO_INTERVAL
            }
            Answer::Retry(why) => {
                let pause = backoff.next_delay();
                tracing::warn!(error = %why, retry_in = ?pause, "claim hello failed; retrying");
                pause
            }
            Answer::Refused(status, message) => {
                backoff.reset();
                tracing::warn!(status, message = %message, retry_in = ?REFUSED_RETRY, "the provider refused the claim hello");
                REFUSED_RETRY
            }
        };
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep_until(until) => break,
                _ = watchdog.tick() => notifier.notify("WATCHDOG=1"),
            }
        }
    }
}

/// One hello and what its answer means.
async fn hello(
    client: &reqwest::Client,
    url: &str,
    key: &SigningKey,
    provider_url: &str,
) -> Answer {
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, FRAME_CONTENT_TYPE)
        .body(hello_frame(key, Utc::now()))
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Answer::Retry("cannot connect to the provider".into()),
        Err(e) if e.is_timeout() => {
            return Answer::Retry("the provider did not answer in time".into());
        }
        Err(e) => return Answer::Retry(format!("HTTP error: {e}")),
    };
    let status = response.status().as_u16();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Answer::Retry(format!("reading the answer: {e}")),
    };
    match status {
        202 => Answer::Unclaimed,
        200 => match Enrollment::from_answer(&body, provider_url, Utc::now()) {
            Ok(enrollment) => Answer::Claimed(Box::new(enrollment)),
            Err(
                e @ (AnswerError::Forged(_) | AnswerError::WrongSigner(_) | AnswerError::BadKey),
            ) => Answer::Retry(format!("refusing the provider's answer: {e}")),
            Err(e) => Answer::Retry(e.to_string()),
        },
        408 | 429 | 500..=599 => Answer::Retry(format!("HTTP {status}")),
        _ => Answer::Refused(status, provider_message(&body)),
    }
}

/// The `message` of a JSON error body, else the body's start as text.
fn provider_message(body: &[u8]) -> String {
    let mut message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hello_is_signed_by_the_key_it_carries() {
        let (key, _) = SigningKey::generate().unwrap();
        let now = Utc::now();
        let bytes = hello_frame(&key, now);
        let frame = tm_protocol::Frame::parse(&bytes).unwrap();
        assert_eq!(frame.signer(), HELLO_SIGNER);
        let hello: ClaimHello = tm_protocol::decode(frame.unverified_payload()).unwrap();
        assert_eq!(hello.public_key, key.verifying_key().as_bytes());
        assert_eq!(hello.sent_at, now);
        let carried = tm_protocol::VerifyingKey::from_bytes(&hello.public_key).unwrap();
        frame.verify(MessageKind::ClaimHello, &carried).unwrap();
    }

    #[test]
    fn provider_messages_are_read_and_cut() {
        assert_eq!(provider_message(br#"{"message":"too old"}"#), "too old");
        assert_eq!(provider_message(b"plain"), "plain");
        assert_eq!(provider_message(&[b'x'; 1000]).len(), MAX_MESSAGE);
    }
}
