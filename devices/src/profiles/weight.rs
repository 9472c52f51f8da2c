//! Weight Scale Service 0x181D (Weight Measurement 0x2A9D, Weight Scale Feature 0x2A9E) and Body
//! Composition Service 0x181B (Body Composition Measurement 0x2A9C, Body Composition Feature
//! 0x2A9B).
//!
//! Mass fields have a **fixed** step: 0.005 kg (SI) or 0.01 lb (imperial), whatever resolution
//! the Feature characteristic announces (that only states the physical precision; docs/gatt.md §7).
//! Heights are 0.001 m or 0.1 in. Pounds and inches are converted to kg and cm with the original
//! kept. The raw value 0xFFFF means "measurement unsuccessful": no number, the reason kept.

use serde::Serialize;
use tm_protocol::ReadingKind;

use crate::error::DecodeError;
use crate::reader::{Field, Reader};
use crate::reading::{Decoded, DecodedReading, Info, codes, round_to};
use crate::source::Source;
use crate::time::DeviceTime;

/// kg per lb (exact by definition).
pub(crate) const KG_PER_LB: f64 = 0.453_592_37;
/// cm per inch (exact by definition).
const CM_PER_INCH: f64 = 2.54;
/// The field value that means "measurement unsuccessful".
const UNSUCCESSFUL: u16 = 0xFFFF;

/// Adds a mass field in kg, converting pounds.
fn push_mass(reading: &mut DecodedReading, code: &str, raw: u16, imperial: bool) {
    if raw == UNSUCCESSFUL {
        reading.push_missing(code, "measurement-unsuccessful");
    } else if imperial {
        let lb = f64::from(raw) / 100.0;
        reading.push_converted(code, round_to(lb * KG_PER_LB, 3), "kg", lb, "[lb_av]");
    } else {
        reading.push(code, f64::from(raw) / 200.0, "kg");
    }
}

/// Adds a height field in cm, converting inches.
fn push_height(reading: &mut DecodedReading, raw: u16, imperial: bool) {
    if imperial {
        let inches = f64::from(raw) / 10.0;
        reading.push_converted(
            codes::BODY_HEIGHT,
            round_to(inches * CM_PER_INCH, 2),
            "cm",
            inches,
            "[in_i]",
        );
    } else {
        reading.push(codes::BODY_HEIGHT, f64::from(raw) / 10.0, "cm");
    }
}

/// Decodes Weight Measurement 0x2A9D.
pub fn decode_weight(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(1, "the format needs")?;
    let flags = r.u8()?;
    let imperial = flags & 0x01 != 0;
    let has_time = flags & 0x02 != 0;
    let has_user = flags & 0x04 != 0;
    let has_bmi = flags & 0x08 != 0;
    r.require_fields(
        1,
        &[
            Field::always("weight", 2),
            Field::when(has_time, "time stamp", DeviceTime::LEN),
            Field::when(has_user, "user id", 1),
            Field::when(has_bmi, "BMI and height", 4),
        ],
    )?;

    let mut reading = DecodedReading::new(ReadingKind::BodyWeight);
    let weight = r.u16_le()?;
    push_mass(&mut reading, codes::BODY_WEIGHT, weight, imperial);
    if weight == UNSUCCESSFUL {
        reading.flags(["measurement-unsuccessful"]);
    }
    if has_time {
        reading.set_time(DeviceTime::read(&mut r)?);
    }
    if has_user {
        let user = r.u8()?;
        reading.user = (user != 0xFF).then_some(user);
    }
    if has_bmi {
        let bmi = r.u16_le()?;
        reading.push(codes::BMI, f64::from(bmi) / 10.0, "kg/m2");
        let height = r.u16_le()?;
        push_height(&mut reading, height, imperial);
    }
    if r.remaining() > 0 {
        reading.flags(["trailing-bytes"]);
    }
    Ok(Decoded::reading(reading))
}

/// Weight Scale Feature 0x2A9E.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightScaleFeature {
    /// Measurements carry a time stamp.
    pub time_stamp: bool,
    /// The scale has several users.
    pub multiple_users: bool,
    /// Measurements carry BMI and height.
    pub bmi: bool,
    /// Weight resolution in kg (`None`: not specified).
    pub weight_resolution_kg: Option<f64>,
    /// Weight resolution in lb.
    pub weight_resolution_lb: Option<f64>,
    /// Height resolution in m.
    pub height_resolution_m: Option<f64>,
    /// Height resolution in inches.
    pub height_resolution_in: Option<f64>,
}

