//! From raw bytes to stashable items: decode with `tm-devices`, apply the time policy of
//! docs/gatt.md §6, compute the reading id. Pure: no I/O.
//!
//! Time policy: a device clock is trusted only when it was read this connection and is set;
//! then `effective = device time − (device now − gateway now)`. An unset clock (flag, year
//! before 2015) is never trusted: a live reading gets the receive time, a stored one is marked
//! untrusted. A payload without a time stamp gets the receive time.

use chrono::{DateTime, Local, NaiveDateTime, Utc};
use tm_devices::{Quirks, Source};
use tm_protocol::{DeviceInfo, Reading, ReadingIdInput, TimeQuality};

use crate::stash::{Quarantined, Stashable};

/// The device clock as read at connection (before the gateway sets it), next to the
/// gateway's clock: the offset it gives corrects the device times of that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockObservation {
    /// The device's wall clock (local time, no zone), from Current Time or Date Time. A date
    /// the device reports as unknown reads as a time before 2015, i.e. [`Self::unset`].
    pub device_now: NaiveDateTime,
    /// The gateway's clock just after the read returned; compared in the gateway's local time
    /// zone ([`Self::offset_ms`]).
    pub gateway_now: DateTime<Utc>,
}

/// Device clocks closer than this to the gateway count as synced.
pub const SYNCED_TOLERANCE_MS: i64 = 60_000;

impl ClockObservation {
    /// Whether the device clock looks never set (year before 2015).
    pub fn unset(&self) -> bool {
        chrono::Datelike::year(&self.device_now) < 2015
    }

    /// Device clock minus gateway clock, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        let gateway_local = self.gateway_now.with_timezone(&Local).naive_local();
        (self.device_now - gateway_local).num_milliseconds()
    }
}

/// One frame as a link or the advertisement scanner received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    /// The device identity copied into every reading (address, DIS strings, catalog model),
    /// from the paired-devices entry.
    pub device: DeviceInfo,
    /// Where the bytes came from (a characteristic, or advert service data); selects the
    /// decoder and is part of the reading id.
    pub source: Source,
    /// The exact bytes, kept in the reading (or the quarantine row) and hashed into its id.
    pub raw: Vec<u8>,
    /// When the gateway received them: the fallback effective time, and part of the reading
    /// id when the payload has neither a device time nor a sequence number.
    pub received_at: DateTime<Utc>,
    /// The clock observation of this connection; `None` when the device has no readable clock
    /// (always for adverts): a device time is then trusted only within 20 min of `received_at`.
    pub clock: Option<ClockObservation>,
    /// Sent from the device's memory (within a second of subscribing), not live. Only matters
    /// when the device clock is unset: a stored reading is then marked untrusted.
    pub stored: bool,
    /// Battery level in percent read this connection; `None` for adverts or without a
    /// battery service. Copied into each reading.
    pub battery_pct: Option<u8>,
    /// Signal strength in dBm, copied into each reading; no capture path measures it yet, so
    /// it is `None`.
    pub rssi_dbm: Option<i16>,
}

/// Decodes a capture into readings (or one quarantined item when the bytes do not decode).
/// Frames that carry no reading (a RACP response, an unstable scale frame) give nothing.
pub fn to_stashables(c: &Capture, quirks: &Quirks) -> Vec<Stashable> {
    let decoded = match tm_devices::decode(c.source, &c.raw, quirks) {
        Ok(d) => d,
        Err(e) => {
            return vec![Stashable::Quarantined(Quarantined {
                device_address: c.device.address.clone(),
                characteristic: c.source.wire_name(),
                raw: c.raw.clone(),
                received_at: c.received_at,
                error: e.to_string(),
            })];
        }
    };
    decoded
        .readings
        .into_iter()
        .map(|r| Stashable::Reading(Box::new(reading(c, r))))
        .collect()
}

