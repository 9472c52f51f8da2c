//! # tm-sim-bluez: a BlueZ simulator on D-Bus
//!
//! Owns the name `org.bluez` on a (private) bus and serves what btleplug/bluez-async and our
//! pairing agent use (docs/bluez-simulator.md §2): the adapter, devices and GATT objects laid out
//! as bluetoothd does, the ObjectManager with InterfacesAdded/Removed, PropertiesChanged, BlueZ's
//! error names, the discovery filter, and pairing that calls back into a registered
//! `org.bluez.Agent1`. The devices are scripted health devices speaking the real SIG byte
//! formats ([`profiles`]).
//!
//! Map:
//! - [`spec`]: what a device is (advertisement, GATT table, pairing, behaviour, faults).
//! - [`profiles`]: the scripted devices and the byte encoders tests build records with.
//! - `bluez` (adapter, device, GATT) / `pairing` / `ops`: the D-Bus objects and what the
//!   devices do.
//! - [`bus`]: a private dbus-daemon for the binary and the in-process test harness.
//! - [`FakeBluez`]: the control API for tests (indicate, drop the link, faults, records).

pub mod bus;
pub mod profiles;
pub mod spec;

mod bluez;
mod ops;
mod pairing;
mod state;

use std::sync::Arc;
use std::time::Duration;

use tokio_util_shim::CancelOnDrop;

pub use spec::{Behaviour, DeviceSpec, Faults, PairingMode, Written, uuid16};

/// How often an in-range device "advertises" while discovery runs (an RSSI or service-data
/// PropertiesChanged, as BlueZ sends with DuplicateData).
pub const ADVERTISING_INTERVAL: Duration = Duration::from_millis(200);

/// Errors of the control API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error("no simulated device {0}")]
    UnknownDevice(String),
    #[error("device {0} has no characteristic {1:04X}")]
    UnknownCharacteristic(String, u16),
}

/// A running simulator. Dropping it stops the advertising task; call [`FakeBluez::stop`] to
/// release `org.bluez` and close the connection.
#[derive(Debug)]
pub struct FakeBluez {
    core: state::Shared,
    _adverts: CancelOnDrop,
}

impl FakeBluez {
    /// Connects to the bus at `address`, serves the devices and owns `org.bluez`.
    pub async fn start(address: &str, devices: Vec<DeviceSpec>) -> Result<Self, SimError> {
        let conn = zbus::connection::Builder::address(address).build().await?;
        let core = Arc::new(state::Core {
            conn: conn.clone(),
            inner: Default::default(),
        });
        {
            let mut g = core.lock();
            for d in devices {
                g.devices
                    .insert(d.address.clone(), state::DeviceState::new(d));
            }
        }
        let server = conn.object_server();
        server.at("/", zbus::fdo::ObjectManager).await?;
        server
            .at("/org/bluez", bluez::AgentManager { core: core.clone() })
            .await?;
        server
            .at(state::ADAPTER_PATH, bluez::Adapter { core: core.clone() })
            .await?;
        conn.request_name("org.bluez").await?;
        let adverts = CancelOnDrop::spawn({
            let core = core.clone();
            async move {
                loop {
                    tokio::time::sleep(ADVERTISING_INTERVAL).await;
                    advertise_tick(&core).await;
                }
            }
        });
        Ok(Self {
            core,
            _adverts: adverts,
        })
    }

    /// Releases `org.bluez` and closes the connection.
    pub async fn stop(self) -> Result<(), SimError> {
        let _ = self.core.conn.release_name("org.bluez").await;
        self.core.conn.clone().close().await?;
        Ok(())
    }

    fn with<T>(
        &self,
        address: &str,
        f: impl FnOnce(&mut state::DeviceState) -> T,
    ) -> Result<T, SimError> {
        let mut g = self.core.lock();
        g.devices
            .get_mut(address)
            .map(f)
            .ok_or_else(|| SimError::UnknownDevice(address.into()))
    }

    /// Sends `value` on characteristic `uuid` now (when connected and subscribed); returns
    /// whether it went out.
    pub async fn indicate(
        &self,
        address: &str,
        uuid: u16,
        value: Vec<u8>,
    ) -> Result<bool, SimError> {
        self.with(address, |_| ())?;
        if ops::find_char(&self.core, address, uuid).is_none() {
            return Err(SimError::UnknownCharacteristic(address.into(), uuid));
        }
        Ok(ops::notify(&self.core, address, uuid, value).await)
    }

    /// Link loss: the device stays in range and keeps advertising.
    pub async fn drop_link(&self, address: &str) -> Result<(), SimError> {
        self.with(address, |_| ())?;
        ops::drop_link(&self.core, address).await;
        Ok(())
    }

    /// The device goes out of range: link lost, adverts stop, the object is removed.
    pub async fn remove_device(&self, address: &str) -> Result<(), SimError> {
        self.with(address, |d| d.advertising = false)?;
        ops::unexport_device(&self.core, address).await;
        Ok(())
    }

