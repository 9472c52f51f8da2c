//! Readings stored before the ordered key (SQLite migration 14, PostgreSQL migration 3) get, in
//! the migration's SQL, the same `record_order` the ingest computes in Rust, so a reading sent
//! again after the upgrade is still refused as a duplicate.

mod fixtures;

use chrono::{Duration, NaiveDate, Utc};
use tm_protocol::{GatewayId, Reading, ReadingBatch, ReadingId, SigningKey, TimeQuality};
use tm_provider::store::readings::{BatchJob, record_order};
use tm_provider::store::{Database, Store};

/// Readings of every kind of order: a device time (whole, with milliseconds, with a fraction
/// finer than a millisecond, before 1970), a sequence number only, and neither (the receive
/// time, with a fraction).
fn readings() -> Vec<Reading> {
    let received = Utc::now() - Duration::seconds(60);
    let base = fixtures::reading(
        "2A9D",
        &fixtures::weight_frame(78_600),
        fixtures::scale(),
        received.with_timezone(&fixtures::cest()),
        TimeQuality::NoDeviceTime,
    );
    let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let times = [
        Some(day.and_hms_opt(7, 31, 30).unwrap()),
        Some(day.and_hms_milli_opt(7, 31, 30, 999).unwrap()),
        Some(day.and_hms_nano_opt(23, 59, 59, 3_906_250).unwrap()),
        Some(
            NaiveDate::from_ymd_opt(1969, 12, 31)
                .unwrap()
                .and_hms_milli_opt(23, 59, 58, 500)
                .unwrap(),
        ),
        None,
        None,
    ];
    times
        .into_iter()
        .enumerate()
        .map(|(i, device_time)| {
            let mut r = base.clone();
            r.reading_id = ReadingId::new(format!("{i:064x}")).unwrap();
            r.device_time = device_time;
            r.sequence = (i == 4).then_some(17);
            r.received_at = received + Duration::microseconds(123_457 * i64::try_from(i).unwrap());
            r
        })
        .collect()
}

#[tokio::test]
async fn sqlite_readings_stored_before_the_ordered_key_are_still_refused_when_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provider.db");
    let readings = readings();
    {
        // The store at version 13, with readings stored as the ingest of that version did.
        let mut c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .unwrap();
        let migrations = tm_provider::store::sqlite::migrations::MIGRATIONS;
        tm_protocol::migrations::apply(&mut c, &migrations[..13], 0, |tx, version| {
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, '')",
                [version],
            )
            .map(|_| ())
        })
        .unwrap();
        c.execute(
            "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, status, \
             created_at, updated_at) VALUES ('tm-1', 'p', 'd', 'accepted', '', '')",
            [],
        )
        .unwrap();
        for r in &readings {
            c.execute(
                "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, batch_id, kind, \
                 effective_time, received_at, ingested_at, payload) \
                 VALUES (?1, 'gw-1', 'tm-1', 'b-1', 'body-weight', ?2, ?3, ?3, ?4)",
                rusqlite::params![
                    r.reading_id.as_str(),
                    r.effective_time.to_rfc3339(),
                    r.received_at.to_rfc3339(),
                    serde_json::to_string(r).unwrap()
                ],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path).unwrap();
    let orders: Vec<i64> = store
        .sqlite()
        .unwrap()
        .read(|c| {
            c.prepare("SELECT record_order FROM readings ORDER BY reading_id")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
        .await
        .unwrap();
    let expected: Vec<i64> = readings.iter().map(record_order).collect();
    assert_eq!(orders, expected);

    // Sent again by the session's gateway: every reading is a duplicate, nothing is stored.
    let gw = GatewayId::new("gw-1").unwrap();
    let (key, _) = SigningKey::generate().unwrap();
    let public = key.verifying_key();
    let bound = gw.clone();
    store
        .sqlite()
        .unwrap()
        .write(move |c| tm_provider::store::sqlite::gateways::insert(c, &bound, &public, "tm-1"))
        .await
        .unwrap();
    let outcome = resend(&store, &gw, readings.clone()).await;
    assert_eq!(outcome.inserted, 0, "{:?}", outcome.receipt);
    assert_eq!(outcome.receipt.duplicates.len(), readings.len());
}

#[tokio::test]
async fn postgres_readings_stored_before_the_ordered_key_get_the_ingests_order() {
    let db = tm_testkit::postgres::Database::create("record_order_upgrade");
    let schema = tm_provider::store::postgres::schema::MIGRATIONS;
    // The store at version 2, with readings stored as the ingest of that version did.
    db.query(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, \
         applied_at timestamptz NOT NULL DEFAULT now())",
    );
    db.query(schema[0]);
    db.query(schema[1]);
    db.query("INSERT INTO schema_migrations (version) VALUES (1), (2)");
    db.query(
        "INSERT INTO sessions (telemonitoring_id, patient_id, prescriber_id, status, \
         created_at, updated_at) VALUES ('tm-1', 'p', 'd', 'accepted', now(), now())",
    );
    let readings = readings();
    for r in &readings {
        let payload = serde_json::to_string(r).unwrap().replace('\'', "''");
        db.query(&format!(
            "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, batch_id, kind, \
             effective_time, received_at, ingested_at, payload) VALUES ('{}', 'gw-1', 'tm-1', \
             'b-1', 'body-weight', '{}', '{}', now(), '{payload}')",
            r.reading_id.as_str(),
            r.effective_time.to_rfc3339(),
            r.received_at.to_rfc3339(),
        ));
    }
    let settings = tm_provider::store::settings::PostgresSettings::new(
        format!("{}?sslmode=disable", db.url()),
        Some(db.password_file()),
        None,
        Some(2),
    )
    .unwrap();
    let store = Store::connect(&Database::Postgres(settings)).await.unwrap();
    let orders: Vec<i64> = db
        .query("SELECT record_order FROM readings ORDER BY reading_id")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let expected: Vec<i64> = readings.iter().map(record_order).collect();
    assert_eq!(orders, expected);

    // Sent again by the session's gateway: every reading is a duplicate, nothing is stored.
    let (key, _) = SigningKey::generate().unwrap();
    let hex: String = key
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    db.query(&format!(
        "INSERT INTO gateways (gateway_id, public_key, telemonitoring_id, state, enrolled_at) \
         VALUES ('gw-1', '\\x{hex}'::bytea, 'tm-1', 'active', now())"
    ));
    let outcome = resend(&store, &GatewayId::new("gw-1").unwrap(), readings.clone()).await;
    assert_eq!(outcome.inserted, 0, "{:?}", outcome.receipt);
    assert_eq!(outcome.receipt.duplicates.len(), readings.len());
}

/// Commits `readings` again as one batch of `gw` on session `tm-1`.
async fn resend(
    store: &Store,
    gw: &GatewayId,
    readings: Vec<Reading>,
) -> tm_provider::store::readings::Stored {
    let job = BatchJob::encoded(
        gw.clone(),
        "tm-1".into(),
        ReadingBatch {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: gw.clone(),
            batch_id: tm_protocol::BatchId::new("b-again").unwrap(),
            created_at: Utc::now(),
            readings,
        },
    );
    let mut outcomes = store.commit_reading_batches(vec![job]).await.unwrap();
    outcomes.pop().unwrap().expect("the gateway is bound")
}
