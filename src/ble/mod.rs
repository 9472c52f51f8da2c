//! The BLE side of the agent, on btleplug (BlueZ over D-Bus) plus our own pairing agent.
//!
//! - [`central`]: opens the adapter named in the config, runs discovery with a watchdog, routes
//!   advertisements and disconnects to the link tasks, reads advertisement-only devices.
//! - [`signals`]: BlueZ's device signals (adverts, link loss) read from D-Bus directly, with no
//!   call back to BlueZ per advert.
//! - [`link`]: one task per paired device, a state machine (idle, connecting, subscribed,
//!   backoff).
//! - [`session`]: what one connection does (DIS, battery, clock, subscribe, RACP).
//! - [`capture`]: bytes to readings (tm-devices) with the time policy; pure.
//! - [`pairing`]: our `org.bluez.Agent1` and the bond procedure; [`paired`]: the paired-devices
//!   file; [`paired_watch`]: notice of its changes from the kernel.
//! - [`pair_device`]: the whole pairing of one device (find, bond, identify, record), step by
//!   step; behind both `tm-gateway pair` and the pairing the nurse drives from her phone
//!   ([`crate::setup`]).
//! - [`supervisor`]: the actor of `tm-gateway run`: keeps the central running, retries with
//!   backoff while BlueZ or the adapter is missing, and raises the `ble-unavailable` alarm.

pub mod capture;
pub mod central;
pub mod link;
pub mod pair_device;
pub mod paired;
pub mod paired_watch;
pub mod pairing;
pub mod session;
pub mod signals;
pub mod supervisor;

use btleplug::api::{Central as _, Manager as _, Peripheral as _};
use btleplug::platform::{Adapter, Manager, Peripheral};

/// Errors of the BLE side, with what the operator should check.
#[derive(Debug, thiserror::Error)]
pub enum BleError {
    #[error("Bluetooth: {0}")]
    Btle(#[from] btleplug::Error),
    #[error(
        "no Bluetooth adapter named {0} (check ble.adapter in the config and `bluetoothctl list`)"
    )]
    NoAdapter(String),
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("the device is not known to BlueZ (out of range or removed)")]
    DeviceGone,
    #[error("the Bluetooth side stopped")]
    Stopped,
    #[error("device catalog: {0}")]
    Catalog(#[from] tm_devices::CatalogError),
    #[error("BlueZ signals (D-Bus): {0}")]
    Signals(#[from] zbus::Error),
}

/// What the central tells a link task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The device advertised (discovered, RSSI update, advertisement data).
    Advertised,
    /// BlueZ reports the link down.
    Disconnected,
}

/// The 128-bit UUID of a 16-bit SIG UUID.
pub fn uuid16(short: u16) -> uuid::Uuid {
    btleplug::api::bleuuid::uuid_from_u16(short)
}

/// The 16-bit form of a SIG UUID, if it is one.
pub fn short_uuid(u: &uuid::Uuid) -> Option<u16> {
    let (hi, _, _, rest) = u.as_fields();
    (rest == uuid16(0).as_fields().3 && hi >> 16 == 0).then(|| u16::try_from(hi).unwrap_or(0))
}

/// Health service UUIDs used as the discovery filter.
pub const HEALTH_SERVICES: &[u16] = &[0x1810, 0x181D, 0x181B, 0x1822, 0x1809, 0x1808, 0x180D];

/// Opens the adapter named `name` (`hci0`); the order of adapters is not stable, so never
/// take the first one.
pub async fn open_adapter(name: &str) -> Result<Adapter, BleError> {
    adapter_named(&Manager::new().await?, name).await
}

/// The adapter named `name` on an existing D-Bus session (`manager`).
pub async fn adapter_named(manager: &Manager, name: &str) -> Result<Adapter, BleError> {
    for a in manager.adapters().await? {
        let info = a.adapter_info().await?;
        if info.split_whitespace().next() == Some(name) {
            return Ok(a);
        }
    }
    Err(BleError::NoAdapter(name.to_string()))
}

/// The peripheral with `address`, when BlueZ knows it.
pub async fn find_peripheral(
    adapter: &Adapter,
    address: &str,
) -> Result<Option<Peripheral>, BleError> {
    Ok(adapter
        .peripherals()
        .await?
        .into_iter()
        .find(|p| p.address().to_string().eq_ignore_ascii_case(address)))
}

/// The catalog entry a device's advertisement matches (name, advertised services and service
/// data), as `scan`, `pair` and the setup scanner recognise health devices.
pub fn catalog_entry(
    props: &btleplug::api::PeripheralProperties,
) -> Option<&'static tm_devices::catalog::Entry> {
    let catalog = tm_devices::Catalog::embedded().ok()?;
    let services = short_list(props.services.iter());
    let data = short_list(props.service_data.keys());
    let s: Vec<&str> = services.iter().map(String::as_str).collect();
    let d: Vec<&str> = data.iter().map(String::as_str).collect();
    catalog.match_advert(&tm_devices::catalog::Advert {
        name: props.local_name.as_deref(),
        service_uuids: &s,
        service_data_uuids: &d,
        manufacturer_ids: &[],
    })
}

/// The 16-bit SIG UUIDs among `uuids`, as four hex digits (`181d`).
fn short_list<'a>(uuids: impl Iterator<Item = &'a uuid::Uuid>) -> Vec<String> {
    uuids
        .filter_map(short_uuid)
        .map(|s| format!("{s:04x}"))
        .collect()
}

/// The device identity readings carry.
pub fn device_info(d: &paired::PairedDevice) -> tm_protocol::DeviceInfo {
    tm_protocol::DeviceInfo {
        address: d.address.to_ascii_uppercase(),
        manufacturer: d.manufacturer.clone(),
        model: d.model.clone(),
        serial: d.serial.clone(),
        firmware: d.firmware.clone(),
        catalog_model: d.model_id.clone(),
    }
}