    /// One advert of a device BlueZ does not know (its object was removed, or it never came
    /// into range): the object appears (`InterfacesAdded`, carrying the service data of that
    /// advert) and the device falls silent again at once, as a scale that shows one stable
    /// weight and switches off within an advertising interval.
    pub async fn advertise_once(&self, address: &str) -> Result<(), SimError> {
        self.with(address, |d| d.advertising = false)?;
        ops::export_device(&self.core, address).await;
        Ok(())
    }

    /// Starts or stops advertising (back in range / out of range without removal).
    pub fn set_advertising(&self, address: &str, on: bool) -> Result<(), SimError> {
        self.with(address, |d| d.advertising = on)
    }

    /// Replaces the advertised service data (Xiaomi readings).
    pub fn set_service_data(
        &self,
        address: &str,
        uuid: u16,
        data: Vec<u8>,
    ) -> Result<(), SimError> {
        self.with(address, |d| {
            d.spec.service_data.retain(|(u, _)| *u != uuid);
            d.spec.service_data.push((uuid, data));
        })
    }

    /// Adds a record to the device's memory.
    pub fn queue_record(&self, address: &str, record: Vec<u8>) -> Result<(), SimError> {
        self.with(address, |d| d.spec.stored.push(record))
    }

    /// Empties the device's memory: it has measured nothing yet.
    pub fn clear_records(&self, address: &str) -> Result<(), SimError> {
        self.with(address, |d| d.spec.stored.clear())
    }

    /// Replaces the device's injected faults.
    pub fn set_faults(&self, address: &str, faults: Faults) -> Result<(), SimError> {
        self.with(address, |d| d.faults = faults)
    }

    /// Everything the central wrote to the device, in order.
    pub fn written(&self, address: &str) -> Result<Vec<Written>, SimError> {
        self.with(address, |d| d.written.clone())
    }

    /// Connections the device accepted.
    pub fn connections(&self, address: &str) -> Result<u32, SimError> {
        self.with(address, |d| d.connections)
    }

    /// Whether the device is connected now.
    pub fn is_connected(&self, address: &str) -> Result<bool, SimError> {
        self.with(address, |d| d.connected)
    }

    /// Whether the device is bonded.
    pub fn is_paired(&self, address: &str) -> Result<bool, SimError> {
        self.with(address, |d| d.paired)
    }

    /// Marks the device as bonded already (a gateway restarting with existing bonds).
    pub async fn set_paired(&self, address: &str) -> Result<(), SimError> {
        self.with(address, |d| d.paired = true)?;
        ops::export_device(&self.core, address).await;
        Ok(())
    }

    /// How many times discovery was started.
    pub fn discovery_starts(&self) -> u32 {
        self.core.lock().discovery_starts
    }

    /// Discovery stalls: BlueZ keeps `Discovering=true` but reports nothing more until
    /// discovery is started again.
    pub fn stall_discovery(&self) {
        self.core.lock().stalled = true;
    }

    /// The UUIDs of the current discovery filter.
    pub fn discovery_filter(&self) -> Vec<String> {
        self.core.lock().filter_uuids.clone()
    }
}

/// One advertising round: in-range devices that match the filter are exported (discovered)
/// or, when already known, send an RSSI/service-data update.
pub(crate) async fn advertise_tick(core: &state::Shared) {
    let (new, known): (Vec<_>, Vec<_>) = {
        let g = core.lock();
        if !g.discovering || g.stalled {
            return;
        }
        g.devices
            .values()
            .filter(|d| d.advertising && !d.connected && d.matches(&g.filter_uuids))
            .map(|d| {
                (
                    d.spec.address.clone(),
                    d.exported,
                    d.spec.rssi,
                    d.spec.service_data.clone(),
                )
            })
            .partition(|(_, exported, _, _)| !exported)
    };
    for (addr, ..) in new {
        ops::export_device(core, &addr).await;
    }
    for (addr, _, rssi, sd) in known {
        let mut props = std::collections::HashMap::from([("RSSI", zbus::Variant::from(rssi))]);
        if !sd.is_empty() {
            let map: std::collections::HashMap<String, zbus::Variant<'static>> = sd
                .into_iter()
                .map(|(u, v)| (uuid16(u), zbus::Variant::from(v)))
                .collect();
            props.insert("ServiceData", zbus::Variant::from(map));
        }
        core.changed(&state::device_path(&addr), "org.bluez.Device1", props)
            .await;
    }
}

mod tokio_util_shim {
    //! A task aborted when its handle is dropped.
    #[derive(Debug)]
    pub struct CancelOnDrop(tokio::task::JoinHandle<()>);
    impl CancelOnDrop {
        pub fn spawn(f: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
            Self(tokio::spawn(f))
        }
    }
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
}
