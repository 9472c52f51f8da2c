//! IEEE 11073-20601 numbers as the SIG health profiles send them.
//!
//! * **SFLOAT** (16 bit): bits 15..12 are a 4-bit two's-complement exponent (-8..7), bits 11..0
//!   a 12-bit two's-complement mantissa; value = mantissa x 10^exponent.
//! * **FLOAT** (32 bit): bits 31..24 a signed 8-bit exponent, bits 23..0 a 24-bit
//!   two's-complement mantissa.
//!
//! Both reserve a few mantissas (with exponent 0) for special values: NaN, NRes ("not at this
//! resolution"), +INF, -INF and a reserved code. A special value is never a number: decoders
//! leave the component out and keep the reason ([`Special::reason`]).
//!
//! The exponent is sign-extended. Public parsers that add a bias of 8 or forget the sign
//! extension (docs/gatt.md §7) decode 120 mmHg or any kPa value wrongly; the golden tests pin the
//! correct reading.

use std::fmt;

/// A special value of SFLOAT or FLOAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// Not a number (no valid measurement).
    NaN,
    /// Not at this resolution: the value cannot be represented.
    NRes,
    /// Positive infinity (above the measurable range).
    PositiveInfinity,
    /// Negative infinity (below the measurable range).
    NegativeInfinity,
    /// The reserved code; treated like NaN.
    Reserved,
}

impl Special {
    /// The reason as kept in a missing component.
    pub fn reason(self) -> &'static str {
        match self {
            Special::NaN => "nan",
            Special::NRes => "nres",
            Special::PositiveInfinity => "positive-infinity",
            Special::NegativeInfinity => "negative-infinity",
            Special::Reserved => "reserved",
        }
    }
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// A decoded SFLOAT or FLOAT: an exact decimal (mantissa and exponent) or a special value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MedFloat {
    /// mantissa x 10^exponent.
    Number {
        /// The signed mantissa.
        mantissa: i32,
        /// The signed base-10 exponent.
        exponent: i8,
    },
    /// A special value; no number.
    Special(Special),
}

impl MedFloat {
    /// Decodes a 16-bit SFLOAT (4-bit exponent, 12-bit mantissa).
    pub fn from_sfloat(raw: u16) -> Self {
        Self::decode(
            sign_extend(u32::from(raw >> 12), 4),
            u32::from(raw & 0x0FFF),
            12,
        )
    }

    /// Decodes a 32-bit FLOAT (8-bit exponent, 24-bit mantissa).
    pub fn from_float(raw: u32) -> Self {
        Self::decode(sign_extend(raw >> 24, 8), raw & 0x00FF_FFFF, 24)
    }

    /// Both formats: the special values sit at exponent 0 around the middle of the mantissa's
    /// range (`2^(bits-1)`: NRes at it, NaN one below, +INF two below, reserved one above, -INF
    /// two above; for SFLOAT 0x0800, 0x07FF, 0x07FE, 0x0801, 0x0802).
    fn decode(exponent: i32, mantissa_bits: u32, bits: u32) -> Self {
        let middle = 1u32 << (bits - 1);
        if exponent == 0 {
            let special = match mantissa_bits {
                m if m == middle - 1 => Some(Special::NaN),
                m if m == middle => Some(Special::NRes),
                m if m == middle - 2 => Some(Special::PositiveInfinity),
                m if m == middle + 2 => Some(Special::NegativeInfinity),
                m if m == middle + 1 => Some(Special::Reserved),
                _ => None,
            };
            if let Some(special) = special {
                return MedFloat::Special(special);
            }
        }
        MedFloat::Number {
            mantissa: sign_extend(mantissa_bits, bits),
            exponent: narrow_exponent(exponent),
        }
    }

    /// The value as a float, or the special value.
    pub fn value(self) -> Result<f64, Special> {
        self.scaled(0)
    }

    /// The value multiplied by 10^`shift` (a unit change such as kg/L to mg/dL is `shift = 5`),
    /// computed by one multiplication or division by a power of ten so that decimal values
    /// stay as close to their decimal spelling as f64 allows (18.9, not 18.900000000000002).
    pub fn scaled(self, shift: i32) -> Result<f64, Special> {
        match self {
            MedFloat::Special(s) => Err(s),
            MedFloat::Number { mantissa, exponent } => {
                let e = i32::from(exponent) + shift;
                let m = f64::from(mantissa);
                Ok(if e >= 0 {
                    m * 10f64.powi(e)
                } else {
                    m / 10f64.powi(-e)
                })
            }
        }
    }
}

