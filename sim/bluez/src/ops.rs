//! What the simulated devices do: export and retract objects, connect, drop links, push
//! stored records, answer RACP requests, time out an A&D cuff that got no Date Time.
//!
//! Both the D-Bus interfaces ([`crate::bluez`]) and the control API ([`crate::FakeBluez`])
//! call these functions.

use std::collections::HashMap;
use std::time::Duration;

use zbus::Variant;

use crate::bluez::{Characteristic, Descriptor, Device, Service};
use crate::spec::{Behaviour, uuid16};
use crate::state::{Shared, char_path, desc_path, device_path, service_path};

/// Delay between a subscription and the first stored record: real scales and cuffs push
/// immediately after the CCCD write (docs/bluez-simulator.md §6.6).
const PUSH_DELAY: Duration = Duration::from_millis(20);

/// Exports the Device1 object (→ InterfacesAdded) when not yet on the bus.
pub async fn export_device(core: &Shared, address: &str) {
    {
        let mut g = core.lock();
        let Some(d) = g.devices.get_mut(address) else {
            return;
        };
        if d.exported {
            return;
        }
        d.exported = true;
    }
    let dev = Device {
        core: core.clone(),
        address: address.to_string(),
    };
    let _ = core
        .conn
        .object_server()
        .at(device_path(address), dev)
        .await;
}

/// Retracts the Device1 object (→ InterfacesRemoved); later calls get UnknownObject.
pub async fn unexport_device(core: &Shared, address: &str) {
    drop_link(core, address).await;
    {
        let mut g = core.lock();
        let Some(d) = g.devices.get_mut(address) else {
            return;
        };
        if !d.exported {
            return;
        }
        d.exported = false;
    }
    let _ = core
        .conn
        .object_server()
        .remove::<Device, _>(device_path(address))
        .await;
}

async fn export_gatt(core: &Shared, address: &str) {
    let services = match core.lock().devices.get(address) {
        Some(d) => d.spec.services.clone(),
        None => return,
    };
    let server = core.conn.object_server();
    for (s, svc) in services.iter().enumerate() {
        let path = service_path(address, s);
        let service = Service {
            uuid: uuid16(svc.uuid),
            device: device_path(address),
        };
        let _ = server.at(path.clone(), service).await;
        for (c, ch) in svc.chars.iter().enumerate() {
            let chr = Characteristic {
                core: core.clone(),
                address: address.to_string(),
                uuid: ch.uuid,
                flags: ch.flags.iter().map(|f| f.to_string()).collect(),
                service: path.clone(),
            };
            let _ = server.at(char_path(address, s, c), chr).await;
            if ch.flags.iter().any(|f| *f == "notify" || *f == "indicate") {
                let desc = Descriptor {
                    uuid: uuid16(0x2902),
                    characteristic: char_path(address, s, c),
                };
                let _ = server.at(desc_path(address, s, c), desc).await;
            }
        }
    }
}

async fn unexport_gatt(core: &Shared, address: &str) {
    let services = match core.lock().devices.get(address) {
        Some(d) => d.spec.services.clone(),
        None => return,
    };
    let server = core.conn.object_server();
    for (s, svc) in services.iter().enumerate() {
        for (c, _) in svc.chars.iter().enumerate() {
            let _ = server
                .remove::<Descriptor, _>(desc_path(address, s, c))
                .await;
            let _ = server
                .remove::<Characteristic, _>(char_path(address, s, c))
                .await;
        }
        let _ = server.remove::<Service, _>(service_path(address, s)).await;
    }
}

/// Why a connection attempt failed, as BlueZ reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectRefused {
    /// `org.bluez.Error.Failed`.
    Failed(String),
}

/// `Device1.Connect`.
pub async fn connect(core: &Shared, address: &str) -> Result<(), ConnectRefused> {
    let (delay, behaviour, generation) = {
        let mut g = core.lock();
        let Some(d) = g.devices.get_mut(address) else {
            return Err(ConnectRefused::Failed("Does Not Exist".into()));
        };
        if d.connected {
            return Ok(());
        }
        if d.faults.connect_failures > 0 {
            d.faults.connect_failures -= 1;
            return Err(ConnectRefused::Failed(
                "le-connection-abort-by-local".into(),
            ));
        }
        if !d.advertising {
            return Err(ConnectRefused::Failed(
                "Software caused connection abort".into(),
            ));
        }
        d.connected = true;
        d.generation += 1;
        d.connections += 1;
        d.time_written = false;
        (
            d.faults.services_resolved_delay,
            d.spec.behaviour.clone(),
            d.generation,
        )
    };
    let dev = device_path(address);
    core.changed(
        &dev,
        "org.bluez.Device1",
        HashMap::from([("Connected", Variant::from(true))]),
    )
    .await;
    export_gatt(core, address).await;
    if let Behaviour::DateTimeDeadline(deadline) = behaviour {
        let (core2, addr) = (core.clone(), address.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            let expired = core2
                .lock()
                .devices
                .get(&addr)
                .is_some_and(|d| d.connected && d.generation == generation && !d.time_written);
            if expired {
                tracing::info!(device = %addr, "no Date Time within the deadline: disconnecting");
                drop_link(&core2, &addr).await;
            }
        });
    }
    let resolve = {
        let (core2, addr) = (core.clone(), address.to_string());
        async move {
            let still = {
                let mut g = core2.lock();
                match g.devices.get_mut(&addr) {
                    Some(d) if d.connected && d.generation == generation => {
                        d.services_resolved = true;
                        true
                    }
                    _ => false,
                }
            };
            if still {
                let p = device_path(&addr);
                core2
                    .changed(
                        &p,
                        "org.bluez.Device1",
                        HashMap::from([("ServicesResolved", Variant::from(true))]),
                    )
                    .await;
            }
        }
    };
    if delay.is_zero() {
        resolve.await;
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            resolve.await;
        });
    }
    Ok(())
}

