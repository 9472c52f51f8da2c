//! Two provider instances claiming one gateway at once on one PostgreSQL database: two nurses
//! (two sessions, each on its own instance, each with its own pool) type the same claim code
//! at the same moment. Exactly one claim succeeds; the other is told the gateway is claimed
//! already, nothing of its session changes, and the gateway is registered, audited and bound
//! once. Many rounds, on a multi-threaded runtime.
//!
//! Runs on PostgreSQL whatever `TM_TEST_STORE` says (the SQLite store has one writer).

mod registry;

use std::sync::Arc;

use tm_protocol::SigningKey;
use tm_protocol::claim::ClaimCode;
use tm_provider::hub::contract::Carepath;
use tm_provider::store::Store;
use tm_provider::store::claims::{ClaimLimit, ClaimOutcome, ClaimRequest, Hello, HelloOutcome};
use tm_provider::store::sessions::{NewPrescription, PrescriptionOutcome};
use tm_testkit::backend::TestStore;
use tm_testkit::postgres::Database;

fn heart_failure() -> Carepath {
    Carepath {
        id: "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure".into(),
        version: "1.0.0".into(),
    }
}

async fn requested(store: &Store, id: &str) {
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
}

fn count(db: &TestStore, sql: &str) -> i64 {
    db.value(sql).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_claims_of_one_gateway_enroll_it_once() {
    let database = Arc::new(Database::create("race_claim"));
    let a = registry::postgres(&database, 8).await;
    let b = registry::postgres(&database, 8).await;
    let db = TestStore::Postgres(database);
    for round in 0..30 {
        let (key, _) = SigningKey::generate().unwrap();
        let public = key.verifying_key();
        let hello = Hello {
            public_key: public,
            agent_version: "test".into(),
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        assert_eq!(
            a.record_claim_hello(hello).await.unwrap(),
            HelloOutcome::Unclaimed
        );
        let sessions = [format!("tm-a-{round}"), format!("tm-b-{round}")];
        requested(&a, &sessions[0]).await;
        requested(&b, &sessions[1]).await;
        let attempt = |store: &Store, session: &str| {
            let request = ClaimRequest {
                telemonitoring_id: session.to_owned(),
                code: ClaimCode::of(&public),
                carepath: heart_failure(),
                now_ms: chrono::Utc::now().timestamp_millis(),
                limit: ClaimLimit::default(),
            };
            let store = store.clone();
            tokio::spawn(async move { store.claim_gateway(request).await })
        };
        let (x, y) = (attempt(&a, &sessions[0]), attempt(&b, &sessions[1]));
        let outcomes = [x.await.unwrap().unwrap(), y.await.unwrap().unwrap()];
        let won: Vec<usize> = (0..2)
            .filter(|&i| matches!(outcomes[i], ClaimOutcome::Claimed(_)))
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
        let lost = 1 - won[0];
        assert_eq!(
            outcomes[lost],
            ClaimOutcome::AlreadyClaimed,
            "round {round}"
        );
        let gateway = tm_provider::enroll::api::gateway_id_for(&public);
        assert_eq!(
            count(
                &db,
                &format!("SELECT COUNT(*) FROM gateways WHERE gateway_id = '{gateway}'")
            ),
            1
        );
        assert_eq!(
            db.value(&format!(
                "SELECT telemonitoring_id FROM gateways WHERE gateway_id = '{gateway}'"
            )),
            sessions[won[0]]
        );
        let status = |s: &str| {
            db.value(&format!(
                "SELECT status FROM sessions WHERE telemonitoring_id = '{s}'"
            ))
        };
        assert_eq!(status(&sessions[won[0]]), "accepted");
        assert_eq!(
            status(&sessions[lost]),
            "requested",
            "the loser is unchanged"
        );
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM ops_audit WHERE action = 'claimed' \
                     AND gateway_id = '{gateway}'"
                )
            ),
            1,
            "one claim audited"
        );
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM hub_outbox WHERE telemonitoring_id = '{}'",
                    sessions[lost]
                )
            ),
            0,
            "nothing queued for the loser"
        );
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM unclaimed_gateways"),
        0,
        "every claimed gateway left the unclaimed ones"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM claim_failures"),
        0,
        "a gateway claimed already is no wrong code"
    );
}
