//! Provider instances racing on one PostgreSQL database: each case connects two independent
//! `Store`s (two pools, as two provider processes would have) to a database of its own and
//! runs the contended unit of work from both at once, on a multi-threaded runtime, for many
//! rounds, then checks what the database holds.
//!
//! - two redemptions of one enrollment code: exactly one gateway is enrolled, the other
//!   attempt is refused as a used code;
//! - two publishers of one session, while readings keep arriving: one snapshot per cut, the
//!   watermark never moves backwards, and every cut holds exactly the readings at or below it
//!   (none published twice, none skipped);
//! - two Portal actions on one session at once: one moves it, the other finds it moved, and
//!   the session's HUB outbox rows are its status changes, in order;
//! - two operators re-queueing one held HUB update at once: it is released and audited once;
//! - two instances starting together on a new database with different keys and public URLs:
//!   one pins its key and the other is refused, and both serve the same identifier system.
//!
//! These run on PostgreSQL whatever `TM_TEST_STORE` says (the SQLite store has one writer).

mod fixtures;
mod registry;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use fixtures::Eager;
use serde_json::Value;
use tm_protocol::{GatewayId, Reading, SigningKey, TimeQuality};
use tm_provider::hub::contract::{Action, Carepath};
use tm_provider::store::Store;
use tm_provider::store::enrollment::EnrollmentOutcome;
use tm_provider::store::hub_outbox::{RefusalPolicy, Refused};
use tm_provider::store::pins::{KeyMismatch, Purpose};
use tm_provider::store::sessions::{NewPrescription, PrescriptionOutcome, SessionActionOutcome};
use tm_provider::store::snapshots::{Announcer, PublishOutcome};
use tm_testkit::backend::TestStore;
use tm_testkit::postgres::Database;

/// A database of its own and two stores connected to it.
struct Instances {
    db: TestStore,
    url: String,
    password: String,
    a: Store,
    b: Store,
}

async fn connect(db: &Database) -> Store {
    registry::postgres(db, 8).await
}

async fn instances(label: &str) -> Instances {
    let db = Arc::new(Database::create(label));
    let (a, b) = (connect(&db).await, connect(&db).await);
    let password = std::fs::read_to_string(db.password_file())
        .unwrap()
        .trim()
        .to_owned();
    Instances {
        url: format!("{}?sslmode=disable", db.url()),
        password,
        db: TestStore::Postgres(db),
        a,
        b,
    }
}

fn heart_failure() -> Carepath {
    Carepath {
        id: "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure".into(),
        version: "1.0.0".into(),
    }
}

/// A session in `requested` with an enrollment code; returns the code.
async fn requested_with_code(store: &Store, id: &str) -> String {
    let outcome = store
        .record_prescription(NewPrescription {
            telemonitoring_id: id.into(),
            patient_id: format!("pat-{id}"),
            prescriber_id: "rx-1".into(),
            patient_fields: "{}".into(),
            page_token: format!("page-{id}"),
        })
        .await
        .unwrap();
    assert!(matches!(outcome, PrescriptionOutcome::Created { .. }));
    store
        .issue_enrollment_code(id.into(), heart_failure(), 60_000, 5)
        .await
        .unwrap()
        .unwrap()
        .code
}

/// A session in `accepted`, enrolled with gateway `gw-<id>`.
async fn accepted(store: &Store, id: &str) {
    let code = requested_with_code(store, id).await;
    let (key, _) = SigningKey::generate().unwrap();
    let gw = GatewayId::new(format!("gw-{id}")).unwrap();
    let outcome = store
        .enroll_gateway(code, gw, key.verifying_key())
        .await
        .unwrap();
    assert_eq!(outcome, EnrollmentOutcome::Enrolled);
}

/// The `status` of each HUB outbox row of `id`, in queue order.
fn queued_statuses(db: &TestStore, id: &str) -> Vec<String> {
    db.rows(&format!(
        "SELECT body FROM hub_outbox WHERE telemonitoring_id = '{id}' ORDER BY seq"
    ))
    .into_iter()
    .map(|row| {
        let body: Value = serde_json::from_str(&row[0]).unwrap();
        body["status"].as_str().unwrap().to_owned()
    })
    .collect()
}

