//! `org.bluez.Device1`: connection, pairing and the advertised properties.

use std::collections::HashMap;

use zbus::{OwnedObjectPath, OwnedVariant, interface};

use super::BluezError;
use crate::ops;
use crate::spec::{PairingMode, uuid16};
use crate::state::{ADAPTER_PATH, Shared};

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
