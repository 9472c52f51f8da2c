//! D-Bus checks: BlueZ with the configured adapter powered, and the system clock's NTP state.

use std::collections::HashMap;

use zbus::{OwnedObjectPath, OwnedVariant as OwnedValue};

use super::{CHECK_TIMEOUT, Check};

type Managed = HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedValue>>>;

async fn system_bus() -> Result<zbus::Connection, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, zbus::Connection::system()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("cannot connect to the system D-Bus: {e}")),
        Err(_) => Err("the system D-Bus did not answer".into()),
    }
}

/// BlueZ answers on the system bus and the adapter exists and is powered.
pub(super) async fn adapter(name: &str) -> Check {
    let conn = match system_bus().await {
        Ok(c) => c,
        Err(e) => return Check::fail("bluez", e, "check that dbus is running"),
    };
    let call = conn.call_method(
        Some("org.bluez"),
        "/",
        Some("org.freedesktop.DBus.ObjectManager"),
        "GetManagedObjects",
        &(),
    );
    let reply = match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Check::fail(
                "bluez",
                format!("BlueZ is not reachable: {e}"),
                "start it: `systemctl enable --now bluetooth`",
            );
        }
        Err(_) => {
            return Check::fail(
                "bluez",
                "BlueZ did not answer",
                "restart it: `systemctl restart bluetooth`",
            );
        }
    };
    let objects: Managed = match reply.body().deserialize() {
        Ok(o) => o,
        Err(e) => {
            return Check::fail(
                "bluez",
                format!("unexpected BlueZ answer: {e}"),
                "update BlueZ",
            );
        }
    };
    let path = format!("/org/bluez/{name}");
    let found: Vec<String> = objects
        .iter()
        .filter(|(_, ifaces)| ifaces.contains_key("org.bluez.Adapter1"))
        .map(|(p, _)| p.as_str().trim_start_matches("/org/bluez/").to_owned())
        .collect();
    let Some(adapter) = objects
        .iter()
        .find(|(p, _)| p.as_str() == path)
        .and_then(|(_, ifaces)| ifaces.get("org.bluez.Adapter1"))
    else {
        let others = if found.is_empty() {
            "none".to_owned()
        } else {
            found.join(", ")
        };
        return Check::fail(
            "bluez",
            format!("adapter {name} not found (adapters present: {others})"),
            "plug in the Bluetooth adapter, or set ble.adapter in the configuration to one listed",
        );
    };
    let powered = adapter
        .get("Powered")
        .and_then(|v| bool::try_from(v).ok())
        .unwrap_or(false);
    if powered {
        Check::ok("bluez", format!("adapter {name} present and powered"))
    } else {
        Check::fail(
            "bluez",
            format!("adapter {name} is powered off"),
            "power it on: `bluetoothctl power on` (or `rfkill unblock bluetooth`)",
        )
    }
}

/// The system clock is NTP-synchronized (systemd-timedated), needed before device clocks are set.
pub(super) async fn clock() -> Check {
    if std::path::Path::new("/run/systemd/timesync/synchronized").exists() {
        return Check::ok("clock", "synchronized (systemd-timesyncd)");
    }
    let fix = "enable time sync: `timedatectl set-ntp true` (needs network)";
    let conn = match system_bus().await {
        Ok(c) => c,
        Err(e) => return Check::warn("clock", format!("cannot tell: {e}"), fix),
    };
    let call = conn.call_method(
        Some("org.freedesktop.timedate1"),
        "/org/freedesktop/timedate1",
        Some("org.freedesktop.DBus.Properties"),
        "Get",
        &("org.freedesktop.timedate1", "NTPSynchronized"),
    );
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(reply)) => match reply
            .body()
            .deserialize::<OwnedValue>()
            .map(|v| bool::try_from(&v))
        {
            Ok(Ok(true)) => Check::ok("clock", "synchronized (NTP)"),
            Ok(Ok(false)) => Check::fail(
                "clock",
                "not synchronized: device clocks will not be set and readings keep device time",
                fix,
            ),
            _ => Check::warn(
                "clock",
                "cannot tell: unexpected answer from timedated",
                fix,
            ),
        },
        Ok(Err(e)) => Check::warn(
            "clock",
            format!("cannot tell: timedated unavailable ({e})"),
            fix,
        ),
        Err(_) => Check::warn("clock", "cannot tell: timedated did not answer", fix),
    }
}
