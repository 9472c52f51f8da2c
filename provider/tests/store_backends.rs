//! The same units of work on both backends give the same records: a scenario through the
//! `Store` methods of the Portal, enrollment, HUB outbox, snapshot and pin areas (prescriptions
//! and their repeats, codes and their limits, enrollments and refusals, Portal actions, a
//! snapshot cut and its readings, a refusal held and re-queued, deliveries, the audit trail,
//! key and identifier pins) runs once on a SQLite file and once on a PostgreSQL database, and
//! every answer is compared. Times, which differ between two runs, are compared by their text's
//! shape (`time_text`'s format) or checked and set aside.
//!
//! Runs both backends whatever `TM_TEST_STORE` says.

mod fixtures;
mod registry;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use fixtures::Eager;
use tm_protocol::{GatewayId, Reading, TimeQuality, VerifyingKey};
use tm_provider::hub::contract::{Action, Carepath};
use tm_provider::store::Store;
use tm_provider::store::hub_outbox::{Due, RefusalPolicy};
use tm_provider::store::pins::Purpose;
use tm_provider::store::sessions::NewPrescription;
use tm_provider::store::snapshots::Announcer;
use tm_testkit::backend::TestStore;
use tm_testkit::postgres::Database;

/// What a scenario saw, one line per answer.
#[derive(Default)]
struct Log(Vec<String>);

impl Log {
    fn note(&mut self, what: &str, answer: impl std::fmt::Debug) {
        self.0.push(format!("{what}: {answer:?}"));
    }
}

/// A text time reduced to its format: every digit a `d`.
fn shape(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect()
}

/// `Some(text)` as `"<rfc3339>"` after checking it is one.
fn instant(text: Option<&String>) -> Option<&'static str> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        "<rfc3339>"
    })
}

fn prescription(id: &str, patient: &str, page: &str) -> NewPrescription {
    NewPrescription {
        telemonitoring_id: id.into(),
        patient_id: patient.into(),
        prescriber_id: "rx-1".into(),
        patient_fields: "{\"patient.language\":\"nl\"}".into(),
        page_token: page.into(),
    }
}

fn heart_failure() -> Carepath {
    Carepath {
        id: "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure".into(),
        version: "1.0.0".into(),
    }
}

fn key(n: u8) -> VerifyingKey {
    VerifyingKey::from_bytes(&[n; 32]).unwrap()
}

fn gw(id: &str) -> GatewayId {
    GatewayId::new(id).unwrap()
}

/// The same readings on every run: fixed times, so fixed ids.
fn readings() -> Vec<Reading> {
    let start = Utc.with_ymd_and_hms(2026, 5, 1, 7, 0, 0).unwrap();
    (0..4u8)
        .map(|n| {
            fixtures::reading(
                "2A35",
                &fixtures::bp_frame(120 + n, 80, 90, 60),
                fixtures::omron_cuff(),
                (start + Duration::minutes(i64::from(n))).fixed_offset(),
                TimeQuality::DeviceSynced,
            )
        })
        .collect()
}

/// Stores `reading` of `tm-a` as the ingest would have (SQL both backends run).
fn store_reading(db: &TestStore, reading: &Reading) {
    let payload = serde_json::to_string(reading).unwrap().replace('\'', "''");
    db.execute(&format!(
        "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, batch_id, kind, \
         effective_time, received_at, ingested_at, payload, record_order) VALUES ('{}', 'gw-a', \
         'tm-a', 'b-1', 'blood-pressure', '{}', '{}', '{}', '{payload}', {})",
        reading.reading_id.as_str(),
        reading.effective_time.to_rfc3339(),
        reading.received_at.to_rfc3339(),
        Utc::now().to_rfc3339(),
        tm_provider::store::readings::record_order(reading),
    ))
    .unwrap();
}

