//! The `tm-gateway` command line. Each subcommand lives in its own module and prints readable
//! text, or JSON with `--json`. Exit status: 0 success, 1 runtime failure, 2 bad input.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod ble;
mod decode;
mod doctor;
mod enroll;
mod identity;
mod run;
mod status;

/// Home-gateway agent for telemonitoring: reads BLE health devices and syncs to the provider.
#[derive(Debug, Parser)]
#[command(name = "tm-gateway", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "TM_GATEWAY_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the gateway's identity (creating its key on first use).
    Identity(identity::Args),
    /// Enroll this gateway with the provider using the nurse's one-time code.
    Enroll(enroll::Args),
    /// Check the configuration file and print the effective settings.
    CheckConfig,
    /// Check BlueZ, the clock, the identity, the enrollment, the outbox, the disk and the
    /// connection to the provider; print what is wrong and how to fix it.
    Doctor(doctor::Args),
    /// Decode one frame from a health device and print its readings as JSON.
    Decode(decode::Args),
    /// List nearby health devices.
    Scan(ble::ScanArgs),
    /// Bond with a device, read its information, set its clock and record it.
    Pair(ble::PairArgs),
    /// Remove a device's bond and forget it.
    Unpair(ble::AddressArgs),
    /// List paired devices.
    Devices(ble::JsonArgs),
    /// Run the agent (BLE devices, outbox, sync, heartbeat) until SIGTERM/SIGINT.
    Run(run::Args),
    /// Show the sync backlog, last successful sync, rejected readings and alarms.
    Status(status::Args),
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Identity(args) => identity::run(&cli.config, &args),
        Command::Doctor(args) => doctor::run(&cli.config, &args),
        Command::Decode(args) => decode::run(&args),
        Command::Enroll(args) => enroll::run(&cli.config, &args),
        Command::Scan(args) => ble::scan(&crate::config::Config::load(&cli.config)?, &args),
        Command::Pair(args) => ble::pair(&crate::config::Config::load(&cli.config)?, &args),
        Command::Unpair(args) => ble::unpair(&crate::config::Config::load(&cli.config)?, &args),
        Command::Devices(args) => {
            ble::devices(&crate::config::Config::load(&cli.config)?.state_dir, &args)
        }
        Command::Run(args) => run::run(&cli.config, &args),
        Command::Status(args) => status::run(&cli.config, &args),
        Command::CheckConfig => {
            let config = crate::config::Config::load(&cli.config)?;
            println!("configuration {} is valid", cli.config.display());
            println!("state_dir = {}", config.state_dir.display());
            println!("adapter   = {}", config.adapter);
            println!("log_level = {}", config.log_level);
            if let Some(url) = &config.provider_url {
                println!("provider  = {url} (an unenrolled gateway waits to be claimed there)");
            }
            Ok(0)
        }
    }
}
