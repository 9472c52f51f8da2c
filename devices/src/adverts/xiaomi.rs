//! Xiaomi Mi Smart Scale (service data under 0x181D, 10 bytes) and Mi Body Composition Scale 2
//! (service data under 0x181B, 13 bytes).
//!
//! Mi scale v1: control u8 (bit0 lb, bit4 jin, bit5 stabilized, bit7 load removed), weight u16
//! (kg / 200, lb and jin / 100), then year u16, month, day, hours, minutes, seconds.
//! Mi scale v2: byte0 (bit0 lb, bit2 object mode), byte1 (bit1 impedance present, bit5
//! stabilized, bit6 jin, bit7 load removed), year u16 .. seconds, impedance u16 (Ohm), weight
//! u16 (kg / 200, lb and jin / 100).
//!
//! A scale repeats its frames for seconds while the weight settles: only a **stabilized** frame
//! whose load is **not removed** (and, on v2, that is not an object weighing) is a reading.
//! Other frames decode to [`ScaleFrameState`] so the operator sees why nothing was recorded.
//! The scale's clock is often never set (1970 dates): `clock_not_set` says so.

use serde::Serialize;
use tm_protocol::ReadingKind;

use crate::error::DecodeError;
use crate::profiles::weight::KG_PER_LB;
use crate::reader::Reader;
use crate::reading::{Decoded, DecodedReading, Info, codes, round_to};
use crate::source::Source;
use crate::time::DeviceTime;

/// Why a scale frame holds no reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScaleFrameState {
    /// The weight had settled.
    pub stabilized: bool,
    /// The person stepped off (the frame repeats the last weight).
    pub load_removed: bool,
    /// The scale weighs an object, not a person.
    pub object_mode: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MassUnit {
    Kg,
    Lb,
    Jin,
}

fn push_weight(reading: &mut DecodedReading, raw: u16, unit: MassUnit) {
    match unit {
        MassUnit::Kg => reading.push(codes::BODY_WEIGHT, f64::from(raw) / 200.0, "kg"),
        MassUnit::Lb => {
            let lb = f64::from(raw) / 100.0;
            reading.push_converted(
                codes::BODY_WEIGHT,
                round_to(lb * KG_PER_LB, 3),
                "kg",
                lb,
                "[lb_av]",
            );
        }
        MassUnit::Jin => {
            // One jin (catty) is exactly 0.5 kg.
            let jin = f64::from(raw) / 100.0;
            reading.push_converted(codes::BODY_WEIGHT, jin / 2.0, "kg", jin, "jin");
        }
    }
}

/// Decodes Mi Smart Scale service data (0x181D).
pub fn decode_mi_scale(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require_exact(10)?;
    let control = r.u8()?;
    let weight = r.u16_le()?;
    let time = DeviceTime::read(&mut r)?;
    let state = ScaleFrameState {
        stabilized: control & 0x20 != 0,
        load_removed: control & 0x80 != 0,
        object_mode: false,
    };
    if !state.stabilized || state.load_removed {
        return Ok(Decoded::info(Info::ScaleFrame(state)));
    }
    let unit = if control & 0x01 != 0 {
        MassUnit::Lb
    } else if control & 0x10 != 0 {
        MassUnit::Jin
    } else {
        MassUnit::Kg
    };
    let mut reading = DecodedReading::new(ReadingKind::BodyWeight);
    push_weight(&mut reading, weight, unit);
    reading.set_time(time);
    Ok(Decoded::reading(reading))
}

/// Decodes Mi Body Composition Scale 2 service data (0x181B).
pub fn decode_mi_body_composition(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require_exact(13)?;
    let unit_byte = r.u8()?;
    let control = r.u8()?;
    let time = DeviceTime::read(&mut r)?;
    let impedance = r.u16_le()?;
    let weight = r.u16_le()?;
    let state = ScaleFrameState {
        stabilized: control & 0x20 != 0,
        load_removed: control & 0x80 != 0,
        object_mode: unit_byte & 0x04 != 0,
    };
    if !state.stabilized || state.load_removed || state.object_mode {
        return Ok(Decoded::info(Info::ScaleFrame(state)));
    }
    let unit = if unit_byte & 0x01 != 0 {
        MassUnit::Lb
    } else if control & 0x40 != 0 {
        MassUnit::Jin
    } else {
        MassUnit::Kg
    };
    let mut reading = DecodedReading::new(ReadingKind::BodyComposition);
    push_weight(&mut reading, weight, unit);
    if control & 0x02 != 0 {
        reading.push(codes::IMPEDANCE, f64::from(impedance), "Ohm");
    }
    reading.set_time(time);
    Ok(Decoded::reading(reading))
}
