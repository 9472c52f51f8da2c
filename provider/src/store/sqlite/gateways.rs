//! The gateway registry's statements on SQLite.

use rusqlite::{OptionalExtension as _, params};
use tm_protocol::{GatewayId, VerifyingKey};

use crate::store::gateways::{Gateway, GatewayState};

/// Binds a gateway to a session: a new key is inserted, a released gateway bound again; any
/// other row is left alone (no row changed).
const BIND: &str = "INSERT INTO gateways (gateway_id, public_key, telemonitoring_id, state, \
    enrolled_at, claim_code) VALUES (?1, ?2, ?3, 'active', ?4, ?5) \
    ON CONFLICT (gateway_id) DO UPDATE SET state = 'active', \
    telemonitoring_id = excluded.telemonitoring_id, enrolled_at = excluded.enrolled_at, \
    revoked_at = NULL, setup_done_at = NULL, claim_code = excluded.claim_code \
    WHERE gateways.state = 'released'";
const SELECT_ONE: &str =
    "SELECT gateway_id, public_key, telemonitoring_id, state FROM gateways WHERE gateway_id = ?1";
const SET_STATE: &str = "UPDATE gateways SET state = ?2, revoked_at = CASE WHEN ?2 = 'revoked' \
                         THEN ?3 ELSE revoked_at END WHERE gateway_id = ?1";

/// Registers a gateway bound to `telemonitoring_id` (which must exist in `sessions`), or
/// binds a released one again; false when a gateway of that id is registered and not
/// released (nothing changed).
pub fn bind(
    conn: &rusqlite::Connection,
    gateway_id: &GatewayId,
    key: &VerifyingKey,
    telemonitoring_id: &str,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        BIND,
        params![
            gateway_id.as_str(),
            key.as_bytes().as_slice(),
            telemonitoring_id,
            chrono::Utc::now().to_rfc3339(),
            tm_protocol::claim::ClaimCode::of(key).compact()
        ],
    )?;
    Ok(n == 1)
}

/// Registers a new gateway bound to `telemonitoring_id` (tests and tools; enrollment binds
/// with [`bind`]).
pub fn insert(
    conn: &rusqlite::Connection,
    gateway_id: &GatewayId,
    key: &VerifyingKey,
    telemonitoring_id: &str,
) -> rusqlite::Result<()> {
    if bind(conn, gateway_id, key, telemonitoring_id)? {
        Ok(())
    } else {
        Err(rusqlite::Error::StatementChangedRows(0))
    }
}

/// Looks a gateway up by id.
pub fn find(conn: &rusqlite::Connection, gateway_id: &str) -> rusqlite::Result<Option<Gateway>> {
    conn.query_row(SELECT_ONE, params![gateway_id], |r| {
        let id: String = r.get(0)?;
        let key: Vec<u8> = r.get(1)?;
        let state: String = r.get(3)?;
        Ok((id, key, r.get::<_, Option<String>>(2)?, state))
    })
    .optional()
    .map(|row| {
        row.and_then(|(id, key, session, state)| {
            Some(Gateway {
                gateway_id: GatewayId::new(id).ok()?,
                public_key: VerifyingKey::from_bytes(&key).ok()?,
                telemonitoring_id: session,
                state: GatewayState::parse(&state),
            })
        })
    })
}

/// Changes a gateway's state.
pub fn set_state(
    conn: &rusqlite::Connection,
    gateway_id: &GatewayId,
    state: GatewayState,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        SET_STATE,
        params![
            gateway_id.as_str(),
            state.as_str(),
            chrono::Utc::now().to_rfc3339()
        ],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use tm_protocol::SigningKey;

    #[tokio::test]
    async fn insert_find_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        let (key, _) = SigningKey::generate().unwrap();
        let public = key.verifying_key();
        let gw = GatewayId::new("gw-1").unwrap();
        let gw2 = gw.clone();
        store
            .sqlite().expect("a SQLite store")
            .write(move |c| {
                c.execute(
                    "INSERT INTO sessions VALUES ('tm-1','p-1','rx-1','accepted',NULL,NULL,'t','t')",
                    [],
                )?;
                insert(c, &gw2, &public, "tm-1")
            })
            .await
            .unwrap();
        let found = store.gateway("gw-1").await.unwrap().unwrap();
        assert_eq!(found.public_key, public);
        assert_eq!(found.state, GatewayState::Active);
        assert!(store.gateway("gw-2").await.unwrap().is_none());
        assert!(
            store
                .set_gateway_state(&gw, GatewayState::Revoked)
                .await
                .unwrap()
        );
        assert_eq!(
            store.gateway("gw-1").await.unwrap().unwrap().state,
            GatewayState::Revoked
        );
    }
}
