//! Decoders of the SIG health profiles, one module per service. Each takes the payload of one
//! characteristic and returns a [`crate::Decoded`] or a typed error; none panics on any input.

pub mod blood_pressure;
pub mod glucose;
pub mod heart_rate;
pub mod plx;
pub mod racp;
pub mod temperature;
pub mod weight;

use crate::error::DecodeError;
use crate::reader::Reader;
use crate::reading::{Decoded, Info};
use crate::source::Source;
use crate::time::named_bits;

/// Decodes a Feature characteristic that is only a little-endian bit field of `width` bytes
/// (2 for Blood Pressure and Glucose Feature, 4 for Body Composition Feature) into the names
/// of the bits it sets. Bytes after the field are ignored: later revisions of the profiles
/// append fields there.
pub(crate) fn decode_feature_bits(
    source: Source,
    bytes: &[u8],
    width: usize,
    table: &[(u32, &'static str)],
) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(width, "the format needs")?;
    let bits = if width == 4 {
        r.u32_le()?
    } else {
        u32::from(r.u16_le()?)
    };
    Ok(Decoded::info(Info::Features {
        characteristic: source.wire_name(),
        supported: named_bits(bits, table),
    }))
}
