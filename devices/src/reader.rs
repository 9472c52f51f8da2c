//! A bounds-checked cursor over a payload. Every read returns a typed error instead of
//! panicking, so a decoder that computed its length requirement wrongly still cannot crash the
//! agent; decoders check up front that the frame holds every field it has and its flags
//! announce ([`Reader::require_fields`]), so the operator reads which field is missing
//! ("0x2A35: 9 bytes end before the pulse rate the flags announce (2 bytes from offset 8)").

use crate::error::DecodeError;
use crate::ieee11073::MedFloat;
use crate::source::Source;

/// One field of a frame's layout, for [`Reader::require_fields`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    name: &'static str,
    size: usize,
    /// `None`: every frame has it; `Some(set)`: present when its flag is set.
    flag: Option<bool>,
}

impl Field {
    /// A field every frame has, of `size` bytes.
    pub(crate) const fn always(name: &'static str, size: usize) -> Self {
        Self {
            name,
            size,
            flag: None,
        }
    }

    /// A field of `size` bytes (the least, for a repeated one), present when `flag` is set.
    pub(crate) const fn when(flag: bool, name: &'static str, size: usize) -> Self {
        Self {
            name,
            size,
            flag: Some(flag),
        }
    }
}

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
    /// ("the format needs", "the user count requires").
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

    /// Fails unless the frame holds `fields`, which follow the first `start` bytes in this
    /// order; the error names the first field the bytes end before.
    pub(crate) fn require_fields(&self, start: usize, fields: &[Field]) -> Result<(), DecodeError> {
        let mut offset = start;
        for f in fields.iter().filter(|f| f.flag != Some(false)) {
            if self.data.len() < offset + f.size {
                return Err(DecodeError::MissingField {
                    origin: self.source,
                    len: self.data.len(),
                    field: f.name,
                    offset,
                    size: f.size,
                    announced: f.flag.is_some(),
                });
            }
            offset += f.size;
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
