//! Blood Pressure Service 0x1810: Blood Pressure Measurement 0x2A35, Intermediate Cuff Pressure
//! 0x2A36 (same layout; only the cuff pressure in the systolic field means anything) and Blood
//! Pressure Feature 0x2A49.
//!
//! Layout: flags u8 (bit0 kPa, bit1 time stamp, bit2 pulse rate, bit3 user id, bit4 status),
//! systolic, diastolic and mean arterial pressure as SFLOAT, then the optional fields in flag
//! order. Pressures in kPa are converted to mm[Hg] (1 kPa = 7.500617 mm[Hg], one decimal) and
//! the original kept. Quirks: big-endian pulse and status, and a user byte that is always
//! present (Beurer BM85, docs/gatt.md §2.2).

use tm_protocol::ReadingKind;

use crate::error::DecodeError;
use crate::ieee11073::MedFloat;
use crate::quirks::Quirks;
use crate::reader::{Field, Reader};
use crate::reading::{Decoded, DecodedReading, codes, round_to};
use crate::source::Source;
use crate::time::{DeviceTime, named_bits};

/// mm[Hg] per kPa.
const MMHG_PER_KPA: f64 = 7.500_616_827;

const STATUS_BITS: [(u32, &str); 4] = [
    (0x0001, "body-movement"),
    (0x0002, "cuff-fit-loose"),
    (0x0004, "irregular-pulse"),
    (0x0020, "improper-position"),
];

const FEATURE_BITS: [(u32, &str); 9] = [
    (0x0001, "body-movement-detection"),
    (0x0002, "cuff-fit-detection"),
    (0x0004, "irregular-pulse-detection"),
    (0x0008, "pulse-rate-range-detection"),
    (0x0010, "measurement-position-detection"),
    (0x0020, "multiple-bonds"),
    (0x0040, "e2e-crc"),
    (0x0080, "user-data-service"),
    (0x0100, "user-facing-time"),
];

/// Decodes 0x2A35 (`intermediate == false`) or 0x2A36.
pub fn decode_measurement(
    source: Source,
    bytes: &[u8],
    quirks: &Quirks,
    intermediate: bool,
) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(1, "the format needs")?;
    let flags = r.u8()?;
    let kpa = flags & 0x01 != 0;
    let has_time = flags & 0x02 != 0;
    let has_pulse = flags & 0x04 != 0;
    let has_user = flags & 0x08 != 0 || quirks.bp_always_user_id;
    let has_status = flags & 0x10 != 0;
    r.require_fields(
        1,
        &[
            Field::always("pressures", 6),
            Field::when(has_time, "time stamp", DeviceTime::LEN),
            Field::when(has_pulse, "pulse rate", 2),
            Field::when(has_user, "user id", 1),
            Field::when(has_status, "measurement status", 2),
        ],
    )?;

    let kind = if intermediate {
        ReadingKind::CuffPressure
    } else {
        ReadingKind::BloodPressure
    };
    let mut reading = DecodedReading::new(kind);
    let systolic = r.sfloat()?;
    let diastolic = r.sfloat()?;
    let mean = r.sfloat()?;
    if intermediate {
        // Diastolic and MAP are unused in a cuff-pressure frame (NaN per spec, 0 in practice).
        push_pressure(&mut reading, codes::CUFF_PRESSURE, systolic, kpa);
    } else {
        push_pressure(&mut reading, codes::SYSTOLIC, systolic, kpa);
        push_pressure(&mut reading, codes::DIASTOLIC, diastolic, kpa);
        push_pressure(&mut reading, codes::MEAN_ARTERIAL, mean, kpa);
    }
    if has_time {
        reading.set_time(DeviceTime::read(&mut r)?);
    }
    if has_pulse {
        let raw = if quirks.bp_big_endian_pulse_status {
            r.u16_be()?
        } else {
            r.u16_le()?
        };
        reading.push_med(codes::HEART_RATE, MedFloat::from_sfloat(raw), "/min");
    }
    if has_user {
        let user = r.u8()?;
        reading.user = (user != 0xFF).then_some(user);
    }
    if has_status {
        let status = if quirks.bp_big_endian_pulse_status {
            r.u16_be()?
        } else {
            r.u16_le()?
        };
        reading.flags(status_names(status));
    }
    if r.remaining() > 0 {
        reading.flags(["trailing-bytes"]);
    }
    Ok(Decoded::reading(reading))
}

fn push_pressure(reading: &mut DecodedReading, code: &str, value: MedFloat, kpa: bool) {
    match (value.value(), kpa) {
        (Ok(v), false) => reading.push(code, v, "mm[Hg]"),
        (Ok(v), true) => {
            reading.push_converted(code, round_to(v * MMHG_PER_KPA, 1), "mm[Hg]", v, "kPa")
        }
        (Err(special), _) => reading.push_missing(code, special.reason()),
    }
}

/// The names of the Measurement Status bits.
pub fn status_names(status: u16) -> Vec<&'static str> {
    let mut names = named_bits(u32::from(status), &STATUS_BITS);
    match (status >> 3) & 0x03 {
        1 => names.push("pulse-rate-above-range"),
        2 => names.push("pulse-rate-below-range"),
        3 => names.push("pulse-rate-range-reserved"),
        _ => {}
    }
    names
}

/// Decodes Blood Pressure Feature 0x2A49.
pub fn decode_feature(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    super::decode_feature_bits(source, bytes, 2, &FEATURE_BITS)
}
