//! An outbox written by a version before the ordered row key (schema version 2) opens with
//! every row in its state, and behaves afterwards as if it had always had the key: the same
//! records stashed again are duplicates, receipts settle rows leased before and after the
//! upgrade, and a salvage reads such a file too.

use rusqlite::{Connection, params};

use super::*;
use crate::simulate;
use crate::stash::Stashable;

/// Writes a version-2 outbox at `path` as that version did: records 0..6 of the simulated
/// device, in states pending, pending, leased (stored), acknowledged, rejected, pending.
fn version_2_outbox(path: &std::path::Path) -> Vec<tm_protocol::Reading> {
    let conn = Connection::open(path).unwrap();
    for sql in &schema::MIGRATIONS[..2] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 2).unwrap();
    let states = [0, 0, 1, 2, 3, 0];
    let readings: Vec<_> = (0..6)
        .map(|s| simulate::reading(simulate::SIMULATED_DEVICE, s))
        .collect();
    for (r, state) in readings.iter().zip(states) {
        conn.execute(
            "INSERT INTO readings (reading_id, device_address, received_at_ms, payload, state, \
             settled_at_ms, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                r.reading_id.as_str(),
                r.device.address,
                r.received_at.timestamp_millis(),
                serde_json::to_vec(r).unwrap(),
                state,
                (state >= 2).then_some(1_i64),
                (state == 3).then_some("outside the session"),
            ],
        )
        .unwrap();
    }
    readings
}

fn stashables(readings: &[tm_protocol::Reading]) -> Vec<Stashable> {
    readings
        .iter()
        .map(|r| Stashable::Reading(Box::new(r.clone())))
        .collect()
}

fn receipt(batch: &str, accepted: &[&tm_protocol::Reading]) -> tm_protocol::Receipt {
    tm_protocol::Receipt {
        v: tm_protocol::PROTOCOL_VERSION,
        batch_id: tm_protocol::BatchId::new(batch).unwrap(),
        accepted: accepted.iter().map(|r| r.reading_id.clone()).collect(),
        rejected: vec![],
        duplicates: vec![],
    }
}

#[test]
fn a_version_2_outbox_keeps_every_row_and_deduplicates_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let old = version_2_outbox(&path);
    let (mut outbox, report) = Outbox::open(&path, 1 << 30).unwrap();
    assert_eq!(report.moved_aside, None);
    let status = outbox.status().unwrap();
    // The row stored as leased is pending again; nothing was lost or raised.
    assert_eq!(
        (
            status.pending,
            status.leased,
            status.acknowledged,
            status.rejected
        ),
        (4, 0, 1, 1)
    );
    assert!(status.alarms.is_empty(), "{:?}", status.alarms);
    assert_eq!(
        status.recent_rejections,
        vec![(old[4].reading_id.to_string(), "outside the session".into())]
    );
    let version: i64 = outbox
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, i64::try_from(schema::MIGRATIONS.len()).unwrap());

    // The device re-sends its memory, received later: every record is already there.
    let mut again = old.clone();
    for r in &mut again {
        r.received_at += chrono::Duration::minutes(30);
    }
    let out = outbox.stash(&[&stashables(&again)]).unwrap();
    assert_eq!((out[0].inserted, out[0].duplicates), (0, 6));
    // A new record goes in.
    let new = simulate::reading(simulate::SIMULATED_DEVICE, 6);
    let out = outbox
        .stash(&[&stashables(std::slice::from_ref(&new))])
        .unwrap();
    assert_eq!(out[0].inserted, 1);

    // A receipt for a batch sent before the upgrade (unknown to this run) settles its rows.
    let late = outbox
        .settle(&receipt("b3-0011223344556677", &[&old[2], &old[3]]))
        .unwrap();
    assert_eq!(late.acknowledged, 1, "the acknowledged one stays as it was");
    assert_eq!(
        outbox.row_state(old[2].reading_id.as_str()).unwrap(),
        Some(RowState::Acknowledged)
    );

    // The rest drains as usual: leased, settled by row.
    let b = outbox
        .lease(LeaseLimits {
            max_readings: 10,
            max_bytes: 1 << 20,
            live_lane: 1,
        })
        .unwrap()
        .unwrap();
    assert_eq!(b.readings.len(), 4);
    let leased: Vec<tm_protocol::Reading> = b
        .readings
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect();
    let named: Vec<_> = leased.iter().collect();
    let settled = outbox
        .settle(&receipt(b.batch_id.as_str(), &named))
        .unwrap();
    assert_eq!(settled.acknowledged, 4);
    let status = outbox.status().unwrap();
    assert_eq!((status.pending, status.acknowledged), (0, 6));
}

#[test]
fn the_status_of_an_outbox_not_yet_migrated_is_read_from_outside() {
    // `tm-gateway status` before the upgraded agent opened the file (or while it migrates).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let old = version_2_outbox(&path);
    let status = read_status(&path, 1 << 30).unwrap();
    assert_eq!((status.pending, status.leased, status.rejected), (3, 1, 1));
    assert_eq!(
        status.recent_rejections,
        vec![(old[4].reading_id.to_string(), "outside the session".into())]
    );
}

#[test]
fn a_corrupt_version_2_outbox_is_salvaged_into_the_new_schema() {
    let dir = tempfile::tempdir().unwrap();
    let aside = dir.path().join("old.db");
    let old = version_2_outbox(&aside);
    let path = dir.path().join(FILE_NAME);
    drop(Outbox::open(&path, 1 << 30).unwrap());
    let mut conn = Connection::open(&path).unwrap();
    let salvaged = salvage::salvage(&aside, &mut conn).unwrap();
    drop(conn);
    // Pending and leased rows are recovered; settled ones are not copied.
    assert_eq!((salvaged.recovered, salvaged.unreadable), (4, 0));
    let (mut outbox, _) = Outbox::open(&path, 1 << 30).unwrap();
    assert_eq!(outbox.status().unwrap().pending, 4);
    let out = outbox.stash(&[&stashables(&old)]).unwrap();
    assert_eq!((out[0].inserted, out[0].duplicates), (2, 4));
}