/// Decodes Weight Scale Feature 0x2A9E.
pub fn decode_weight_feature(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(4, "the format needs")?;
    let bits = r.u32_le()?;
    let weight = (bits >> 3) & 0x0F;
    let height = (bits >> 7) & 0x07;
    const WEIGHT_KG: [f64; 7] = [0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005];
    const WEIGHT_LB: [f64; 7] = [1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01];
    const HEIGHT_M: [f64; 3] = [0.01, 0.005, 0.001];
    const HEIGHT_IN: [f64; 3] = [1.0, 0.5, 0.1];
    let pick = |table: &[f64], code: u32| -> Option<f64> {
        let i = usize::try_from(code).ok()?.checked_sub(1)?;
        table.get(i).copied()
    };
    Ok(Decoded::info(Info::WeightScaleFeature(
        WeightScaleFeature {
            time_stamp: bits & 0x01 != 0,
            multiple_users: bits & 0x02 != 0,
            bmi: bits & 0x04 != 0,
            weight_resolution_kg: pick(&WEIGHT_KG, weight),
            weight_resolution_lb: pick(&WEIGHT_LB, weight),
            height_resolution_m: pick(&HEIGHT_M, height),
            height_resolution_in: pick(&HEIGHT_IN, height),
        },
    )))
}

/// Decodes Body Composition Measurement 0x2A9C.
pub fn decode_body_composition(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(2, "the format needs")?;
    let flags = r.u16_le()?;
    let imperial = flags & 0x0001 != 0;
    let bit = |n: u16| flags & (1 << n) != 0;
    r.require_fields(
        2,
        &[
            Field::always("body fat percentage", 2),
            Field::when(bit(1), "time stamp", DeviceTime::LEN),
            Field::when(bit(2), "user id", 1),
            Field::when(bit(3), "basal metabolism", 2),
            Field::when(bit(4), "muscle percentage", 2),
            Field::when(bit(5), "muscle mass", 2),
            Field::when(bit(6), "fat free mass", 2),
            Field::when(bit(7), "soft lean mass", 2),
            Field::when(bit(8), "body water mass", 2),
            Field::when(bit(9), "impedance", 2),
            Field::when(bit(10), "weight", 2),
            Field::when(bit(11), "height", 2),
        ],
    )?;

    let mut reading = DecodedReading::new(ReadingKind::BodyComposition);
    let fat = r.u16_le()?;
    if fat == UNSUCCESSFUL {
        reading.push_missing(codes::BODY_FAT, "measurement-unsuccessful");
        reading.flags(["measurement-unsuccessful"]);
    } else {
        reading.push(codes::BODY_FAT, f64::from(fat) / 10.0, "%");
    }
    if bit(1) {
        reading.set_time(DeviceTime::read(&mut r)?);
    }
    if bit(2) {
        let user = r.u8()?;
        reading.user = (user != 0xFF).then_some(user);
    }
    if bit(3) {
        let kj = r.u16_le()?;
        reading.push(codes::BASAL_METABOLISM, f64::from(kj), "kJ");
    }
    if bit(4) {
        let pct = r.u16_le()?;
        reading.push(codes::MUSCLE_PERCENTAGE, f64::from(pct) / 10.0, "%");
    }
    for (n, code) in [
        (5, codes::MUSCLE_MASS),
        (6, codes::FAT_FREE_MASS),
        (7, codes::SOFT_LEAN_MASS),
        (8, codes::BODY_WATER_MASS),
    ] {
        if bit(n) {
            let raw = r.u16_le()?;
            push_mass(&mut reading, code, raw, imperial);
        }
    }
    if bit(9) {
        let ohm = r.u16_le()?;
        reading.push(codes::IMPEDANCE, f64::from(ohm) / 10.0, "Ohm");
    }
    if bit(10) {
        let raw = r.u16_le()?;
        push_mass(&mut reading, codes::BODY_WEIGHT, raw, imperial);
    }
    if bit(11) {
        let raw = r.u16_le()?;
        push_height(&mut reading, raw, imperial);
    }
    if bit(12) {
        // The value continues in the next indication; this frame holds only part of it.
        reading.flags(["multiple-packet-measurement"]);
    }
    if r.remaining() > 0 {
        reading.flags(["trailing-bytes"]);
    }
    Ok(Decoded::reading(reading))
}

const BODY_COMPOSITION_FEATURE_BITS: [(u32, &str); 11] = [
    (1 << 0, "time-stamp"),
    (1 << 1, "multiple-users"),
    (1 << 2, "basal-metabolism"),
    (1 << 3, "muscle-percentage"),
    (1 << 4, "muscle-mass"),
    (1 << 5, "fat-free-mass"),
    (1 << 6, "soft-lean-mass"),
    (1 << 7, "body-water-mass"),
    (1 << 8, "impedance"),
    (1 << 9, "weight"),
    (1 << 10, "height"),
];

/// Decodes Body Composition Feature 0x2A9B (the resolution fields are not interpreted: they
/// do not change how values are scaled).
pub fn decode_body_composition_feature(
    source: Source,
    bytes: &[u8],
) -> Result<Decoded, DecodeError> {
    super::decode_feature_bits(source, bytes, 4, &BODY_COMPOSITION_FEATURE_BITS)
}
