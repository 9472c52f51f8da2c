//! Fixtures shared by the output tests: a heart-failure session of eight days whose readings are
//! decoded by `tm_devices::decode` from real frames (the gatt.md vectors and frames built the
//! same way), wrapped as the gateway wraps them (reading id, device info, times, quality).

#![allow(dead_code)]

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use tm_devices::{Quirks, Source, decode};
use tm_protocol::{DeviceInfo, Reading, ReadingIdInput, ReadingKind, TimeQuality, reading_id};
use tm_provider::outputs::{Carepath, Language, Period, SessionContext};

/// Bytes of a hex string with optional spaces.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// The gateway's offset (Brussels, summer time).
pub fn cest() -> FixedOffset {
    FixedOffset::east_opt(2 * 3600).unwrap()
}

/// The session the fixtures belong to.
pub fn session() -> SessionContext {
    SessionContext {
        telemonitoring_id: "tm-4711".into(),
        patient_id: "EFD5E060-9522-48BE-9ECC-3BFA54EA3666".into(),
        prescriber_id: "hospital-az-groeninge".into(),
        carepath: Carepath::heart_failure(),
        languages: vec![Language::En, Language::Nl, Language::Fr],
        period: Period {
            start: cest().with_ymd_and_hms(2026, 5, 1, 9, 0, 0).unwrap(),
            end: None,
        },
    }
}

pub fn omron_cuff() -> DeviceInfo {
    DeviceInfo {
        address: "28:FF:B2:11:22:33".into(),
        manufacturer: Some("OMRON HEALTHCARE".into()),
        model: Some("BP7150".into()),
        serial: Some("20260412-0042".into()),
        firmware: Some("1.0.3".into()),
        catalog_model: Some("omron-bp7150".into()),
    }
}

pub fn scale() -> DeviceInfo {
    DeviceInfo {
        address: "C8:47:8C:AA:BB:01".into(),
        manufacturer: Some("A&D Medical".into()),
        model: Some("UC-352BLE".into()),
        serial: Some("5170400123".into()),
        firmware: None,
        catalog_model: Some("and-uc352ble".into()),
    }
}

pub fn oximeter() -> DeviceInfo {
    DeviceInfo {
        address: "00:A0:50:01:02:03".into(),
        manufacturer: Some("Nonin Medical".into()),
        model: Some("3230".into()),
        serial: Some("502447890".into()),
        firmware: None,
        catalog_model: None,
    }
}

pub fn thermometer() -> DeviceInfo {
    DeviceInfo {
        address: "5C:31:3E:00:00:07".into(),
        manufacturer: Some("A&D Medical".into()),
        model: Some("UT-201BLE".into()),
        serial: None,
        firmware: None,
        catalog_model: Some("and-ut201ble".into()),
    }
}

pub fn glucometer() -> DeviceInfo {
    DeviceInfo {
        address: "D0:4A:11:22:33:44".into(),
        manufacturer: Some("Roche".into()),
        model: Some("Accu-Chek Guide".into()),
        serial: Some("92301234567".into()),
        firmware: None,
        catalog_model: Some("roche-guide".into()),
    }
}

/// Decodes one frame and wraps its single reading as the gateway would.
pub fn reading(
    source: &str,
    frame: &[u8],
    device: DeviceInfo,
    effective: DateTime<FixedOffset>,
    quality: TimeQuality,
) -> Reading {
    let src: Source = source.parse().unwrap();
    let decoded = decode(src, frame, &Quirks::NONE).unwrap_or_else(|e| panic!("{source}: {e}"));
    assert_eq!(decoded.readings.len(), 1, "{decoded:?}");
    let d = decoded.readings.into_iter().next().unwrap();
    let received_at = effective.with_timezone(&Utc) + Duration::seconds(3);
    let characteristic = source.to_owned();
    let id = reading_id(&ReadingIdInput {
        device_address: &device.address,
        characteristic: &characteristic,
        user_slot: d.user,
        raw: frame,
        has_device_time: d.has_device_time(),
        has_sequence: d.has_sequence(),
        received_at,
    });
    Reading {
        reading_id: id,
        device,
        kind: d.kind,
        components: d.components,
        missing: d.missing,
        flags: d.status,
        device_time: d.measured_at,
        effective_time: effective,
        received_at,
        clock_offset_ms: Some(1200),
        time_quality: quality,
        characteristic,
        user_slot: d.user,
        sequence: d.sequence,
        raw: frame.to_vec(),
        battery_pct: Some(80),
        rssi_dbm: Some(-61),
    }
}

/// A Blood Pressure Measurement (0x2A35) frame with pulse: integer mmHg SFLOATs.
pub fn bp_frame(sys: u8, dia: u8, map: u8, pulse: u8) -> Vec<u8> {
    vec![0x04, sys, 0, dia, 0, map, 0, pulse, 0]
}

