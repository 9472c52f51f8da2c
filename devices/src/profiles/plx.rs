//! Pulse Oximeter Service 0x1822: PLX Spot-check Measurement 0x2A5E, PLX Continuous Measurement
//! 0x2A5F and PLX Features 0x2A60.
//!
//! Spot-check: flags u8 (bit0 time stamp, bit1 measurement status, bit2 device and sensor
//! status, bit3 pulse amplitude index, bit4 device clock not set), SpO2 and pulse rate as
//! SFLOAT, then the optional fields in flag order (device status is 24 bits). Continuous:
//! flags u8 (bit0 fast values, bit1 slow values, bit2 status, bit3 device status, bit4 PAI),
//! SpO2, PR, [fast SpO2, PR], [slow SpO2, PR], [status], [device status], [PAI]; it has no
//! time stamp.

use serde::Serialize;
use tm_protocol::ReadingKind;

use crate::error::DecodeError;
use crate::reader::{Field, Reader};
use crate::reading::{Decoded, DecodedReading, Info, codes};
use crate::source::Source;
use crate::time::{DeviceTime, named_bits};

const MEASUREMENT_STATUS_BITS: [(u32, &str); 11] = [
    (1 << 5, "measurement-ongoing"),
    (1 << 6, "early-estimated-data"),
    (1 << 7, "validated-data"),
    (1 << 8, "fully-qualified-data"),
    (1 << 9, "data-from-measurement-storage"),
    (1 << 10, "data-for-demonstration"),
    (1 << 11, "data-for-testing"),
    (1 << 12, "calibration-ongoing"),
    (1 << 13, "measurement-unavailable"),
    (1 << 14, "questionable-measurement-detected"),
    (1 << 15, "invalid-measurement-detected"),
];

const DEVICE_STATUS_BITS: [(u32, &str); 16] = [
    (1 << 0, "extended-display-update-ongoing"),
    (1 << 1, "equipment-malfunction"),
    (1 << 2, "signal-processing-irregularity"),
    (1 << 3, "inadequate-signal"),
    (1 << 4, "poor-signal"),
    (1 << 5, "low-perfusion"),
    (1 << 6, "erratic-signal"),
    (1 << 7, "nonpulsatile-signal"),
    (1 << 8, "questionable-pulse"),
    (1 << 9, "signal-analysis-ongoing"),
    (1 << 10, "sensor-interference"),
    (1 << 11, "sensor-unconnected-to-user"),
    (1 << 12, "unknown-sensor-connected"),
    (1 << 13, "sensor-displaced"),
    (1 << 14, "sensor-malfunctioning"),
    (1 << 15, "sensor-disconnected"),
];

const FEATURE_BITS: [(u32, &str); 8] = [
    (1 << 0, "measurement-status"),
    (1 << 1, "device-and-sensor-status"),
    (1 << 2, "spot-check-measurement-storage"),
    (1 << 3, "spot-check-time-stamp"),
    (1 << 4, "spo2pr-fast"),
    (1 << 5, "spo2pr-slow"),
    (1 << 6, "pulse-amplitude-index"),
    (1 << 7, "multiple-bonds"),
];

/// Decodes PLX Spot-check Measurement 0x2A5E.
pub fn decode_spot_check(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(1, "the format needs")?;
    let flags = r.u8()?;
    let bit = |n: u8| flags & (1 << n) != 0;
    r.require_fields(
        1,
        &[
            Field::always("SpO2 and pulse rate", 4),
            Field::when(bit(0), "time stamp", DeviceTime::LEN),
            Field::when(bit(1), "measurement status", 2),
            Field::when(bit(2), "device and sensor status", 3),
            Field::when(bit(3), "pulse amplitude index", 2),
        ],
    )?;

    let mut reading = DecodedReading::new(ReadingKind::PulseOximetry);
    reading.push_med(codes::SPO2, r.sfloat()?, "%");
    reading.push_med(codes::HEART_RATE, r.sfloat()?, "/min");
    if bit(0) {
        reading.set_time(DeviceTime::read(&mut r)?);
    }
    if bit(1) {
        let status = r.u16_le()?;
        reading.flags(named_bits(u32::from(status), &MEASUREMENT_STATUS_BITS));
    }
    if bit(2) {
        let status = r.u24_le()?;
        reading.flags(named_bits(status, &DEVICE_STATUS_BITS));
    }
    if bit(3) {
        reading.push_med(codes::PULSE_AMPLITUDE_INDEX, r.sfloat()?, "%");
    }
    if bit(4) {
        reading.clock_not_set = true;
        reading.flags(["device-clock-not-set"]);
    }
    if r.remaining() > 0 {
        reading.flags(["trailing-bytes"]);
    }
    Ok(Decoded::reading(reading))
}

