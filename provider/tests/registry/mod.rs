//! A gateway registered directly in a provider's store, as after its enrollment: an accepted
//! session `tm-1` and the gateway's key on it.

#![allow(dead_code)]

use tm_protocol::{GatewayId, VerifyingKey};
use tm_provider::store::{Database, Store};
use tm_testkit::backend::TestStore;

/// Opens `store` as the provider does (creating and migrating it when new).
pub async fn open(store: &TestStore) -> Store {
    match store {
        TestStore::Sqlite(path) => Store::connect(&Database::Sqlite(path.clone()))
            .await
            .unwrap(),
        TestStore::Postgres(db) => postgres(db, 4).await,
    }
}

/// The store of a PostgreSQL test database, as one provider instance opens it (a pool of
/// `pool_size`, migrations applied); each call is another instance.
pub async fn postgres(db: &tm_testkit::postgres::Database, pool_size: usize) -> Store {
    let settings = tm_provider::store::settings::PostgresSettings::new(
        format!("{}?sslmode=disable", db.url()),
        Some(db.password_file()),
        None,
        Some(pool_size),
    )
    .unwrap();
    Store::connect(&Database::Postgres(settings)).await.unwrap()
}

/// Registers `gateway` with `key` on the accepted session `tm-1` of `store`, creating the
/// store when it is new.
pub async fn register(store: &TestStore, gateway: &GatewayId, key: &VerifyingKey) {
    drop(open(store).await);
    store.insert_session(&tm_testkit::store::Session::accepted("tm-1"));
    store.insert_gateway(gateway.as_str(), key.as_bytes(), "tm-1");
}
