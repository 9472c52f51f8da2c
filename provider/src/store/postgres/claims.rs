//! Hellos, claims and releases on PostgreSQL (see [`crate::store::claims`]).
//!
//! What the SQLite writer serializes is serialized here by row locks, whichever instance runs
//! the statements:
//! - a **hello** is one upsert (`INSERT ... ON CONFLICT (public_key) DO UPDATE`), so hellos of
//!   one key to two instances refresh one row;
//! - a **claim** locks the session row (`FOR UPDATE`, the first lock of every session change),
//!   then the code's unclaimed row (`FOR UPDATE`), then binds the gateway with the registry's
//!   upsert. A second claim of the same gateway (another nurse, another instance) waits on the
//!   unclaimed row, finds it deleted when the first commits, and then finds the gateway
//!   registered under the code: it is refused as already claimed. Two claims from one session
//!   serialize on the session row, and the second finds the session accepted;
//! - a **release** locks the gateway row (`FOR UPDATE`) before it reads the backlog, stores
//!   the command and marks the row released.

use chrono::Utc;
use tm_protocol::VerifyingKey;
use tm_protocol::claim::ClaimCode;
use tokio_postgres::GenericClient;

use super::{PgStore, audit, commands, enrollment, gateways, sessions};
use crate::hub::contract::Status;
use crate::store::StoreError;
use crate::store::audit::AuditAction;
use crate::store::claims::{
    ClaimOutcome, ClaimRequest, FORGET_MS, FRESH_MS, Hello, HelloOutcome, MAX_UNCLAIMED,
    ReleaseOutcome, ReleaseRequest,
};
use crate::store::gateways::{GatewayState, gateway_id_for};

const FORGET_OLD: &str = "DELETE FROM unclaimed_gateways WHERE last_hello_ms < $1";
const FORGET_KEY: &str = "DELETE FROM unclaimed_gateways WHERE public_key = $1";
/// A new key is stored only below the cap; a known key is refreshed whatever the count.
const UPSERT: &str = "INSERT INTO unclaimed_gateways (public_key, claim_code, agent_version, \
    first_hello_ms, last_hello_ms) SELECT $1::bytea, $2::text, $3::text, $4::bigint, $4::bigint \
    WHERE (SELECT COUNT(*) FROM unclaimed_gateways) < $5::bigint \
    OR EXISTS (SELECT 1 FROM unclaimed_gateways WHERE public_key = $1::bytea) \
    ON CONFLICT (public_key) DO UPDATE SET agent_version = excluded.agent_version, \
    last_hello_ms = excluded.last_hello_ms";
const WAITING: &str = "SELECT public_key FROM unclaimed_gateways \
    WHERE claim_code = $1 AND last_hello_ms > $2 ORDER BY last_hello_ms DESC LIMIT 1 FOR UPDATE";
const CLAIMED: &str = "SELECT EXISTS (SELECT 1 FROM gateways WHERE claim_code = $1 \
    AND state <> 'released')";
const COUNT_FAILURES: &str =
    "SELECT COUNT(*) FROM claim_failures WHERE telemonitoring_id = $1 AND at_ms > $2";
const RECORD_FAILURE: &str =
    "INSERT INTO claim_failures (telemonitoring_id, at_ms) VALUES ($1, $2)";
const FORGET_FAILURES: &str = "DELETE FROM claim_failures WHERE at_ms <= $1";
const LOCK_GATEWAY: &str = "SELECT state, telemonitoring_id FROM gateways WHERE gateway_id = $1 \
    FOR UPDATE";
const BACKLOG: &str = "SELECT backlog_depth FROM ops_gateway_health WHERE gateway_id = $1";
const RELEASE: &str = "UPDATE gateways SET state = 'released', telemonitoring_id = NULL \
    WHERE gateway_id = $1";

/// Records a hello.
pub async fn hello(pg: &PgStore, hello: &Hello) -> Result<HelloOutcome, StoreError> {
    let key = hello.public_key.as_bytes().as_slice();
    let gateway_id = gateway_id_for(&hello.public_key);
    let client = pg.client().await?;
    let state = gateways::find(&**client, gateway_id.as_str())
        .await
        .map_err(pg.sql())?
        .map(|g| g.state);
    match state {
        Some(GatewayState::Active) => {
            client
                .execute(FORGET_KEY, &[&key])
                .await
                .map_err(pg.sql())?;
            Ok(HelloOutcome::Enrolled(gateway_id))
        }
        Some(GatewayState::Revoked) => Ok(HelloOutcome::Revoked),
        Some(GatewayState::Unbound | GatewayState::Released) | None => {
            client
                .execute(FORGET_OLD, &[&(hello.at_ms - FORGET_MS)])
                .await
                .map_err(pg.sql())?;
            let code = ClaimCode::of(&hello.public_key).compact();
            let n = client
                .execute(
                    UPSERT,
                    &[
                        &key,
                        &code,
                        &hello.agent_version,
                        &hello.at_ms,
                        &MAX_UNCLAIMED,
                    ],
                )
                .await
                .map_err(pg.sql())?;
            Ok(if n == 1 {
                HelloOutcome::Unclaimed
            } else {
                HelloOutcome::Full
            })
        }
    }
}

