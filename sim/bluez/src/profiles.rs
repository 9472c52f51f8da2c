//! The scripted health devices, speaking the real byte formats of the SIG profiles
//! (docs/gatt.md §1), and the encoders tests use to build their records.

// Calendar fields from chrono are always in range for a byte (month, day, hour, ...).
#![allow(clippy::cast_possible_truncation)]

use chrono::{Datelike, NaiveDateTime, Timelike};

use crate::spec::{Behaviour, CharSpec, DeviceSpec, PairingMode, ServiceSpec};

/// IEEE 11073 SFLOAT from mantissa and exponent.
pub fn sfloat(mantissa: i16, exponent: i8) -> [u8; 2] {
    let m = (mantissa as u16) & 0x0FFF;
    let e = ((exponent as u8) & 0x0F) as u16;
    ((e << 12) | m).to_le_bytes()
}

/// IEEE 11073 FLOAT (32-bit) from mantissa and exponent.
pub fn float32(mantissa: i32, exponent: i8) -> [u8; 4] {
    let m = (mantissa as u32) & 0x00FF_FFFF;
    (((exponent as u8 as u32) << 24) | m).to_le_bytes()
}

/// Date Time 0x2A08 (7 bytes).
pub fn date_time(t: NaiveDateTime) -> [u8; 7] {
    let y = u16::try_from(t.year()).unwrap_or(0).to_le_bytes();
    [
        y[0],
        y[1],
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    ]
}

/// Current Time 0x2A2B (10 bytes): Date Time, day of week, fractions256, adjust reason.
pub fn current_time(t: NaiveDateTime) -> [u8; 10] {
    let d = date_time(t);
    let dow = t.weekday().number_from_monday() as u8;
    [d[0], d[1], d[2], d[3], d[4], d[5], d[6], dow, 0, 0]
}

/// Weight Measurement 0x2A9D in kg with a time stamp: weight in steps of 5 g.
pub fn weight_kg(steps_of_5g: u16, at: NaiveDateTime) -> Vec<u8> {
    let mut v = vec![0x02];
    v.extend_from_slice(&steps_of_5g.to_le_bytes());
    v.extend_from_slice(&date_time(at));
    v
}

/// Blood Pressure Measurement 0x2A35 in mmHg with time stamp and pulse.
pub fn blood_pressure(sys: i16, dia: i16, map: i16, pulse: i16, at: NaiveDateTime) -> Vec<u8> {
    let mut v = vec![0x06];
    for x in [sys, dia, map] {
        v.extend_from_slice(&sfloat(x, 0));
    }
    v.extend_from_slice(&date_time(at));
    v.extend_from_slice(&sfloat(pulse, 0));
    v
}

/// PLX Spot-check 0x2A5E with time stamp (SpO2 %, pulse bpm).
pub fn spot_check(spo2: i16, pulse: i16, at: NaiveDateTime) -> Vec<u8> {
    let mut v = vec![0x01];
    v.extend_from_slice(&sfloat(spo2, 0));
    v.extend_from_slice(&sfloat(pulse, 0));
    v.extend_from_slice(&date_time(at));
    v
}

/// Temperature Measurement 0x2A1C in °C (tenths) with time stamp.
pub fn temperature_tenths_c(tenths: i32, at: NaiveDateTime) -> Vec<u8> {
    let mut v = vec![0x02];
    v.extend_from_slice(&float32(tenths, -1));
    v.extend_from_slice(&date_time(at));
    v
}

/// Glucose Measurement 0x2A18: sequence, base time, concentration in mg/dL (kg/L units,
/// capillary whole blood, finger).
pub fn glucose_mg_dl(seq: u16, mg_dl: i16, at: NaiveDateTime) -> Vec<u8> {
    let mut v = vec![0x02];
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&date_time(at));
    // mg/dL = kg/L * 100000, so kg/L = mg/dL * 10^-5.
    v.extend_from_slice(&sfloat(mg_dl, -5));
    v.push(0x11);
    v
}

