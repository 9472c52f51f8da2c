//! The SIG time types: Date Time (0x2A08), Day Date Time, Current Time (0x2A2B) and Local Time
//! Information (0x2A0F).
//!
//! Device time stays **raw**: it is the device's local wall clock, without zone or DST, and it
//! is often wrong (never set, reset by a battery change). Nothing here corrects it; the agent
//! does that with the offset it measures at each connection (docs/gatt.md §6). A field the device
//! marks unknown (year, month or day 0) is `None`. A field out of its range (month 13, hour 24)
//! is malformed input and a typed error.

use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;

use crate::error::DecodeError;
use crate::reader::Reader;

/// The first year a device clock is believed: earlier years (1970 on a Mi scale, 2000 on a cuff
/// after a battery change) mean the clock was never set.
pub const FIRST_PLAUSIBLE_YEAR: u16 = 2015;

/// A Date Time as the device sent it (local wall clock, no zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeviceTime {
    /// Year, `None` when the device sent 0 (unknown).
    pub year: Option<u16>,
    /// Month 1..12, `None` when unknown.
    pub month: Option<u8>,
    /// Day 1..31, `None` when unknown.
    pub day: Option<u8>,
    /// Hours 0..23.
    pub hours: u8,
    /// Minutes 0..59.
    pub minutes: u8,
    /// Seconds 0..59.
    pub seconds: u8,
}

impl DeviceTime {
    /// Size on the wire.
    pub const LEN: usize = 7;

    /// Reads and validates a Date Time.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let year = r.u16_le()?;
        let month = r.u8()?;
        let day = r.u8()?;
        let hours = r.u8()?;
        let minutes = r.u8()?;
        let seconds = r.u8()?;
        let t = DeviceTime {
            year: (year != 0).then_some(year),
            month: (month != 0).then_some(month),
            day: (day != 0).then_some(day),
            hours,
            minutes,
            seconds,
        };
        if month > 12 || day > 31 || hours > 23 || minutes > 59 || seconds > 59 {
            return Err(r.invalid(
                "time stamp",
                format!("{year:04}-{month:02}-{day:02} {hours:02}:{minutes:02}:{seconds:02} is out of range"),
            ));
        }
        Ok(t)
    }

    /// The wall-clock time, when every field is known and the date exists.
    pub fn to_naive(&self) -> Option<NaiveDateTime> {
        NaiveDate::from_ymd_opt(
            i32::from(self.year?),
            u32::from(self.month?),
            u32::from(self.day?),
        )?
        .and_hms_opt(
            u32::from(self.hours),
            u32::from(self.minutes),
            u32::from(self.seconds),
        )
    }

    /// Whether this timestamp shows a clock that was never set: unknown date parts or a year
    /// before [`FIRST_PLAUSIBLE_YEAR`].
    pub fn looks_unset(&self) -> bool {
        match (self.year, self.month, self.day) {
            (Some(y), Some(_), Some(_)) => y < FIRST_PLAUSIBLE_YEAR,
            _ => true,
        }
    }

    /// Encodes for a Date Time write (A&D sets its clock through 0x2A08).
    pub fn encode(&self) -> [u8; 7] {
        let y = self.year.unwrap_or(0).to_le_bytes();
        [
            y[0],
            y[1],
            self.month.unwrap_or(0),
            self.day.unwrap_or(0),
            self.hours,
            self.minutes,
            self.seconds,
        ]
    }

    /// The Date Time of a wall-clock time.
    pub fn from_naive(t: NaiveDateTime) -> Self {
        use chrono::{Datelike, Timelike};
        let narrow = |v: u32| u8::try_from(v).unwrap_or(0);
        DeviceTime {
            year: u16::try_from(t.year()).ok(),
            month: Some(narrow(t.month())),
            day: Some(narrow(t.day())),
            hours: narrow(t.hour()),
            minutes: narrow(t.minute()),
            seconds: narrow(t.second()),
        }
    }
}