/// Claims the gateway of a code for a session (see [`crate::store::Store::claim_gateway`]):
/// only a wrong code commits (its failure counted); every other refusal rolls back.
pub async fn claim(pg: &PgStore, request: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
    let ClaimRequest {
        telemonitoring_id: session,
        code,
        carepath,
        now_ms,
        limit,
    } = request;
    let code = code.compact();
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    match sessions::lock(&*tx, session).await.map_err(pg.sql())? {
        Some(s) if s.status == Status::Requested => {}
        _ => return Ok(ClaimOutcome::NotWaiting),
    }
    let since = now_ms - limit.window_ms;
    let failures: i64 = tx
        .query_one(COUNT_FAILURES, &[session, &since])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(pg.sql())?;
    if failures >= i64::from(limit.per_window) {
        return Ok(ClaimOutcome::RateLimited);
    }
    let waiting: Option<Vec<u8>> = tx
        .query_opt(WAITING, &[&code, &(now_ms - FRESH_MS)])
        .await
        .map_err(pg.sql())?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(pg.sql())?;
    let key = waiting.and_then(|k| VerifyingKey::from_bytes(&k).ok());
    let Some(key) = key else {
        let claimed: bool = tx
            .query_one(CLAIMED, &[&code])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(pg.sql())?;
        if claimed {
            return Ok(ClaimOutcome::AlreadyClaimed);
        }
        record_failure(&*tx, session, *now_ms, since)
            .await
            .map_err(pg.sql())?;
        tx.commit().await.map_err(pg.sql())?;
        return Ok(ClaimOutcome::NoGateway);
    };
    let gateway_id = gateway_id_for(&key);
    if !gateways::insert(&*tx, &gateway_id, &key, session)
        .await
        .map_err(pg.sql())?
    {
        return Ok(ClaimOutcome::AlreadyClaimed);
    }
    tx.execute(FORGET_KEY, &[&key.as_bytes().as_slice()])
        .await
        .map_err(pg.sql())?;
    audit::record(
        &*tx,
        Utc::now(),
        "nurse:claim-code",
        AuditAction::Claimed,
        gateway_id.as_str(),
        Some(session),
        None,
        &format!("carepath {}", carepath.id),
    )
    .await
    .map_err(pg.sql())?;
    if let Err(e) = sessions::transition(
        pg,
        &*tx,
        session,
        Status::Accepted,
        Some(carepath.clone()),
        None,
    )
    .await?
    {
        return Ok(ClaimOutcome::NotAccepted(e));
    }
    tx.commit().await.map_err(pg.sql())?;
    Ok(ClaimOutcome::Claimed(gateway_id))
}

/// Counts a wrong code against the session and in the enrollment's global window.
async fn record_failure(
    c: &impl GenericClient,
    session: &str,
    now_ms: i64,
    since: i64,
) -> Result<(), tokio_postgres::Error> {
    c.execute(FORGET_FAILURES, &[&since]).await?;
    c.execute(RECORD_FAILURE, &[&session, &now_ms]).await?;
    enrollment::record_failure(c, now_ms).await
}

/// Releases a gateway, storing its `Release` command (see
/// [`crate::store::Store::release_gateway`]).
pub async fn release(pg: &PgStore, request: &ReleaseRequest) -> Result<ReleaseOutcome, StoreError> {
    let gateway_id = request.command.gateway_id.as_str();
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let Some(row) = tx
        .query_opt(LOCK_GATEWAY, &[&gateway_id])
        .await
        .map_err(pg.sql())?
    else {
        return Ok(ReleaseOutcome::Unknown);
    };
    let state: String = row.try_get(0).map_err(pg.sql())?;
    let session: Option<String> = row.try_get(1).map_err(pg.sql())?;
    match GatewayState::parse(&state) {
        GatewayState::Released => return Ok(ReleaseOutcome::Unknown),
        GatewayState::Revoked => return Ok(ReleaseOutcome::Revoked),
        GatewayState::Active | GatewayState::Unbound => {}
    }
    let depth: Option<i64> = tx
        .query_opt(BACKLOG, &[&gateway_id])
        .await
        .map_err(pg.sql())?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(pg.sql())?;
    let depth = u64::try_from(depth.unwrap_or(0)).unwrap_or(0);
    if depth > 0 && !request.force {
        return Ok(ReleaseOutcome::Backlog(depth));
    }
    commands::insert_row(&*tx, &request.command, &request.frame, &request.issued_by)
        .await
        .map_err(pg.sql())?;
    tx.execute(RELEASE, &[&gateway_id])
        .await
        .map_err(pg.sql())?;
    let detail = match (request.force, depth) {
        (true, d) if d > 0 => format!("forced with {d} readings not yet confirmed"),
        _ => String::new(),
    };
    audit::record(
        &*tx,
        request.now,
        &request.issued_by,
        AuditAction::Released,
        gateway_id,
        session.as_deref(),
        None,
        &detail,
    )
    .await
    .map_err(pg.sql())?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(ReleaseOutcome::Released {
        telemonitoring_id: session,
    })
}
