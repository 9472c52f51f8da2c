//! Omron EEPROM vital records (the "WLP/EEPROM" generation of cuffs: HEM-7142T2, HEM-7322T,
//! HEM-7600T ...). The agent reads 14-byte slots from the cuff's memory map; each slot is one
//! blood-pressure record or empty. Two layouts exist (hass-omron `record_parsers.py`):
//!
//! * [`RecordLayout::ByteAligned`]: sys - 25, dia, pulse, year - 2000 (low 6 bits), then a
//!   little-endian u16 (hour bits 0-4, day 5-9, month 10-13, irregular heartbeat 14, body
//!   movement 15) and a little-endian u16 (second 0-5, minute 6-11).
//! * [`RecordLayout::BitPacked`]: one big-endian bit string: dia 0-7, sys - 25 8-15, year - 2000
//!   16-23, pulse 24-31, movement 32, irregular heartbeat 33, month 34-37, day 38-42, hour
//!   43-47, minute 52-57, second 58-63.
//!
//! An empty slot (all 0xFF, all zero, or a systolic byte above 0xE1) is `None`, not an error.
//! The record time is the cuff's wall clock, kept raw like every device time.

use tm_protocol::ReadingKind;

use crate::reading::{DecodedReading, codes};
use crate::time::DeviceTime;

/// Size of one record slot.
pub const RECORD_LEN: usize = 14;

/// How a model packs its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordLayout {
    /// Byte-aligned fields (HEM-7142T2 and the modern 0xFE4A family).
    ByteAligned,
    /// Big-endian bit-packed fields (HEM-7322T, HEM-7600T).
    BitPacked,
}

/// A record slot that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The slot is not 14 bytes.
    #[error("Omron record: {0} bytes, a record slot is exactly 14")]
    WrongLength(usize),
    /// A date or time field is out of range.
    #[error("Omron record: time stamp {0} is out of range")]
    BadTime(String),
}

fn bits(data: &[u8], first: u32, last: u32) -> u32 {
    let mut value: u64 = 0;
    for b in data.iter().take(8) {
        value = (value << 8) | u64::from(*b);
    }
    let width = last - first + 1;
    let shifted = value >> (63 - last);
    u32::try_from(shifted & ((1u64 << width) - 1)).unwrap_or(0)
}

fn narrow(v: u32) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// Decodes one slot; `Ok(None)` for an empty slot.
pub fn decode_record(
    data: &[u8],
    layout: RecordLayout,
) -> Result<Option<DecodedReading>, RecordError> {
    if data.len() != RECORD_LEN {
        return Err(RecordError::WrongLength(data.len()));
    }
    if data.iter().all(|b| *b == 0xFF) || data.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let (sys_raw, dia, pulse, year, month, day, hour, minute, second, ihb, mov) = match layout {
        RecordLayout::ByteAligned => {
            let f1 = u16::from_le_bytes([data[4], data[5]]);
            let f2 = u16::from_le_bytes([data[6], data[7]]);
            (
                data[0],
                data[1],
                data[2],
                2000 + u16::from(data[3] & 0x3F),
                narrow(u32::from((f1 >> 10) & 0x0F)),
                narrow(u32::from((f1 >> 5) & 0x1F)),
                narrow(u32::from(f1 & 0x1F)),
                narrow(u32::from((f2 >> 6) & 0x3F)),
                narrow(u32::from(f2 & 0x3F)),
                f1 & (1 << 14) != 0,
                f1 & (1 << 15) != 0,
            )
        }
        RecordLayout::BitPacked => (
            data[1],
            data[0],
            data[3],
            2000 + u16::from(data[2]),
            narrow(bits(data, 34, 37)),
            narrow(bits(data, 38, 42)),
            narrow(bits(data, 43, 47)),
            narrow(bits(data, 52, 57)),
            narrow(bits(data, 58, 63)),
            bits(data, 33, 33) != 0,
            bits(data, 32, 32) != 0,
        ),
    };
    if sys_raw > 0xE1 {
        return Ok(None);
    }
    let time = DeviceTime {
        year: Some(year),
        month: (month != 0).then_some(month),
        day: (day != 0).then_some(day),
        hours: hour,
        minutes: minute,
        seconds: second,
    };
    if month > 12 || hour > 23 || minute > 59 || second > 59 {
        return Err(RecordError::BadTime(format!(
            "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}"
        )));
    }
    let mut reading = DecodedReading::new(ReadingKind::BloodPressure);
    reading.push(codes::SYSTOLIC, f64::from(sys_raw) + 25.0, "mm[Hg]");
    reading.push(codes::DIASTOLIC, f64::from(dia), "mm[Hg]");
    reading.push(codes::HEART_RATE, f64::from(pulse), "/min");
    reading.set_time(time);
    if ihb {
        reading.flags(["irregular-pulse"]);
    }
    if mov {
        reading.flags(["body-movement"]);
    }
    Ok(Some(reading))
}