/// A Weight Measurement (0x2A9D) frame, SI resolution 0.005 kg.
pub fn weight_frame(grams: u32) -> Vec<u8> {
    let raw = u16::try_from(grams / 5).unwrap();
    let [lo, hi] = raw.to_le_bytes();
    vec![0x00, lo, hi]
}

/// A PLX Continuous Measurement (0x2A5F) frame.
pub fn plx_frame(spo2: u8, pulse: u8) -> Vec<u8> {
    vec![0x00, spo2, 0, pulse, 0]
}

/// A Temperature Measurement (0x2A1C) frame in Celsius with one decimal.
pub fn temperature_frame(tenths: u16) -> Vec<u8> {
    let [lo, hi] = tenths.to_le_bytes();
    vec![0x00, lo, hi, 0x00, 0xFF]
}

/// Eight mornings of a heart-failure patient, plus the awkward cases: a cuff-pressure frame,
/// undecodable bytes, and a glucose record from memory with the device clock unset.
pub fn heart_failure_week() -> Vec<Reading> {
    let day0 = cest().with_ymd_and_hms(2026, 5, 1, 7, 30, 0).unwrap();
    let mut out = Vec::new();
    let bp = [
        (128, 82, 97, 71),
        (131, 84, 99, 74),
        (126, 80, 95, 70),
        (138, 88, 104, 78),
        (145, 92, 110, 81),
        (152, 95, 114, 88),
        (149, 93, 111, 104),
        (141, 89, 106, 84),
    ];
    let weights = [
        78_400, 78_600, 78_500, 79_100, 79_600, 80_300, 80_900, 80_200,
    ];
    for day in 0..8usize {
        let t = day0 + Duration::days(day as i64);
        let (s, d, m, p) = bp[day];
        out.push(reading(
            "2A35",
            &bp_frame(s, d, m, p),
            omron_cuff(),
            t,
            TimeQuality::NoDeviceTime,
        ));
        out.push(reading(
            "2A9D",
            &weight_frame(weights[day]),
            scale(),
            t + Duration::minutes(4),
            TimeQuality::NoDeviceTime,
        ));
        out.push(reading(
            "2A5F",
            &plx_frame(
                [97, 96, 97, 95, 94, 92, 91, 93][day],
                [70, 73, 69, 77, 80, 87, 102, 83][day],
            ),
            oximeter(),
            t + Duration::minutes(6),
            TimeQuality::NoDeviceTime,
        ));
    }
    out.push(reading(
        "2A1C",
        &temperature_frame(364),
        thermometer(),
        day0 + Duration::days(2) + Duration::minutes(10),
        TimeQuality::NoDeviceTime,
    ));
    out.push(reading(
        "2A1C",
        &temperature_frame(383),
        thermometer(),
        day0 + Duration::days(5) + Duration::minutes(10),
        TimeQuality::NoDeviceTime,
    ));
    // Glucose record with a device time stamp and offset, clock synced this connection.
    out.push(reading(
        "2A18",
        &hex("03 07 00 EA 07 05 09 07 1F 1E 3C 00 5C B0 12"),
        glucometer(),
        cest().with_ymd_and_hms(2026, 5, 4, 8, 31, 30).unwrap(),
        TimeQuality::DeviceSynced,
    ));
    // The same meter's record with a time fault, from memory: its time is not known.
    out.push(reading(
        "2A18",
        &hex("0B 07 00 EA 07 05 09 07 1F 1E 3C 00 5C B0 12 01 08"),
        glucometer(),
        cest().with_ymd_and_hms(2026, 5, 5, 12, 0, 0).unwrap(),
        TimeQuality::DeviceUnsetUntrusted,
    ));
    out.push(reading(
        "2A36",
        &hex("1E 04 00 00 00 00 00 00 00 04 11 14 29 3B 3C 00 01 27 00"),
        omron_cuff(),
        day0 + Duration::days(3) - Duration::seconds(30),
        TimeQuality::NoDeviceTime,
    ));
    out.push(unrecognized(day0 + Duration::days(4)));
    out
}

/// Bytes the gateway could not decode, shipped anyway.
pub fn unrecognized(at: DateTime<FixedOffset>) -> Reading {
    let mut r = reading(
        "2A9D",
        &weight_frame(70_000),
        scale(),
        at,
        TimeQuality::NoDeviceTime,
    );
    r.kind = ReadingKind::Unrecognized;
    r.components.clear();
    r.raw = vec![0xFF, 0x13, 0x37];
    r.characteristic = "mfr:0157".into();
    r.reading_id = reading_id(&ReadingIdInput {
        device_address: &r.device.address,
        characteristic: &r.characteristic,
        user_slot: None,
        raw: &r.raw,
        has_device_time: false,
        has_sequence: false,
        received_at: r.received_at,
    });
    r
}
