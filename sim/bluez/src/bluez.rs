//! The BlueZ D-Bus interfaces the simulator serves: `Adapter1` at `/org/bluez/hci0`,
//! `AgentManager1` at `/org/bluez`, `Device1` per device, and the GATT objects laid out as
//! bluetoothd does (`service000a/char000b/desc000c`), with BlueZ's error names.

use std::collections::HashMap;

use zbus::message::Header;
use zbus::{OwnedObjectPath, OwnedVariant, interface};

use crate::ops;
use crate::spec::{PairingMode, uuid16};
use crate::state::{ADAPTER_PATH, AgentRef, Shared, device_path};

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

/// `org.bluez.Adapter1`.
#[derive(Debug)]
pub struct Adapter {
    pub core: Shared,
}

#[interface(name = "org.bluez.Adapter1")]
impl Adapter {
    async fn set_discovery_filter(
        &self,
        filter: HashMap<String, OwnedVariant>,
    ) -> Result<(), BluezError> {
        let uuids: Vec<String> = filter
            .get("UUIDs")
            .and_then(|v| Vec::<String>::try_from(v.clone()).ok())
            .unwrap_or_default();
        self.core.lock().filter_uuids = uuids;
        Ok(())
    }

    async fn start_discovery(&self) -> Result<(), BluezError> {
        {
            let mut g = self.core.lock();
            g.discovering = true;
            g.discovery_starts += 1;
        }
        crate::advertise_tick(&self.core).await;
        self.core
            .changed(
                ADAPTER_PATH,
                "org.bluez.Adapter1",
                HashMap::from([("Discovering", true.into())]),
            )
            .await;
        Ok(())
    }

    async fn stop_discovery(&self) -> Result<(), BluezError> {
        let was = std::mem::replace(&mut self.core.lock().discovering, false);
        if !was {
            return Err(BluezError::Failed("No discovery started".into()));
        }
        self.core
            .changed(
                ADAPTER_PATH,
                "org.bluez.Adapter1",
                HashMap::from([("Discovering", false.into())]),
            )
            .await;
        Ok(())
    }

    async fn remove_device(&self, device: OwnedObjectPath) -> Result<(), BluezError> {
        let addr = self
            .core
            .lock()
            .devices
            .keys()
            .find(|a| device_path(a) == device.as_str())
            .cloned()
            .ok_or_else(|| BluezError::DoesNotExist("Does Not Exist".into()))?;
        {
            let mut g = self.core.lock();
            if let Some(d) = g.devices.get_mut(&addr) {
                d.paired = false;
                d.trusted = false;
            }
        }
        ops::unexport_device(&self.core, &addr).await;
        Ok(())
    }

    fn get_discovery_filters(&self) -> Vec<String> {
        vec![
            "UUIDs".into(),
            "RSSI".into(),
            "Transport".into(),
            "DuplicateData".into(),
        ]
    }

    #[zbus(property)]
    fn address(&self) -> String {
        "00:AA:01:00:00:01".into()
    }
    #[zbus(property)]
    fn address_type(&self) -> String {
        "public".into()
    }
    #[zbus(property)]
    fn name(&self) -> String {
        "tm-sim".into()
    }
    #[zbus(property)]
    fn alias(&self) -> String {
        "tm-sim".into()
    }
    #[zbus(property)]
    fn modalias(&self) -> String {
        "usb:v1D6Bp0246d0548".into()
    }
    #[zbus(property)]
    fn class(&self) -> u32 {
        0
    }
    #[zbus(property)]
    fn powered(&self) -> bool {
        self.core.lock().powered
    }
    #[zbus(property)]
    async fn set_powered(&mut self, on: bool) {
        self.core.lock().powered = on;
    }
    #[zbus(property)]
    fn discovering(&self) -> bool {
        self.core.lock().discovering
    }
    #[zbus(property)]
    fn discoverable(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn pairable(&self) -> bool {
        true
    }
    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        vec![]
    }
}

/// `org.bluez.AgentManager1` at `/org/bluez`.
#[derive(Debug)]
pub struct AgentManager {
    pub core: Shared,
}