/// Link loss or `Disconnect`: ServicesResolved=false, GATT objects removed, Connected=false.
pub async fn drop_link(core: &Shared, address: &str) {
    {
        let mut g = core.lock();
        let Some(d) = g.devices.get_mut(address) else {
            return;
        };
        if !d.connected {
            return;
        }
        d.connected = false;
        d.services_resolved = false;
        d.notifying.clear();
    }
    let dev = device_path(address);
    core.changed(
        &dev,
        "org.bluez.Device1",
        HashMap::from([("ServicesResolved", Variant::from(false))]),
    )
    .await;
    unexport_gatt(core, address).await;
    core.changed(
        &dev,
        "org.bluez.Device1",
        HashMap::from([("Connected", Variant::from(false))]),
    )
    .await;
}

/// Path of the characteristic with `uuid` on a device.
pub fn find_char(core: &Shared, address: &str, uuid: u16) -> Option<String> {
    let g = core.lock();
    let d = g.devices.get(address)?;
    d.spec.services.iter().enumerate().find_map(|(s, svc)| {
        svc.chars
            .iter()
            .position(|c| c.uuid == uuid)
            .map(|c| char_path(address, s, c))
    })
}

/// Sends `value` on characteristic `uuid` when the device is connected and it is subscribed.
/// Returns whether it was sent.
pub async fn notify(core: &Shared, address: &str, uuid: u16, value: Vec<u8>) -> bool {
    let subscribed = core
        .lock()
        .devices
        .get(address)
        .is_some_and(|d| d.connected && d.notifying.contains(&uuid));
    let Some(path) = find_char(core, address, uuid) else {
        return false;
    };
    if !subscribed {
        return false;
    }
    core.changed(
        &path,
        "org.bluez.GattCharacteristic1",
        HashMap::from([("Value", Variant::from(value))]),
    )
    .await;
    true
}

/// After a subscription: push stored records the way the device's behaviour says.
pub fn on_subscribed(core: &Shared, address: &str, uuid: u16) {
    let records = {
        let mut g = core.lock();
        let Some(d) = g.devices.get_mut(address) else {
            return;
        };
        if uuid != d.spec.measurement_uuid {
            return;
        }
        match d.spec.behaviour {
            Behaviour::ResendStored => d.spec.stored.clone(),
            Behaviour::PushStoredOnce | Behaviour::DateTimeDeadline(_) => {
                std::mem::take(&mut d.spec.stored)
            }
            Behaviour::Racp | Behaviour::AdvertOnly => return,
        }
    };
    let (core, addr) = (core.clone(), address.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(PUSH_DELAY).await;
        for r in records {
            notify(&core, &addr, uuid, r).await;
        }
    });
}

/// A write to a characteristic: recorded, then acted on (clock, RACP).
pub fn on_write(core: &Shared, address: &str, uuid: u16, value: &[u8]) {
    let racp_records = {
        let mut g = core.lock();
        let Some(d) = g.devices.get_mut(address) else {
            return;
        };
        d.written.push(crate::spec::Written {
            uuid,
            value: value.to_vec(),
        });
        match uuid {
            0x2A2B | 0x2A08 => {
                if let Some(t) = parse_date_time(value) {
                    d.clock_offset = Some(t - chrono::Local::now().naive_local());
                    d.time_written = true;
                }
                return;
            }
            0x2A52 => racp_select(&d.spec.stored, value),
            _ => return,
        }
    };
    let (core, addr) = (core.clone(), address.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(PUSH_DELAY).await;
        let response = match racp_records {
            RacpAnswer::Records(records) => {
                let found = !records.is_empty();
                for r in records {
                    notify(&core, &addr, 0x2A18, r).await;
                }
                vec![0x06, 0x00, 0x01, if found { 0x01 } else { 0x06 }]
            }
            RacpAnswer::Count(n) => {
                let n = u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes();
                vec![0x05, 0x00, n[0], n[1]]
            }
            RacpAnswer::Unsupported(op) => vec![0x06, 0x00, op, 0x02],
        };
        notify(&core, &addr, 0x2A52, response).await;
    });
}

enum RacpAnswer {
    Records(Vec<Vec<u8>>),
    Count(usize),
    Unsupported(u8),
}

fn racp_select(stored: &[Vec<u8>], req: &[u8]) -> RacpAnswer {
    let seq = |r: &Vec<u8>| crate::profiles::glucose_sequence(r).unwrap_or(0);
    match req {
        [0x01, 0x01] => RacpAnswer::Records(stored.to_vec()),
        [0x01, 0x03, 0x01, lo, hi] => {
            let min = u16::from_le_bytes([*lo, *hi]);
            RacpAnswer::Records(stored.iter().filter(|r| seq(r) >= min).cloned().collect())
        }
        [0x04, 0x01] => RacpAnswer::Count(stored.len()),
        [op, ..] => RacpAnswer::Unsupported(*op),
        [] => RacpAnswer::Unsupported(0),
    }
}

/// Date Time (7 bytes) or the Date Time prefix of Current Time (10 bytes).
pub fn parse_date_time(v: &[u8]) -> Option<chrono::NaiveDateTime> {
    if v.len() < 7 {
        return None;
    }
    let year = i32::from(u16::from_le_bytes([v[0], v[1]]));
    chrono::NaiveDate::from_ymd_opt(year, u32::from(v[2]), u32::from(v[3]))?.and_hms_opt(
        u32::from(v[4]),
        u32::from(v[5]),
        u32::from(v[6]),
    )
}
