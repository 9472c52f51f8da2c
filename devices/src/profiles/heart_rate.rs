//! Heart Rate 0x180D: Heart Rate Measurement 0x2A37; and Battery Level 0x2A19.
//!
//! HRM layout: flags u8 (bit0 u16 heart rate, bit1 contact detected, bit2 contact supported,
//! bit3 energy expended present, bit4 RR intervals present), heart rate u8 or u16, [energy
//! expended u16 kJ], [RR intervals u16 in 1/1024 s, repeated to the end]. RR intervals become
//! `x-rr-interval` components in seconds (four decimals), in the order received.

use tm_protocol::ReadingKind;

use crate::error::DecodeError;
use crate::reader::{Field, Reader};
use crate::reading::{Decoded, DecodedReading, Info, codes, round_to};
use crate::source::Source;

/// Decodes Heart Rate Measurement 0x2A37.
pub fn decode_heart_rate(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(1, "the format needs")?;
    let flags = r.u8()?;
    let wide = flags & 0x01 != 0;
    let has_energy = flags & 0x08 != 0;
    let has_rr = flags & 0x10 != 0;
    r.require_fields(
        1,
        &[
            Field::always("heart rate", if wide { 2 } else { 1 }),
            Field::when(has_energy, "energy expended", 2),
            Field::when(has_rr, "RR intervals", 2),
        ],
    )?;

    let mut reading = DecodedReading::new(ReadingKind::HeartRate);
    let hr = if wide {
        r.u16_le()?
    } else {
        u16::from(r.u8()?)
    };
    reading.push(codes::HEART_RATE, f64::from(hr), "/min");
    match flags & 0x06 {
        0x06 => reading.flags(["sensor-contact-detected"]),
        0x04 => reading.flags(["sensor-contact-not-detected"]),
        _ => {}
    }
    if has_energy {
        let kj = r.u16_le()?;
        reading.push(codes::ENERGY_EXPENDED, f64::from(kj), "kJ");
    }
    if has_rr {
        if !r.remaining().is_multiple_of(2) {
            return Err(r.invalid(
                "RR intervals",
                format!(
                    "take {} bytes, not a whole number of 2-byte values",
                    r.remaining()
                ),
            ));
        }
        while r.remaining() >= 2 {
            let rr = r.u16_le()?;
            reading.push(codes::RR_INTERVAL, round_to(f64::from(rr) / 1024.0, 4), "s");
        }
    } else if r.remaining() > 0 {
        reading.flags(["trailing-bytes"]);
    }
    Ok(Decoded::reading(reading))
}

/// Decodes Battery Level 0x2A19.
pub fn decode_battery(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let r = Reader::new(source, bytes);
    r.require_exact(1)?;
    let percent = bytes.first().copied().unwrap_or(0);
    if percent > 100 {
        return Err(r.invalid("battery level", format!("{percent} is above 100 %")));
    }
    Ok(Decoded::info(Info::Battery { percent }))
}