/// The sequence number of a glucose record built by [`glucose_mg_dl`].
pub fn glucose_sequence(record: &[u8]) -> Option<u16> {
    record.get(1..3).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

/// Xiaomi Mi Scale v1 service data (0x181D): stabilised kg reading.
pub fn mi_scale_v1(weight_div200: u16, at: NaiveDateTime) -> Vec<u8> {
    let mut v = vec![0x22];
    v.extend_from_slice(&weight_div200.to_le_bytes());
    v.extend_from_slice(&date_time(at)[..7]);
    v
}

fn ch(uuid: u16, flags: &[&'static str], value: &[u8]) -> CharSpec {
    CharSpec {
        uuid,
        flags: flags.to_vec(),
        value: value.to_vec(),
    }
}

fn dis_and_battery(model: &str, battery: u8) -> Vec<ServiceSpec> {
    vec![
        ServiceSpec {
            uuid: 0x180A,
            chars: vec![
                ch(0x2A29, &["read"], b"Simulated Medical"),
                ch(0x2A24, &["read"], model.as_bytes()),
                ch(0x2A25, &["read"], b"SN-0001"),
                ch(0x2A26, &["read"], b"1.0.4"),
            ],
        },
        ServiceSpec {
            uuid: 0x180F,
            chars: vec![ch(0x2A19, &["read", "notify"], &[battery])],
        },
    ]
}

fn cts() -> ServiceSpec {
    ServiceSpec {
        uuid: 0x1805,
        chars: vec![ch(0x2A2B, &["read", "write", "notify"], &[])],
    }
}

fn base(address: &str, name: &str, adv: u16, measurement: u16) -> DeviceSpec {
    DeviceSpec {
        address: address.to_string(),
        name: name.to_string(),
        adv_uuids: vec![adv],
        service_data: vec![],
        manufacturer_data: vec![],
        rssi: -58,
        services: vec![],
        measurement_uuid: measurement,
        pairing: Some(PairingMode::JustWorks),
        behaviour: Behaviour::PushStoredOnce,
        stored: vec![],
        clock_set: true,
    }
}

/// A weight scale (0x181D) that re-sends its stored records on every connection.
pub fn weight_scale(address: &str) -> DeviceSpec {
    let mut d = base(address, "SIM-Scale", 0x181D, 0x2A9D);
    d.behaviour = Behaviour::ResendStored;
    d.services = vec![
        ServiceSpec {
            uuid: 0x181D,
            chars: vec![
                ch(0x2A9E, &["read"], &[0x0F, 0, 0, 0]),
                ch(0x2A9D, &["indicate"], &[]),
            ],
        },
        cts(),
    ];
    d.services.extend(dis_and_battery("SIM-WS100", 88));
    d
}

/// A blood-pressure cuff (0x1810) with Current Time Service; keeps a single bond.
pub fn bp_cuff(address: &str) -> DeviceSpec {
    let mut d = base(address, "SIM-Cuff", 0x1810, 0x2A35);
    d.services = vec![
        ServiceSpec {
            uuid: 0x1810,
            chars: vec![
                ch(0x2A49, &["read"], &[0x01, 0x00]),
                ch(0x2A35, &["indicate"], &[]),
            ],
        },
        cts(),
    ];
    d.services.extend(dis_and_battery("SIM-BP200", 76));
    d
}

/// A pulse oximeter (0x1822) with spot-check measurements; pairs with a passkey.
pub fn oximeter(address: &str) -> DeviceSpec {
    let mut d = base(address, "SIM-Oxi", 0x1822, 0x2A5E);
    d.pairing = Some(PairingMode::Passkey(123_456));
    d.services = vec![
        ServiceSpec {
            uuid: 0x1822,
            chars: vec![
                ch(0x2A60, &["read"], &[0x08, 0x00]),
                ch(0x2A5E, &["indicate"], &[]),
            ],
        },
        cts(),
    ];
    d.services.extend(dis_and_battery("SIM-OX30", 64));
    d
}

/// A thermometer (0x1809) that needs no bond.
pub fn thermometer(address: &str) -> DeviceSpec {
    let mut d = base(address, "SIM-Thermo", 0x1809, 0x2A1C);
    d.pairing = None;
    d.services = vec![
        ServiceSpec {
            uuid: 0x1809,
            chars: vec![ch(0x2A1C, &["indicate"], &[])],
        },
        cts(),
    ];
    d.services.extend(dis_and_battery("SIM-TH10", 91));
    d
}

/// A glucose meter (0x1808) with RACP stored records; pairs with a legacy PIN.
pub fn glucose_meter(address: &str) -> DeviceSpec {
    let mut d = base(address, "SIM-Gluco", 0x1808, 0x2A18);
    d.pairing = Some(PairingMode::Pin("4321".into()));
    d.behaviour = Behaviour::Racp;
    d.services = vec![
        ServiceSpec {
            uuid: 0x1808,
            chars: vec![
                ch(0x2A18, &["notify"], &[]),
                ch(0x2A34, &["notify"], &[]),
                ch(0x2A51, &["read"], &[0xF0, 0x03]),
                ch(0x2A52, &["write", "indicate"], &[]),
            ],
        },
        cts(),
    ];
    d.services.extend(dis_and_battery("SIM-GL5", 57));
    d
}

/// A Xiaomi Mi scale: readings in 0x181D service data, no connection.
pub fn xiaomi_scale(address: &str) -> DeviceSpec {
    let mut d = base(address, "MI SCALE2", 0x181D, 0x181D);
    d.adv_uuids = vec![];
    d.pairing = None;
    d.behaviour = Behaviour::AdvertOnly;
    d
}

/// An A&D-style cuff: Date Time 0x2A08 inside the BP service must be written within the
/// deadline after connecting, or the cuff disconnects.
pub fn and_cuff(address: &str, deadline: std::time::Duration) -> DeviceSpec {
    let mut d = base(address, "A&D_UA-651", 0x1810, 0x2A35);
    d.behaviour = Behaviour::DateTimeDeadline(deadline);
    d.clock_set = false;
    d.services = vec![ServiceSpec {
        uuid: 0x1810,
        chars: vec![
            ch(0x2A49, &["read"], &[0x00, 0x00]),
            ch(0x2A35, &["indicate"], &[]),
            ch(0x2A08, &["read", "write"], &[]),
        ],
    }];
    d.services.extend(dis_and_battery("UA-651BLE", 80));
    d
}

/// A non-health device, there to show the discovery filter is honoured.
pub fn headphones(address: &str) -> DeviceSpec {
    let mut d = base(address, "SIM-Headphones", 0x110B, 0);
    d.pairing = None;
    d
}
