//! Duties one instance at a time performs, on a real PostgreSQL server shared by several
//! stores (each the store of one provider instance): the lease is exclusive, given up when its
//! holder stops or its connection dies, taken over by a waiting instance within seconds, and
//! its notification channel wakes the holder when another instance gives it work.

mod registry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tm_provider::lease::{Leader, RETRY_EVERY};
use tm_provider::store::Store;
use tm_provider::store::leases::Duty;
use tm_testkit::postgres::Database as TestDatabase;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

async fn instance(db: &TestDatabase) -> Store {
    registry::postgres(db, 4).await
}

/// Ends the server sessions holding advisory locks in this test's database (as a crashed
/// holder's would end).
fn kill_lock_holders(db: &TestDatabase) -> usize {
    let killed = db.query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' \
         AND granted AND pid <> pg_backend_pid() AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    killed.parse().unwrap()
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_holds_a_duty_until_it_gives_it_up() {
    let db = TestDatabase::create("lease_exclusive");
    let (a, b) = (instance(&db).await, instance(&db).await);
    let held = a.take_lease(Duty::HubOutbox, None).await.unwrap();
    let held = held.expect("the first instance gets the lease");
    assert!(held.alive().await);
    assert!(
        b.take_lease(Duty::HubOutbox, None).await.unwrap().is_none(),
        "a second instance does not"
    );
    let other = b.take_lease(Duty::AlertEvaluator, None).await.unwrap();
    assert!(other.is_some(), "another duty is another lease");
    drop(held);
    let start = Instant::now();
    let taken = loop {
        if let Some(lease) = b.take_lease(Duty::HubOutbox, None).await.unwrap() {
            break lease;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "released on drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(taken.alive().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_connection_died_is_seen_lost_and_taken_over() {
    let db = TestDatabase::create("lease_killed");
    let (a, b) = (instance(&db).await, instance(&db).await);
    let held = a.take_lease(Duty::HubOutbox, None).await.unwrap().unwrap();
    assert_eq!(kill_lock_holders(&db), 1);
    assert!(!held.alive().await, "the holder notices");
    assert!(
        b.take_lease(Duty::HubOutbox, None).await.unwrap().is_some(),
        "the lock died with its connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_instance_takes_the_duty_over_within_seconds() {
    let db = TestDatabase::create("lease_takeover");
    let (a, b) = (instance(&db).await, instance(&db).await);
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let first = Leader::start(a, Duty::HubOutbox, None, stop_a.clone());
    wait_until("the first instance leads", Duration::from_secs(10), || {
        first.is_held()
    })
    .await;
    let second = Leader::start(b, Duty::HubOutbox, None, stop_b.clone());
    tokio::time::sleep(RETRY_EVERY * 2).await;
    assert!(first.is_held() && !second.is_held(), "one leader at a time");

    // The leader's connection dies (as when its process is killed): the other takes over.
    assert_eq!(kill_lock_holders(&db), 1);
    let took = wait_until("the second instance leads", Duration::from_secs(10), || {
        second.is_held()
    })
    .await;
    println!(
        "lease taken over {} ms after its holder died",
        took.as_millis()
    );
    wait_until("the first instance knows", Duration::from_secs(5), || {
        !first.is_held()
    })
    .await;

    // The new leader stops (a clean shutdown): the first one leads again.
    stop_b.cancel();
    wait_until(
        "the first instance leads again",
        Duration::from_secs(10),
        || first.is_held(),
    )
    .await;
    stop_a.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_given_by_another_instance_wakes_the_holder() {
    let db = TestDatabase::create("lease_wake");
    let (a, b) = (instance(&db).await, instance(&db).await);
    let wake = Arc::new(Notify::new());
    let _held = a
        .take_lease(Duty::HubOutbox, Some(wake.clone()))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        b.wake_duty(Duty::HubOutbox).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.notified())
            .await
            .expect("the holder is woken");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_queued_by_any_instance_wakes_the_outbox_holder() {
    let db = TestDatabase::create("lease_outbox_wake");
    let holder = instance(&db).await;
    let wake = Arc::new(Notify::new());
    let _held = holder
        .take_lease(Duty::HubOutbox, Some(wake.clone()))
        .await
        .unwrap()
        .unwrap();
    // Another instance's transaction queues an update (here: a row written directly).
    db.query(
        "INSERT INTO sessions VALUES ('tm-1', 'p', 'rx', 'requested', NULL, NULL, now(), now())",
    );
    db.query(
        "INSERT INTO hub_outbox (telemonitoring_id, body, created_at) VALUES ('tm-1', '{}', now())",
    );
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .expect("the holder is woken by the queued update");
}
