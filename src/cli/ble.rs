//! The nurse's BLE commands: `scan`, `pair`, `unpair`, `devices`. Readable text, or JSON with
//! `--json`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use btleplug::api::{Central as _, Peripheral as _, ScanFilter};
use serde::Serialize;

use crate::ble::paired::PairedStore;
use crate::ble::{open_adapter, pair_device, pairing};

/// `scan` options.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// How long to listen.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pair` options.
#[derive(Debug, clap::Args)]
pub struct PairArgs {
    /// Bluetooth address (`AA:BB:CC:DD:EE:FF`).
    pub address: String,
    /// PIN or passkey shown on the device (asked on the terminal when needed and not given).
    #[arg(long)]
    pub pin: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `unpair` / `devices` options.
#[derive(Debug, clap::Args)]
pub struct AddressArgs {
    /// Bluetooth address.
    pub address: String,
}

/// `devices` options.
#[derive(Debug, clap::Args)]
pub struct JsonArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Nearby {
    address: String,
    name: Option<String>,
    rssi: Option<i16>,
    model: Option<String>,
    profile: Option<String>,
    needs_pairing: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// `tm-gateway scan`.
pub fn scan(config: &crate::config::Config, args: &ScanArgs) -> anyhow::Result<i32> {
    let found = runtime()?.block_on(async {
        let adapter = open_adapter(&config.adapter).await?;
        adapter.start_scan(ScanFilter::default()).await?;
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let _ = adapter.stop_scan().await;
        let mut out = Vec::new();
        for p in adapter.peripherals().await? {
            let Some(props) = p.properties().await? else {
                continue;
            };
            let Some(entry) = crate::ble::catalog_entry(&props) else {
                continue;
            };
            out.push(Nearby {
                address: p.address().to_string(),
                name: props.local_name.clone(),
                rssi: props.rssi,
                model: Some(entry.model.name.clone()),
                profile: serde_json::to_value(entry.model.profile)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from)),
                needs_pairing: entry.model.bonding != tm_devices::catalog::Bonding::None,
            });
        }
        anyhow::Ok(out)
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else if found.is_empty() {
        println!("no health devices found; put the device in pairing mode and scan again");
    } else {
        for d in &found {
            let pairing = if d.needs_pairing {
                "needs pairing"
            } else {
                "no pairing"
            };
            println!(
                "{}  {:<20} {:>5} dBm  {} ({}), {pairing}",
                d.address,
                d.name.as_deref().unwrap_or("?"),
                d.rssi.map_or("?".into(), |r| r.to_string()),
                d.model.as_deref().unwrap_or("?"),
                d.profile.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(0)
}

fn ask_on_terminal(prompt: pairing::Prompt) -> Option<String> {
    match prompt {
        pairing::Prompt::Pin => eprint!("Enter the PIN shown on the device: "),
        pairing::Prompt::Passkey => eprint!("Enter the passkey shown on the device: "),
        pairing::Prompt::Confirm(p) => eprint!("Does the device show {p:06}? [y/N] "),
        pairing::Prompt::Display(p) => {
            eprintln!("Type {p:06} on the device, then confirm there.");
            return None;
        }
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    Some(line.trim().to_string())
}

/// `tm-gateway pair`: the shared procedure ([`pair_device`]) with the secrets from `--pin` or
/// the terminal.
pub fn pair(config: &crate::config::Config, args: &PairArgs) -> anyhow::Result<i32> {
    let store = PairedStore::in_state_dir(&config.state_dir);
    let paired = runtime()?.block_on(async {
        let adapter = open_adapter(&config.adapter).await?;
        adapter.start_scan(ScanFilter::default()).await?;
        let secrets: pairing::Secrets = match args.pin.clone() {
            Some(pin) => Arc::new(move |_| Some(pin.clone())),
            None => Arc::new(ask_on_terminal),
        };
        let quiet: pair_device::Reporter = Arc::new(|_| {});
        let paired = pair_device::pair_device(
            &adapter,
            &config.adapter,
            &args.address,
            &store,
            secrets,
            quiet,
        )
        .await;
        let _ = adapter.stop_scan().await;
        anyhow::Ok(paired?)
    })?;
    let pair_device::Paired {
        device,
        single_bond,
    } = paired;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "paired": device, "single_bond": single_bond })
        );
    } else {
        println!(
            "paired {} ({})",
            device.address,
            device.model.as_deref().unwrap_or("unknown model")
        );
        println!(
            "battery {}%",
            device.battery_pct.map_or("?".into(), |b| b.to_string())
        );
        if single_bond {
            println!(
                "warning: this model keeps a single bond; the phone app is no longer paired with it"
            );
        }
    }
    Ok(0)
}

/// `tm-gateway unpair`.
pub fn unpair(config: &crate::config::Config, args: &AddressArgs) -> anyhow::Result<i32> {
    runtime()?.block_on(pairing::unpair(&config.adapter, &args.address))?;
    let removed = PairedStore::in_state_dir(&config.state_dir).remove(&args.address)?;
    println!(
        "{} {}",
        args.address,
        if removed {
            "unpaired"
        } else {
            "was not paired; bond removed if any"
        }
    );
    Ok(0)
}

/// `tm-gateway devices`.
pub fn devices(state_dir: &Path, args: &JsonArgs) -> anyhow::Result<i32> {
    let all = PairedStore::in_state_dir(state_dir).load()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(0);
    }
    if all.is_empty() {
        println!("no paired devices");
    }
    let t = |x: Option<chrono::DateTime<chrono::Utc>>| {
        x.map_or("never".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
    };
    for d in all {
        println!(
            "{}  {:<18} last seen {}  battery {}  last reading {}",
            d.address,
            d.model.as_deref().or(d.name.as_deref()).unwrap_or("?"),
            t(d.last_seen),
            d.battery_pct.map_or("?".into(), |b| format!("{b}%")),
            t(d.last_reading_at)
        );
    }
    Ok(0)
}
