//! `tm-gateway` binary: parses the command line, sets up logging, runs the command.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = tm_gateway::cli::Cli::parse();
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `TM_LOG` when set; otherwise `warn` until the configuration's `log_level` is applied
    // (`tm_gateway::config::Config::load`).
    let filter = tracing_subscriber::EnvFilter::try_from_env(tm_gateway::sync::commands::LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Reloadable, so the provider's `set-log-level` command can change it at run time.
    let (filter, reload) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    tm_gateway::sync::commands::set_log_reloader(move |spec| {
        let filter = tracing_subscriber::EnvFilter::try_new(spec).map_err(|e| e.to_string())?;
        reload.reload(filter).map_err(|e| e.to_string())
    });
    match tm_gateway::cli::run(cli) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {}", tm_protocol::report::error_chain(e.as_ref()));
            std::process::ExitCode::from(1)
        }
    }
}
