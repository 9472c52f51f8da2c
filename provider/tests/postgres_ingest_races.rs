//! Provider instances racing on one PostgreSQL database (always PostgreSQL, whatever
//! `TM_TEST_STORE` says): each test connects two independent stores, as two provider
//! processes would, and runs the contended unit of work on both at once, many rounds:
//! - the same reading batch committed by both: every reading stored once, one receipt names
//!   it stored and the other a duplicate; batches that overlap in any order do not deadlock;
//! - two alert evaluations raising the same conditions: never two unresolved alerts of one
//!   key, and each condition reported opened once;
//! - heartbeats and MQTT statuses delivered out of order to the two instances: the newest
//!   heartbeat (by the gateway's clock) and the newest connection's status are kept.

mod fixtures;
mod race_support;

use std::collections::HashSet;

use chrono::{Duration, Utc};
use race_support::*;
use tm_protocol::LinkState;
use tm_provider::store::alerts::{AlertInputs, Transition};
use tm_testkit::backend::TestStore;

/// Rounds of each race.
const ROUNDS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_batch_committed_by_two_instances_is_stored_once() {
    let (db, a, b) = two_instances("race_batch").await;
    let gw = enroll(&db, "gw-race", "tm-race");
    let per_batch = 25;
    let at = a_minute_ago();
    for round in 0..ROUNDS {
        let readings = weighings(at, u32::try_from(round).unwrap() * per_batch, per_batch);
        let expected = ids(&readings);
        let (first, second) = (
            job(&gw, "tm-race", &format!("b-{round}"), readings.clone()),
            job(&gw, "tm-race", &format!("b-{round}"), readings),
        );
        let (x, y) = (a.clone(), b.clone());
        let (one, other) = tokio::join!(
            tokio::spawn(async move { commit(&x, first).await }),
            tokio::spawn(async move { commit(&y, second).await }),
        );
        let (one, other) = (one.unwrap(), other.unwrap());
        for stored in [&one, &other] {
            assert_eq!(
                id_strings(&stored.receipt.accepted),
                expected,
                "round {round}"
            );
            assert!(stored.receipt.rejected.is_empty(), "round {round}");
        }
        // Both answers agree: whoever stored the batch names nothing duplicate, the other names
        // every reading a duplicate.
        let mut answers = [&one, &other];
        answers.sort_by_key(|s| std::cmp::Reverse(s.inserted));
        assert_eq!(answers[0].inserted, expected.len(), "round {round}");
        assert!(answers[0].receipt.duplicates.is_empty(), "round {round}");
        assert_eq!(answers[1].inserted, 0, "round {round}");
        assert_eq!(
            id_strings(&answers[1].receipt.duplicates),
            expected,
            "round {round}"
        );
    }
    assert_eq!(
        db.value("SELECT COUNT(*) FROM readings"),
        (ROUNDS * per_batch as usize).to_string()
    );
    assert_eq!(
        db.value("SELECT COUNT(DISTINCT reading_id) FROM readings"),
        (ROUNDS * per_batch as usize).to_string(),
        "every reading once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_in_opposite_orders_store_each_reading_once_without_deadlock() {
    let (db, a, b) = two_instances("race_overlap").await;
    let gw = enroll(&db, "gw-overlap", "tm-overlap");
    let mut total = 0;
    let at = a_minute_ago();
    for round in 0..ROUNDS {
        let base = u32::try_from(round).unwrap() * 100;
        // A sends 0..30, B sends 15..45 in reverse order: 15 readings in common.
        let mine = weighings(at, base, 30);
        let mut theirs = weighings(at, base + 15, 30);
        theirs.reverse();
        let all: HashSet<String> = ids(&mine).into_iter().chain(ids(&theirs)).collect();
        let (first, second) = (
            job(&gw, "tm-overlap", &format!("a-{round}"), mine),
            job(&gw, "tm-overlap", &format!("b-{round}"), theirs),
        );
        let (x, y) = (a.clone(), b.clone());
        let (one, other) = tokio::join!(
            tokio::spawn(async move { commit(&x, first).await }),
            tokio::spawn(async move { commit(&y, second).await }),
        );
        let (one, other) = (one.unwrap(), other.unwrap());
        assert_eq!(one.inserted + other.inserted, all.len(), "round {round}");
        // Each reading in common is stored by one of them and a duplicate for the other.
        let duplicates: Vec<String> = id_strings(&one.receipt.duplicates)
            .into_iter()
            .chain(id_strings(&other.receipt.duplicates))
            .collect();
        assert_eq!(duplicates.len(), 15, "round {round}");
        assert_eq!(
            duplicates.iter().collect::<HashSet<_>>().len(),
            15,
            "round {round}"
        );
        total += all.len();
    }
    assert_eq!(db.value("SELECT COUNT(*) FROM readings"), total.to_string());
}

/// Opens `subjects` that have no unresolved alert, as the rules do.
fn open_missing(subjects: Vec<String>) -> impl FnOnce(AlertInputs) -> Vec<Transition> + Send {
    move |inputs| {
        subjects
            .iter()
            .filter(|s| !inputs.open.iter().any(|a| &a.subject == *s))
            .map(|s| Transition::Open(condition(s)))
            .collect()
    }
}

/// Opens `subjects` whatever is open (a rule that forgot to look).
fn open_blindly(subjects: Vec<String>) -> impl FnOnce(AlertInputs) -> Vec<Transition> + Send {
    move |_| {
        subjects
            .iter()
            .map(|s| Transition::Open(condition(s)))
            .collect()
    }
}

/// Resolves every unresolved alert.
fn resolve_all(inputs: AlertInputs) -> Vec<Transition> {
    inputs.open.into_iter().map(Transition::Resolve).collect()
}

fn opened(t: &[Transition]) -> usize {
    t.iter()
        .filter(|t| matches!(t, Transition::Open(_)))
        .count()
}

/// `(subject, unresolved rows)` of every subject with one.
fn unresolved(db: &TestStore) -> Vec<(String, usize)> {
    db.rows(
        "SELECT subject, COUNT(*) FROM ops_alerts WHERE state <> 'resolved' \
         GROUP BY subject ORDER BY subject",
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].parse().unwrap()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_evaluators_at_once_never_raise_an_alert_twice() {
    let (db, a, b) = two_instances("race_alerts").await;
    for round in 0..ROUNDS {
        let subjects: Vec<String> = (0..5).map(|i| format!("gw-{round}-{i}")).collect();
        let now = Utc::now();
        let (x, y) = (a.clone(), b.clone());
        let (s1, s2) = (subjects.clone(), subjects.clone());
        let (one, other) = tokio::join!(
            tokio::spawn(async move { x.evaluate_alerts(now, open_missing(s1)).await }),
            tokio::spawn(async move { y.evaluate_alerts(now, open_missing(s2)).await }),
        );
        let (one, other) = (one.unwrap().unwrap(), other.unwrap().unwrap());
        assert_eq!(
            opened(&one) + opened(&other),
            subjects.len(),
            "round {round}: each condition reported opened by one evaluator"
        );
        // Rules that open whatever is open still get one row per key.
        let (x, y) = (a.clone(), b.clone());
        let (s1, s2) = (subjects.clone(), subjects.clone());
        let (one, other) = tokio::join!(
            tokio::spawn(async move { x.evaluate_alerts(now, open_blindly(s1)).await }),
            tokio::spawn(async move { y.evaluate_alerts(now, open_blindly(s2)).await }),
        );
        one.unwrap().unwrap();
        other.unwrap().unwrap();
        let rows = unresolved(&db);
        assert_eq!(rows.len(), subjects.len(), "round {round}: {rows:?}");
        assert!(rows.iter().all(|(_, n)| *n == 1), "round {round}: {rows:?}");
        // Both resolve at once: each alert is resolved once, and a new one can be raised.
        let (x, y) = (a.clone(), b.clone());
        let (one, other) = tokio::join!(
            tokio::spawn(async move { x.evaluate_alerts(now, resolve_all).await }),
            tokio::spawn(async move { y.evaluate_alerts(now, resolve_all).await }),
        );
        let resolved = one.unwrap().unwrap().len() + other.unwrap().unwrap().len();
        assert_eq!(resolved, subjects.len(), "round {round}");
        assert!(unresolved(&db).is_empty(), "round {round}");
    }
    assert_eq!(
        db.value("SELECT COUNT(*) FROM ops_alerts"),
        (ROUNDS * 5).to_string(),
        "one row per condition and round"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_evaluators_acknowledging_at_once_acknowledge_once() {
    let (_db, a, b) = two_instances("race_ack").await;
    let now = Utc::now();
    for round in 0..ROUNDS {
        let subject = format!("gw-ack-{round}");
        a.evaluate_alerts(now, open_missing(vec![subject.clone()]))
            .await
            .unwrap();
        let alert = a
            .list_alerts(None, true, 1000)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.subject == subject)
            .unwrap();
        let (x, y) = (a.clone(), b.clone());
        let id = alert.alert_id;
        let (one, other) = tokio::join!(
            tokio::spawn(async move { x.acknowledge_alert(id, "alice".into(), now).await }),
            tokio::spawn(async move { y.acknowledge_alert(id, "bob".into(), now).await }),
        );
        let (one, other) = (one.unwrap().unwrap(), other.unwrap().unwrap());
        assert!(one ^ other, "round {round}: exactly one acknowledgement");
        let row = b
            .list_alerts(None, true, 1000)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.alert_id == id)
            .unwrap();
        assert_eq!(row.state, "acknowledged");
        let by = if one { "alice" } else { "bob" };
        assert_eq!(row.acknowledged_by.as_deref(), Some(by), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeats_out_of_order_on_two_instances_keep_the_newest() {
    let (db, a, b) = two_instances("race_heartbeats").await;
    let gw = enroll(&db, "gw-beat", "tm-beat");
    let start = Utc::now() - Duration::hours(1);
    let mut applied = 0;
    for round in 0..ROUNDS {
        let step = i64::try_from(round).unwrap();
        let older = heartbeat(&gw, start + Duration::seconds(2 * step), 100);
        let newer = heartbeat(
            &gw,
            start + Duration::seconds(2 * step + 1),
            step as u64 + 1,
        );
        // The newer one reaches A, the older one (sent a second before) reaches B; alternately
        // the other way round.
        let (x, y) = if round % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let (n, o) = tokio::join!(
            tokio::spawn(async move { x.save_heartbeat(newer).await }),
            tokio::spawn(async move { y.save_heartbeat(older).await }),
        );
        let (n, o) = (n.unwrap().unwrap(), o.unwrap().unwrap());
        assert!(n, "round {round}: the newest heartbeat is always taken");
        applied += 1 + usize::from(o);
        let stored: i64 = db
            .value("SELECT sent_at_us FROM gateway_heartbeats WHERE gateway_id = 'gw-beat'")
            .parse()
            .unwrap();
        assert_eq!(
            stored,
            (start + Duration::seconds(2 * step + 1)).timestamp_micros(),
            "round {round}: the newest is kept"
        );
        let health = a.gateway_rows(Some("gw-beat".into())).await.unwrap();
        let g = &health.gateways[0];
        assert_eq!(
            g.heartbeat.as_ref().unwrap().backlog.depth,
            step as u64 + 1,
            "round {round}"
        );
        assert_eq!(
            db.value("SELECT backlog_depth FROM ops_gateway_health WHERE gateway_id = 'gw-beat'"),
            (step + 1).to_string(),
            "round {round}: the health row follows the newest"
        );
        assert_eq!(g.heartbeats_total, applied as u64, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_connections_last_will_on_another_instance_never_overrides_online() {
    let (db, a, b) = two_instances("race_status").await;
    let gw = enroll(&db, "gw-link", "tm-link");
    let base = 1_700_000_000_000u64;
    for round in 0..ROUNDS as u64 {
        let connection = base + 10 * round;
        let online = status(&gw, LinkState::Online, connection + 1);
        // The previous connection's last-will, delivered late to the other instance.
        let will = status(&gw, LinkState::Offline, connection);
        let now = Utc::now();
        let (x, y) = (a.clone(), b.clone());
        let (on, off) = tokio::join!(
            tokio::spawn(async move { x.record_gateway_status(online, now).await }),
            tokio::spawn(async move { y.record_gateway_status(will, now).await }),
        );
        assert!(on.unwrap().unwrap(), "round {round}");
        off.unwrap().unwrap();
        assert_eq!(
            db.mqtt_status("gw-link"),
            (
                Some("online".to_owned()),
                Some(i64::try_from(connection + 1).unwrap())
            ),
            "round {round}"
        );
    }
}
