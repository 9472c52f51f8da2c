//! The typed decode error. Its `Display` is one line an operator can act on: which source, what
//! is wrong, and the numbers ("0x2A35: 9 bytes end before the pulse rate the flags announce
//! (2 bytes from offset 8)"). It never echoes measurement values beyond the offending field.

use crate::source::Source;

/// Why a frame could not be decoded. The agent keeps such frames as quarantined rows with their
/// raw bytes; nothing is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the flags (or the format) require.
    #[error("{origin}: {len} bytes, {because} at least {need}")]
    TooShort {
        /// The frame's source.
        origin: Source,
        /// Bytes received.
        len: usize,
        /// Bytes required.
        need: usize,
        /// The rule that sets the requirement ("the format needs").
        because: &'static str,
    },
    /// The frame ends before a field it must hold: one every frame has, or one its flags
    /// announce.
    #[error(
        "{origin}: {len} bytes end before the {field}{} ({size} bytes from offset {offset})",
        if *announced { " the flags announce" } else { "" }
    )]
    MissingField {
        /// The frame's source.
        origin: Source,
        /// Bytes received.
        len: usize,
        /// The field.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Its size (the least it takes, for a repeated field).
        size: usize,
        /// Whether the flags announced it (else every frame has it).
        announced: bool,
    },
    /// A fixed-size frame of the wrong size.
    #[error("{origin}: {len} bytes, the format is exactly {expected}")]
    WrongLength {
        /// The frame's source.
        origin: Source,
        /// Bytes received.
        len: usize,
        /// The only valid size.
        expected: usize,
    },
    /// A field holds a value its definition does not allow.
    #[error("{origin}: {field} {detail}")]
    InvalidField {
        /// The frame's source.
        origin: Source,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// No decoder exists for this source.
    #[error("{origin}: no decoder for this source")]
    Unsupported {
        /// The frame's source.
        origin: Source,
    },
}
