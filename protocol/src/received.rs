//! A reading batch as the provider received it: the decoded batch and, beside each reading, the
//! exact JSON text it was decoded from.
//!
//! The provider stores each reading's text as the gateway signed it instead of encoding the
//! decoded value again: a stored payload is then byte for byte what the gateway sent (an audit
//! can check it against the signed frame), and the ingest writer does no encoding work per
//! reading. The text is kept only after the reading decoded strictly, so whoever reads a
//! stored payload back gets the same value the provider checked.
//!
//! Decoding follows [`crate::codec`]'s order and limits (a batch decodes here exactly when
//! [`crate::decode`] takes it, to the same value); the readings are parsed from their own text,
//! so an error inside a reading names the reading's position in the batch.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::codec::{DecodeError, Message};
use crate::messages::{BatchId, GatewayId, Reading, ReadingBatch};

/// A decoded batch and the text of each of its readings, in the same order.
#[derive(Debug)]
pub struct ReceivedBatch {
    /// The batch, decoded and checked against its limits.
    pub batch: ReadingBatch,
    /// `texts[i]` is the JSON text `batch.readings[i]` was decoded from.
    pub texts: Vec<Box<RawValue>>,
}

/// The batch's fields, its readings still as text (borrowed from the frame).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchText<'a> {
    v: u16,
    gateway_id: GatewayId,
    batch_id: BatchId,
    created_at: DateTime<Utc>,
    #[serde(borrow)]
    readings: Vec<&'a RawValue>,
}

/// Decodes a reading batch strictly (as [`crate::decode`] does) and keeps each reading's text.
pub fn decode_received(bytes: &[u8]) -> Result<ReceivedBatch, DecodeError> {
    let name = ReadingBatch::NAME;
    crate::codec::check_version::<ReadingBatch>(bytes)?;
    let malformed = |source| DecodeError::Malformed {
        message: name,
        source,
    };
    let text: BatchText<'_> = serde_json::from_slice(bytes).map_err(malformed)?;
    if text.readings.len() > crate::limits::MAX_READINGS_PER_BATCH {
        // Before the readings are parsed: an oversized batch costs no more than its scan.
        return Err(DecodeError::Limit {
            message: name,
            limit: "MAX_READINGS_PER_BATCH",
            actual: text.readings.len(),
            max: crate::limits::MAX_READINGS_PER_BATCH,
        });
    }
    let mut readings = Vec::with_capacity(text.readings.len());
    let mut texts = Vec::with_capacity(text.readings.len());
    for (i, raw) in text.readings.into_iter().enumerate() {
        let reading: Reading = serde_json::from_str(raw.get()).map_err(|e| {
            malformed(<serde_json::Error as serde::de::Error>::custom(
                format_args!("reading {i}: {e}"),
            ))
        })?;
        readings.push(reading);
        texts.push(raw.to_owned());
    }
    let batch = ReadingBatch {
        v: text.v,
        gateway_id: text.gateway_id,
        batch_id: text.batch_id,
        created_at: text.created_at,
        readings,
    };
    batch.check_limits()?;
    Ok(ReceivedBatch { batch, texts })
}