/// Sign-extends the low `bits` bits of `raw`.
fn sign_extend(raw: u32, bits: u32) -> i32 {
    let shift = 32 - bits;
    // Reinterpreting the bit pattern is the point: the top bit becomes the sign.
    (i32::from_ne_bytes((raw << shift).to_ne_bytes())) >> shift
}

/// Exponents come from 4 or 8 bits, so they always fit an i8.
fn narrow_exponent(e: i32) -> i8 {
    i8::try_from(e).unwrap_or(if e < 0 { i8::MIN } else { i8::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sfloat(bytes: [u8; 2]) -> MedFloat {
        MedFloat::from_sfloat(u16::from_le_bytes(bytes))
    }

    fn float(bytes: [u8; 4]) -> MedFloat {
        MedFloat::from_float(u32::from_le_bytes(bytes))
    }

    // docs/gatt.md §2.1, SFLOAT vectors.
    #[test]
    fn sfloat_golden_vectors() {
        assert_eq!(sfloat([0x01, 0x02]).value(), Ok(513.0));
        assert_eq!(sfloat([0x01, 0xFE]).value(), Ok(-51.1));
        assert_eq!(sfloat([0xFF, 0x02]).value(), Ok(767.0));
        assert_eq!(sfloat([0x80, 0x00]).value(), Ok(128.0));
        assert_eq!(sfloat([0xB0, 0xF0]).value(), Ok(17.6));
    }

    #[test]
    fn sfloat_special_values() {
        assert_eq!(sfloat([0xFF, 0x07]).value(), Err(Special::NaN));
        assert_eq!(sfloat([0x00, 0x08]).value(), Err(Special::NRes));
        assert_eq!(sfloat([0x01, 0x08]).value(), Err(Special::Reserved));
        assert_eq!(sfloat([0xFE, 0x07]).value(), Err(Special::PositiveInfinity));
        assert_eq!(sfloat([0x02, 0x08]).value(), Err(Special::NegativeInfinity));
        // The same mantissas with a non-zero exponent are ordinary numbers.
        assert_eq!(sfloat([0xFF, 0x17]).value(), Ok(20470.0));
    }

    // docs/gatt.md §2.1, FLOAT vectors.
    #[test]
    fn float_golden_vectors() {
        assert_eq!(float([0x01, 0x02, 0x03, 0x04]).value(), Ok(1.97121e9));
        assert_eq!(float([0x01, 0xFE, 0x03, 0xFC]).value(), Ok(26.1633));
        assert_eq!(float([0xFF, 0x02, 0xFD, 0x04]).value(), Ok(-1.95841e9));
        assert_eq!(float([0x6C, 0x01, 0x00, 0xFF]).value(), Ok(36.4));
    }

    #[test]
    fn float_special_values() {
        assert_eq!(float([0xFF, 0xFF, 0x7F, 0x00]).value(), Err(Special::NaN));
        assert_eq!(float([0x00, 0x00, 0x80, 0x00]).value(), Err(Special::NRes));
        assert_eq!(
            float([0xFE, 0xFF, 0x7F, 0x00]).value(),
            Err(Special::PositiveInfinity)
        );
        assert_eq!(
            float([0x02, 0x00, 0x80, 0x00]).value(),
            Err(Special::NegativeInfinity)
        );
        assert_eq!(
            float([0x01, 0x00, 0x80, 0x00]).value(),
            Err(Special::Reserved)
        );
    }

    #[test]
    fn scaling_keeps_decimals() {
        // 92 x 10^-5 kg/L is 92 mg/dL.
        let glucose = MedFloat::Number {
            mantissa: 92,
            exponent: -5,
        };
        assert_eq!(glucose.scaled(5), Ok(92.0));
        assert_eq!(sfloat([0xBD, 0xF0]).value(), Ok(18.9));
    }

    #[test]
    fn every_sfloat_decodes_without_panic() {
        for raw in 0..=u16::MAX {
            let _ = MedFloat::from_sfloat(raw).value();
        }
    }
}
