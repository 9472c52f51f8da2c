//! Outbox damage that `quick_check` does not see (a file truncated to zero length, a damaged
//! WAL) is caught against the mark; a file moved aside as corrupt is salvaged into the fresh
//! outbox, row by row, skipping the damaged page.

use std::collections::HashSet;

use super::*;
use crate::simulate;
use crate::stash::{StashHandle, Stashable};

fn readings(range: std::ops::Range<u32>) -> Vec<Stashable> {
    range
        .map(|s| Stashable::Reading(Box::new(simulate::reading(simulate::SIMULATED_DEVICE, s))))
        .collect()
}

const ALL: LeaseLimits = LeaseLimits {
    max_readings: 1000,
    max_bytes: 1 << 22,
    live_lane: 0,
};

fn ids_of(payloads: &[Vec<u8>]) -> Vec<tm_protocol::ReadingId> {
    payloads
        .iter()
        .map(|p| {
            serde_json::from_slice::<tm_protocol::Reading>(p)
                .unwrap()
                .reading_id
        })
        .collect()
}

fn alarm_of(outbox: &Outbox, kind: &str) -> Option<String> {
    outbox
        .status()
        .unwrap()
        .alarms
        .into_iter()
        .find(|a| a.kind == kind)
        .map(|a| a.message)
}

#[tokio::test]
async fn an_outbox_truncated_to_zero_with_its_wal_gone_raises_outbox_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    {
        // Through the writer thread, as the agent does (it records the mark).
        let (outbox, _) = Outbox::open(&path, 1 << 30).unwrap();
        let (handle, thread) = writer::spawn(outbox);
        let (stash, rx) = StashHandle::channel();
        let forward = tokio::spawn(handle.clone().serve_stash(rx));
        stash.stash(readings(0..50)).await.unwrap();
        drop((stash, handle));
        forward.await.unwrap();
        thread.join().unwrap();
    }
    let (outbox, _) = Outbox::open(&path, 1 << 30).unwrap();
    assert_eq!(alarm_of(&outbox, alarm::OUTBOX_RESET), None, "healthy");
    assert_eq!(outbox.status().unwrap().pending, 50);
    drop(outbox);

    std::fs::File::create(&path).unwrap(); // truncated to zero length
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{side}", path.display()));
    }
    let (outbox, report) = Outbox::open(&path, 1 << 30).unwrap();
    assert_eq!(report.moved_aside, None, "quick_check sees nothing wrong");
    assert_eq!(outbox.status().unwrap().backlog(), 0);
    let message = alarm_of(&outbox, alarm::OUTBOX_RESET).expect("outbox-reset alarm");
    assert!(message.contains("the outbox was reset"), "{message}");
    drop(outbox);
    // The alarm stays until an operator has looked; it is not raised twice.
    let (outbox, _) = Outbox::open(&path, 1 << 30).unwrap();
    assert_eq!(
        outbox
            .status()
            .unwrap()
            .alarms
            .iter()
            .filter(|a| a.kind == alarm::OUTBOX_RESET)
            .count(),
        1
    );
}

#[test]
fn a_damaged_wal_that_drops_the_last_commits_raises_outbox_reset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let (mut outbox, _) = Outbox::open(&path, 1 << 30).unwrap();
    for i in 0..8 {
        outbox.stash(&[&readings(i * 50..i * 50 + 50)]).unwrap();
    }
    outbox.refresh_mark(true);
    // Copy the files as a power cut would leave them (the WAL not yet checkpointed), without
    // the shared-memory index, then damage the copy's WAL towards its end.
    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().join(FILE_NAME);
    for suffix in ["", "-wal", ".mark"] {
        std::fs::copy(
            format!("{}{suffix}", path.display()),
            format!("{}{suffix}", copied.display()),
        )
        .unwrap();
    }
    drop(outbox);
    let wal = format!("{}-wal", copied.display());
    let mut bytes = std::fs::read(&wal).unwrap();
    let len = bytes.len();
    assert!(len > 64 * 1024, "the readings are in the WAL: {len}");
    for b in &mut bytes[len * 2 / 3..len * 2 / 3 + 4096] {
        *b ^= 0x5a;
    }
    std::fs::write(&wal, bytes).unwrap();

    let (outbox, report) = Outbox::open(&copied, 1 << 30).unwrap();
    assert_eq!(report.moved_aside, None, "quick_check sees nothing wrong");
    let pending = outbox.status().unwrap().pending;
    assert!(pending < 400, "the last commits were dropped: {pending}");
    let message = alarm_of(&outbox, alarm::OUTBOX_RESET).expect("outbox-reset alarm");
    assert!(
        message.contains("lost its last writes") || message.contains("was reset"),
        "{message}"
    );
}