/// The published snapshot of `id`, its times checked (to the millisecond) and set aside.
async fn published(store: &Store, id: &str) -> Option<(i64, Option<Carepath>, bool, Vec<String>)> {
    let p = store.published_session(id).await.unwrap()?;
    let snap = &p.snapshot;
    assert_eq!(snap.published_at.timestamp_subsec_nanos() % 1_000_000, 0);
    assert_eq!(snap.period_start.timestamp_subsec_nanos() % 1_000_000, 0);
    assert_eq!(snap.period_start.offset().local_minus_utc(), 0);
    let ids = p
        .readings
        .iter()
        .map(|r| r.reading_id.as_str().to_owned())
        .collect();
    Some((
        snap.published_through,
        p.carepath,
        snap.period_end.is_some(),
        ids,
    ))
}

async fn next_due(store: &Store, at_ms: i64) -> Option<Due> {
    store.next_due_hub_update(at_ms).await.unwrap()
}

/// The undelivered rows, their times reduced.
async fn undelivered(store: &Store) -> Vec<String> {
    store
        .undelivered_hub_updates(10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "#{} {} {} {:?} attempts={} refusals={} error={:?} created={} first={:?} \
                 next={:?} held={:?}",
                r.seq,
                r.telemonitoring_id,
                r.status,
                r.state,
                r.attempts,
                r.refusals,
                r.last_error,
                shape(&r.created_at),
                instant(r.first_refused_at.as_ref()),
                instant(r.next_attempt_at.as_ref()),
                instant(r.held_at.as_ref()),
            )
        })
        .collect()
}

async fn enrollment(log: &mut Log, store: &Store) {
    for (what, rx) in [
        ("new", prescription("tm-a", "pat-a", "page-a")),
        ("repeat", prescription("tm-a", "pat-a", "page-x")),
        ("other patient", prescription("tm-a", "pat-z", "page-y")),
        ("second", prescription("tm-b", "pat-b", "page-b")),
    ] {
        log.note(what, store.record_prescription(rx).await.unwrap());
    }
    log.note(
        "page",
        store.enrollment_page("page-a".into()).await.unwrap(),
    );
    log.note(
        "no page",
        store.enrollment_page("nope".into()).await.unwrap(),
    );
    let issue = |id: &str, per_hour| {
        store.issue_enrollment_code(id.into(), heart_failure(), 60_000, per_hour)
    };
    let code_a = issue("tm-a", 5).await.unwrap().unwrap().code;
    let old_b = issue("tm-b", 2).await.unwrap().unwrap().code;
    let code_b = issue("tm-b", 2).await.unwrap().unwrap().code;
    log.note("over the hourly limit", issue("tm-b", 2).await.unwrap());
    let now = Utc::now().timestamp_millis();
    log.note(
        "allowed",
        store.enrollment_attempt_allowed(1, now).await.unwrap(),
    );
    for (what, code, id, n) in [
        ("bad code", "WRONG123".to_owned(), "gw-x", 9),
        ("retired code", old_b, "gw-x", 9),
        ("enroll a", code_a, "gw-a", 1),
        ("same gateway", code_b.clone(), "gw-a", 1),
        ("enroll b", code_b.clone(), "gw-b", 2),
        ("used code", code_b, "gw-c", 3),
    ] {
        log.note(
            what,
            store.enroll_gateway(code, gw(id), key(n)).await.unwrap(),
        );
    }
    log.note(
        "allowed after",
        store.enrollment_attempt_allowed(3, now).await.unwrap(),
    );
    log.note(
        "allowed more",
        store.enrollment_attempt_allowed(4, now).await.unwrap(),
    );
    log.note("gateway", store.gateway("gw-a").await.unwrap());
    log.note("no gateway", store.gateway("gw-x").await.unwrap());
    log.note(
        "unknown state",
        store
            .set_gateway_state(
                &gw("gw-x"),
                tm_provider::store::gateways::GatewayState::Revoked,
            )
            .await
            .unwrap(),
    );
}

