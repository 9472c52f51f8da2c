//! Per-model deviations from the SIG formats. The catalog names them (kebab-case, an unknown
//! name is an error); [`Quirks`] is the set a decoder consults. Quirks are keyed on the DIS model
//! string because advertised names are not reliable (docs/gatt.md §7).

use serde::{Deserialize, Serialize};

/// One named deviation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quirk {
    /// Blood pressure: pulse rate and measurement status are big-endian (Beurer BM85).
    BpBigEndianPulseStatus,
    /// Blood pressure: a user-id byte is always present, whatever flag bit 3 says (Beurer BM85).
    BpAlwaysUserId,
    /// Glucose: sequence numbers count down instead of up (TaiDoc); the agent cannot use them as
    /// a high-water mark and must request all records.
    GlucoseReversedSequence,
    /// The device disconnects by itself at the end of a transfer (A&D); a disconnect is not a
    /// failure.
    DisconnectsAfterTransfer,
}

/// The set of quirks a decoder consults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    /// See [`Quirk::BpBigEndianPulseStatus`].
    pub bp_big_endian_pulse_status: bool,
    /// See [`Quirk::BpAlwaysUserId`].
    pub bp_always_user_id: bool,
    /// See [`Quirk::GlucoseReversedSequence`].
    pub glucose_reversed_sequence: bool,
    /// See [`Quirk::DisconnectsAfterTransfer`].
    pub disconnects_after_transfer: bool,
}

impl Quirks {
    /// No deviations: the SIG formats as specified.
    pub const NONE: Quirks = Quirks {
        bp_big_endian_pulse_status: false,
        bp_always_user_id: false,
        glucose_reversed_sequence: false,
        disconnects_after_transfer: false,
    };

    /// The set of a list of named quirks.
    pub fn from_list(list: &[Quirk]) -> Self {
        let mut q = Quirks::NONE;
        for quirk in list {
            match quirk {
                Quirk::BpBigEndianPulseStatus => q.bp_big_endian_pulse_status = true,
                Quirk::BpAlwaysUserId => q.bp_always_user_id = true,
                Quirk::GlucoseReversedSequence => q.glucose_reversed_sequence = true,
                Quirk::DisconnectsAfterTransfer => q.disconnects_after_transfer = true,
            }
        }
        q
    }
}
