//! `tm-provider` binary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Telemonitoring Provider backend.
#[derive(Debug, Parser)]
#[command(name = "tm-provider", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "TM_PROVIDER_CONFIG",
        default_value = "/etc/tm-provider/provider.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => {
            let config = tm_provider::config::Config::load(&cli.config)?;
            let db = tm_provider::db::Db::open(&config.database)?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            tracing::info!(addr = %listener.local_addr()?, "listening");
            let shutdown = CancellationToken::new();
            let on_signal = shutdown.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                on_signal.cancel();
            });
            let key = std::sync::Arc::new(tm_provider::keys::load_or_create(&config.key_file)?);
            let ingest = tm_provider::ingest::Ingest::new(db.clone(), key);
            if let Some(m) = &config.mqtt {
                let mqtt = tm_provider::ingest::mqtt::MqttIngestConfig::from_file(m)?;
                tokio::spawn(tm_provider::ingest::mqtt::run(
                    ingest.clone(),
                    mqtt,
                    shutdown.clone(),
                ));
            }
            let router = tm_provider::http::router(tm_provider::http::AppState { db })
                .merge(tm_provider::ingest::http::routes(ingest));
            tm_provider::http::serve(listener, router, shutdown).await?;
        }
    }
    Ok(())
}