fn reading(c: &Capture, r: tm_devices::DecodedReading) -> Reading {
    let characteristic = c.source.wire_name();
    let reading_id = tm_protocol::reading_id(&ReadingIdInput {
        device_address: &c.device.address,
        characteristic: &characteristic,
        user_slot: r.user,
        raw: &c.raw,
        has_device_time: r.has_device_time(),
        has_sequence: r.has_sequence(),
        received_at: c.received_at,
    });
    let device_time = r
        .measured_at
        .map(|t| t + chrono::Duration::minutes(i64::from(r.time_offset_minutes.unwrap_or(0))));
    let (effective_local, quality) = effective_time(c, device_time, r.clock_not_set);
    let effective_time = effective_local.fixed_offset();
    Reading {
        reading_id,
        device: c.device.clone(),
        kind: r.kind,
        components: r.components,
        missing: r.missing,
        flags: r.status,
        device_time,
        effective_time,
        received_at: c.received_at,
        clock_offset_ms: c.clock.map(|o| o.offset_ms()),
        time_quality: quality,
        characteristic,
        user_slot: r.user,
        sequence: r.sequence,
        raw: c.raw.clone(),
        battery_pct: c.battery_pct,
        rssi_dbm: c.rssi_dbm,
    }
}

fn effective_time(
    c: &Capture,
    device_time: Option<NaiveDateTime>,
    flagged_unset: bool,
) -> (DateTime<Local>, TimeQuality) {
    let received = c.received_at.with_timezone(&Local);
    let Some(t) = device_time else {
        return (received, TimeQuality::NoDeviceTime);
    };
    let unset =
        flagged_unset || chrono::Datelike::year(&t) < 2015 || c.clock.is_some_and(|o| o.unset());
    if unset {
        let q = if c.stored {
            TimeQuality::DeviceUnsetUntrusted
        } else {
            TimeQuality::DeviceUnsetReceiveTime
        };
        return (received, q);
    }
    let offset = c.clock.map(|o| o.offset_ms()).unwrap_or(0);
    let corrected = t - chrono::Duration::milliseconds(offset);
    let Some(local) = corrected.and_local_timezone(Local).earliest() else {
        // A wall time that does not exist locally (the spring DST gap): use the receive time.
        return (received, TimeQuality::DeviceUnsetReceiveTime);
    };
    let quality = match c.clock {
        Some(_) if offset.abs() <= SYNCED_TOLERANCE_MS => TimeQuality::DeviceSynced,
        Some(_) => TimeQuality::CorrectedByOffset,
        // No clock to read (advert-only scales): trusted only when close to the receive time.
        None if (local.with_timezone(&Utc) - c.received_at)
            .num_milliseconds()
            .abs()
            <= 20 * 60_000 =>
        {
            TimeQuality::DeviceSynced
        }
        None => return (received, TimeQuality::DeviceUnsetReceiveTime),
    };
    (local, quality)
}

/// Collapses identical advertisement frames seen within a window (scales repeat each frame
/// for seconds).
#[derive(Debug, Default)]
pub struct AdvertCollapser {
    /// (device address, frame bytes) -> when first admitted; entries older than
    /// [`ADVERT_COLLAPSE_WINDOW`] are dropped at each admission, so it stays small.
    seen: std::collections::HashMap<(String, Vec<u8>), DateTime<Utc>>,
}

/// Identical advertisement frames closer than this are one reading.
pub const ADVERT_COLLAPSE_WINDOW: chrono::Duration = chrono::Duration::seconds(60);

impl AdvertCollapser {
    /// True when the frame is new (not seen from this device within the window).
    pub fn admit(&mut self, address: &str, raw: &[u8], now: DateTime<Utc>) -> bool {
        self.seen.retain(|_, t| now - *t < ADVERT_COLLAPSE_WINDOW);
        let key = (address.to_string(), raw.to_vec());
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, now);
        true
    }

    /// The frame was not kept (the outbox refused it): the device's next identical broadcast
    /// is admitted again, so the reading is taken then.
    pub fn forget(&mut self, address: &str, raw: &[u8]) {
        self.seen.remove(&(address.to_string(), raw.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_frame_is_one_reading_unless_it_was_not_kept() {
        let mut c = AdvertCollapser::default();
        let t0 = Utc::now();
        let frame = [0x02, 0x3e, 0x30];
        assert!(c.admit("AA:BB", &frame, t0));
        assert!(!c.admit("AA:BB", &frame, t0 + chrono::Duration::seconds(2)));
        assert!(
            c.admit("CC:DD", &frame, t0),
            "another device's frame is its own"
        );
        // Refused by the outbox: the next broadcast of the same frame is taken again.
        c.forget("AA:BB", &frame);
        assert!(c.admit("AA:BB", &frame, t0 + chrono::Duration::seconds(3)));
        // After the window the same frame is a new reading.
        assert!(c.admit("CC:DD", &frame, t0 + ADVERT_COLLAPSE_WINDOW));
    }
}
