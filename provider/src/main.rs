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
    Serve {
        /// Serve the configured database even though it is not the store this provider served
        /// (an empty, reset or other provider's store; see the README, "Store identity"). The
        /// provider then records it as its store. Without it, such a start is refused.
        #[arg(long)]
        accept_new_store: bool,
    },
    /// Print a session's current FHIR attachment (the published Bundle the EHR downloads);
    /// reads the store, no server needed.
    ExportFhir {
        /// The session's telemonitoringId.
        #[arg(long)]
        session: String,
    },
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
        Command::Serve { accept_new_store } => {
            let mut config = tm_provider::config::Config::load(&cli.config)?;
            config.accept_new_store = accept_new_store;
            let listen = config.listen;
            let certificates = config
                .tls
                .clone()
                .map(tm_provider::http::tls::Certificates::load)
                .transpose()
                .context("cannot load the TLS certificate")?;
            let mqtt = config
                .mqtt
                .as_ref()
                .map(tm_provider::ingest::mqtt::MqttIngestConfig::load)
                .transpose()
                .context("cannot set up the MQTT connection")?;
            let mut assembly = tm_provider::app::assemble(config)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(
                addr = %listener.local_addr()?,
                tls = certificates.is_some(),
                "listening"
            );
            let shutdown = CancellationToken::new();
            let on_signal = shutdown.clone();
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("cannot watch SIGTERM")?;
            // Ctrl-C, or SIGTERM from systemd's stop: finish what is in flight, then exit 0.
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                tracing::info!("shutting down");
                on_signal.cancel();
            });
            if let Some(certificates) = certificates.clone() {
                tokio::spawn(reload_on_hangup(certificates));
            }
            let mut tasks = tokio::task::JoinSet::new();
            let router = assembly.router();
            let updater = assembly.updater;
            let stop = shutdown.clone();
            tasks.spawn(async move { updater.run(stop).await.map_err(anyhow::Error::from) });
            if let Some(outbox) = assembly.outbox.take() {
                let stop = shutdown.clone();
                tasks.spawn(async move { outbox.run(stop).await.map_err(anyhow::Error::from) });
            }
            if let Some(mqtt) = mqtt {
                let ingest = assembly.ingest.clone();
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    tm_provider::ingest::mqtt::run(ingest, mqtt, stop).await;
                    Ok(())
                });
            }
            {
                let evaluator = assembly.ops.evaluator();
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    evaluator.run(stop).await;
                    Ok(())
                });
            }
            let stop = shutdown.clone();
            tasks.spawn(async move {
                tm_provider::http::serve_with(listener, certificates, router, stop)
                    .await
                    .map_err(anyhow::Error::from)
            });
            // The first task to end (failure or shutdown) stops the others.
            if let Some(first) = tasks.join_next().await {
                shutdown.cancel();
                first??;
            }
            while let Some(r) = tasks.join_next().await {
                r??;
            }
        }
        Command::ExportFhir { session } => {
            let config = tm_provider::config::Config::load(&cli.config)?;
            let db = tm_provider::db::Db::open(&config.database)?;
            let languages = config.attachments.languages.clone();
            let data = db
                .read(move |c| tm_provider::publish::load_published(c, &session, &languages))
                .await?
                .context("no FHIR attachment: unknown session, or no readings published yet")?;
            let options = config.attachments.output_options(&config.public_url);
            let bytes = tm_provider::attachments::AttachmentKind::Fhir.render(&data, &options);
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            // The exact bytes the EHR downloads (compact JSON, no newline): pipe them to
            // `jq .` to read, or to `openssl md5 -binary | base64` to compare with contentMD5.
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Reads the TLS certificate again on every SIGHUP (`systemctl reload`).
async fn reload_on_hangup(certificates: std::sync::Arc<tm_provider::http::tls::Certificates>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the certificate is not reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        match certificates.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; the current one stays")
            }
        }
    }
}
