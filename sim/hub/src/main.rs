//! `tm-sim-hub` binary: `tm-sim-hub serve --listen ADDR --client ID:SECRET ...`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Emulator of the Telemonitoring Portal and HUB (tests and demo only).
#[derive(Debug, Parser)]
#[command(name = "tm-sim-hub", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HUB API and the control API.
    Serve {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// The provider's client credentials, `ID:SECRET`.
        #[arg(long)]
        client: String,
        /// The provider's URI for prescription requests.
        #[arg(long)]
        provider_url: Option<String>,
        /// The provider's Action URI.
        #[arg(long)]
        action_url: Option<String>,
        /// A fixed header the provider declared, `"Name: value"` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Lifetime of issued tokens, in seconds.
        #[arg(long, default_value_t = 3600)]
        token_ttl_s: u64,
        /// PEM file of CA certificates to trust besides the system roots when calling the
        /// provider over HTTPS (Portal requests, attachment downloads).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tm_protocol::report::exit_status(run().await)
}

async fn run() -> anyhow::Result<()> {
    tm_protocol::report::init_stderr_logging("info");
    let Command::Serve {
        listen,
        client,
        provider_url,
        action_url,
        headers,
        token_ttl_s,
        ca_file,
    } = Cli::parse().command;
    let (client_id, client_secret) = client
        .split_once(':')
        .context("--client must be ID:SECRET")?;
    let fixed_headers = headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("--header {h:?} must be \"Name: value\""))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = tm_sim_hub::SimConfig {
        client_id: client_id.to_owned(),
        client_secret: client_secret.to_owned(),
        provider_url,
        action_url,
        fixed_headers,
        token_ttl: Duration::from_secs(token_ttl_s),
        ca_file,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let handle = tm_sim_hub::spawn(listener, config)?;
    tracing::info!(addr = %handle.addr, "tm-sim-hub listening");
    let on_signal = handle.shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    handle.task.await??;
    Ok(())
}
