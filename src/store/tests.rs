//! Outbox behaviour at the edges: a corrupt file at start, the disk quota, quarantined bytes,
//! and the writer thread's group commit.

use super::*;
use crate::simulate;
use crate::stash::{Quarantined, StashError, StashHandle, Stashable};

fn readings(range: std::ops::Range<u32>) -> Vec<Stashable> {
    range
        .map(|s| Stashable::Reading(Box::new(simulate::reading(simulate::SIMULATED_DEVICE, s))))
        .collect()
}

#[test]
fn a_corrupt_file_is_moved_aside_with_an_alarm_and_a_fresh_outbox_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let (mut outbox, report) = Outbox::open(&path, 1 << 30).unwrap();
    let aside = report.moved_aside.expect("moved aside");
    assert!(aside.exists());
    assert_eq!(std::fs::read(&aside).unwrap(), vec![0x5a; 64 * 1024]);
    let status = outbox.status().unwrap();
    assert_eq!(status.alarms.len(), 1);
    assert_eq!(status.alarms[0].kind, alarm::DATABASE_CORRUPT);
    // The fresh outbox works.
    let out = outbox.stash(&[&readings(0..3)]).unwrap();
    assert_eq!(out[0].inserted, 3);
    drop(outbox);
    // Reopening a healthy file moves nothing.
    let (_, report) = Outbox::open(&path, 1 << 30).unwrap();
    assert_eq!(report.moved_aside, None);
}

#[test]
fn a_damaged_page_is_caught_by_quick_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        let (mut outbox, _) = Outbox::open(&path, 1 << 30).unwrap();
        outbox.stash(&[&readings(0..300)]).unwrap();
        drop(outbox);
        // Closing the last connection checkpoints the WAL into the main file.
    }
    assert!(!dir.path().join(format!("{FILE_NAME}-wal")).exists());
    // Overwrite the middle of the file (B-tree pages), keep the header intact.
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[4096..len.min(4096 * 6)] {
        *b = 0xff;
    }
    std::fs::write(&path, bytes).unwrap();
    let (outbox, report) = Outbox::open(&path, 1 << 30).unwrap();
    assert!(report.moved_aside.is_some());
    assert_eq!(
        outbox.status().unwrap().alarms[0].kind,
        alarm::DATABASE_CORRUPT
    );
}

#[test]
fn at_the_quota_acknowledged_rows_go_first_then_new_readings_are_refused_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let quota = 600 * 1024;
    let (mut outbox, _) = Outbox::open(&path, quota).unwrap();
    // Fill with readings and acknowledge the first ones.
    let mut next = 0;
    loop {
        match outbox.stash(&[&readings(next..next + 50)]) {
            Ok(_) => next += 50,
            Err(StashError::Refused(msg)) => {
                assert!(msg.contains("quota"), "{msg}");
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(next < 100_000);
    }
    let full = outbox.status().unwrap();
    assert!(full.alarms.iter().any(|a| a.kind == alarm::QUOTA_FULL));
    assert!(full.alarms.iter().any(|a| a.kind == alarm::QUOTA_HIGH));
    assert_eq!(full.pending, u64::from(next), "nothing unsent was evicted");
    // Ship and acknowledge half of them: room is made from acknowledged rows.
    let mut acked = 0;
    while acked < next / 2 {
        let b = outbox
            .lease(LeaseLimits {
                max_readings: 100,
                max_bytes: 1 << 20,
                live_lane: 0,
            })
            .unwrap()
            .unwrap();
        let ids: Vec<_> = b
            .readings
            .iter()
            .map(|p| {
                serde_json::from_slice::<tm_protocol::Reading>(p)
                    .unwrap()
                    .reading_id
            })
            .collect();
        acked += u32::try_from(ids.len()).unwrap();
        outbox
            .settle(&tm_protocol::Receipt {
                v: tm_protocol::PROTOCOL_VERSION,
                batch_id: b.batch_id,
                accepted: ids,
                rejected: vec![],
                duplicates: vec![],
            })
            .unwrap();
    }
    outbox.stash(&[&readings(next..next + 50)]).unwrap();
    let after = outbox.status().unwrap();
    assert!(after.alarms.iter().all(|a| a.kind != alarm::QUOTA_FULL));
    assert_eq!(
        after.acknowledged, 0,
        "acknowledged rows were evicted first"
    );
    assert_eq!(after.pending, u64::from(next + 50 - acked));
}

#[tokio::test]
async fn the_writer_group_commits_stash_requests_and_keeps_quarantined_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, _) = Outbox::open(&dir.path().join(FILE_NAME), 1 << 30).unwrap();
    let (handle, thread) = writer::spawn(outbox);
    let (stash, rx) = StashHandle::channel();
    let forward = tokio::spawn(handle.clone().serve_stash(rx));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u32 {
        let stash = stash.clone();
        tasks.spawn(async move { stash.stash(readings(i * 10..i * 10 + 12)).await });
    }
    let mut inserted = 0;
    while let Some(r) = tasks.join_next().await {
        inserted += r.unwrap().unwrap().inserted;
    }
    assert_eq!(
        inserted, 202,
        "overlapping requests stored each reading once"
    );
    let q = Stashable::Quarantined(Quarantined {
        device_address: "AA:BB:CC:DD:EE:FF".into(),
        characteristic: "2A35".into(),
        raw: vec![1, 2],
        received_at: chrono::Utc::now(),
        error: "too short".into(),
    });
    stash.stash(vec![q]).await.unwrap();
    let status = handle.status().await.unwrap();
    assert_eq!(status.pending, 202);
    assert_eq!(status.quarantined, 1);
    assert_eq!(
        handle
            .high_water(simulate::SIMULATED_DEVICE.into())
            .await
            .unwrap(),
        Some(201)
    );
    drop((stash, handle));
    forward.await.unwrap();
    thread.join().unwrap();
}

#[test]
fn readings_the_provider_already_had_settle_as_acknowledged_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut outbox, _) = Outbox::open(&dir.path().join(FILE_NAME), 1 << 30).unwrap();
    outbox.stash(&[&readings(0..4)]).unwrap();
    let b = outbox
        .lease(LeaseLimits {
            max_readings: 10,
            max_bytes: 1 << 20,
            live_lane: 0,
        })
        .unwrap()
        .unwrap();
    let ids: Vec<_> = b
        .readings
        .iter()
        .map(|p| {
            serde_json::from_slice::<tm_protocol::Reading>(p)
                .unwrap()
                .reading_id
        })
        .collect();
    let receipt = tm_protocol::Receipt {
        v: tm_protocol::PROTOCOL_VERSION,
        batch_id: b.batch_id,
        accepted: ids.clone(),
        rejected: vec![],
        duplicates: ids[..3].to_vec(),
    };
    let outcome = outbox.settle(&receipt).unwrap();
    assert_eq!(
        outcome,
        SettleOutcome {
            acknowledged: 4,
            rejected: 0,
            duplicates: 3,
        }
    );
    assert_eq!(outbox.status().unwrap().pending, 0);
    // The same receipt again changes nothing and counts nothing.
    assert_eq!(outbox.settle(&receipt).unwrap(), SettleOutcome::default());
}
