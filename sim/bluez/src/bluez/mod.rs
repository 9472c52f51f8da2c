//! The BlueZ D-Bus interfaces the simulator serves, with BlueZ's error names:
//! - [`adapter`]: `Adapter1` at `/org/bluez/hci0` (discovery, filter, `RemoveDevice`) and
//!   `AgentManager1` at `/org/bluez` (agent registration for pairing);
//! - [`device`]: `Device1` per device (connect, disconnect, pair, advertised properties);
//! - [`gatt`]: the GATT objects laid out as bluetoothd does (`service000a/char000b/desc000c`).

mod adapter;
mod device;
mod gatt;

pub use adapter::{Adapter, AgentManager};
pub use device::Device;
pub use gatt::{Characteristic, Descriptor, Service};

/// BlueZ's error names (`org.bluez.Error.*`).
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.bluez.Error")]
pub enum BluezError {
    #[zbus(error)]
    ZBus(zbus::Error),
    Failed(String),
    InProgress(String),
    NotConnected(String),
    NotSupported(String),
    NotPermitted(String),
    InvalidArguments(String),
    DoesNotExist(String),
    AlreadyExists(String),
    AuthenticationFailed(String),
    AuthenticationRejected(String),
    AuthenticationCanceled(String),
}
