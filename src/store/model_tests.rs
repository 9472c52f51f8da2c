//! Model test of the outbox state machine: random sequences of stash, lease, receipt (accepted,
//! rejected, duplicated, lost), release, pruning and restart, checked against a plain in-memory model.
//! Invariants: no reading that was not acknowledged or rejected ever leaves the outbox, every
//! row is in the state the model predicts, and after a final drain every reading is settled.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use tm_protocol::{BatchId, PROTOCOL_VERSION, Receipt, Rejection};

use super::{LeaseLimits, Outbox, RowState};
use crate::simulate;
use crate::stash::Stashable;

#[derive(Debug, Clone)]
enum Step {
    /// Stash readings with these sequence numbers (repeats are duplicates).
    Stash(Vec<u32>),
    /// Lease up to `n` readings, `live` of them newest first.
    Lease(usize, usize),
    /// Receipt for outstanding batch `i % n`: accept all but every `k`-th, which is rejected.
    Receipt(usize, usize),
    /// The same receipt again.
    DuplicateReceipt,
    /// The batch is lost (timeout): release it.
    Lose(usize),
    /// The receipt of lost batch `i % n` arrives after all (accepting everything).
    LateReceipt(usize),
    /// Acknowledged rows are pruned (row ids are then reused by later stashes).
    Prune,
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => proptest::collection::vec(0u32..40, 1..6).prop_map(Step::Stash),
        3 => (1usize..8, 0usize..2).prop_map(|(n, live)| Step::Lease(n, live)),
        3 => (0usize..4, 2usize..6).prop_map(|(i, k)| Step::Receipt(i, k)),
        1 => Just(Step::DuplicateReceipt),
        1 => (0usize..4).prop_map(Step::Lose),
        1 => (0usize..4).prop_map(Step::LateReceipt),
        1 => Just(Step::Prune),
        1 => Just(Step::Restart),
    ]
}

fn limits(n: usize, live: usize) -> LeaseLimits {
    LeaseLimits {
        max_readings: n,
        max_bytes: 1 << 20,
        live_lane: live,
    }
}

fn receipt_for(batch: &BatchId, ids: &[String], k: usize) -> Receipt {
    let mut accepted = vec![];
    let mut rejected = vec![];
    for (i, id) in ids.iter().enumerate() {
        let id = tm_protocol::ReadingId::new(id.clone()).unwrap();
        if i % k == k - 1 {
            rejected.push(Rejection {
                reading_id: id,
                reason: "outside the session".into(),
            });
        } else {
            accepted.push(id);
        }
    }
    Receipt {
        v: PROTOCOL_VERSION,
        batch_id: batch.clone(),
        accepted,
        rejected,
        duplicates: vec![],
    }
}

fn ids_of(payloads: &[Vec<u8>]) -> Vec<String> {
    payloads
        .iter()
        .map(|p| {
            serde_json::from_slice::<tm_protocol::Reading>(p)
                .unwrap()
                .reading_id
                .to_string()
        })
        .collect()
}

