//! SIMULATOR ONLY: synthetic readings for tests, soak runs and the sync benchmark.
//!
//! `tm-gateway run --simulate-readings N` feeds readings built here through the real stash
//! channel, as a BLE link would: one simulated device numbering its records, resuming after the
//! outbox's high-water mark when the agent restarts (like a device re-sending records it was
//! never told were stored). Nothing here runs unless that option is given.

use chrono::Utc;
use tm_protocol::{
    Component, DeviceInfo, Reading, ReadingIdInput, ReadingKind, TimeQuality, reading_id,
};

/// Address of the simulated device (a locally administered address, never a real device).
pub const SIMULATED_DEVICE: &str = "02:00:00:00:00:01";

/// The simulated blood-pressure record number `sequence` of `device`. The same sequence always
/// yields the same reading id.
pub fn reading(device: &str, sequence: u32) -> Reading {
    let raw = {
        let mut raw = vec![0x1e, 0x78, 0x00, 0x50, 0x00, 0x5d, 0x00];
        raw.extend_from_slice(&sequence.to_le_bytes());
        raw
    };
    // Received now, like a live device; the id does not depend on it (the record has a
    // sequence number), so a record re-sent after a restart keeps its id.
    let at = Utc::now();
    let id = reading_id(&ReadingIdInput {
        device_address: device,
        characteristic: "2A35",
        user_slot: None,
        raw: &raw,
        has_device_time: false,
        has_sequence: true,
        received_at: at,
    });
    Reading {
        reading_id: id,
        device: DeviceInfo {
            address: device.to_owned(),
            manufacturer: Some("Simulated".into()),
            model: Some("SIM-BP".into()),
            serial: None,
            firmware: None,
            catalog_model: None,
        },
        kind: ReadingKind::BloodPressure,
        components: vec![
            Component {
                code: "8480-6".into(),
                value: 120.0,
                unit: "mm[Hg]".into(),
                original: None,
            },
            Component {
                code: "8462-4".into(),
                value: 80.0,
                unit: "mm[Hg]".into(),
                original: None,
            },
        ],
        missing: vec![],
        flags: vec![],
        device_time: None,
        effective_time: at.fixed_offset(),
        received_at: at,
        clock_offset_ms: None,
        time_quality: TimeQuality::NoDeviceTime,
        characteristic: "2A35".into(),
        user_slot: None,
        sequence: Some(sequence),
        raw,
        battery_pct: Some(90),
        rssi_dbm: Some(-60),
    }
}
