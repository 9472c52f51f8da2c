//! `tm-gateway run`: starts the agent and stops it on SIGTERM or SIGINT.

use std::path::Path;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

/// Options of `tm-gateway run`. The simulator's options exist only in builds with the
/// `simulator` feature (tests, benchmarks, the demo); a shipped agent refuses them as unknown.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// SIMULATOR ONLY (tests, soak, benchmark): feed this many synthetic readings from a
    /// simulated device, resuming after the outbox's high-water mark on restart.
    #[cfg(feature = "simulator")]
    #[arg(long, value_name = "COUNT")]
    pub simulate_readings: Option<u32>,
    /// SIMULATOR ONLY: synthetic readings per second (0 = as fast as the outbox takes them).
    #[cfg(feature = "simulator")]
    #[arg(long, default_value_t = 0, requires = "simulate_readings")]
    pub simulate_rate: u32,
}

pub fn run(config_path: &Path, args: &Args) -> anyhow::Result<i32> {
    let config = crate::config::Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    #[cfg(feature = "simulator")]
    let simulation = args
        .simulate_readings
        .map(|count| crate::agent::Simulation {
            count,
            per_second: args.simulate_rate,
        });
    #[cfg(not(feature = "simulator"))]
    let simulation = {
        let _ = args;
        None
    };
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("stopping");
            on_signal.cancel();
        });
        crate::agent::run(config, simulation, cancel).await
    })?;
    Ok(0)
}
