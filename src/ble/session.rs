//! One connection to a device, from `connect()` to a subscribed link: discover, open the
//! notification stream **before** subscribing (devices push stored records right after the
//! CCCD write), read Device Information and battery, read the device clock, set it as the
//! catalog says, subscribe, and ask a RACP device for the records after the last one seen.
//!
//! Pairing uses [`identify`] (or [`identify_reporting`], which tells each step as it begins):
//! the same connection without the subscription. A device pushes its
//! stored records as soon as a measurement is subscribed and deletes them once indicated, so a
//! subscription where nothing stashes the records would lose them.

use std::time::Duration;

use btleplug::api::{Characteristic, Peripheral as _, WriteType};
use btleplug::platform::Peripheral;
use chrono::{Datelike, Timelike, Utc};
use futures::stream::BoxStream;
use tm_devices::catalog::ClockSetting;

use super::capture::ClockObservation;
use super::{BleError, uuid16};

/// Characteristics whose values are captured and stashed.
pub const MEASUREMENTS: &[u16] = &[
    0x2A9D, 0x2A9C, 0x2A35, 0x2A5E, 0x2A5F, 0x2A1C, 0x2A18, 0x2A34, 0x2A52,
];

/// Longest a connection attempt (connect + service discovery) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What a connection learnt, held by the link while it stays subscribed.
pub struct Session {
    /// The connected device; the link disconnects it when it stops.
    pub peripheral: Peripheral,
    /// Notifications of every characteristic, opened before subscribing so no record the
    /// device sends at once is missed. Its end means the connection is gone.
    pub notifications: BoxStream<'static, btleplug::api::ValueNotification>,
    /// Device Information read this connection.
    pub dis: Dis,
    /// Battery level in percent (first byte of 0x2A19); `None` without a battery service or
    /// when the read failed.
    pub battery_pct: Option<u8>,
    /// The device clock as read before it was set; `None` when it has no readable clock.
    pub clock: Option<ClockObservation>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dis", &self.dis)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Device Information strings (trailing NULs cut, invalid UTF-8 replaced). Each is `None`
/// when the device lacks the characteristic or its read failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dis {
    /// Manufacturer Name String (0x2A29).
    pub manufacturer: Option<String>,
    /// Model Number String (0x2A24).
    pub model: Option<String>,
    /// Serial Number String (0x2A25).
    pub serial: Option<String>,
    /// Firmware Revision String (0x2A26).
    pub firmware: Option<String>,
}

fn find(chars: &[Characteristic], uuid: u16) -> Option<&Characteristic> {
    chars.iter().find(|c| c.uuid == uuid16(uuid))
}

async fn read_string(p: &Peripheral, chars: &[Characteristic], uuid: u16) -> Option<String> {
    let c = find(chars, uuid)?;
    let v = p.read(c).await.ok()?;
    Some(
        String::from_utf8_lossy(&v)
            .trim_end_matches('\0')
            .to_string(),
    )
}

/// Current Time 0x2A2B for `t` (local wall time), adjust reason "external reference".
pub fn current_time_bytes(t: chrono::NaiveDateTime) -> Vec<u8> {
    let mut v = date_time_bytes(t);
    v.push(u8::try_from(t.weekday().number_from_monday()).unwrap_or(0));
    v.push(0);
    v.push(0x02);
    v
}

/// Date Time 0x2A08 for `t`.
pub fn date_time_bytes(t: chrono::NaiveDateTime) -> Vec<u8> {
    let y = u16::try_from(t.year()).unwrap_or(0).to_le_bytes();
    let b = |x: u32| u8::try_from(x).unwrap_or(0);
    vec![
        y[0],
        y[1],
        b(t.month()),
        b(t.day()),
        b(t.hour()),
        b(t.minute()),
        b(t.second()),
    ]
}

/// What a connection without subscription learnt (see [`identify`]); the same fields as
/// [`Session`] has, read the same way.
#[derive(Debug, Clone, Default)]
pub struct Identified {
    /// Device Information read at this connection.
    pub dis: Dis,
    /// Battery level in percent; `None` without a battery service.
    pub battery_pct: Option<u8>,
    /// The device clock as read before it was set; `None` when it has no readable clock.
    pub clock: Option<ClockObservation>,
}

/// Connects and discovers the characteristics.
async fn connect(p: &Peripheral) -> Result<Vec<Characteristic>, BleError> {
    tokio::time::timeout(CONNECT_TIMEOUT, p.connect())
        .await
        .map_err(|_| BleError::Timeout("connect"))??;
    p.discover_services().await?;
    Ok(p.characteristics().into_iter().collect())
}

async fn read_dis(p: &Peripheral, chars: &[Characteristic]) -> Dis {
    Dis {
        manufacturer: read_string(p, chars, 0x2A29).await,
        model: read_string(p, chars, 0x2A24).await,
        serial: read_string(p, chars, 0x2A25).await,
        firmware: read_string(p, chars, 0x2A26).await,
    }
}

