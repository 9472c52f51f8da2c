//! The HUB client: `POST /auth/providers` for a token, `PUT /prescription` for status updates.
//!
//! The token is cached until `token_margin` before its `expires_in` runs out. A 401 on a PUT
//! drops the cached token and re-authenticates once; a second 401 is reported as retryable
//! (the outbox backs off and tries again later). The client secret is read from its file once
//! and never logged.

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::hub::contract::authorization;
use crate::hub::settings::HubSection;

/// Why a PUT did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// Worth retrying later: 5xx, timeout, connection error, repeated 401, 429.
    #[error("temporary failure: {0}")]
    Retryable(String),
    /// The HUB refused the update (4xx): retrying will not help.
    #[error("refused with {status}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The HUB's message.
        message: String,
    },
}

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum HubClientError {
    /// The secret file cannot be read.
    #[error("cannot read the HUB client secret file {path}: {source}")]
    Secret {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: String,
    expires_in: u64,
}

/// A cached token and when to stop using it.
#[derive(Debug)]
struct CachedToken {
    value: String,
    renew_at: Instant,
}

/// Client of the HUB.
#[derive(Debug)]
pub struct HubClient {
    http: reqwest::Client,
    base: String,
    basic: String,
    margin: Duration,
    token: Mutex<Option<CachedToken>>,
}

impl HubClient {
    /// Builds the client from `[hub]`, reading the secret file.
    pub fn new(section: &HubSection) -> Result<Self, HubClientError> {
        let secret = std::fs::read_to_string(&section.client_secret_file).map_err(|source| {
            HubClientError::Secret {
                path: section.client_secret_file.clone(),
                source,
            }
        })?;
        crate::http::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(section.timeout())
            .build()?;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            section.client_id,
            secret.trim_end()
        ));
        Ok(Self {
            http,
            base: section.url.trim_end_matches('/').to_owned(),
            basic,
            margin: Duration::from_secs(section.token_margin_s),
            token: Mutex::new(None),
        })
    }

    async fn token(&self) -> Result<String, PutError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let response = self
            .http
            .post(format!("{}/auth/providers", self.base))
            .header("authorization", format!("Basic {}", self.basic))
            .send()
            .await
            .map_err(|e| PutError::Retryable(format!("token request: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            // Bad credentials are an operator problem, but the outbox must keep its rows:
            // treat every token failure as retryable and let the logs say why.
            return Err(PutError::Retryable(format!(
                "token request answered {status}"
            )));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| PutError::Retryable(format!("token answer: {e}")))?;
        if !answer.token_type.eq_ignore_ascii_case("bearer") {
            return Err(PutError::Retryable(format!(
                "unexpected token_type {:?}",
                answer.token_type
            )));
        }
        let lifetime = Duration::from_secs(answer.expires_in);
        // Renew `margin` early; a lifetime shorter than the margin is used for half of it.
        let usable = lifetime.checked_sub(self.margin).unwrap_or(lifetime / 2);
        *cached = Some(CachedToken {
            value: answer.access_token.clone(),
            renew_at: Instant::now() + usable,
        });
        Ok(answer.access_token)
    }

    /// Sends one status update body (JSON text); re-authenticates once on 401.
    pub async fn put(&self, body: &str) -> Result<(), PutError> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let response = self
                .http
                .put(format!("{}/prescription", self.base))
                .header("authorization", authorization(&token))
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await
                .map_err(|e| PutError::Retryable(e.to_string()))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            if status.as_u16() == 401 {
                *self.token.lock().await = None;
                if attempt == 0 {
                    continue;
                }
                return Err(PutError::Retryable("401 after re-authentication".into()));
            }
            if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                return Err(PutError::Retryable(format!("HUB answered {status}")));
            }
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(PutError::Rejected {
                status: status.as_u16(),
                message,
            });
        }
        Err(PutError::Retryable("401 after re-authentication".into()))
    }
}
