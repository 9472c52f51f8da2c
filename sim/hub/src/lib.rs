//! # tm-sim-hub: an emulator of the Telemonitoring Portal and HUB
//!
//! Strict enough that a provider passing it follows the contract
//! (as docs/portal-hub.md states it, with the interpretations of its §5). It plays three roles:
//! - the HUB ([`hub_api`]): `POST /auth/providers` and `PUT /prescription`, enforcing tokens,
//!   known sessions, legal transitions, the carepath shape and well-formed attachments
//!   ([`rules`], written independently of the provider's code);
//! - the EHR ([`ehr`]): downloads every PDF and FHIR attachment and checks length, MD5, ETag;
//! - the Portal ([`portal`]): sends prescription requests and actions to the provider.
//!
//! Everything it sees lands in a per-session timeline ([`state`]), readable with the rest of
//! the [`control`] API, which also injects faults (5xx, timeouts, slow answers, revoked tokens,
//! 4xx refusals of one session's status PUTs).
//!
//! The Portal and the EHR call the provider over HTTP or HTTPS (rustls with ring), verifying
//! its certificate against the system roots and, with [`SimConfig::ca_file`], a private CA: a
//! provider served with a certificate nobody trusts shows up as failed calls in the timeline.

pub mod control;
pub mod ehr;
pub mod hub_api;
pub mod portal;
pub mod rules;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{get, post, put};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The emulator's configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The provider's client id at the HUB.
    pub client_id: String,
    /// The provider's client secret at the HUB.
    pub client_secret: String,
    /// The provider's URI (prescription requests).
    pub provider_url: Option<String>,
    /// The provider's Action URI.
    pub action_url: Option<String>,
    /// Fixed headers the provider declared; sent with every Portal request.
    pub fixed_headers: Vec<(String, String)>,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// PEM file of CA certificates trusted besides the system roots when the Portal and the
    /// EHR call the provider over HTTPS (a provider whose certificate a private CA signs).
    pub ca_file: Option<PathBuf>,
}

/// State shared by the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<SimConfig>,
    /// Sessions, tokens, timelines, faults.
    pub hub: state::Shared,
    /// The client the Portal and the EHR use.
    pub http: reqwest::Client,
    /// Cancelled at shutdown; calls held by a timeout fault end then.
    pub shutdown: CancellationToken,
}

/// Installs ring as the process's rustls provider (never aws-lc); harmless when already done.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The router: HUB API at the root, control API under `/control`.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/auth/providers", post(hub_api::auth))
        .route("/prescription", put(hub_api::put_prescription))
        .route("/control/prescribe", post(control::prescribe))
        .route("/control/action", post(control::action))
        .route("/control/sessions/{id}", get(control::session))
        .route("/control/violations", get(control::violations))
        .route("/control/faults", post(control::faults))
        .route("/control/refuse", post(control::refuse))
        .route("/control/revoke-tokens", post(control::revoke_tokens))
        .route("/control/token-ttl", post(control::token_ttl))
        .route("/control/stats", get(control::stats))
        .with_state(app)
}

/// A running emulator.
#[derive(Debug)]
pub struct SimHandle {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Its state, for in-process assertions.
    pub hub: state::Shared,
    /// Cancel to stop it.
    pub shutdown: CancellationToken,
    /// The server task.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SimHandle {
    /// Base URL, e.g. `http://127.0.0.1:4321`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Builds the state for `config`.
pub fn app_state(config: SimConfig, shutdown: CancellationToken) -> anyhow::Result<AppState> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca)
            .with_context(|| format!("cannot read the CA file {}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM bundle", ca.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "{} holds no PEM certificate",
            ca.display()
        );
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    let http = builder.build()?;
    Ok(AppState {
        hub: state::Shared::new(config.token_ttl),
        config: Arc::new(config),
        http,
        shutdown,
    })
}

/// Serves the emulator on `listener` in a task until the handle's token is cancelled.
pub fn spawn(listener: TcpListener, config: SimConfig) -> anyhow::Result<SimHandle> {
    let shutdown = CancellationToken::new();
    let app = app_state(config, shutdown.clone())?;
    let addr = listener.local_addr()?;
    let hub = app.hub.clone();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        axum::serve(listener, router(app))
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok(SimHandle {
        addr,
        hub,
        shutdown,
        task,
    })
}
