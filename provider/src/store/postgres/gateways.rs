//! The gateway registry's statements on PostgreSQL.
//!
//! A gateway row is written by its enrollment (in the enrollment transaction, under the
//! session's row lock: see [`super::enrollment`]) and changed by single statements: a state
//! change is one `UPDATE`, and the gateways of an ending session are unbound by one `UPDATE`
//! in the transaction of the session's final move. The registration is an
//! `INSERT ... ON CONFLICT (gateway_id) DO UPDATE ... WHERE state = 'released'`: when two
//! instances enroll the same gateway id at once, the second finds it registered instead of
//! failing on the key, and a released gateway is bound again by exactly one of them. A key
//! registered under another id still fails, as on SQLite (the key is unique).
//!
//! Records are the SQLite side's: a row whose id or key does not parse is not a gateway.

use tm_protocol::{GatewayId, VerifyingKey};
use tokio_postgres::{GenericClient, Row};

use super::PgStore;
use crate::store::StoreError;
use crate::store::gateways::{Gateway, GatewayState};

/// Binds a gateway to a session: a new key is inserted, a released gateway bound again (the
/// conflicting row is locked and re-checked first, so two instances cannot both bind it);
/// any other row is left alone (no row changed).
const INSERT: &str = "INSERT INTO gateways (gateway_id, public_key, telemonitoring_id, state, \
    enrolled_at, claim_code) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (gateway_id) \
    DO UPDATE SET state = 'active', telemonitoring_id = excluded.telemonitoring_id, \
    enrolled_at = excluded.enrolled_at, revoked_at = NULL, setup_done_at = NULL, \
    claim_code = excluded.claim_code WHERE gateways.state = 'released'";
const SELECT_ONE: &str =
    "SELECT gateway_id, public_key, telemonitoring_id, state FROM gateways WHERE gateway_id = $1";
const SET_STATE: &str = "UPDATE gateways SET state = $2::text, revoked_at = CASE WHEN \
    $2::text = 'revoked' THEN $3::timestamptz ELSE revoked_at END WHERE gateway_id = $1";
const UNBIND_SESSION: &str = "UPDATE gateways SET state = 'unbound' \
    WHERE telemonitoring_id = $1 AND state = 'active'";

/// Registers a gateway bound to `telemonitoring_id` (which must exist in `sessions`), or binds
/// a released one again; false when a gateway of that id is registered and not released
/// (nothing changed).
pub async fn insert(
    c: &impl GenericClient,
    gateway_id: &GatewayId,
    key: &VerifyingKey,
    telemonitoring_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            INSERT,
            &[
                &gateway_id.as_str(),
                &key.as_bytes().as_slice(),
                &telemonitoring_id,
                &GatewayState::Active.as_str(),
                &chrono::Utc::now(),
                &tm_protocol::claim::ClaimCode::of(key).compact(),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Looks a gateway up by id.
pub async fn find(
    c: &impl GenericClient,
    gateway_id: &str,
) -> Result<Option<Gateway>, tokio_postgres::Error> {
    c.query_opt(SELECT_ONE, &[&gateway_id])
        .await?
        .map_or(Ok(None), |r| gateway(&r))
}

/// The gateway of a row; `None` when its id or key does not parse.
fn gateway(r: &Row) -> Result<Option<Gateway>, tokio_postgres::Error> {
    let id: String = r.try_get(0)?;
    let key: &[u8] = r.try_get(1)?;
    let state: &str = r.try_get(3)?;
    let (Ok(gateway_id), Ok(public_key)) = (GatewayId::new(id), VerifyingKey::from_bytes(key))
    else {
        return Ok(None);
    };
    Ok(Some(Gateway {
        gateway_id,
        public_key,
        telemonitoring_id: r.try_get(2)?,
        state: GatewayState::parse(state),
    }))
}

/// Changes a gateway's state; false when no such gateway is enrolled.
pub async fn set_state(
    c: &impl GenericClient,
    gateway_id: &GatewayId,
    state: GatewayState,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            SET_STATE,
            &[&gateway_id.as_str(), &state.as_str(), &chrono::Utc::now()],
        )
        .await?;
    Ok(n == 1)
}

/// Unbinds the active gateways of a session that ended (in the transaction of its final move).
pub async fn unbind_session(
    c: &impl GenericClient,
    telemonitoring_id: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute(UNBIND_SESSION, &[&telemonitoring_id]).await?;
    Ok(())
}

/// [`crate::store::Store::gateway`] on a pooled connection (the ingest looks every frame's
/// signer up: the statement is prepared once per connection).
pub async fn lookup(pg: &PgStore, gateway_id: &str) -> Result<Option<Gateway>, StoreError> {
    let c = pg.client().await?;
    let stmt = c.prepare_cached(SELECT_ONE).await.map_err(pg.sql())?;
    c.query_opt(&stmt, &[&gateway_id])
        .await
        .map_err(pg.sql())?
        .map_or(Ok(None), |r| gateway(&r))
        .map_err(pg.sql())
}

/// [`crate::store::Store::set_gateway_state`]: one statement.
pub async fn change_state(
    pg: &PgStore,
    gateway_id: &GatewayId,
    state: GatewayState,
) -> Result<bool, StoreError> {
    let c = pg.client().await?;
    set_state(&**c, gateway_id, state).await.map_err(pg.sql())
}
