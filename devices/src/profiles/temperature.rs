//! Health Thermometer 0x1809: Temperature Measurement 0x2A1C and Intermediate Temperature 0x2A1E
//! (same layout).
//!
//! Layout: flags u8 (bit0 Fahrenheit, bit1 time stamp, bit2 temperature type), the temperature
//! as a 32-bit FLOAT, then the optional Date Time and type byte. Fahrenheit is converted to
//! `Cel` (two decimals) with the original kept; the measurement site becomes a `site:<name>`
//! status entry.

use tm_protocol::ReadingKind;

use crate::error::DecodeError;
use crate::reader::{Field, Reader};
use crate::reading::{Decoded, DecodedReading, codes, round_to};
use crate::source::Source;
use crate::time::DeviceTime;

const SITES: [&str; 9] = [
    "armpit",
    "body",
    "ear",
    "finger",
    "gastro-intestinal-tract",
    "mouth",
    "rectum",
    "toe",
    "tympanum",
];

/// The status entry of a Temperature Type byte.
pub fn site_name(code: u8) -> String {
    match usize::from(code).checked_sub(1).and_then(|i| SITES.get(i)) {
        Some(name) => format!("site:{name}"),
        None => format!("site:reserved-{code}"),
    }
}

/// Decodes 0x2A1C or 0x2A1E (`intermediate` adds the status entry `intermediate`).
pub fn decode_temperature(
    source: Source,
    bytes: &[u8],
    intermediate: bool,
) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(1, "the format needs")?;
    let flags = r.u8()?;
    let fahrenheit = flags & 0x01 != 0;
    let has_time = flags & 0x02 != 0;
    let has_type = flags & 0x04 != 0;
    r.require_fields(
        1,
        &[
            Field::always("temperature", 4),
            Field::when(has_time, "time stamp", DeviceTime::LEN),
            Field::when(has_type, "temperature type", 1),
        ],
    )?;

    let mut reading = DecodedReading::new(ReadingKind::BodyTemperature);
    let value = r.float()?;
    match (value.value(), fahrenheit) {
        (Ok(c), false) => reading.push(codes::BODY_TEMPERATURE, c, "Cel"),
        (Ok(f), true) => reading.push_converted(
            codes::BODY_TEMPERATURE,
            round_to((f - 32.0) * 5.0 / 9.0, 2),
            "Cel",
            f,
            "[degF]",
        ),
        (Err(special), _) => reading.push_missing(codes::BODY_TEMPERATURE, special.reason()),
    }
    if has_time {
        reading.set_time(DeviceTime::read(&mut r)?);
    }
    if has_type {
        let site = r.u8()?;
        reading.status.push(site_name(site));
    }
    if intermediate {
        reading.flags(["intermediate"]);
    }
    if r.remaining() > 0 {
        reading.flags(["trailing-bytes"]);
    }
    Ok(Decoded::reading(reading))
}