async fn actions_and_snapshots(log: &mut Log, store: &Store, db: &TestStore) {
    let eager: Arc<dyn Announcer> = Arc::new(Eager);
    let act = |id: &str, prescriber: &str, action| {
        store.act_on_session(id.into(), prescriber.into(), action, eager.clone())
    };
    log.note("stop b", act("tm-b", "rx-1", Action::Stop).await.unwrap());
    log.note(
        "stop b again",
        act("tm-b", "rx-1", Action::Stop).await.unwrap(),
    );
    log.note(
        "cancel b",
        act("tm-b", "rx-1", Action::Cancel).await.unwrap(),
    );
    log.note(
        "other prescriber",
        act("tm-a", "rx-2", Action::Stop).await.unwrap(),
    );
    log.note(
        "gateways",
        db.rows("SELECT gateway_id, telemonitoring_id, state FROM gateways ORDER BY gateway_id"),
    );
    log.note(
        "nothing pending",
        store.has_pending_readings("tm-a").await.unwrap(),
    );
    log.note(
        "not due",
        store
            .publish_due_update("tm-a", eager.clone())
            .await
            .unwrap(),
    );
    let readings = readings();
    for r in &readings[..3] {
        store_reading(db, r);
    }
    log.note("pending", store.has_pending_readings("tm-a").await.unwrap());
    log.note(
        "pending sessions",
        store.sessions_with_pending_readings().await.unwrap(),
    );
    log.note(
        "when",
        store
            .next_session_update("tm-a", eager.clone())
            .await
            .unwrap(),
    );
    log.note(
        "publish",
        store
            .publish_due_update("tm-a", eager.clone())
            .await
            .unwrap(),
    );
    log.note(
        "publish again",
        store
            .publish_due_update("tm-a", eager.clone())
            .await
            .unwrap(),
    );
    log.note("published", published(store, "tm-a").await);
    store_reading(db, &readings[3]);
    log.note(
        "publish more",
        store
            .publish_due_update("tm-a", eager.clone())
            .await
            .unwrap(),
    );
    log.note("published more", published(store, "tm-a").await);
    log.note("unpublished", published(store, "tm-b").await);
}

async fn delivery(log: &mut Log, store: &Store, db: &TestStore) {
    let now = Utc::now().timestamp_millis();
    let hold_at_once = RefusalPolicy {
        initial: std::time::Duration::from_millis(100),
        max: std::time::Duration::from_millis(400),
        window: std::time::Duration::ZERO,
    };
    let retry = RefusalPolicy {
        window: std::time::Duration::from_secs(3600),
        ..hold_at_once
    };
    log.note("pending", store.pending_hub_updates().await.unwrap());
    let head = next_due(store, now).await.unwrap();
    log.note("due", &head);
    let refused = store
        .record_hub_update_refusal(head.clone(), "409: refused".into(), hold_at_once)
        .await
        .unwrap();
    log.note("refused", refused);
    log.note("held", store.held_hub_updates().await.unwrap());
    log.note("flagged", store.flagged_hub_sessions().await.unwrap());
    let alerts =
        "SELECT kind, subject, gateway_id, state, detail FROM ops_alerts ORDER BY alert_id";
    log.note("alert", db.rows(alerts));
    for _ in 0..2 {
        let row = next_due(store, now).await.unwrap();
        log.note("due", &row);
        store
            .record_hub_update_failure(row.seq, "503: busy".into())
            .await
            .unwrap();
        log.note("again", next_due(store, now).await);
        log.note(
            "delivered",
            store.mark_hub_update_delivered(row).await.unwrap(),
        );
    }
    log.note("waiting", next_due(store, now).await);
    log.note("deadline", store.next_hub_update_deadline().await.unwrap());
    log.note("undelivered", undelivered(store).await);
    log.note(
        "not held",
        store
            .requeue_hub_update(head.seq + 3, "operator:ann".into())
            .await
            .unwrap(),
    );
    log.note(
        "requeue",
        store
            .requeue_hub_update(head.seq, "operator:ann".into())
            .await
            .unwrap(),
    );
    log.note(
        "requeue twice",
        store
            .requeue_hub_update(head.seq, "operator:ann".into())
            .await
            .unwrap(),
    );
    let requeued = next_due(store, now).await.unwrap();
    log.note("due requeued", &requeued);
    match store
        .record_hub_update_refusal(requeued.clone(), "422: still".into(), retry)
        .await
        .unwrap()
    {
        tm_provider::store::hub_outbox::Refused::RetryAt { at_ms, refusals } => {
            assert!(at_ms > now, "{at_ms}");
            log.note("retry", refusals);
        }
        other => panic!("{other:?}"),
    }
    log.note("undelivered", undelivered(store).await);
    log.note(
        "deadline set",
        store.next_hub_update_deadline().await.unwrap().is_some(),
    );
    let later = now + 60_000;
    let requeued = next_due(store, later).await.unwrap();
    log.note(
        "delivered requeued",
        store.mark_hub_update_delivered(requeued).await.unwrap(),
    );
    log.note("alert", db.rows(alerts));
    while let Some(row) = next_due(store, later).await {
        log.note("due", &row);
        log.note(
            "delivered",
            store.mark_hub_update_delivered(row).await.unwrap(),
        );
    }
    log.note("pending", store.pending_hub_updates().await.unwrap());
    for entry in store.audit_trail(None, 10).await.unwrap() {
        log.note(
            "audit",
            (
                entry.seq,
                shape(&entry.at),
                entry.actor,
                entry.action,
                entry.gateway_id,
                entry.telemonitoring_id,
                entry.device,
                entry.detail,
            ),
        );
    }
    log.note(
        "audit of gw-b",
        store
            .audit_trail(Some("gw-b".into()), 10)
            .await
            .unwrap()
            .len(),
    );
}

