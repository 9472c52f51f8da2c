//! Helpers shared by the golden tests.

#![allow(dead_code)]

use tm_devices::{Decoded, DecodedReading, Quirks, Source, decode};

/// Bytes of a hex string with optional spaces.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len().is_multiple_of(2), "odd hex {s}");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// Decodes `hex` from `source` (text form) without quirks.
pub fn dec(source: &str, bytes: &str) -> Decoded {
    dec_with(source, bytes, &Quirks::NONE)
}

/// Decodes with quirks; panics with the decode error on failure.
pub fn dec_with(source: &str, bytes: &str, quirks: &Quirks) -> Decoded {
    let source: Source = source.parse().unwrap();
    decode(source, &hex(bytes), quirks).unwrap_or_else(|e| panic!("{e}"))
}

/// The only reading of a frame.
pub fn one(d: &Decoded) -> &DecodedReading {
    assert_eq!(d.readings.len(), 1, "{d:?}");
    &d.readings[0]
}

/// The value and unit of the component with `code`.
pub fn value(r: &DecodedReading, code: &str) -> (f64, String) {
    let c = r
        .components
        .iter()
        .find(|c| c.code == code)
        .unwrap_or_else(|| panic!("no component {code} in {r:?}"));
    (c.value, c.unit.clone())
}

/// The measured_at as text.
pub fn at(r: &DecodedReading) -> Option<String> {
    r.measured_at
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}
