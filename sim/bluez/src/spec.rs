//! What a simulated device is: its advertisement, its GATT table, how it pairs, what it does
//! when the central connects, subscribes or writes, and the faults a test injected.
//!
//! Specs are plain data; [`crate::profiles`] builds the scripted health devices from them.

use std::time::Duration;

/// The full 128-bit form of a 16-bit SIG UUID, lower case as BlueZ prints it.
pub fn uuid16(short: u16) -> String {
    format!("0000{short:04x}-0000-1000-8000-00805f9b34fb")
}

/// How the device bonds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairingMode {
    /// Just-Works: no agent prompt.
    JustWorks,
    /// The central must type the passkey the device shows (`RequestPasskey`).
    Passkey(u32),
    /// Legacy PIN (`RequestPinCode`).
    Pin(String),
    /// Numeric comparison (`RequestConfirmation`).
    Confirm(u32),
    /// The device types the passkey the central shows (`DisplayPasskey`).
    Display(u32),
}

/// What the device does on its own when the link comes up or a value is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Stored records are pushed on the measurement characteristic after it is subscribed,
    /// and re-sent on every connection (scales that keep their memory).
    ResendStored,
    /// Stored records are pushed once after subscription, then forgotten (cuffs).
    PushStoredOnce,
    /// Stored records are served through the Record Access Control Point (glucose).
    Racp,
    /// Like [`Behaviour::PushStoredOnce`], but the device drops the link unless Date Time
    /// 0x2A08 is written within the deadline after connecting (A&D).
    DateTimeDeadline(Duration),
    /// No connection: readings travel in advertisement service data (Xiaomi).
    AdvertOnly,
}

/// One GATT characteristic.
#[derive(Debug, Clone)]
pub struct CharSpec {
    /// 16-bit UUID.
    pub uuid: u16,
    /// BlueZ flag strings (`read`, `write`, `notify`, `indicate`).
    pub flags: Vec<&'static str>,
    /// Value returned by `ReadValue` (clock characteristics are computed instead).
    pub value: Vec<u8>,
}

/// One primary service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// 16-bit UUID.
    pub uuid: u16,
    /// Its characteristics.
    pub chars: Vec<CharSpec>,
}

/// A simulated device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// `AA:BB:CC:DD:EE:FF`.
    pub address: String,
    /// Advertised local name.
    pub name: String,
    /// Advertised service UUIDs (16-bit).
    pub adv_uuids: Vec<u16>,
    /// Advertised service data (16-bit UUID, bytes).
    pub service_data: Vec<(u16, Vec<u8>)>,
    /// Advertised manufacturer data.
    pub manufacturer_data: Vec<(u16, Vec<u8>)>,
    /// RSSI in dBm.
    pub rssi: i16,
    /// GATT table.
    pub services: Vec<ServiceSpec>,
    /// The characteristic stored records are sent on.
    pub measurement_uuid: u16,
    /// How it bonds; `None` when it needs no bond.
    pub pairing: Option<PairingMode>,
    /// What it does by itself.
    pub behaviour: Behaviour,
    /// Records in memory at start (raw bytes as sent on `measurement_uuid`).
    pub stored: Vec<Vec<u8>>,
    /// Whether the device clock starts set (otherwise it reads as 2000-01-01).
    pub clock_set: bool,
}

/// Faults a test can inject into one device.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next N `Connect` calls fail with `org.bluez.Error.Failed`.
    pub connect_failures: u32,
    /// Delay between `Connected=true` and `ServicesResolved=true`.
    pub services_resolved_delay: Duration,
    /// The next N `StartNotify` calls fail with `org.bluez.Error.NotConnected`.
    pub start_notify_failures: u32,
}

/// A write the central made, as the device recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// 16-bit characteristic UUID.
    pub uuid: u16,
    /// The bytes.
    pub value: Vec<u8>,
}
