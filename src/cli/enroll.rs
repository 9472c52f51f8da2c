//! `tm-gateway enroll --provider URL --code CODE`: registers the gateway's public key with
//! the provider using the one-time code the nurse's page shows, verifies the provider's signed
//! answer, and saves the enrollment (gateway id, provider key, sync settings) in the state
//! directory. Exit 2 when the provider refuses the code (bad input), 1 on other failures.
//!
//! The provider's certificate is verified like the agent's sync link verifies it: against the
//! system roots and `[sync] ca_file` of the configuration, so a provider whose certificate a
//! private CA signs can be enrolled with once the CA is configured.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use tm_protocol::routes::http::{ENROLL, FRAME_CONTENT_TYPE};
use tm_protocol::{EnrollmentRequest, MessageKind};

use crate::config::Config;
use crate::enrollment::Enrollment;
use crate::identity::Identity;

/// The signer id of an enrollment request (the gateway has no id yet).
const ENROLL_SIGNER: &str = "enroll";
/// How long the enrollment request may take (connect and answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `tm-gateway enroll`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The provider's base URL, e.g. https://provider.example.org.
    #[arg(long)]
    provider: String,
    /// The one-time code shown on the enrollment page.
    #[arg(long)]
    code: String,
}

pub(super) fn run(config_path: &Path, args: &Args) -> anyhow::Result<i32> {
    let config = Config::load(config_path)?;
    let identity = Identity::load_or_create(&config.key_path())?;
    let request = EnrollmentRequest {
        v: tm_protocol::PROTOCOL_VERSION,
        code: args.code.trim().to_owned(),
        public_key: identity.public_key().as_bytes().to_vec(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let frame = tm_protocol::seal(
        MessageKind::EnrollmentRequest,
        ENROLL_SIGNER,
        &tm_protocol::encode(&request),
        identity.signing_key(),
    );
    let base = args.provider.trim_end_matches('/').to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = crate::sync::https_client_builder(&config.sync)?
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("cannot set up the HTTPS client")?;
    let hint = if base.starts_with("https://") && config.sync.ca_file.is_none() {
        " (if its certificate comes from a private CA, set [sync] ca_file in the configuration)"
    } else {
        ""
    };
    let (status, body) =
        runtime.block_on(post(&client, &format!("{base}{ENROLL}"), frame, hint))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        eprintln!("enrollment refused ({status}): {message}");
        return Ok(if status.is_client_error() { 2 } else { 1 });
    }
    let enrollment = Enrollment::from_answer(&body, &base, chrono::Utc::now())?;
    enrollment.save(&config.state_dir)?;
    println!("enrolled as {}", enrollment.gateway_id);
    if let Some(key) = enrollment.provider_key() {
        println!("provider key: {}", key.fingerprint());
    }
    Ok(0)
}

/// POSTs the enrollment frame; `hint` ends the message when the provider cannot be reached.
async fn post(
    client: &reqwest::Client,
    url: &str,
    frame: Vec<u8>,
    hint: &str,
) -> anyhow::Result<(reqwest::StatusCode, Vec<u8>)> {
    let response = client
        .post(url)
        .header("content-type", FRAME_CONTENT_TYPE)
        .body(frame)
        .send()
        .await
        .with_context(|| format!("cannot reach the provider at {url}{hint}"))?;
    let status = response.status();
    Ok((status, response.bytes().await?.to_vec()))
}
