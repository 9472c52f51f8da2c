//! Omron manufacturer data (company id 0x020E; the bytes start after the id).
//!
//! Byte 0 is the data type, byte 1 the flags: bits 0-1 number of users - 1, bit2 **time not
//! set**, bit3 **pairing mode**, bit4 streaming mode, bit5 standard (SIG) services, bit6 forced
//! transfer. Data types 0x01, 0x02 and 0x06 ("each user data") follow with, per user, the
//! latest record sequence number (u16) and the number of stored records (u8): the agent sees
//! new records without connecting. Types 0x03, 0x08 and 0x09 carry the flags only.
//!
//! The advertised name's case ("BLEsmart_" / "BLESmart_") does not tell pairing mode; the
//! flag does (docs/gatt.md §3, §7). Sources: SpeziOmron `OmronManufacturerData.swift`, hass-omron
//! `advertisement.py`.

use serde::Serialize;

use crate::error::DecodeError;
use crate::reader::Reader;
use crate::reading::{Decoded, Info};
use crate::source::Source;

/// The record counters of one user slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OmronUserSlot {
    /// User slot, from 1.
    pub user: u8,
    /// Sequence number of the latest record.
    pub sequence: u16,
    /// Records stored for this user.
    pub records: u8,
}

/// What an Omron advertisement says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OmronAdvert {
    /// The data type byte.
    pub data_type: u8,
    /// Number of user slots (1..4).
    pub user_count: u8,
    /// The device clock is not set: stored readings have untrusted times.
    pub time_not_set: bool,
    /// The device is in pairing mode (ready to bond).
    pub pairing_mode: bool,
    /// Streaming instead of data-communication mode.
    pub streaming_mode: bool,
    /// The device exposes the SIG services (not only Omron's extension).
    pub standard_services: bool,
    /// The user forced a transfer (pressed the transfer button).
    pub forced_transfer: bool,
    /// Per-user record counters (data types 0x01, 0x02, 0x06).
    pub users: Vec<OmronUserSlot>,
    /// Bytes after the known fields, not interpreted.
    pub unparsed_bytes: usize,
}

/// Decodes Omron manufacturer data.
pub fn decode(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(2, "the format needs")?;
    let data_type = r.u8()?;
    let flags = r.u8()?;
    let user_count = (flags & 0x03) + 1;
    let mut advert = OmronAdvert {
        data_type,
        user_count,
        time_not_set: flags & 0x04 != 0,
        pairing_mode: flags & 0x08 != 0,
        streaming_mode: flags & 0x10 != 0,
        standard_services: flags & 0x20 != 0,
        forced_transfer: flags & 0x40 != 0,
        users: Vec::new(),
        unparsed_bytes: 0,
    };
    match data_type {
        0x01 | 0x02 | 0x06 => {
            r.require(2 + 3 * usize::from(user_count), "the user count requires")?;
            for user in 1..=user_count {
                let sequence = r.u16_le()?;
                let records = r.u8()?;
                advert.users.push(OmronUserSlot {
                    user,
                    sequence,
                    records,
                });
            }
        }
        0x03 => {
            r.require(3, "data type 0x03 needs")?;
        }
        0x08 | 0x09 => {}
        other => {
            return Err(r.invalid("data type", format!("0x{other:02X} is not known")));
        }
    }
    advert.unparsed_bytes = r.remaining();
    Ok(Decoded::info(Info::Omron(advert)))
}
