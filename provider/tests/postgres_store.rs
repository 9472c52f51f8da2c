//! The PostgreSQL store against a real server (a fresh database of this test binary's own):
//! migrations under the advisory lock, the store's identity, the append-only audit log, and
//! the errors a misconfigured connection gets.

use tm_provider::store::postgres::{PgStore, schema};
use tm_provider::store::settings::PostgresSettings;
use tm_testkit::postgres::Database;

fn settings(db: &Database) -> PostgresSettings {
    PostgresSettings::new(
        format!("{}?sslmode=disable", db.url()),
        Some(db.password_file()),
        None,
        Some(4),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_migrate_once_and_share_one_identity() {
    let db = Database::create("migrate");
    let settings = settings(&db);
    let starts = (0..4).map(|_| {
        let s = settings.clone();
        tokio::spawn(async move { PgStore::connect(&s).await })
    });
    let mut ids = Vec::new();
    for start in starts {
        let store = start.await.unwrap().unwrap();
        assert_eq!(
            store.schema_version().await.unwrap(),
            i32::try_from(schema::MIGRATIONS.len()).unwrap()
        );
        ids.push(store.store_id().await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one store id: {ids:?}");
    assert_eq!(ids[0].len(), 32);
    assert_eq!(
        db.query("SELECT count(*) FROM schema_migrations"),
        schema::MIGRATIONS.len().to_string(),
        "each migration recorded once"
    );
    // A restart finds nothing to do and keeps the id.
    let again = PgStore::connect(&settings).await.unwrap();
    assert_eq!(again.store_id().await.unwrap(), ids[0]);
}

#[tokio::test]
async fn a_schema_newer_than_the_provider_is_refused() {
    let db = Database::create("newer");
    let settings = settings(&db);
    PgStore::connect(&settings).await.unwrap();
    db.query("INSERT INTO schema_migrations (version) VALUES (999)");
    let err = PgStore::connect(&settings).await.unwrap_err().to_string();
    assert!(
        err.contains("version 999") && err.contains("upgrade"),
        "{err}"
    );
}

#[tokio::test]
async fn the_audit_log_is_append_only() {
    let db = Database::create("audit");
    PgStore::connect(&settings(&db)).await.unwrap();
    db.query(
        "INSERT INTO ops_audit (at, actor, action, gateway_id, detail) \
         VALUES (now(), 'ops', 'paired', 'gw-1', '{}')",
    );
    for change in [
        "UPDATE ops_audit SET actor = 'someone else'",
        "DELETE FROM ops_audit",
        "TRUNCATE ops_audit",
    ] {
        let refused = db.try_query(change).unwrap_err();
        assert!(refused.contains("append-only"), "{change}: {refused}");
    }
    assert_eq!(db.query("SELECT actor FROM ops_audit"), "ops");
}

#[tokio::test]
async fn a_reading_is_stored_once_per_session() {
    let db = Database::create("unique");
    PgStore::connect(&settings(&db)).await.unwrap();
    db.query(
        "INSERT INTO sessions VALUES ('tm-1', 'p', 'rx', 'accepted', NULL, NULL, now(), now()), \
         ('tm-2', 'p', 'rx', 'accepted', NULL, NULL, now(), now())",
    );
    let insert = |session: &str| {
        format!(
            "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, batch_id, kind, \
             effective_time, received_at, ingested_at, payload, record_order) VALUES ('r-1', 'gw', \
             '{session}', 'b', 'weight', now(), now(), now(), '{{}}', 0) ON CONFLICT DO NOTHING \
             RETURNING seq"
        )
    };
    assert!(!db.query(&insert("tm-1")).is_empty(), "stored");
    assert!(
        db.query(&insert("tm-1")).is_empty(),
        "the same reading again is not stored"
    );
    assert!(
        !db.query(&insert("tm-2")).is_empty(),
        "another session's reading is"
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    let db = Database::create("password");
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let settings = PostgresSettings::new(
        format!("{}?sslmode=disable", db.url()),
        Some(&wrong),
        None,
        Some(1),
    )
    .unwrap();
    let err = PgStore::connect(&settings).await.unwrap_err().to_string();
    assert!(err.contains(&db.url()), "names the database: {err}");
    assert!(err.contains("password"), "says what failed: {err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

#[tokio::test]
async fn tls_is_verified_against_the_configured_roots() {
    let dir = tempfile::tempdir().unwrap();
    let ca = tm_testkit::pki::TestCa::new(dir.path(), "database-ca");
    let other = tm_testkit::pki::TestCa::new(dir.path(), "someone-else");
    let db = Database::create_with_tls("tls", &ca);
    for host in ["127.0.0.1", "localhost"] {
        let url = db.url().replace("127.0.0.1", host);
        let settings = PostgresSettings::new(
            url,
            Some(db.password_file()),
            Some(ca.pem_file.clone()),
            Some(2),
        )
        .unwrap();
        let store = PgStore::connect(&settings).await.unwrap();
        let ssl: bool = store
            .client()
            .await
            .unwrap()
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ssl, "the connection to {host} is encrypted");
    }
    // `sslmode=prefer` in the URL does not let the connection fall back to plain text.
    let settings = PostgresSettings::new(
        format!("{}?sslmode=prefer", db.url()),
        Some(db.password_file()),
        Some(other.pem_file.clone()),
        Some(1),
    )
    .unwrap();
    let err = PgStore::connect(&settings).await.unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}