/// Decodes PLX Continuous Measurement 0x2A5F.
pub fn decode_continuous(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(1, "the format needs")?;
    let flags = r.u8()?;
    let bit = |n: u8| flags & (1 << n) != 0;
    r.require_fields(
        1,
        &[
            Field::always("SpO2 and pulse rate", 4),
            Field::when(bit(0), "SpO2PR-Fast", 4),
            Field::when(bit(1), "SpO2PR-Slow", 4),
            Field::when(bit(2), "measurement status", 2),
            Field::when(bit(3), "device and sensor status", 3),
            Field::when(bit(4), "pulse amplitude index", 2),
        ],
    )?;

    let mut reading = DecodedReading::new(ReadingKind::PulseOximetry);
    reading.push_med(codes::SPO2, r.sfloat()?, "%");
    reading.push_med(codes::HEART_RATE, r.sfloat()?, "/min");
    if bit(0) {
        reading.push_med(codes::SPO2_FAST, r.sfloat()?, "%");
        reading.push_med(codes::PULSE_RATE_FAST, r.sfloat()?, "/min");
    }
    if bit(1) {
        reading.push_med(codes::SPO2_SLOW, r.sfloat()?, "%");
        reading.push_med(codes::PULSE_RATE_SLOW, r.sfloat()?, "/min");
    }
    if bit(2) {
        let status = r.u16_le()?;
        reading.flags(named_bits(u32::from(status), &MEASUREMENT_STATUS_BITS));
    }
    if bit(3) {
        let status = r.u24_le()?;
        reading.flags(named_bits(status, &DEVICE_STATUS_BITS));
    }
    if bit(4) {
        reading.push_med(codes::PULSE_AMPLITUDE_INDEX, r.sfloat()?, "%");
    }
    if r.remaining() > 0 {
        reading.flags(["trailing-bytes"]);
    }
    Ok(Decoded::reading(reading))
}

/// PLX Features 0x2A60.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlxFeatures {
    /// Supported features.
    pub supported: Vec<&'static str>,
    /// Measurement status bits the device can report.
    pub measurement_status_support: Vec<&'static str>,
    /// Device and sensor status bits the device can report.
    pub device_status_support: Vec<&'static str>,
}

/// Decodes PLX Features 0x2A60.
pub fn decode_features(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(2, "the format needs")?;
    let bits = r.u16_le()?;
    r.require_fields(
        2,
        &[
            Field::when(bits & 0x01 != 0, "measurement status support", 2),
            Field::when(bits & 0x02 != 0, "device and sensor status support", 3),
        ],
    )?;
    let measurement_status_support = if bits & 0x01 != 0 {
        named_bits(u32::from(r.u16_le()?), &MEASUREMENT_STATUS_BITS)
    } else {
        Vec::new()
    };
    let device_status_support = if bits & 0x02 != 0 {
        named_bits(r.u24_le()?, &DEVICE_STATUS_BITS)
    } else {
        Vec::new()
    };
    Ok(Decoded::info(Info::PlxFeatures(PlxFeatures {
        supported: named_bits(u32::from(bits), &FEATURE_BITS),
        measurement_status_support,
        device_status_support,
    })))
}