#[test]
fn readable_pending_rows_of_a_corrupt_file_are_salvaged_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let (mut outbox, _) = Outbox::open(&path, 1 << 30).unwrap();
    outbox.stash(&[&readings(0..600)]).unwrap();
    // 100 acknowledged (not salvaged: already delivered), 100 leased (salvaged as pending).
    let first = outbox
        .lease(LeaseLimits {
            max_readings: 100,
            ..ALL
        })
        .unwrap()
        .unwrap();
    outbox
        .settle(&tm_protocol::Receipt {
            v: tm_protocol::PROTOCOL_VERSION,
            batch_id: first.batch_id,
            accepted: ids_of(&first.readings),
            rejected: vec![],
            duplicates: vec![],
        })
        .unwrap();
    let acknowledged: HashSet<_> = ids_of(&first.readings).into_iter().collect();
    outbox
        .lease(LeaseLimits {
            max_readings: 100,
            ..ALL
        })
        .unwrap()
        .unwrap();
    drop(outbox); // checkpoints the WAL into the file

    // Damage one page of the readings table in the middle of the file: the page holding the
    // record of sequence 350.
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"\"sequence\":350,";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("record in the file");
    let page = at / 4096 * 4096;
    for b in &mut bytes[page..page + 4096] {
        *b = 0xff;
    }
    std::fs::write(&path, bytes).unwrap();

    let (mut outbox, report) = Outbox::open(&path, 1 << 30).unwrap();
    let aside = report.moved_aside.expect("moved aside");
    assert!(aside.exists());
    let message = alarm_of(&outbox, alarm::DATABASE_CORRUPT).expect("database-corrupt alarm");
    let status = outbox.status().unwrap();
    let recovered = status.pending;
    assert!(
        (400..500).contains(&recovered),
        "the 500 unsent rows minus one page: {recovered}"
    );
    assert!(
        message.contains(&format!("{recovered} readings not yet sent were recovered")),
        "{message}"
    );
    let unreadable = 500 - recovered;
    assert!(
        message.contains(&format!("{unreadable} rows could not be read")),
        "{message}"
    );
    // Every salvaged row ships once, none of them is an acknowledged one, none twice.
    let mut shipped = HashSet::new();
    while let Some(batch) = outbox.lease(ALL).unwrap() {
        for id in ids_of(&batch.readings) {
            assert!(!acknowledged.contains(&id), "acknowledged row salvaged");
            assert!(shipped.insert(id), "shipped twice");
        }
        outbox
            .settle(&tm_protocol::Receipt {
                v: tm_protocol::PROTOCOL_VERSION,
                batch_id: batch.batch_id,
                accepted: ids_of(&batch.readings),
                rejected: vec![],
                duplicates: vec![],
            })
            .unwrap();
    }
    assert_eq!(u64::try_from(shipped.len()).unwrap(), recovered);
    // A device re-sending its memory finds the salvaged readings already stored.
    let again = outbox.stash(&[&readings(100..600)]).unwrap();
    assert_eq!(u64::try_from(again[0].duplicates).unwrap(), recovered);
}