async fn pins(log: &mut Log, store: &Store) {
    let system = |configured: Option<&'static str>| {
        store.fhir_identifier_system(configured, "https://p.example/")
    };
    log.note("system", system(None).await.unwrap());
    log.note("configured", system(Some("urn:oid:2.999.1")).await.unwrap());
    log.note("kept", system(None).await.unwrap());
    let path = PathBuf::from("/nonexistent/provider.key");
    let files = [(Purpose::Receipts, path.clone())];
    log.note(
        "nothing pinned",
        store
            .check_key_files_present(&files, false)
            .await
            .unwrap()
            .map_err(|e| e.to_string()),
    );
    let pin = |fingerprint: &str, accept| {
        let keys = [(Purpose::Receipts, fingerprint.to_owned(), path.clone())];
        async move {
            store
                .pin_keys(&keys, accept)
                .await
                .unwrap()
                .map_err(|e| shape(&e.to_string()))
        }
    };
    log.note("first pin", pin("fp-1", false).await);
    log.note("same key", pin("fp-1", false).await);
    log.note("other key", pin("fp-2", false).await);
    log.note(
        "missing key",
        store
            .check_key_files_present(&files, false)
            .await
            .unwrap()
            .map_err(|e| shape(&e.to_string())),
    );
    log.note("accepted", pin("fp-2", true).await);
    log.note("pinned now", pin("fp-2", false).await);
}

async fn scenario(store: Store, db: TestStore) -> Vec<String> {
    let mut log = Log::default();
    enrollment(&mut log, &store).await;
    actions_and_snapshots(&mut log, &store, &db).await;
    delivery(&mut log, &store, &db).await;
    pins(&mut log, &store).await;
    log.0
}

// Multi-threaded: the checks' SQL runs in blocking child processes (psql), and the pool's
// connection tasks must go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_answer_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provider.db");
    let sqlite = scenario(Store::open(&path).unwrap(), TestStore::Sqlite(path)).await;

    let db = Arc::new(Database::create("backends"));
    let store = registry::postgres(&db, 4).await;
    let postgres = scenario(store, TestStore::Postgres(db)).await;

    for (s, p) in sqlite.iter().zip(&postgres) {
        assert_eq!(s, p, "SQLite, then PostgreSQL");
    }
    assert_eq!(sqlite.len(), postgres.len());
}
