//! Where a frame came from: a GATT characteristic, advertisement service data, or advertisement
//! manufacturer data. The source picks the decoder.
//!
//! Text forms (the CLI and the reading id use them): `2A35` or `0x2A35` for a characteristic,
//! `adv:181B` for service data under a 16-bit service UUID, `mfr:020E` for manufacturer data
//! under a company id. [`Source::wire_name`] gives the canonical form (`2A35`, `adv:181B`,
//! `mfr:020E`); `Display` gives the form used in error messages (`0x2A35`).

use std::fmt;
use std::str::FromStr;

/// The origin of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A GATT characteristic, by its 16-bit UUID.
    Characteristic(u16),
    /// Advertisement service data, by its 16-bit service UUID.
    ServiceData(u16),
    /// Advertisement manufacturer-specific data, by its company id (the id itself not included
    /// in the bytes).
    ManufacturerData(u16),
}

impl Source {
    /// The canonical text form: `2A35`, `adv:181B`, `mfr:020E`.
    pub fn wire_name(&self) -> String {
        match self {
            Source::Characteristic(u) => format!("{u:04X}"),
            Source::ServiceData(u) => format!("adv:{u:04X}"),
            Source::ManufacturerData(c) => format!("mfr:{c:04X}"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Characteristic(u) => write!(f, "0x{u:04X}"),
            other => f.write_str(&other.wire_name()),
        }
    }
}

/// A source string that is not one of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "source {0:?} is not a 16-bit characteristic (2A35), adv:<service uuid> (adv:181B) or mfr:<company id> (mfr:020E)"
)]
pub struct InvalidSource(pub String);

fn hex16(s: &str) -> Option<u16> {
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

/// A full 128-bit SIG base UUID (`0000xxxx-0000-1000-8000-00805f9b34fb`) names a 16-bit UUID.
fn sig_uuid16(s: &str) -> Option<u16> {
    let lower = s.to_ascii_lowercase();
    let rest = lower.strip_prefix("0000")?;
    let (short, tail) = rest.split_at_checked(4)?;
    (tail == "-0000-1000-8000-00805f9b34fb").then(|| hex16(short))?
}

impl FromStr for Source {
    type Err = InvalidSource;

    fn from_str(s: &str) -> Result<Self, InvalidSource> {
        let t = s.trim();
        let bad = || InvalidSource(s.to_string());
        let lower = t.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("adv:") {
            return hex16(rest)
                .or_else(|| sig_uuid16(rest))
                .map(Source::ServiceData)
                .ok_or_else(bad);
        }
        if let Some(rest) = lower.strip_prefix("mfr:") {
            return hex16(rest).map(Source::ManufacturerData).ok_or_else(bad);
        }
        hex16(&lower)
            .or_else(|| sig_uuid16(&lower))
            .map(Source::Characteristic)
            .ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("2A35".parse(), Ok(Source::Characteristic(0x2A35)));
        assert_eq!("0x2a35".parse(), Ok(Source::Characteristic(0x2A35)));
        assert_eq!(
            "00002a35-0000-1000-8000-00805f9b34fb".parse(),
            Ok(Source::Characteristic(0x2A35))
        );
        assert_eq!("adv:181B".parse(), Ok(Source::ServiceData(0x181B)));
        assert_eq!("mfr:020E".parse(), Ok(Source::ManufacturerData(0x020E)));
        assert!("2A355".parse::<Source>().is_err());
        assert!("adv:".parse::<Source>().is_err());
        assert!("xyz:1234".parse::<Source>().is_err());
        assert!("".parse::<Source>().is_err());
    }

    #[test]
    fn names_round_trip() {
        for s in [
            Source::Characteristic(0x2A35),
            Source::ServiceData(0x181D),
            Source::ManufacturerData(0x020E),
        ] {
            assert_eq!(s.wire_name().parse(), Ok(s));
        }
        assert_eq!(Source::Characteristic(0x2A35).to_string(), "0x2A35");
    }
}
