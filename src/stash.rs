//! The stash: the seam between capture (BLE links, advertisement scanner) and the outbox.
//!
//! Capture hands decoded readings, and bytes that failed to decode, to the outbox writer
//! through a bounded channel and **waits for the commit**: [`StashHandle::stash`] resolves only
//! after the items are durable in SQLite. Only then may a link acknowledge records to a device
//! (or advance its high-water mark). When the channel is full, capture waits: clinical data is
//! never dropped to make room.
//!
//! The outbox writer owns the receiving end ([`StashRequest`]s) and is the only writer of the
//! database.

use tokio::sync::{mpsc, oneshot};

/// Something to keep in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Stashable {
    /// A decoded reading, ready to ship.
    Reading(Box<tm_protocol::Reading>),
    /// Bytes that could not be decoded: kept, never dropped, visible in `tm-gateway status`.
    Quarantined(Quarantined),
}

/// Device bytes that failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Bluetooth address of the device, upper case as in its paired-devices entry.
    pub device_address: String,
    /// Source, named like a reading's `characteristic`: `2A35`, `adv:181D`, `mfr:020E`.
    pub characteristic: String,
    /// The exact bytes as received; kept on the gateway, never shipped.
    pub raw: Vec<u8>,
    /// When the gateway received them (gateway clock).
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// Why decoding failed, from the decoder (no values in it).
    pub error: String,
}

/// What a stash request achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StashOutcome {
    /// New rows committed: readings not stored before, and every quarantined item.
    pub inserted: usize,
    /// Readings already in the outbox (same reading id): not stored twice, and still a
    /// success for the caller. Quarantined items are never counted here.
    pub duplicates: usize,
}

/// Why the outbox could not take the items. The caller must keep them (a device record not
/// acknowledged will be re-sent) and retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StashError {
    /// The outbox writer is gone (shutting down).
    #[error("outbox is closed")]
    Closed,
    /// The outbox refused the write (disk quota reached, database error).
    #[error("outbox refused the write: {0}")]
    Refused(String),
}

/// A request to the outbox writer.
#[derive(Debug)]
pub struct StashRequest {
    /// The items, committed in one transaction (shared with the other requests queued at that
    /// moment): all of them or none.
    pub items: Vec<Stashable>,
    /// Answered after the commit, or with the refusal; dropped unanswered only when the writer
    /// is gone.
    pub reply: oneshot::Sender<Result<StashOutcome, StashError>>,
}

/// Capacity of the stash channel. When full, capture waits (back-pressure), it never drops.
pub const STASH_CHANNEL_CAPACITY: usize = 64;

/// The capture side's handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct StashHandle {
    tx: mpsc::Sender<StashRequest>,
}

impl StashHandle {
    /// A handle and the receiving end for the outbox writer.
    pub fn channel() -> (Self, mpsc::Receiver<StashRequest>) {
        let (tx, rx) = mpsc::channel(STASH_CHANNEL_CAPACITY);
        (Self { tx }, rx)
    }

    /// Hands `items` to the outbox and waits until they are committed.
    pub async fn stash(&self, items: Vec<Stashable>) -> Result<StashOutcome, StashError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(StashRequest { items, reply })
            .await
            .map_err(|_| StashError::Closed)?;
        done.await.map_err(|_| StashError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stash_resolves_after_the_writer_answers() {
        let (handle, mut rx) = StashHandle::channel();
        let writer = tokio::spawn(async move {
            let req = rx.recv().await.unwrap();
            let n = req.items.len();
            req.reply
                .send(Ok(StashOutcome {
                    inserted: n,
                    duplicates: 0,
                }))
                .unwrap();
        });
        let q = Stashable::Quarantined(Quarantined {
            device_address: "AA:BB:CC:DD:EE:FF".into(),
            characteristic: "2A35".into(),
            raw: vec![1],
            received_at: chrono::Utc::now(),
            error: "0x2A35: 1 byte end before the pressures (6 bytes from offset 1)".into(),
        });
        let out = handle.stash(vec![q]).await.unwrap();
        assert_eq!(out.inserted, 1);
        writer.await.unwrap();
        assert_eq!(handle.stash(vec![]).await, Err(StashError::Closed));
    }
}
