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
        /// Serve with key files (provider key, attachment URI key) other than the ones this
        /// store was served with, and pin them from now on. Gateways enrolled with the old
        /// provider key must enroll again; EHRs get new attachment URIs at the next update.
        #[arg(long)]
        accept_new_keys: bool,
    },
    /// Copy a SQLite store (stop the provider first) into the PostgreSQL store the
    /// configuration names (new and empty): every table in one transaction, the row counts
    /// compared before it commits. The store keeps its id, so this provider (and every
    /// instance with the same key files) serves it as before.
    MigrateStore {
        /// The SQLite store to copy.
        #[arg(long)]
        from: PathBuf,
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
async fn main() -> std::process::ExitCode {
    tm_protocol::report::exit_status(run().await)
}

async fn run() -> anyhow::Result<()> {
    tm_protocol::report::init_stderr_logging("info");
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            accept_new_store,
            accept_new_keys,
        } => {
            let mut config = tm_provider::config::Config::load(&cli.config)?;
            config.accept_new_store = accept_new_store;
            config.accept_new_keys = accept_new_keys;
            let listen = config.listen;
            let limits = config.http;
            let certificates = config
                .tls
                .clone()
                .map(tm_provider::http::tls::Certificates::load)
                .transpose()
                .context("cannot load the TLS certificate")?;
            let mut mqtt = config
                .mqtt
                .as_ref()
                .map(tm_provider::ingest::mqtt::MqttIngestConfig::load)
                .transpose()
                .context("cannot set up the MQTT connection")?;
            if let (Some(mqtt), tm_provider::store::Database::Postgres(_)) =
                (mqtt.as_mut(), &config.database)
            {
                // Several instances may share this store: each needs a client id of its own,
                // and a session that ends with its connection.
                mqtt.client_id =
                    tm_provider::ingest::mqtt::connect::instance_client_id(&mqtt.client_id, listen);
                mqtt.persistent_session = false;
            }
            let mut assembly = tm_provider::app::assemble(config).await?;
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
            // Background actors: each one retries store failures itself and ends only on
            // shutdown. One that ends before (a panic, a defect) stops the service with an
            // error, so that systemd starts it afresh.
            let mut background = tokio::task::JoinSet::new();
            let router = assembly.router();
            let updater = assembly.updater;
            background.spawn(updater.run(shutdown.clone()));
            if let Some(outbox) = assembly.outbox.take() {
                background.spawn(outbox.run(shutdown.clone()));
            }
            if let Some(mqtt) = mqtt {
                let ingest = assembly.ingest.clone();
                background.spawn(tm_provider::ingest::mqtt::run(
                    ingest,
                    mqtt,
                    shutdown.clone(),
                ));
            }
            background.spawn(assembly.ops.evaluator().run(shutdown.clone()));
            background.spawn(assembly.triage.run(shutdown.clone()));
            // The HTTP server survives accept errors and slow clients; it returns only on
            // shutdown.
            let mut server = tokio::spawn(tm_provider::http::serve_with_limits(
                listener,
                certificates,
                router,
                limits,
                shutdown.clone(),
            ));
            let mut failure: Option<anyhow::Error> = None;
            tokio::select! {
                served = &mut server => {
                    if !shutdown.is_cancelled() {
                        failure = Some(anyhow::anyhow!("the HTTP server stopped: {served:?}"));
                    }
                }
                Some(ended) = background.join_next() => {
                    // After a signal the actors end first (the server still answers what is
                    // in flight): that is the shutdown, not a failure.
                    if !shutdown.is_cancelled() {
                        tracing::error!(outcome = ?ended, "a background task ended; stopping");
                        failure = Some(anyhow::anyhow!("a background task ended: {ended:?}"));
                    }
                }
            }
            shutdown.cancel();
            if !server.is_finished() {
                let _ = (&mut server).await;
            }
            while let Some(ended) = background.join_next().await {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "a background task failed while stopping");
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Command::MigrateStore { from } => {
            let config = tm_provider::config::Config::load(&cli.config)?;
            let tm_provider::store::Database::Postgres(_) = &config.database else {
                anyhow::bail!(
                    "the configuration's database is not PostgreSQL: set [database] url to the \
                     store to copy into"
                );
            };
            anyhow::ensure!(
                from.is_file(),
                "{} is not a SQLite store file",
                from.display()
            );
            // Opening it migrates a store from an older version to the current schema.
            drop(tm_provider::store::Store::open(&from)?);
            let store = tm_provider::store::Store::connect(&config.database).await?;
            let pg = store
                .postgres()
                .context("the configured store is not PostgreSQL")?;
            let copied = tm_provider::store::transfer::sqlite_to_postgres(&from, pg).await?;
            for (table, rows) in &copied.tables {
                println!("{table:<20} {rows:>10} rows");
            }
            println!(
                "copied store {} into {}; row counts checked",
                copied.store_id,
                store.describe()
            );
        }
        Command::ExportFhir { session } => {
            let config = tm_provider::config::Config::load(&cli.config)?;
            let store = tm_provider::store::Store::connect(&config.database).await?;
            let languages = config.attachments.languages.clone();
            let data = tm_provider::publish::load_published(&store, &session, &languages)
                .await?
                .context("no FHIR attachment: unknown session, or no readings published yet")?;
            let identifier_system = store
                .fhir_identifier_system(
                    config.attachments.identifier_system.as_deref(),
                    &config.public_url,
                )
                .await?;
            let options = config.attachments.output_options(
                &identifier_system,
                &config.triage,
                config.ops.thresholds()?.time_zone,
            );
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
