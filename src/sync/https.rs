//! The HTTPS transport (reqwest, rustls + ring): `POST /api/v1/readings` with the signed batch
//! frame and `Idempotency-Key: <batch id>`; the response body is the signed receipt frame.
//! Heartbeats and command results are posted to their own routes and answered with no body.
//!
//! Status mapping: 200 -> verify the receipt; 429/503 -> wait `Retry-After`; 408 and 5xx ->
//! retry with backoff; 401/403/404/410 -> the provider refuses the gateway itself (signature,
//! unknown, revoked or unbound gateway, a wrong route): the rows stay pending, an alarm is raised
//! and the batch is retried after the long `refused_retry_ms` backoff; other 4xx (400 malformed,
//! 413 too large, 422) -> the provider refused the batch's content for good (rows rejected with
//! the status and the provider's message). Timeouts and connection errors retry.

use std::time::Duration;

use tm_protocol::routes::http as routes;
use tm_protocol::{BatchId, Receipt, VerifyingKey};

use super::config::SyncConfig;
use super::{LinkError, SendError, open_receipt};

/// Longest provider message kept in a rejection reason.
const MAX_REASON_BYTES: usize = 300;

/// A client for the provider's gateway API. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct HttpsLink {
    /// System roots plus `[sync] ca_file`; `request_timeout_ms` per request, connecting
    /// capped at 10 s, idle connections kept 60 s.
    client: reqwest::Client,
    /// `{base}/api/v1/readings`; its answer is the receipt.
    readings_url: String,
    /// `{base}/api/v1/heartbeat`, answered with no body.
    heartbeat_url: String,
    /// `{base}/api/v1/command-results`, answered with no body.
    command_results_url: String,
    /// The provider key from the enrollment: a receipt not signed with it, or naming another
    /// batch, fails the send as retryable.
    provider_key: VerifyingKey,
}

impl HttpsLink {
    /// A client for `base_url` (from the enrollment).
    pub fn new(
        base_url: &str,
        provider_key: VerifyingKey,
        cfg: &SyncConfig,
    ) -> Result<Self, LinkError> {
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(LinkError::Url {
                url: base_url.into(),
                reason: "must start with https://".into(),
            });
        }
        let builder = super::tls::https_client_builder(cfg)?
            .timeout(cfg.request_timeout())
            .connect_timeout(cfg.request_timeout().min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60));
        let client = builder.build().map_err(|e| LinkError::Tls(e.to_string()))?;
        Ok(Self {
            client,
            readings_url: format!("{base}{}", routes::READINGS),
            heartbeat_url: format!("{base}{}", routes::HEARTBEAT),
            command_results_url: format!("{base}{}", routes::COMMAND_RESULTS),
            provider_key,
        })
    }

    /// The HTTP client (TLS roots of `[sync]`, the request timeout), for the command poll.
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }

    pub(super) async fn send_batch(
        &self,
        batch_id: &BatchId,
        frame: Vec<u8>,
    ) -> Result<Receipt, SendError> {
        let response = self
            .client
            .post(&self.readings_url)
            .header(reqwest::header::CONTENT_TYPE, routes::FRAME_CONTENT_TYPE)
            .header(routes::IDEMPOTENCY_KEY, batch_id.as_str())
            .body(frame)
            .send()
            .await
            .map_err(|e| SendError::Retry(describe(&e)))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let body = response
            .bytes()
            .await
            .map_err(|e| SendError::Retry(describe(&e)))?;
        if status.is_success() {
            let receipt = open_receipt(&body, &self.provider_key).map_err(SendError::Retry)?;
            if &receipt.batch_id != batch_id {
                return Err(SendError::Retry("receipt names another batch".into()));
            }
            return Ok(receipt);
        }
        Err(classify(status, retry_after, &body))
    }

    pub(super) async fn send_heartbeat(&self, frame: Vec<u8>) -> Result<(), SendError> {
        self.post_frame(&self.heartbeat_url, frame).await
    }

    pub(super) async fn send_command_result(&self, frame: Vec<u8>) -> Result<(), SendError> {
        self.post_frame(&self.command_results_url, frame).await
    }

    /// Posts a frame that is answered with no body.
    async fn post_frame(&self, url: &str, frame: Vec<u8>) -> Result<(), SendError> {
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, routes::FRAME_CONTENT_TYPE)
            .body(frame)
            .send()
            .await
            .map_err(|e| SendError::Retry(describe(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = retry_after(&response);
        let body = response.bytes().await.unwrap_or_default();
        Err(classify(status, retry_after, &body))
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "request timed out".into()
    } else if e.is_connect() {
        "cannot connect to the provider".into()
    } else {
        format!("HTTP error: {e}")
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

fn classify(status: reqwest::StatusCode, retry_after: Option<Duration>, body: &[u8]) -> SendError {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_REASON_BYTES)]);
    let reason = format!("HTTP {}: {}", status.as_u16(), text.trim());
    match status.as_u16() {
        429 | 503 => SendError::RetryAfter(retry_after.unwrap_or(Duration::from_secs(1)), reason),
        408 => SendError::Retry(reason),
        401 | 403 | 404 | 410 => SendError::GatewayRefused(reason),
        400..=499 => SendError::Rejected(reason),
        _ => SendError::Retry(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: u16) -> SendError {
        classify(
            reqwest::StatusCode::from_u16(code).unwrap(),
            None,
            b"provider message",
        )
    }

    #[test]
    fn identity_refusals_are_retried_content_refusals_are_final() {
        for code in [401, 403, 404, 410] {
            assert!(
                matches!(class(code), SendError::GatewayRefused(_)),
                "{code}"
            );
        }
        for code in [400, 413, 422] {
            assert!(matches!(class(code), SendError::Rejected(_)), "{code}");
        }
        assert!(matches!(class(503), SendError::RetryAfter(..)));
        assert!(matches!(class(500), SendError::Retry(_)));
        assert!(matches!(class(408), SendError::Retry(_)));
    }
}