fn count(db: &TestStore, sql: &str) -> i64 {
    db.value(sql).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_redemptions_of_one_code_enroll_one_gateway() {
    let i = instances("race_redeem").await;
    for round in 0..30 {
        let id = format!("tm-redeem-{round}");
        let code = requested_with_code(&i.a, &id).await;
        let attempt = |store: &Store, who: &str| {
            let (store, code) = (store.clone(), code.clone());
            let gw = GatewayId::new(format!("gw-{who}-{round}")).unwrap();
            let (key, _) = SigningKey::generate().unwrap();
            tokio::spawn(async move { store.enroll_gateway(code, gw, key.verifying_key()).await })
        };
        let (a, b) = (attempt(&i.a, "a"), attempt(&i.b, "b"));
        let mut outcomes = vec![a.await.unwrap().unwrap(), b.await.unwrap().unwrap()];
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            outcomes,
            [EnrollmentOutcome::BadCode, EnrollmentOutcome::Enrolled],
            "round {round}"
        );
        let session = format!("telemonitoring_id = '{id}'");
        assert_eq!(
            count(
                &i.db,
                &format!("SELECT COUNT(*) FROM gateways WHERE {session}")
            ),
            1,
            "one gateway on the session"
        );
        assert_eq!(
            i.db.value(&format!("SELECT status FROM sessions WHERE {session}")),
            "accepted"
        );
        assert_eq!(queued_statuses(&i.db, &id), ["accepted"]);
        assert_eq!(
            count(
                &i.db,
                &format!("SELECT COUNT(*) FROM ops_audit WHERE action = 'enrolled' AND {session}")
            ),
            1,
            "one enrollment audited"
        );
    }
    assert_eq!(
        count(
            &i.db,
            "SELECT COALESCE(SUM(failures), 0) FROM enroll_failures"
        ),
        30,
        "every losing attempt counted as a failure"
    );
}

fn blood_pressure(n: u8) -> Reading {
    let at = Utc::now() - Duration::hours(1) + Duration::seconds(i64::from(n));
    fixtures::reading(
        "2A35",
        &fixtures::bp_frame(110 + n % 40, 70, 85, 60),
        fixtures::omron_cuff(),
        at.fixed_offset(),
        TimeQuality::DeviceSynced,
    )
}

/// A plain connection, for the ingest's side of the protocol.
fn raw_client(i: &Instances) -> impl Future<Output = tokio_postgres::Client> + Send + 'static {
    let mut config: tokio_postgres::Config = i.url.parse().unwrap();
    config.password(i.password.as_bytes());
    async move {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }
}

/// Stores `readings` of session `id` in one transaction the way the ingest does: under
/// `FOR SHARE` on the session row (the publisher's `FOR UPDATE` waits for it), holding the
/// transaction open `hold` after the inserts so that publishers and the other ingests run
/// into it.
async fn ingest(
    c: &mut tokio_postgres::Client,
    id: &str,
    gateway: &str,
    readings: &[Reading],
    hold: std::time::Duration,
) {
    let tx = c.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM sessions WHERE telemonitoring_id = $1 FOR SHARE",
        &[&id],
    )
    .await
    .unwrap();
    for r in readings {
        tx.execute(
            "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, batch_id, kind, \
             effective_time, received_at, ingested_at, payload, record_order) \
             VALUES ($1, $2, $3, 'race', 'blood-pressure', $4, $5, now(), $6, $7)",
            &[
                &r.reading_id.as_str(),
                &gateway,
                &id,
                &r.effective_time.with_timezone(&Utc),
                &r.received_at,
                &serde_json::to_string(r).unwrap(),
                &tm_provider::store::readings::record_order(r),
            ],
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(hold).await;
    tx.commit().await.unwrap();
}

/// Publishes `id` from `store` until `done` is set and nothing is pending; the number of
/// snapshots it cut.
async fn publish_until_done(
    store: Store,
    id: String,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let announcer: Arc<dyn Announcer> = Arc::new(Eager);
    let mut cuts = 0;
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
        match store
            .publish_due_update(&id, announcer.clone())
            .await
            .unwrap()
            .unwrap()
        {
            PublishOutcome::Published { attachments } => {
                assert_eq!(attachments, 1);
                cuts += 1;
            }
            PublishOutcome::NotDue if finished => return cuts,
            PublishOutcome::NotDue => tokio::task::yield_now().await,
            PublishOutcome::Later(at) => panic!("always due, not later ({at})"),
        }
    }
}