async fn read_battery(p: &Peripheral, chars: &[Characteristic]) -> Option<u8> {
    let c = find(chars, 0x2A19)?;
    p.read(c).await.ok().and_then(|v| v.first().copied())
}

/// Reads Device Information, the clock and the battery, and sets the clock.
async fn read_and_set_clock(
    p: &Peripheral,
    chars: &[Characteristic],
    clock: ClockSetting,
) -> Result<Identified, BleError> {
    let dis = read_dis(p, chars).await;
    let clock_obs = read_clock(p, chars).await;
    set_clock(p, chars, clock).await?;
    let battery_pct = read_battery(p, chars).await;
    Ok(Identified {
        dis,
        battery_pct,
        clock: clock_obs,
    })
}

/// What [`identify_reporting`] starts on, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifyStep {
    /// Connecting and reading Device Information.
    DeviceInformation,
    /// Reading the battery level.
    Battery,
    /// Reading and setting the clock; the battery level read just before.
    Clock {
        /// Percent, `None` without a battery service.
        battery_pct: Option<u8>,
    },
}

/// Connects for pairing: Device Information, battery, clock read and set, and no
/// subscription, so the device keeps its stored records for the agent's link.
pub async fn identify(p: &Peripheral, clock: ClockSetting) -> Result<Identified, BleError> {
    identify_reporting(p, clock, &|_| {}).await
}

/// [`identify`], telling `step` as each part begins (the steps a nurse's page shows).
pub async fn identify_reporting(
    p: &Peripheral,
    clock: ClockSetting,
    step: &(dyn Fn(IdentifyStep) + Send + Sync),
) -> Result<Identified, BleError> {
    step(IdentifyStep::DeviceInformation);
    let chars = connect(p).await?;
    let dis = read_dis(p, &chars).await;
    step(IdentifyStep::Battery);
    let battery_pct = read_battery(p, &chars).await;
    step(IdentifyStep::Clock { battery_pct });
    let clock_obs = read_clock(p, &chars).await;
    set_clock(p, &chars, clock).await?;
    Ok(Identified {
        dis,
        battery_pct,
        clock: clock_obs,
    })
}

/// Connects and prepares the link. `racp_from` is the first sequence number to fetch.
pub async fn open(
    p: Peripheral,
    clock: ClockSetting,
    racp_from: Option<u32>,
) -> Result<Session, BleError> {
    let chars = connect(&p).await?;
    let notifications = p.notifications().await?;
    let Identified {
        dis,
        battery_pct,
        clock: clock_obs,
    } = read_and_set_clock(&p, &chars, clock).await?;
    for uuid in MEASUREMENTS {
        if let Some(c) = find(&chars, *uuid) {
            p.subscribe(c).await?;
        }
    }
    if let Some(racp) = find(&chars, 0x2A52) {
        let request = match racp_from {
            Some(n) => {
                let n = u16::try_from(n).unwrap_or(u16::MAX).to_le_bytes();
                vec![0x01, 0x03, 0x01, n[0], n[1]]
            }
            None => vec![0x01, 0x01],
        };
        p.write(racp, &request, WriteType::WithResponse).await?;
    }
    Ok(Session {
        peripheral: p,
        notifications,
        dis,
        battery_pct,
        clock: clock_obs,
    })
}

async fn read_clock(p: &Peripheral, chars: &[Characteristic]) -> Option<ClockObservation> {
    for uuid in [0x2A2B, 0x2A08] {
        let Some(c) = find(chars, uuid) else { continue };
        if !c.properties.contains(btleplug::api::CharPropFlags::READ) {
            continue;
        }
        let v = p.read(c).await.ok()?;
        let gateway_now = Utc::now();
        let t = tm_devices::decode(
            tm_devices::Source::Characteristic(uuid),
            &v,
            &tm_devices::Quirks::NONE,
        )
        .ok()?;
        let device_now = match t.info? {
            tm_devices::Info::CurrentTime(ct) => ct.time.to_naive(),
            tm_devices::Info::DateTime { time, .. } => time.to_naive(),
            _ => None,
        };
        // An unknown date reads as "never set" (year 0 < 2015).
        let device_now = device_now.unwrap_or_default();
        return Some(ClockObservation {
            device_now,
            gateway_now,
        });
    }
    None
}

async fn set_clock(
    p: &Peripheral,
    chars: &[Characteristic],
    clock: ClockSetting,
) -> Result<(), BleError> {
    let now = chrono::Local::now().naive_local();
    let (uuid, bytes) = match clock {
        ClockSetting::Cts => (0x2A2B, current_time_bytes(now)),
        ClockSetting::DateTime => (0x2A08, date_time_bytes(now)),
        _ => return Ok(()),
    };
    let Some(c) = find(chars, uuid) else {
        return Ok(());
    };
    if !c.properties.contains(btleplug::api::CharPropFlags::WRITE) {
        return Ok(());
    }
    // Devices may refuse a clock write (ATT 0x80 "data field ignored"); readings still flow.
    if let Err(e) = p.write(c, &bytes, WriteType::WithResponse).await {
        tracing::warn!(error = %e, "device refused the clock write");
    }
    Ok(())
}
