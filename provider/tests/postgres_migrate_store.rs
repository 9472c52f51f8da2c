//! Moving a SQLite store to PostgreSQL (`tm-provider migrate-store`), against a real server:
//! every table of the current SQLite schema has its place in the PostgreSQL one, rows arrive
//! with their counts checked, readings keep their place (`rowid` becomes `seq`), identities
//! continue after the copied rows, the store keeps its id, and a target that is not empty or a
//! source the PostgreSQL schema cannot hold is refused with nothing written.

mod registry;

use std::path::Path;

use tm_provider::store::Store;
use tm_provider::store::transfer::{self, TransferError};
use tm_testkit::postgres::Database as TestDatabase;

async fn postgres(db: &TestDatabase) -> Store {
    registry::postgres(db, 4).await
}

fn sqlite_store(path: &Path) -> String {
    let store = Store::open(path).unwrap();
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| rt.block_on(store.store_id())).unwrap()
}

fn execute(path: &Path, sql: &str) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

const NOW: &str = "2026-12-03T10:00:00.250+00:00";

/// A session with two readings (row ids 7 and 9: a gap, as after a pruned row), a gateway, an
/// outbox row and an audit entry.
fn populate(path: &Path) {
    execute(
        path,
        &format!(
            "INSERT INTO sessions VALUES ('tm-1', 'p-1', 'rx-1', 'accepted', 'hf', '1', '{NOW}', '{NOW}');
             INSERT INTO gateways (gateway_id, public_key, telemonitoring_id, state, enrolled_at)
                 VALUES ('gw-1', X'{key}', 'tm-1', 'active', '{NOW}');
             INSERT INTO readings (rowid, reading_id, gateway_id, telemonitoring_id, batch_id, kind,
                 effective_time, received_at, ingested_at, payload, record_order)
                 VALUES (7, 'r-1', 'gw-1', 'tm-1', 'b-1', 'weight', '{NOW}', '{NOW}', '{NOW}', '{{}}', 1),
                        (9, 'r-2', 'gw-1', 'tm-1', 'b-1', 'weight', '{NOW}', '{NOW}', '{NOW}', '{{}}', 2);
             INSERT INTO hub_outbox (telemonitoring_id, body, created_at) VALUES ('tm-1', '{{}}', '{NOW}');
             INSERT INTO ops_audit (at, actor, action, gateway_id, detail)
                 VALUES ('{NOW}', 'ops', 'revoke', 'gw-1', 'test');",
            key = "ab".repeat(32)
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_of_an_empty_store_has_its_place_in_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provider.db");
    let id = sqlite_store(&file);
    let db = TestDatabase::create("transfer_empty");
    let pg = postgres(&db).await;
    let copied = transfer::sqlite_to_postgres(&file, pg.postgres().unwrap())
        .await
        .unwrap();
    assert_eq!(copied.tables.len(), transfer::TABLES.len());
    assert!(copied.tables.iter().all(|(_, n)| *n == 0));
    assert_eq!(copied.store_id, id);
    assert_eq!(pg.store_id().await.unwrap(), id, "the store keeps its id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_arrive_counted_in_their_place_and_identities_continue() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provider.db");
    let id = sqlite_store(&file);
    populate(&file);
    let db = TestDatabase::create("transfer_rows");
    let pg = postgres(&db).await;
    let copied = transfer::sqlite_to_postgres(&file, pg.postgres().unwrap())
        .await
        .unwrap();
    let count = |table: &str| {
        copied
            .tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, n)| *n)
    };
    assert_eq!(count("readings"), Some(2));
    assert_eq!(count("sessions"), Some(1));
    assert_eq!(count("hub_outbox"), Some(1));
    assert_eq!(count("ops_audit"), Some(1));
    assert_eq!(pg.store_id().await.unwrap(), id);
    assert_eq!(
        db.query("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM readings"),
        "7,9",
        "a reading's row id is its seq"
    );
    assert_eq!(
        db.query(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') FROM sessions"
        ),
        "2026-12-03 10:00:00.250"
    );
    assert_eq!(
        db.query("SELECT encode(public_key, 'hex') FROM gateways"),
        "ab".repeat(32)
    );
    // New rows continue after the copied ones.
    db.query(
        "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, batch_id, kind, \
         effective_time, received_at, ingested_at, payload, record_order) \
         VALUES ('r-3', 'gw-1', 'tm-1', 'b-2', 'weight', now(), now(), now(), '{}', 3)",
    );
    assert_eq!(
        db.query("SELECT seq FROM readings WHERE reading_id = 'r-3'"),
        "10"
    );
    db.query(
        "INSERT INTO ops_audit (at, actor, action, gateway_id, detail) \
         VALUES (now(), 'ops', 'x', 'gw-1', 'y')",
    );
    assert_eq!(db.query("SELECT max(seq) FROM ops_audit"), "2");

    // A second copy into the same store is refused: it is not empty any more.
    let again = transfer::sqlite_to_postgres(&file, pg.postgres().unwrap()).await;
    assert!(
        matches!(again, Err(TransferError::NotEmpty { .. })),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_postgresql_cannot_hold_stops_the_copy_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provider.db");
    sqlite_store(&file);
    populate(&file);
    execute(&file, "ALTER TABLE ops_devices ADD COLUMN colour TEXT");
    let db = TestDatabase::create("transfer_refused");
    let pg = postgres(&db).await;
    let err = transfer::sqlite_to_postgres(&file, pg.postgres().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ops_devices.colour"), "{err}");
    assert_eq!(db.query("SELECT count(*) FROM sessions"), "0");

    // A value that is not what its column holds: named by table, row and column, no value.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provider.db");
    sqlite_store(&file);
    populate(&file);
    execute(&file, "UPDATE hub_outbox SET created_at = 'secret-text'");
    let db = TestDatabase::create("transfer_value");
    let pg = postgres(&db).await;
    let err = transfer::sqlite_to_postgres(&file, pg.postgres().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hub_outbox") && err.contains("created_at") && err.contains("row 1"),
        "{err}"
    );
    assert!(!err.contains("secret-text"), "no value in the error: {err}");
    assert_eq!(
        db.query("SELECT count(*) FROM readings"),
        "0",
        "rolled back"
    );
}
