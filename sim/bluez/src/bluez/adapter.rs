//! `org.bluez.Adapter1` and `org.bluez.AgentManager1`.

use std::collections::HashMap;

use zbus::message::Header;
use zbus::{OwnedObjectPath, OwnedVariant, interface};

use super::BluezError;
use crate::ops;
use crate::state::{ADAPTER_PATH, AgentRef, Shared, device_path};

/// The D-Bus client that sent a call (its unique name).
fn client_of(hdr: &Header<'_>) -> String {
    hdr.sender().map(|s| s.to_string()).unwrap_or_default()
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

    async fn start_discovery(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BluezError> {
        {
            let mut g = self.core.lock();
            g.discovery_clients.insert(client_of(&hdr));
            g.discovering = true;
            g.stalled = false;
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

    async fn stop_discovery(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), BluezError> {
        {
            let mut g = self.core.lock();
            if !g.discovery_clients.remove(&client_of(&hdr)) {
                return Err(BluezError::Failed("No discovery started".into()));
            }
            if !g.discovery_clients.is_empty() {
                // Another client still discovers: the adapter goes on.
                return Ok(());
            }
            g.discovering = false;
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