#[interface(name = "org.bluez.AgentManager1")]
impl AgentManager {
    fn register_agent(
        &self,
        agent: OwnedObjectPath,
        _capability: String,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<(), BluezError> {
        let owner = h.sender().map(|s| s.to_string()).unwrap_or_default();
        let mut g = self.core.lock();
        if g.agents
            .iter()
            .any(|a| a.owner == owner && a.path == agent.as_str())
        {
            return Err(BluezError::AlreadyExists("Already Exists".into()));
        }
        g.agents.push(AgentRef {
            owner,
            path: agent.to_string(),
        });
        Ok(())
    }

    fn unregister_agent(
        &self,
        agent: OwnedObjectPath,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<(), BluezError> {
        let owner = h.sender().map(|s| s.to_string()).unwrap_or_default();
        let mut g = self.core.lock();
        let before = g.agents.len();
        g.agents
            .retain(|a| !(a.owner == owner && a.path == agent.as_str()));
        if g.default_agent
            .as_ref()
            .is_some_and(|a| a.owner == owner && a.path == agent.as_str())
        {
            g.default_agent = None;
        }
        if g.agents.len() == before {
            return Err(BluezError::DoesNotExist("No such Agent".into()));
        }
        Ok(())
    }

    fn request_default_agent(
        &self,
        agent: OwnedObjectPath,
        #[zbus(header)] h: Header<'_>,
    ) -> Result<(), BluezError> {
        let owner = h.sender().map(|s| s.to_string()).unwrap_or_default();
        let mut g = self.core.lock();
        let found = g
            .agents
            .iter()
            .find(|a| a.owner == owner && a.path == agent.as_str())
            .cloned();
        g.default_agent =
            Some(found.ok_or_else(|| BluezError::DoesNotExist("No such Agent".into()))?);
        Ok(())
    }
}

/// `org.bluez.Device1`.
#[derive(Debug)]
pub struct Device {
    pub core: Shared,
    pub address: String,
}

impl Device {
    fn get<T>(&self, f: impl FnOnce(&crate::state::DeviceState) -> T) -> zbus::fdo::Result<T> {
        let g = self.core.lock();
        let d = g
            .devices
            .get(&self.address)
            .ok_or_else(|| zbus::fdo::Error::UnknownObject(self.address.clone()))?;
        Ok(f(d))
    }
}

#[interface(name = "org.bluez.Device1")]
impl Device {
    async fn connect(&self) -> Result<(), BluezError> {
        ops::connect(&self.core, &self.address)
            .await
            .map_err(|ops::ConnectRefused::Failed(m)| BluezError::Failed(m))
    }

    async fn disconnect(&self) -> Result<(), BluezError> {
        ops::drop_link(&self.core, &self.address).await;
        Ok(())
    }

    async fn pair(&self) -> Result<(), BluezError> {
        crate::pairing::pair(&self.core, &self.address).await
    }

    async fn cancel_pairing(&self) -> Result<(), BluezError> {
        Err(BluezError::DoesNotExist("No pairing in progress".into()))
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.address.clone()
    }
    #[zbus(property)]
    fn address_type(&self) -> String {
        "public".into()
    }
    #[zbus(property)]
    fn name(&self) -> zbus::fdo::Result<String> {
        self.get(|d| d.spec.name.clone())
    }
    #[zbus(property)]
    fn alias(&self) -> zbus::fdo::Result<String> {
        self.get(|d| d.spec.name.clone())
    }
    #[zbus(property)]
    fn adapter(&self) -> OwnedObjectPath {
        OwnedObjectPath::try_from(ADAPTER_PATH).unwrap_or_default()
    }
    #[zbus(property)]
    fn paired(&self) -> zbus::fdo::Result<bool> {
        self.get(|d| d.paired)
    }
    #[zbus(property)]
    fn bonded(&self) -> zbus::fdo::Result<bool> {
        self.get(|d| d.paired)
    }
    #[zbus(property)]
    fn trusted(&self) -> zbus::fdo::Result<bool> {
        self.get(|d| d.trusted)
    }
    #[zbus(property)]
    async fn set_trusted(&mut self, on: bool) {
        if let Some(d) = self.core.lock().devices.get_mut(&self.address) {
            d.trusted = on;
        }
    }
    #[zbus(property)]
    fn blocked(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn legacy_pairing(&self) -> zbus::fdo::Result<bool> {
        self.get(|d| matches!(d.spec.pairing, Some(PairingMode::Pin(_))))
    }
    #[zbus(property)]
    fn connected(&self) -> zbus::fdo::Result<bool> {
        self.get(|d| d.connected)
    }
    #[zbus(property)]
    fn services_resolved(&self) -> zbus::fdo::Result<bool> {
        self.get(|d| d.services_resolved)
    }
    #[zbus(property, name = "RSSI")]
    fn rssi(&self) -> zbus::fdo::Result<i16> {
        self.get(|d| d.spec.rssi)
    }
    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> zbus::fdo::Result<Vec<String>> {
        self.get(|d| d.spec.adv_uuids.iter().map(|u| uuid16(*u)).collect())
    }
    #[zbus(property)]
    fn service_data(&self) -> zbus::fdo::Result<HashMap<String, OwnedVariant>> {
        self.get(|d| {
            d.spec
                .service_data
                .iter()
                .map(|(u, v)| {
                    (
                        uuid16(*u),
                        OwnedVariant::try_from(zbus::Variant::from(v.clone()))
                            .unwrap_or_else(|_| OwnedVariant::from(0u8)),
                    )
                })
                .collect()
        })
    }
    #[zbus(property)]
    fn manufacturer_data(&self) -> zbus::fdo::Result<HashMap<u16, OwnedVariant>> {
        self.get(|d| {
            d.spec
                .manufacturer_data
                .iter()
                .map(|(k, v)| {
                    (
                        *k,
                        OwnedVariant::try_from(zbus::Variant::from(v.clone()))
                            .unwrap_or_else(|_| OwnedVariant::from(0u8)),
                    )
                })
                .collect()
        })
    }
}

/// `org.bluez.GattService1`.
#[derive(Debug)]
pub struct Service {
    pub uuid: String,
    pub device: String,
}

#[interface(name = "org.bluez.GattService1")]
impl Service {
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.uuid.clone()
    }
    #[zbus(property)]
    fn primary(&self) -> bool {
        true
    }
    #[zbus(property)]
    fn device(&self) -> OwnedObjectPath {
        OwnedObjectPath::try_from(self.device.clone()).unwrap_or_default()
    }
}

/// `org.bluez.GattCharacteristic1`.
#[derive(Debug)]
pub struct Characteristic {
    pub core: Shared,
    pub address: String,
    pub uuid: u16,
    pub flags: Vec<String>,
    pub service: String,
}

#[interface(name = "org.bluez.GattCharacteristic1")]
impl Characteristic {
    fn read_value(&self, _options: HashMap<String, OwnedVariant>) -> Result<Vec<u8>, BluezError> {
        let g = self.core.lock();
        let d = g
            .devices
            .get(&self.address)
            .filter(|d| d.connected)
            .ok_or_else(|| BluezError::NotConnected("Not Connected".into()))?;
        if !self.flags.iter().any(|f| f == "read") {
            return Err(BluezError::NotPermitted("Read not permitted".into()));
        }
        Ok(match self.uuid {
            0x2A2B => crate::profiles::current_time(d.device_now()).to_vec(),
            0x2A08 => crate::profiles::date_time(d.device_now()).to_vec(),
            _ => d
                .spec
                .services
                .iter()
                .flat_map(|s| &s.chars)
                .find(|c| c.uuid == self.uuid)
                .map(|c| c.value.clone())
                .unwrap_or_default(),
        })
    }

    fn write_value(
        &self,
        value: Vec<u8>,
        _options: HashMap<String, OwnedVariant>,
    ) -> Result<(), BluezError> {
        if !self
            .core
            .lock()
            .devices
            .get(&self.address)
            .is_some_and(|d| d.connected)
        {
            return Err(BluezError::NotConnected("Not Connected".into()));
        }
        if !self
            .flags
            .iter()
            .any(|f| f == "write" || f == "write-without-response")
        {
            return Err(BluezError::NotPermitted("Write not permitted".into()));
        }
        ops::on_write(&self.core, &self.address, self.uuid, &value);
        Ok(())
    }

    async fn start_notify(&self) -> Result<(), BluezError> {
        {
            let mut g = self.core.lock();
            let d = g
                .devices
                .get_mut(&self.address)
                .filter(|d| d.connected)
                .ok_or_else(|| BluezError::NotConnected("Not Connected".into()))?;
            if d.faults.start_notify_failures > 0 {
                d.faults.start_notify_failures -= 1;
                return Err(BluezError::NotConnected("Not Connected".into()));
            }
            if !self.flags.iter().any(|f| f == "notify" || f == "indicate") {
                return Err(BluezError::NotSupported(
                    "Operation is not supported".into(),
                ));
            }
            d.notifying.insert(self.uuid);
        }
        ops::on_subscribed(&self.core, &self.address, self.uuid);
        Ok(())
    }

    fn stop_notify(&self) -> Result<(), BluezError> {
        let mut g = self.core.lock();
        let removed = g
            .devices
            .get_mut(&self.address)
            .is_some_and(|d| d.notifying.remove(&self.uuid));
        if removed {
            Ok(())
        } else {
            Err(BluezError::Failed("No notify session started".into()))
        }
    }

    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        uuid16(self.uuid)
    }
    #[zbus(property)]
    fn service(&self) -> OwnedObjectPath {
        OwnedObjectPath::try_from(self.service.clone()).unwrap_or_default()
    }
    #[zbus(property)]
    fn flags(&self) -> Vec<String> {
        self.flags.clone()
    }
    #[zbus(property)]
    fn notifying(&self) -> bool {
        self.core
            .lock()
            .devices
            .get(&self.address)
            .is_some_and(|d| d.notifying.contains(&self.uuid))
    }
    #[zbus(property, name = "MTU")]
    fn mtu(&self) -> u16 {
        185
    }
}

/// `org.bluez.GattDescriptor1` (the CCCD; BlueZ writes it for StartNotify).
#[derive(Debug)]
pub struct Descriptor {
    pub uuid: String,
    pub characteristic: String,
}

#[interface(name = "org.bluez.GattDescriptor1")]
impl Descriptor {
    fn read_value(&self, _options: HashMap<String, OwnedVariant>) -> Vec<u8> {
        vec![0, 0]
    }
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.uuid.clone()
    }
    #[zbus(property)]
    fn characteristic(&self) -> OwnedObjectPath {
        OwnedObjectPath::try_from(self.characteristic.clone()).unwrap_or_default()
    }
}
