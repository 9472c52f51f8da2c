//! A gateway registered directly in a provider's store, as after its enrollment: an accepted
//! session `tm-1` and the gateway's key on it.

#![allow(dead_code)]

use std::path::Path;

use tm_protocol::{GatewayId, VerifyingKey};

/// Registers `gateway` with `key` on the accepted session `tm-1` of the store at `database`.
pub async fn register(database: &Path, gateway: &GatewayId, key: &VerifyingKey) {
    let db = tm_provider::db::Db::open(database).unwrap();
    let (gw, public) = (gateway.clone(), *key);
    db.write(move |c| {
        tm_testkit::store::accepted_session(c, "tm-1")?;
        tm_provider::gateways::insert(c, &gw, &public, "tm-1")
    })
    .await
    .unwrap();
}
