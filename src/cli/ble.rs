//! The nurse's BLE commands: `scan`, `pair`, `unpair`, `devices`. Readable text, or JSON with
//! `--json`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use btleplug::api::{Central as _, Peripheral as _, ScanFilter};
use serde::Serialize;

use crate::ble::paired::{PairedDevice, PairedStore};
use crate::ble::{open_adapter, pairing, session, short_uuid};

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

fn catalog_match(
    name: Option<&str>,
    services: &[String],
    sd: &[String],
) -> Option<&'static tm_devices::catalog::Entry> {
    let catalog = tm_devices::Catalog::embedded().ok()?;
    let s: Vec<&str> = services.iter().map(String::as_str).collect();
    let d: Vec<&str> = sd.iter().map(String::as_str).collect();
    catalog.match_advert(&tm_devices::catalog::Advert {
        name,
        service_uuids: &s,
        service_data_uuids: &d,
        manufacturer_ids: &[],
    })
}

fn short_list(u: impl Iterator<Item = uuid::Uuid>) -> Vec<String> {
    u.filter_map(|u| short_uuid(&u))
        .map(|s| format!("{s:04x}"))
        .collect()
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
            let services = short_list(props.services.iter().copied());
            let sd = short_list(props.service_data.keys().copied());
            let Some(entry) = catalog_match(props.local_name.as_deref(), &services, &sd) else {
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

/// `tm-gateway pair`.
pub fn pair(config: &crate::config::Config, args: &PairArgs) -> anyhow::Result<i32> {
    let address = args.address.to_ascii_uppercase();
    let store = PairedStore::in_state_dir(&config.state_dir);
    let device = runtime()?.block_on(async {
        let adapter = open_adapter(&config.adapter).await?;
        adapter.start_scan(ScanFilter::default()).await?;
        let mut peripheral = None;
        for _ in 0..150 {
            peripheral = crate::ble::find_peripheral(&adapter, &address).await?;
            if peripheral.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = adapter.stop_scan().await;
        let p = peripheral.ok_or_else(|| {
            anyhow::anyhow!("{address} not found; put it in pairing mode and retry")
        })?;
        let props = p.properties().await?.unwrap_or_default();
        let entry = catalog_match(
            props.local_name.as_deref(),
            &short_list(props.services.iter().copied()),
            &short_list(props.service_data.keys().copied()),
        );
        let secrets: pairing::Secrets = match args.pin.clone() {
            Some(pin) => Arc::new(move |_| Some(pin.clone())),
            None => Arc::new(ask_on_terminal),
        };
        let advert_only = entry.is_some_and(|e| e.model.advertisement_only);
        if !advert_only
            && entry.is_none_or(|e| e.model.bonding != tm_devices::catalog::Bonding::None)
        {
            pairing::pair(&config.adapter, &address, secrets).await?;
        }
        let mut d = PairedDevice::new(&address);
        d.name = props.local_name.clone();
        d.model_id = entry.map(|e| e.model.id.clone());
        if !advert_only {
            let clock = entry.map_or(tm_devices::catalog::ClockSetting::Cts, |e| e.model.clock);
            // No subscription here: the device would push its stored records into a
            // connection that does not keep them.
            let s = session::identify(&p, clock).await?;
            d.manufacturer = s.dis.manufacturer;
            d.model = s.dis.model;
            d.serial = s.dis.serial;
            d.firmware = s.dis.firmware;
            d.battery_pct = s.battery_pct;
            let _ = p.disconnect().await;
        }
        d.last_seen = Some(chrono::Utc::now());
        anyhow::Ok((d, entry.is_some_and(|e| e.model.single_bond)))
    })?;
    let (device, single_bond) = device;
    store.upsert(device.clone())?;
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