/// Each cut queued for `id`, in queue order: its watermark and the reading ids it holds.
fn cuts(db: &TestStore, id: &str) -> Vec<(i64, BTreeSet<String>)> {
    db.rows(&format!(
        "SELECT body FROM hub_outbox WHERE telemonitoring_id = '{id}' \
         AND body LIKE '%\"attachments\"%' ORDER BY seq"
    ))
    .into_iter()
    .map(|row| {
        let body: Value = serde_json::from_str(&row[0]).unwrap();
        let cut = &body["attachments"][0];
        let readings = cut["readings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        (cut["through"].as_i64().unwrap(), readings)
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_publishers_cut_each_reading_into_one_snapshot() {
    let i = instances("race_publish").await;
    for round in 0..4 {
        let id = format!("tm-publish-{round}");
        accepted(&i.a, &id).await;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let publishers = [&i.a, &i.b]
            .map(|store| tokio::spawn(publish_until_done(store.clone(), id.clone(), done.clone())));
        // Three gateways' batches at once, committing out of the order their readings got
        // their `seq`.
        let ingests: Vec<_> = (0..3u8)
            .map(|ingester| {
                let (id, gateway) = (id.clone(), format!("gw-{id}"));
                let client = raw_client(&i);
                async move {
                    let mut client = client.await;
                    for batch in 0..15u8 {
                        let first = (ingester * 15 + batch) * 3;
                        let readings: Vec<Reading> =
                            (first..first + 3).map(blood_pressure).collect();
                        let hold =
                            std::time::Duration::from_millis(u64::from((batch + ingester) % 3 * 4));
                        ingest(&mut client, &id, &gateway, &readings, hold).await;
                        // A gap now and then: overlapping shares would keep the publishers'
                        // `FOR UPDATE` waiting until the burst ends.
                        let gap = u64::from((batch * 7 + ingester * 3) % 5);
                        tokio::time::sleep(std::time::Duration::from_millis(gap)).await;
                    }
                }
            })
            .map(tokio::spawn)
            .collect();
        for ingest in ingests {
            ingest.await.unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut published = 0;
        for p in publishers {
            published += p.await.unwrap();
        }

        let cuts = cuts(&i.db, &id);
        assert_eq!(cuts.len(), published, "one queued update per cut");
        assert!(published >= 2, "round {round}: {published} cut(s)");
        let session = format!("telemonitoring_id = '{id}'");
        let mut below = 0;
        let mut seen = BTreeSet::new();
        for (through, readings) in &cuts {
            assert!(
                *through > below,
                "the watermark only moves up: {through} after {below}"
            );
            // Every reading at or below the cut, as the database holds them at the end: a
            // reading that committed below a watermark after its cut would be missing here.
            let stored: BTreeSet<String> =
                i.db.rows(&format!(
                    "SELECT reading_id FROM readings WHERE {session} AND seq <= {through}"
                ))
                .into_iter()
                .map(|r| r[0].clone())
                .collect();
            assert_eq!(readings, &stored, "the cut at {through} holds its readings");
            assert!(
                readings.is_superset(&seen),
                "a cut keeps the earlier readings"
            );
            seen = readings.clone();
            below = *through;
        }
        assert_eq!(seen.len(), 135, "every reading published");
        assert_eq!(
            i.db.value(&format!(
                "SELECT published_through FROM session_outputs WHERE {session}"
            )),
            i.db.value(&format!("SELECT MAX(seq) FROM readings WHERE {session}")),
            "the last cut is at the last reading"
        );
        let statuses = queued_statuses(&i.db, &id);
        assert_eq!(statuses.len(), published + 1);
        assert_eq!(statuses[0], "accepted");
        assert!(
            statuses[1..].iter().all(|s| s == "in-progress"),
            "{statuses:?}"
        );
    }
}

/// The outcome of `action` on `id` from `store`, run as a task.
fn act(store: &Store, id: &str, action: Action) -> tokio::task::JoinHandle<SessionActionOutcome> {
    let (store, id) = (store.clone(), id.to_owned());
    tokio::spawn(async move {
        store
            .act_on_session(id, "rx-1".into(), action, Arc::new(Eager))
            .await
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_actions_on_one_session_move_it_once_in_order() {
    let i = instances("race_act").await;
    for round in 0..20 {
        // Stop against cancel: whichever locks the session first moves it.
        let id = format!("tm-act-{round}");
        accepted(&i.a, &id).await;
        let (stop, cancel) = (act(&i.a, &id, Action::Stop), act(&i.b, &id, Action::Cancel));
        let (stop, cancel) = (stop.await.unwrap(), cancel.await.unwrap());
        let status = i.db.value(&format!(
            "SELECT status FROM sessions WHERE telemonitoring_id = '{id}'"
        ));
        match (&stop, &cancel) {
            (SessionActionOutcome::Moved, SessionActionOutcome::Refused(_)) => {
                assert_eq!(status, "completed");
            }
            (SessionActionOutcome::AlreadyThere, SessionActionOutcome::Moved) => {
                assert_eq!(status, "cancelled");
            }
            other => panic!("round {round}: {other:?}"),
        }
        assert_eq!(queued_statuses(&i.db, &id), ["accepted", status.as_str()]);
        assert_eq!(
            i.db.value(&format!(
                "SELECT state FROM gateways WHERE telemonitoring_id = '{id}'"
            )),
            "unbound"
        );

        // The same action twice: one moves, the other finds it done.
        let id = format!("tm-stop-{round}");
        accepted(&i.b, &id).await;
        let (a, b) = (act(&i.a, &id, Action::Stop), act(&i.b, &id, Action::Stop));
        let mut outcomes = [a.await.unwrap(), b.await.unwrap()].map(|o| format!("{o:?}"));
        outcomes.sort();
        assert_eq!(outcomes, ["AlreadyThere", "Moved"], "round {round}");
        assert_eq!(queued_statuses(&i.db, &id), ["accepted", "completed"]);
    }
}

/// What an instance starting on the database pins: its key's fingerprint, then the
/// identifier system its public URL would give.
fn start(
    store: &Store,
    fingerprint: &str,
    public_url: &str,
) -> tokio::task::JoinHandle<(Result<(), KeyMismatch>, String)> {
    let (store, fingerprint, public_url) =
        (store.clone(), fingerprint.to_owned(), public_url.to_owned());
    tokio::spawn(async move {
        let keys = [(
            Purpose::Receipts,
            fingerprint,
            std::path::PathBuf::from("provider.key"),
        )];
        let pinned = store.pin_keys(&keys, false).await.unwrap();
        let system = store
            .fhir_identifier_system(None, &public_url)
            .await
            .unwrap();
        (pinned, system)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_pin_one_key_and_one_system() {
    // A new database each round: the first start is what races.
    for round in 0..6 {
        let i = instances(&format!("race_pins_{round}")).await;
        let a = start(&i.a, "fp-a", "https://a.example");
        let b = start(&i.b, "fp-b", "https://b.example");
        let ((pinned_a, system_a), (pinned_b, system_b)) = (a.await.unwrap(), b.await.unwrap());
        let (winner, refusal) = match (pinned_a, pinned_b) {
            (Ok(()), Err(refusal)) => ("fp-a", refusal),
            (Err(refusal), Ok(())) => ("fp-b", refusal),
            other => panic!("round {round}: exactly one key is pinned: {other:?}"),
        };
        let KeyMismatch::Other { pinned, .. } = &refusal else {
            panic!("round {round}: {refusal}")
        };
        assert_eq!(pinned, winner, "the refusal names the pinned key");
        assert_eq!(
            i.db.value("SELECT value FROM store_pins WHERE name = 'key:receipts'"),
            winner
        );
        assert_eq!(system_a, system_b, "round {round}: one identifier system");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_requeues_of_one_held_update_release_it_once() {
    let i = instances("race_requeue").await;
    let hold_at_once = RefusalPolicy {
        initial: std::time::Duration::from_millis(100),
        max: std::time::Duration::from_millis(100),
        window: std::time::Duration::ZERO,
    };
    for round in 0..15 {
        let id = format!("tm-requeue-{round}");
        accepted(&i.a, &id).await;
        let head =
            i.a.next_due_hub_update(Utc::now().timestamp_millis())
                .await
                .unwrap()
                .unwrap();
        assert_eq!(head.telemonitoring_id, id);
        let refused =
            i.a.record_hub_update_refusal(head.clone(), "409: no".into(), hold_at_once)
                .await
                .unwrap();
        assert_eq!(refused, Refused::Held { refusals: 1 });
        let requeue = |store: &Store, who: &str| {
            let (store, actor, seq) = (store.clone(), format!("operator:{who}"), head.seq);
            tokio::spawn(async move { store.requeue_hub_update(seq, actor).await.unwrap() })
        };
        let (a, b) = (requeue(&i.a, "ann"), requeue(&i.b, "bob"));
        let released = [a.await.unwrap(), b.await.unwrap()];
        let rows: Vec<usize> = released.iter().flatten().map(|r| r.rows).collect();
        assert_eq!(rows, [1], "round {round}: released once");
        assert_eq!(
            count(
                &i.db,
                &format!(
                    "SELECT COUNT(*) FROM ops_audit WHERE action = 'hub-update-requeued' \
                     AND telemonitoring_id = '{id}'"
                )
            ),
            1,
            "audited once"
        );
        let due =
            i.b.next_due_hub_update(Utc::now().timestamp_millis())
                .await
                .unwrap()
                .unwrap();
        assert_eq!((due.seq, due.was_held), (head.seq, true));
        assert!(i.b.mark_hub_update_delivered(due).await.unwrap());
    }
}
