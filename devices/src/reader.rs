//! A bounds-checked cursor over a payload. Every read returns a typed error instead of
//! panicking, so a decoder that computed its length requirement wrongly still cannot crash the
//! agent; decoders check the length their flags require up front ([`Reader::require`]) to give
//! the operator the precise message ("0x2A35: 6 bytes, flags require at least 7").

use crate::error::DecodeError;
use crate::ieee11073::MedFloat;
use crate::source::Source;

/// Cursor over the bytes of one frame.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    source: Source,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(source: Source, data: &'a [u8]) -> Self {
        Reader {
            source,
            data,
            pos: 0,
        }
    }

    /// Fails unless the whole frame holds at least `need` bytes; `because` names the rule
    /// ("flags require", "the format needs").
    pub(crate) fn require(&self, need: usize, because: &'static str) -> Result<(), DecodeError> {
        if self.data.len() < need {
            return Err(DecodeError::TooShort {
                origin: self.source,
                len: self.data.len(),
                need,
                because,
            });
        }
        Ok(())
    }

    /// Fails unless the frame is exactly `need` bytes long.
    pub(crate) fn require_exact(&self, need: usize) -> Result<(), DecodeError> {
        if self.data.len() != need {
            return Err(DecodeError::WrongLength {
                origin: self.source,
                len: self.data.len(),
                expected: need,
            });
        }
        Ok(())
    }

    /// A typed error about one field.
    pub(crate) fn invalid(&self, field: &'static str, detail: String) -> DecodeError {
        DecodeError::InvalidField {
            origin: self.source,
            field,
            detail,
        }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos + N;
        let bytes = self.data.get(self.pos..end).ok_or(DecodeError::TooShort {
            origin: self.source,
            len: self.data.len(),
            need: end,
            because: "the format needs",
        })?;
        self.pos = end;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(i8::from_le_bytes(self.take::<1>()?))
    }

    pub(crate) fn u16_le(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    pub(crate) fn u16_be(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take()?))
    }

    pub(crate) fn i16_le(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_le_bytes(self.take()?))
    }

    pub(crate) fn u24_le(&mut self) -> Result<u32, DecodeError> {
        let [a, b, c] = self.take::<3>()?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    /// A little-endian SFLOAT.
    pub(crate) fn sfloat(&mut self) -> Result<MedFloat, DecodeError> {
        Ok(MedFloat::from_sfloat(self.u16_le()?))
    }

    /// A little-endian FLOAT.
    pub(crate) fn float(&mut self) -> Result<MedFloat, DecodeError> {
        Ok(MedFloat::from_float(self.u32_le()?))
    }
}
