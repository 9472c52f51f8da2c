//! The outbox's row key: what its UNIQUE index holds instead of the reading id's hex text.
//!
//! A reading id is a SHA-256, so an index of ids puts every new row on a random page: a batch
//! of new readings dirties about one index page per reading, each written to the WAL at commit
//! and again at the checkpoint (about 8 KB of disk writes per reading on a large outbox, SD-card
//! wear on a Raspberry Pi). The key puts an order in front of the hash:
//!
//! ```text
//! key = order (8 bytes, big-endian, sign bit flipped) || SHA-256 of the reading id (32 bytes)
//! ```
//!
//! `order` is the record's place on its device: the device's own timestamp when the reading has
//! one (milliseconds, the wall time read as UTC), else its record sequence number, else the
//! receive time. Those are exactly the fields the reading id hashes (the receive time only when
//! the record has neither of the others), so the same record sent twice gets the same key and
//! the UNIQUE index still drops the repeat; and new records of a device arrive in order, so
//! their keys land on the index's last few pages, which a batch writes once.
//!
//! A receipt names reading ids, not keys: the rows of a lease are settled by row id, and the
//! rest are found by scanning the key index for the hash ([`hash_of_key`]).

use tm_protocol::Reading;

/// Bytes of a key.
pub const KEY_LEN: usize = 8 + 32;

/// The row key of `reading`.
pub fn reading_key(reading: &Reading) -> Vec<u8> {
    let order = order(
        reading.device_time,
        reading.sequence,
        reading.received_at.timestamp_millis(),
    );
    key(order, reading.reading_id.as_str())
}

/// The order part of a key: device time, else sequence, else receive time.
pub fn order(
    device_time: Option<chrono::NaiveDateTime>,
    sequence: Option<u32>,
    received_at_ms: i64,
) -> i64 {
    device_time
        .map(|t| t.and_utc().timestamp_millis())
        .or(sequence.map(i64::from))
        .unwrap_or(received_at_ms)
}

/// The key of a reading with the given order and hex reading id. Reading ids are validated
/// hex when a reading is built; should one not be, its text is hashed instead of decoded, so
/// two distinct ids still never share a key (and no row is ever dropped as a duplicate of
/// another).
pub fn key(order: i64, reading_id: &str) -> Vec<u8> {
    let hash = id_hash(reading_id).unwrap_or_else(|| {
        let d = ring::digest::digest(&ring::digest::SHA256, reading_id.as_bytes());
        let mut h = [0u8; 32];
        h.copy_from_slice(d.as_ref());
        h
    });
    let mut key = Vec::with_capacity(KEY_LEN);
    key.extend_from_slice(&(order.cast_unsigned() ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(&hash);
    key
}

/// The 32 bytes of a hex reading id; `None` when it is not 64 hex digits.
pub fn id_hash(reading_id: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(reading_id, &mut out).ok()?;
    Some(out)
}

/// The hash part of a stored key (empty when the key is shorter than one).
pub fn hash_of_key(key: &[u8]) -> &[u8] {
    key.get(8..).unwrap_or_default()
}

/// The reading id (lowercase hex) of a stored key.
pub fn reading_id_of(key: &[u8]) -> String {
    hex::encode(hash_of_key(key))
}

/// The reading id in a row's id column, whatever the schema version of its file: the row key
/// (a blob, version 3 on) or the id's text (before).
pub fn reading_id_in(
    column: rusqlite::types::ValueRef<'_>,
) -> rusqlite::types::FromSqlResult<String> {
    match column {
        rusqlite::types::ValueRef::Blob(k) => Ok(reading_id_of(k)),
        other => other.as_str().map(str::to_owned),
    }
}

/// A 64-bit digest of a reading's hash, to find it among a lease's rows (the hash is already
/// uniformly distributed: its first 8 bytes will do).
pub fn short_hash(hash: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    for (f, b) in first.iter_mut().zip(hash) {
        *f = *b;
    }
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate;

    #[test]
    fn a_key_orders_by_the_record_and_keeps_the_id() {
        let r = simulate::reading(simulate::SIMULATED_DEVICE, 7);
        let k = reading_key(&r);
        assert_eq!(k.len(), KEY_LEN);
        assert_eq!(reading_id_of(&k), r.reading_id.as_str());
        // The simulated device numbers its records: the order is the sequence.
        assert!(reading_key(&simulate::reading(simulate::SIMULATED_DEVICE, 8)) > k);
        assert!(key(-1, r.reading_id.as_str()) < key(0, r.reading_id.as_str()));
        assert!(key(i64::MAX, "") > key(i64::MIN + 1, ""));
    }

    #[test]
    fn the_same_record_received_later_has_the_same_key() {
        let first = simulate::reading(simulate::SIMULATED_DEVICE, 3);
        let mut again = first.clone();
        again.received_at += chrono::Duration::hours(5);
        assert_eq!(reading_key(&first), reading_key(&again));
        // A record with a device timestamp is ordered by it, whatever its sequence.
        let mut timed = first.clone();
        timed.device_time = chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
            .unwrap()
            .and_hms_opt(8, 0, 0);
        let mut timed_later = timed.clone();
        timed_later.sequence = Some(1);
        timed_later.received_at += chrono::Duration::days(1);
        assert_eq!(reading_key(&timed), reading_key(&timed_later));
    }

    #[test]
    fn hex_ids_round_trip_and_bad_ones_are_refused() {
        let id = "00ff".repeat(16);
        let hash = id_hash(&id).unwrap();
        assert_eq!(hash[1], 0xff);
        assert_eq!(reading_id_of(&key(5, &id)), id);
        assert_eq!(id_hash("abc"), None);
        assert_eq!(id_hash(&"zz".repeat(32)), None);
        // Ids that are not hex still get distinct keys.
        assert_ne!(key(5, "not-hex-a"), key(5, "not-hex-b"));
        assert_eq!(short_hash(&hash), 0x00ff_00ff_00ff_00ff);
    }
}