/// Applies a receipt to the model: (rows acknowledged, rows rejected) by it.
fn apply(model: &mut HashMap<String, RowState>, receipt: &Receipt) -> (usize, usize) {
    let mut settle = |id: &str, to: RowState| {
        // A pruned reading has no row any more: nothing to settle.
        let Some(s) = model.get_mut(id) else {
            return 0;
        };
        let open = matches!(s, RowState::Pending | RowState::Leased);
        if open {
            *s = to;
        }
        usize::from(open)
    };
    let acknowledged = receipt
        .accepted
        .iter()
        .map(|id| settle(id.as_str(), RowState::Acknowledged))
        .sum();
    let rejected = receipt
        .rejected
        .iter()
        .map(|r| settle(r.reading_id.as_str(), RowState::Rejected))
        .sum();
    (acknowledged, rejected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn outbox_matches_the_model(steps in proptest::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let (mut outbox, _) = Outbox::open(&path, 1 << 30).unwrap();
        let mut model: HashMap<String, RowState> = HashMap::new();
        let mut batches: BTreeMap<String, (BatchId, Vec<String>)> = BTreeMap::new();
        let mut last_receipt: Option<Receipt> = None;
        let mut lost: Vec<(BatchId, Vec<String>)> = Vec::new();
        for step in steps {
            match step {
                Step::Stash(seqs) => {
                    let items: Vec<Stashable> = seqs.iter()
                        .map(|s| Stashable::Reading(Box::new(simulate::reading(simulate::SIMULATED_DEVICE, *s))))
                        .collect();
                    let out = outbox.stash(&[&items]).unwrap();
                    let mut new = 0;
                    for s in &seqs {
                        let id = simulate::reading(simulate::SIMULATED_DEVICE, *s).reading_id.to_string();
                        model.entry(id).or_insert_with(|| { new += 1; RowState::Pending });
                    }
                    prop_assert_eq!(out[0].inserted, new);
                    prop_assert_eq!(out[0].inserted + out[0].duplicates, seqs.len());
                }
                Step::Lease(n, live) => {
                    let pending = model.values().filter(|s| **s == RowState::Pending).count();
                    match outbox.lease(limits(n, live)).unwrap() {
                        None => prop_assert_eq!(pending, 0),
                        Some(b) => {
                            let ids = ids_of(&b.readings);
                            prop_assert_eq!(ids.len(), pending.min(n));
                            for id in &ids {
                                prop_assert_eq!(model.get(id), Some(&RowState::Pending));
                                model.insert(id.clone(), RowState::Leased);
                            }
                            batches.insert(b.batch_id.to_string(), (b.batch_id, ids));
                        }
                    }
                }
                Step::Receipt(i, k) => {
                    if batches.is_empty() { continue; }
                    let key = batches.keys().nth(i % batches.len()).unwrap().clone();
                    let (batch, ids) = batches.remove(&key).unwrap();
                    let receipt = receipt_for(&batch, &ids, k);
                    let out = outbox.settle(&receipt).unwrap();
                    prop_assert_eq!((out.acknowledged, out.rejected), apply(&mut model, &receipt));
                    last_receipt = Some(receipt);
                }
                Step::DuplicateReceipt => {
                    // Changes nothing, unless a reading it names was pruned and stashed again
                    // since: the provider has that one, so it settles.
                    if let Some(r) = &last_receipt {
                        let again = outbox.settle(r).unwrap();
                        prop_assert_eq!((again.acknowledged, again.rejected), apply(&mut model, r));
                    }
                }
                Step::Lose(i) => {
                    if batches.is_empty() { continue; }
                    let key = batches.keys().nth(i % batches.len()).unwrap().clone();
                    let (batch, ids) = batches.remove(&key).unwrap();
                    outbox.release(&batch);
                    for id in &ids {
                        // A reading settled through another receipt may have been pruned.
                        if let Some(s) = model.get_mut(id)
                            && *s == RowState::Leased
                        {
                            *s = RowState::Pending;
                        }
                    }
                    lost.push((batch, ids));
                }
                Step::LateReceipt(i) => {
                    if lost.is_empty() { continue; }
                    let (batch, ids) = lost.remove(i % lost.len());
                    let receipt = receipt_for(&batch, &ids, usize::MAX);
                    let out = outbox.settle(&receipt).unwrap();
                    prop_assert_eq!((out.acknowledged, out.rejected), apply(&mut model, &receipt));
                }
                Step::Prune => {
                    outbox.prune(i64::MAX).unwrap();
                    model.retain(|_, s| *s != RowState::Acknowledged);
                }
                Step::Restart => {
                    drop(outbox);
                    outbox = Outbox::open(&path, 1 << 30).unwrap().0;
                    batches.clear();
                    for s in model.values_mut() {
                        if *s == RowState::Leased { *s = RowState::Pending; }
                    }
                }
            }
            for (id, expected) in &model {
                prop_assert_eq!(outbox.row_state(id).unwrap(), Some(*expected), "reading {}", id);
            }
            let status = outbox.status().unwrap();
            let count = |st| u64::try_from(model.values().filter(|s| **s == st).count()).unwrap();
            prop_assert_eq!(status.pending, count(RowState::Pending));
            prop_assert_eq!(status.leased, count(RowState::Leased));
        }
        // Drain: whatever happened, every reading ends settled.
        outbox.release_all();
        while let Some(b) = outbox.lease(limits(7, 1)).unwrap() {
            let ids = ids_of(&b.readings);
            outbox.settle(&receipt_for(&b.batch_id, &ids, usize::MAX)).unwrap();
        }
        let status = outbox.status().unwrap();
        prop_assert_eq!(status.backlog(), 0);
        prop_assert_eq!(status.acknowledged + status.rejected, u64::try_from(model.len()).unwrap());
    }
}
