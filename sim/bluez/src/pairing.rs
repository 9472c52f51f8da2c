//! `Device1.Pair`: calls back into the registered (default) agent the way bluetoothd does,
//! checks the answer against the device's secret, then sets Paired/Bonded.

use std::collections::HashMap;

use zbus::{OwnedObjectPath, Variant};

use crate::bluez::BluezError;
use crate::spec::PairingMode;
use crate::state::{Shared, device_path};

async fn ask<R>(
    core: &Shared,
    method: &str,
    body: &(impl serde::Serialize + zbus::Type + Sync),
) -> Result<R, BluezError>
where
    R: for<'d> serde::Deserialize<'d> + zbus::Type,
{
    let agent = {
        let g = core.lock();
        g.default_agent.clone().or_else(|| g.agents.last().cloned())
    }
    .ok_or_else(|| BluezError::AuthenticationFailed("No agent available".into()))?;
    let reply = core
        .conn
        .call_method(
            Some(agent.owner.as_str()),
            agent.path.as_str(),
            Some("org.bluez.Agent1"),
            method,
            body,
        )
        .await
        .map_err(|e| match e {
            zbus::Error::MethodError(name, _, _) if name.as_str() == "org.bluez.Error.Canceled" => {
                BluezError::AuthenticationCanceled("Authentication Canceled".into())
            }
            _ => BluezError::AuthenticationRejected("Authentication Rejected".into()),
        })?;
    reply
        .body()
        .deserialize::<R>()
        .map_err(|_| BluezError::AuthenticationFailed("Authentication Failed".into()))
}

pub async fn pair(core: &Shared, address: &str) -> Result<(), BluezError> {
    let mode = {
        let g = core.lock();
        let d = g
            .devices
            .get(address)
            .ok_or_else(|| BluezError::DoesNotExist("Does Not Exist".into()))?;
        if d.paired {
            return Err(BluezError::AlreadyExists("Already Exists".into()));
        }
        d.spec.pairing.clone().unwrap_or(PairingMode::JustWorks)
    };
    let path = OwnedObjectPath::try_from(device_path(address))
        .map_err(|e| BluezError::Failed(e.to_string()))?;
    let ok = match mode {
        PairingMode::JustWorks => true,
        PairingMode::Passkey(want) => ask::<u32>(core, "RequestPasskey", &(path,)).await? == want,
        PairingMode::Pin(want) => ask::<String>(core, "RequestPinCode", &(path,)).await? == want,
        PairingMode::Confirm(key) => {
            ask::<()>(core, "RequestConfirmation", &(path, key)).await?;
            true
        }
        PairingMode::Display(key) => {
            ask::<()>(core, "DisplayPasskey", &(path, key, 0u16)).await?;
            true
        }
    };
    if !ok {
        return Err(BluezError::AuthenticationFailed(
            "Authentication Failed".into(),
        ));
    }
    if let Some(d) = core.lock().devices.get_mut(address) {
        d.paired = true;
    }
    let props = HashMap::from([
        ("Paired", Variant::from(true)),
        ("Bonded", Variant::from(true)),
    ]);
    core.changed(&device_path(address), "org.bluez.Device1", props)
        .await;
    Ok(())
}
