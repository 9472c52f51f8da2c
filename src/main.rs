//! `tm-gateway` binary: parses the command line, sets up logging, runs the command.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = tm_gateway::cli::Cli::parse();
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `TM_LOG` when set; otherwise `warn` until the configuration's `log_level` is applied
    // (`tm_gateway::config::Config::load`).
    let filter = std::env::var(tm_gateway::sync::commands::LOG_ENV)
        .ok()
        .and_then(|spec| tm_gateway::config::log_filter(&spec).ok())
        .unwrap_or_else(|| tm_gateway::config::log_filter("warn").expect("a level is a filter"));
    // Reloadable, so the provider's `set-log-level` command can change it at run time.
    let (filter, reload) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    tm_gateway::sync::commands::set_log_reloader(move |spec| {
        let filter = tm_gateway::config::log_filter(spec).map_err(|e| e.to_string())?;
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
