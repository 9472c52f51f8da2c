//! Every flag that announces a field, in every decoder: a frame with that flag and the field
//! decodes, and the same frame one byte short is refused with the field named, never decoded
//! without it.

mod common;

use common::hex;
use tm_devices::{Quirks, Source, decode};

/// A valid time stamp (2026-08-11 20:27:00).
const TIME: &str = "EA 07 08 0B 14 1B 00";

/// (characteristic, flag bytes, the fields every frame has, the announced field, its name).
const CASES: &[(u16, &str, &str, &str, &str)] = &[
    // Blood Pressure Measurement and Intermediate Cuff Pressure.
    (0x2A35, "02", "78 00 50 00 5D 00", TIME, "time stamp"),
    (0x2A35, "04", "78 00 50 00 5D 00", "48 00", "pulse rate"),
    (0x2A35, "08", "78 00 50 00 5D 00", "01", "user id"),
    (
        0x2A35,
        "10",
        "78 00 50 00 5D 00",
        "04 00",
        "measurement status",
    ),
    (0x2A36, "04", "78 00 FF 07 FF 07", "48 00", "pulse rate"),
    // Glucose Measurement.
    (
        0x2A18,
        "01",
        "01 00 EA 07 08 0B 14 1B 00",
        "05 00",
        "time offset",
    ),
    (
        0x2A18,
        "02",
        "01 00 EA 07 08 0B 14 1B 00",
        "5F B0 11",
        "concentration, type and location",
    ),
    (
        0x2A18,
        "08",
        "01 00 EA 07 08 0B 14 1B 00",
        "00 00",
        "sensor status annunciation",
    ),
    // Glucose Measurement Context.
    (0x2A34, "80", "07 00", "00", "extended flags"),
    (0x2A34, "01", "07 00", "02 32 00", "carbohydrate"),
    (0x2A34, "02", "07 00", "02", "meal"),
    (0x2A34, "04", "07 00", "11", "tester and health"),
    (0x2A34, "08", "07 00", "10 0E 32", "exercise"),
    (0x2A34, "10", "07 00", "01 32 A0", "medication"),
    (0x2A34, "40", "07 00", "41 F0", "HbA1c"),
    // Heart Rate Measurement.
    (0x2A37, "08", "55", "32 00", "energy expended"),
    (0x2A37, "10", "55", "00 04", "RR intervals"),
    // PLX Spot-check and Continuous Measurement, PLX Features.
    (0x2A5E, "01", "62 00 40 00", TIME, "time stamp"),
    (0x2A5E, "02", "62 00 40 00", "00 00", "measurement status"),
    (
        0x2A5E,
        "04",
        "62 00 40 00",
        "00 00 00",
        "device and sensor status",
    ),
    (
        0x2A5E,
        "08",
        "62 00 40 00",
        "57 F0",
        "pulse amplitude index",
    ),
    (0x2A5F, "01", "62 00 40 00", "62 00 40 00", "SpO2PR-Fast"),
    (0x2A5F, "02", "62 00 40 00", "62 00 40 00", "SpO2PR-Slow"),
    (0x2A5F, "04", "62 00 40 00", "00 00", "measurement status"),
    (
        0x2A5F,
        "08",
        "62 00 40 00",
        "00 00 00",
        "device and sensor status",
    ),
    (
        0x2A5F,
        "10",
        "62 00 40 00",
        "57 F0",
        "pulse amplitude index",
    ),
    (0x2A60, "01 00", "", "00 00", "measurement status support"),
    (
        0x2A60,
        "02 00",
        "",
        "00 00 00",
        "device and sensor status support",
    ),
    // Temperature Measurement.
    (0x2A1C, "02", "72 01 00 FF", TIME, "time stamp"),
    (0x2A1C, "04", "72 01 00 FF", "02", "temperature type"),
    // Weight Measurement.
    (0x2A9D, "02", "E0 2E", TIME, "time stamp"),
    (0x2A9D, "04", "E0 2E", "01", "user id"),
    (0x2A9D, "08", "E0 2E", "F0 00 DC 06", "BMI and height"),
    // Body Composition Measurement (16-bit flags).
    (0x2A9C, "02 00", "F4 01", TIME, "time stamp"),
    (0x2A9C, "04 00", "F4 01", "01", "user id"),
    (0x2A9C, "08 00", "F4 01", "A0 1A", "basal metabolism"),
    (0x2A9C, "10 00", "F4 01", "F4 01", "muscle percentage"),
    (0x2A9C, "20 00", "F4 01", "10 27", "muscle mass"),
    (0x2A9C, "40 00", "F4 01", "10 27", "fat free mass"),
    (0x2A9C, "80 00", "F4 01", "10 27", "soft lean mass"),
    (0x2A9C, "00 01", "F4 01", "10 27", "body water mass"),
    (0x2A9C, "00 02", "F4 01", "88 13", "impedance"),
    (0x2A9C, "00 04", "F4 01", "E0 2E", "weight"),
    (0x2A9C, "00 08", "F4 01", "DC 06", "height"),
];

#[test]
fn a_field_announced_by_its_flag_is_read_or_the_frame_refused_naming_it() {
    for &(characteristic, flags, always, field, name) in CASES {
        let source = Source::Characteristic(characteristic);
        let mut frame = hex(flags);
        frame.extend(hex(always));
        frame.extend(hex(field));
        if let Err(e) = decode(source, &frame, &Quirks::NONE) {
            panic!("{source} flags {flags} with the {name}: {e}");
        }
        let short = &frame[..frame.len() - 1];
        match decode(source, short, &Quirks::NONE) {
            Ok(d) => panic!("{source} flags {flags}, one byte short, decoded: {d:?}"),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains(&format!("the {name} the flags announce")),
                    "{source} flags {flags}: {message}"
                );
            }
        }
    }
}

#[test]
fn a_field_every_frame_has_is_named_when_missing() {
    for (characteristic, frame, name) in [
        (0x2A35, "00 78 00 50 00 5D", "pressures"),
        (0x2A18, "00 01 00 EA 07 08 0B 14 1B", "base time"),
        (0x2A34, "00 07", "sequence number"),
        (0x2A5E, "00 62 00 40", "SpO2 and pulse rate"),
        (0x2A1C, "00 72 01 00", "temperature"),
        (0x2A9D, "00 E0", "weight"),
        (0x2A9C, "00 00 F4", "body fat percentage"),
        (0x2A37, "00", "heart rate"),
        // Bit 0 makes the heart rate 16 bits wide.
        (0x2A37, "01 55", "heart rate"),
    ] {
        let source = Source::Characteristic(characteristic);
        let message = decode(source, &hex(frame), &Quirks::NONE)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&format!("end before the {name} (")),
            "{source}: {message}"
        );
    }
}
