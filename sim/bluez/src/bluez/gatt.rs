//! The GATT objects: `GattService1`, `GattCharacteristic1` (read, write, notify sessions and
//! the StartNotify fault) and `GattDescriptor1`.

use std::collections::HashMap;

use zbus::{OwnedObjectPath, OwnedVariant, interface};

use super::BluezError;
use crate::ops;
use crate::spec::uuid16;
use crate::state::Shared;

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