/// Current Time (0x2A2B): Day Date Time, fractions of a second and why the clock last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentTime {
    /// Local wall-clock date and time.
    pub time: DeviceTime,
    /// 1 = Monday .. 7 = Sunday; `None` when unknown.
    pub day_of_week: Option<u8>,
    /// 1/256 s.
    pub fractions256: u8,
    /// Adjust reasons: `manual-update`, `external-reference-update`, `time-zone-change`,
    /// `dst-change`.
    pub adjust_reasons: Vec<&'static str>,
}

const ADJUST_REASONS: [(u32, &str); 4] = [
    (0x01, "manual-update"),
    (0x02, "external-reference-update"),
    (0x04, "time-zone-change"),
    (0x08, "dst-change"),
];

impl CurrentTime {
    /// Size on the wire.
    pub const LEN: usize = 10;

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.require(Self::LEN, "Current Time needs")?;
        let time = DeviceTime::read(r)?;
        let dow = r.u8()?;
        if dow > 7 {
            return Err(r.invalid("day of week", format!("{dow} is not 0..7")));
        }
        let fractions256 = r.u8()?;
        let reason = r.u8()?;
        Ok(CurrentTime {
            time,
            day_of_week: (dow != 0).then_some(dow),
            fractions256,
            adjust_reasons: named_bits(u32::from(reason), &ADJUST_REASONS),
        })
    }

    /// The 10-byte write that sets a device clock to `local` (the patient's wall clock), with
    /// adjust reason "manual update" as CTS clients conventionally send.
    pub fn encode_write(local: NaiveDateTime) -> [u8; 10] {
        use chrono::Datelike;
        let t = DeviceTime::from_naive(local).encode();
        let dow = u8::try_from(local.weekday().number_from_monday()).unwrap_or(0);
        [t[0], t[1], t[2], t[3], t[4], t[5], t[6], dow, 0, 0x01]
    }
}

/// Local Time Information (0x2A0F): the zone offset **without** DST, and the DST offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LocalTimeInformation {
    /// Offset from UTC in minutes, excluding DST; `None` when unknown (-128).
    pub zone_offset_minutes: Option<i16>,
    /// DST offset in minutes (0, 30, 60, 120); `None` when unknown (255).
    pub dst_offset_minutes: Option<i16>,
}

impl LocalTimeInformation {
    /// Size on the wire.
    pub const LEN: usize = 2;

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.require(Self::LEN, "Local Time Information needs")?;
        let zone = r.i8()?;
        let dst = r.u8()?;
        let zone_offset_minutes = match zone {
            -128 => None,
            -48..=56 => Some(i16::from(zone) * 15),
            other => {
                return Err(r.invalid("time zone", format!("{other} is not -48..56")));
            }
        };
        let dst_offset_minutes = match dst {
            0 => Some(0),
            2 => Some(30),
            4 => Some(60),
            8 => Some(120),
            255 => None,
            other => return Err(r.invalid("DST offset", format!("code {other} is not defined"))),
        };
        Ok(LocalTimeInformation {
            zone_offset_minutes,
            dst_offset_minutes,
        })
    }

    /// The 2-byte write for a zone offset (without DST) and a DST offset, both in minutes.
    /// Returns `None` for offsets the characteristic cannot express.
    pub fn encode(zone_offset_minutes: i16, dst_offset_minutes: i16) -> Option<[u8; 2]> {
        if zone_offset_minutes % 15 != 0 {
            return None;
        }
        let zone = i8::try_from(zone_offset_minutes / 15).ok()?;
        if !(-48..=56).contains(&zone) {
            return None;
        }
        let dst = match dst_offset_minutes {
            0 => 0,
            30 => 2,
            60 => 4,
            120 => 8,
            _ => return None,
        };
        Some([zone.to_le_bytes()[0], dst])
    }
}

/// The names of the set bits of `value` from a table of (mask, name).
pub(crate) fn named_bits(value: u32, table: &[(u32, &'static str)]) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(mask, _)| value & mask != 0)
        .map(|(_, name)| *name)
        .collect()
}
