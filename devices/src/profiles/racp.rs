//! Record Access Control Point 0x2A52 (glucose, PLX spot-check storage, Omron's extended RACP).
//!
//! The gateway writes a request and the device answers by indication: first the stored records
//! on their own characteristic, then a response here. Requests are built by
//! [`RacpRequest::encode`]; responses decoded by [`decode_response`]. We never ask a device to
//! delete records (the vendor app may still need them), so there is no delete request.
//!
//! Wire forms: `01 01` all records; `01 03 <filter> <u16 N>` records with sequence >= N (filter
//! 0x01 is the SIG sequence-number filter, 0x04 Omron's); `04 01` number of records; responses
//! `06 00 <request op> <code>` and `05 00 <u16 count>`; Omron answers op 0x10 with
//! `11 00 <u16 latest sequence>`.

use serde::Serialize;

use crate::error::DecodeError;
use crate::reader::Reader;
use crate::reading::{Decoded, Info};
use crate::source::Source;

/// Which operand filter a "greater or equal" request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceFilter {
    /// The SIG filter type 0x01 (sequence number).
    Sig,
    /// Omron's filter type 0x04 (Option Service RACP).
    Omron,
}

impl SequenceFilter {
    fn byte(self) -> u8 {
        match self {
            SequenceFilter::Sig => 0x01,
            SequenceFilter::Omron => 0x04,
        }
    }
}

/// A request the gateway writes to the RACP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RacpRequest {
    /// Report all stored records (`01 01`).
    ReportAll,
    /// Report records with sequence number >= N.
    ReportFromSequence {
        /// The first sequence number wanted (the last one seen plus one).
        from: u16,
        /// The filter type byte.
        filter: SequenceFilter,
    },
    /// Report the first record (`01 05`).
    ReportFirst,
    /// Report the last record (`01 06`).
    ReportLast,
    /// Report the number of all stored records (`04 01`).
    CountAll,
    /// Report the number of records with sequence number >= N.
    CountFromSequence {
        /// The first sequence number counted.
        from: u16,
        /// The filter type byte.
        filter: SequenceFilter,
    },
    /// Ask Omron's RACP for the latest sequence number (`10 01`).
    OmronLatestSequence,
    /// Abort the running procedure (`03 00`).
    Abort,
}

impl RacpRequest {
    /// The bytes to write.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            RacpRequest::ReportAll => vec![0x01, 0x01],
            RacpRequest::ReportFromSequence { from, filter } => {
                let [lo, hi] = from.to_le_bytes();
                vec![0x01, 0x03, filter.byte(), lo, hi]
            }
            RacpRequest::ReportFirst => vec![0x01, 0x05],
            RacpRequest::ReportLast => vec![0x01, 0x06],
            RacpRequest::CountAll => vec![0x04, 0x01],
            RacpRequest::CountFromSequence { from, filter } => {
                let [lo, hi] = from.to_le_bytes();
                vec![0x04, 0x03, filter.byte(), lo, hi]
            }
            RacpRequest::OmronLatestSequence => vec![0x10, 0x01],
            RacpRequest::Abort => vec![0x03, 0x00],
        }
    }
}

/// The result code of a general response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RacpResult {
    /// The procedure completed (all requested records were sent).
    Success,
    /// The device does not support the request's op code.
    OpCodeNotSupported,
    /// The operator is invalid.
    InvalidOperator,
    /// The operator is not supported.
    OperatorNotSupported,
    /// The operand is invalid.
    InvalidOperand,
    /// No record matched: nothing new.
    NoRecordsFound,
    /// An abort could not be carried out.
    AbortUnsuccessful,
    /// The procedure did not complete.
    ProcedureNotCompleted,
    /// The operand (filter type) is not supported.
    OperandNotSupported,
}

/// A response indicated on the RACP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum RacpResponse {
    /// The general response to the request with op code `request`.
    General {
        /// The op code of the request answered.
        request: u8,
        /// The outcome.
        result: RacpResult,
    },
    /// The answer to a count request.
    NumberOfRecords {
        /// Records that matched.
        count: u16,
    },
    /// Omron's answer to [`RacpRequest::OmronLatestSequence`].
    OmronLatestSequence {
        /// The latest sequence number stored.
        sequence: u16,
    },
}

/// Decodes a RACP indication.
pub fn decode_response(source: Source, bytes: &[u8]) -> Result<RacpResponse, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(2, "the format needs")?;
    let op = r.u8()?;
    let operator = r.u8()?;
    if operator != 0x00 {
        return Err(r.invalid(
            "operator",
            format!("0x{operator:02X} in a response, expected 0x00"),
        ));
    }
    let response = match op {
        0x06 => {
            r.require_exact(4)?;
            let request = r.u8()?;
            let code = r.u8()?;
            let result = match code {
                1 => RacpResult::Success,
                2 => RacpResult::OpCodeNotSupported,
                3 => RacpResult::InvalidOperator,
                4 => RacpResult::OperatorNotSupported,
                5 => RacpResult::InvalidOperand,
                6 => RacpResult::NoRecordsFound,
                7 => RacpResult::AbortUnsuccessful,
                8 => RacpResult::ProcedureNotCompleted,
                9 => RacpResult::OperandNotSupported,
                other => {
                    return Err(r.invalid("response code", format!("0x{other:02X} is not defined")));
                }
            };
            RacpResponse::General { request, result }
        }
        0x05 => {
            r.require_exact(4)?;
            RacpResponse::NumberOfRecords { count: r.u16_le()? }
        }
        0x11 => {
            r.require_exact(4)?;
            RacpResponse::OmronLatestSequence {
                sequence: r.u16_le()?,
            }
        }
        other => {
            return Err(r.invalid("op code", format!("0x{other:02X} is not a response")));
        }
    };
    Ok(response)
}

/// [`decode_response`] as a [`Decoded`] frame.
pub fn decode(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    decode_response(source, bytes).map(|resp| Decoded::info(Info::Racp(resp)))
}
