//! A gateway's **claim code**: what the label on its box says, and what a nurse types (or
//! scans) to bind that gateway to a patient's session.
//!
//! The code is derived from the gateway's public key, so it needs no registry and cannot be
//! chosen: the first 60 bits of SHA-256 over the 32 key bytes, written as 12 symbols of
//! Crockford's base32 (digits and letters without I, L, O and U), then Crockford's check
//! symbol (the 60-bit value modulo 37, which adds `*`, `~`, `$`, `=` and `U` to the alphabet),
//! grouped by four: `7K2M-9QXD-4TNR-E`. The check symbol catches every single mistyped symbol
//! and every swap of two adjacent ones.
//!
//! Reading a typed code forgives what people do: lower case, spaces or missing hyphens, `I`
//! and `L` for `1`, `O` for `0`. Sixty bits identify a gateway among those that announced
//! themselves unclaimed; they are not a secret (the label is on the box), which is why a claim
//! also needs the nurse's page, and wrong codes are rate-limited there.

use std::fmt;

use crate::VerifyingKey;

/// Crockford's base32 symbols, then its five extra check symbols.
const SYMBOLS: &[u8; 37] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U";
/// Symbols of the value.
const LENGTH: usize = 12;
/// Bits of the value (5 per symbol).
const BITS: u32 = 60;

/// A gateway's claim code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimCode(u64);

/// Why a typed code is not a claim code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimCodeError {
    /// Too few or too many symbols.
    #[error("a claim code has 13 symbols (12 and a check symbol), this has {0}")]
    Length(usize),
    /// A character that is not in the alphabet.
    #[error("{0:?} is not a claim code symbol")]
    Symbol(char),
    /// The check symbol does not match: a symbol is mistyped.
    #[error("the code does not check out: a symbol is mistyped")]
    Check,
}

impl ClaimCode {
    /// The claim code of the gateway with public key `key`.
    pub fn of(key: &VerifyingKey) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        Self(u64::from_be_bytes(first) >> (64 - BITS))
    }

    /// Reads a code as a person typed it.
    pub fn parse(text: &str) -> Result<Self, ClaimCodeError> {
        let symbols: Vec<char> = text
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\t'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if symbols.len() != LENGTH + 1 {
            return Err(ClaimCodeError::Length(symbols.len()));
        }
        let mut value = 0u64;
        for &c in &symbols[..LENGTH] {
            let v = value_of(c).filter(|&v| v < 32);
            value = (value << 5) | v.ok_or(ClaimCodeError::Symbol(c))?;
        }
        let check = symbols[LENGTH];
        let expected = char::from(SYMBOLS[usize::try_from(value % 37).unwrap_or(0)]);
        match value_of(check) {
            None => Err(ClaimCodeError::Symbol(check)),
            Some(_) if normalized(check) != expected => Err(ClaimCodeError::Check),
            Some(_) => Ok(Self(value)),
        }
    }

    /// The 13 symbols without hyphens (what a QR code carries).
    pub fn compact(self) -> String {
        let mut out = String::with_capacity(LENGTH + 1);
        for i in (0..LENGTH).rev() {
            let v = (self.0 >> (5 * i)) & 31;
            out.push(char::from(SYMBOLS[usize::try_from(v).unwrap_or(0)]));
        }
        out.push(char::from(
            SYMBOLS[usize::try_from(self.0 % 37).unwrap_or(0)],
        ));
        out
    }
}

/// A typed symbol as the canonical one (`I`, `L` are `1`; `O` is `0`).
fn normalized(c: char) -> char {
    match c {
        'I' | 'L' => '1',
        'O' => '0',
        other => other,
    }
}

fn value_of(c: char) -> Option<u64> {
    let c = normalized(c);
    SYMBOLS
        .iter()
        .position(|&s| char::from(s) == c)
        .and_then(|p| u64::try_from(p).ok())
}

impl fmt::Display for ClaimCode {
    /// `7K2M-9QXD-4TNR-E`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.compact();
        write!(f, "{}-{}-{}-{}", &s[0..4], &s[4..8], &s[8..12], &s[12..])
    }
}

impl std::str::FromStr for ClaimCode {
    type Err = ClaimCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> ClaimCode {
        let (key, _) = crate::SigningKey::generate().unwrap();
        ClaimCode::of(&key.verifying_key())
    }

    #[test]
    fn the_value_has_five_bits_per_symbol() {
        assert_eq!(BITS as usize, 5 * LENGTH);
    }

    #[test]
    fn a_code_reads_back_as_written_and_as_people_type_it() {
        for _ in 0..200 {
            let c = code();
            let text = c.to_string();
            assert_eq!(text.len(), 16, "{text}");
            assert_eq!(text.matches('-').count(), 3);
            assert_eq!(ClaimCode::parse(&text), Ok(c));
            assert_eq!(ClaimCode::parse(&c.compact()), Ok(c));
            let sloppy = text.to_lowercase().replace('-', " ");
            assert_eq!(ClaimCode::parse(&sloppy), Ok(c), "{sloppy}");
            let misread = c.compact().replace('1', "l").replace('0', "O");
            assert_eq!(ClaimCode::parse(&misread), Ok(c), "{misread}");
        }
    }

    #[test]
    fn the_same_key_gives_the_same_code_and_the_value_is_the_keys_hash() {
        let (key, _) = crate::SigningKey::generate().unwrap();
        let public = key.verifying_key();
        let c = ClaimCode::of(&public);
        let again = VerifyingKey::from_bytes(public.as_bytes()).unwrap();
        assert_eq!(c, ClaimCode::of(&again));
        let digest = ring::digest::digest(&ring::digest::SHA256, public.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        assert_eq!(c.0, u64::from_be_bytes(first) >> 4);
        assert_ne!(c, code());
    }

    #[test]
    fn every_single_typo_and_every_adjacent_swap_is_caught() {
        for _ in 0..50 {
            let c = code().compact();
            let chars: Vec<char> = c.chars().collect();
            for i in 0..chars.len() {
                for &s in SYMBOLS.iter() {
                    let s = char::from(s);
                    if s == chars[i] || (i < LENGTH && value_of(s).is_some_and(|v| v >= 32)) {
                        continue;
                    }
                    let mut typo = chars.clone();
                    typo[i] = s;
                    let typo: String = typo.into_iter().collect();
                    assert!(ClaimCode::parse(&typo).is_err(), "{c} -> {typo}");
                }
                if i + 1 < LENGTH && chars[i] != chars[i + 1] {
                    let mut swapped = chars.clone();
                    swapped.swap(i, i + 1);
                    let swapped: String = swapped.into_iter().collect();
                    assert_eq!(
                        ClaimCode::parse(&swapped),
                        Err(ClaimCodeError::Check),
                        "{c} -> {swapped}"
                    );
                }
            }
        }
    }

    #[test]
    fn what_is_not_a_code_is_told_why() {
        assert_eq!(
            ClaimCode::parse("7K2M-9QXD"),
            Err(ClaimCodeError::Length(8))
        );
        assert_eq!(
            ClaimCode::parse("7K2M-9QXD-4TNR-#"),
            Err(ClaimCodeError::Symbol('#'))
        );
        // A check symbol in the value's place.
        assert_eq!(
            ClaimCode::parse("7K2*-9QXD-4TNR-E"),
            Err(ClaimCodeError::Symbol('*'))
        );
    }
}
