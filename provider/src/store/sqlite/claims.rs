//! Hellos, claims and releases on SQLite (see [`crate::store::claims`]). Each is one
//! transaction on the single writer, so a claim, a hello and a release of one gateway never
//! interleave.

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::VerifyingKey;
use tm_protocol::claim::ClaimCode;

use crate::hub::contract::Status;
use crate::store::audit::AuditAction;
use crate::store::claims::{
    ClaimOutcome, ClaimRequest, FORGET_MS, FRESH_MS, Hello, HelloOutcome, MAX_UNCLAIMED,
    ReleaseOutcome, ReleaseRequest,
};
use crate::store::gateways::{GatewayState, gateway_id_for};

const FORGET_OLD: &str = "DELETE FROM unclaimed_gateways WHERE last_hello_ms < ?1";
const FORGET_KEY: &str = "DELETE FROM unclaimed_gateways WHERE public_key = ?1";
/// A new key is stored only below the cap; a known key is refreshed whatever the count.
const UPSERT: &str = "INSERT INTO unclaimed_gateways (public_key, claim_code, agent_version, \
    first_hello_ms, last_hello_ms) SELECT ?1, ?2, ?3, ?4, ?4 \
    WHERE (SELECT COUNT(*) FROM unclaimed_gateways) < ?5 \
    OR EXISTS (SELECT 1 FROM unclaimed_gateways WHERE public_key = ?1) \
    ON CONFLICT (public_key) DO UPDATE SET agent_version = excluded.agent_version, \
    last_hello_ms = excluded.last_hello_ms";
const WAITING: &str = "SELECT public_key FROM unclaimed_gateways \
    WHERE claim_code = ?1 AND last_hello_ms > ?2 ORDER BY last_hello_ms DESC LIMIT 1";
const CLAIMED: &str = "SELECT EXISTS (SELECT 1 FROM gateways WHERE claim_code = ?1 \
    AND state <> 'released')";
const COUNT_FAILURES: &str =
    "SELECT COUNT(*) FROM claim_failures WHERE telemonitoring_id = ?1 AND at_ms > ?2";
const RECORD_FAILURE: &str =
    "INSERT INTO claim_failures (telemonitoring_id, at_ms) VALUES (?1, ?2)";
const FORGET_FAILURES: &str = "DELETE FROM claim_failures WHERE at_ms <= ?1";
const BACKLOG: &str = "SELECT backlog_depth FROM ops_gateway_health WHERE gateway_id = ?1";
const RELEASE: &str = "UPDATE gateways SET state = 'released', telemonitoring_id = NULL \
    WHERE gateway_id = ?1";

/// Records a hello.
pub fn hello(conn: &mut Connection, hello: &Hello) -> rusqlite::Result<HelloOutcome> {
    let key = hello.public_key.as_bytes().as_slice();
    let gateway_id = gateway_id_for(&hello.public_key);
    let tx = conn.transaction()?;
    let outcome = match super::gateways::find(&tx, gateway_id.as_str())?.map(|g| g.state) {
        Some(GatewayState::Active) => {
            // A hello stored while the claim committed: the gateway is not unclaimed any more.
            tx.execute(FORGET_KEY, params![key])?;
            HelloOutcome::Enrolled(gateway_id)
        }
        Some(GatewayState::Revoked) => HelloOutcome::Revoked,
        Some(GatewayState::Unbound | GatewayState::Released) | None => {
            tx.execute(FORGET_OLD, params![hello.at_ms - FORGET_MS])?;
            let code = ClaimCode::of(&hello.public_key).compact();
            let n = tx.execute(
                UPSERT,
                params![key, code, hello.agent_version, hello.at_ms, MAX_UNCLAIMED],
            )?;
            if n == 1 {
                HelloOutcome::Unclaimed
            } else {
                HelloOutcome::Full
            }
        }
    };
    tx.commit()?;
    Ok(outcome)
}

/// Claims the gateway of a code for a session (see [`crate::store::Store::claim_gateway`]):
/// only a wrong code commits (its failure counted); every other refusal rolls back.
pub fn claim(conn: &mut Connection, request: &ClaimRequest) -> rusqlite::Result<ClaimOutcome> {
    let ClaimRequest {
        telemonitoring_id: session,
        code,
        carepath,
        now_ms,
        limit,
    } = request;
    let code = code.compact();
    let tx = conn.transaction()?;
    match super::sessions::find(&tx, session)? {
        Some(s) if s.status == Status::Requested => {}
        _ => return Ok(ClaimOutcome::NotWaiting),
    }
    let failures: i64 = tx.query_row(
        COUNT_FAILURES,
        params![session, now_ms - limit.window_ms],
        |r| r.get(0),
    )?;
    if failures >= i64::from(limit.per_window) {
        return Ok(ClaimOutcome::RateLimited);
    }
    let waiting: Option<Vec<u8>> = tx
        .query_row(WAITING, params![code, now_ms - FRESH_MS], |r| r.get(0))
        .optional()?;
    let key = waiting.and_then(|k| VerifyingKey::from_bytes(&k).ok());
    let Some(key) = key else {
        if tx.query_row(CLAIMED, params![code], |r| r.get::<_, bool>(0))? {
            return Ok(ClaimOutcome::AlreadyClaimed);
        }
        tx.execute(FORGET_FAILURES, params![now_ms - limit.window_ms])?;
        tx.execute(RECORD_FAILURE, params![session, now_ms])?;
        super::enrollment::record_failure(&tx, *now_ms)?;
        tx.commit()?;
        return Ok(ClaimOutcome::NoGateway);
    };
    let gateway_id = gateway_id_for(&key);
    if !super::gateways::bind(&tx, &gateway_id, &key, session)? {
        return Ok(ClaimOutcome::AlreadyClaimed);
    }
    tx.execute(FORGET_KEY, params![key.as_bytes().as_slice()])?;
    super::audit::record(
        &tx,
        Utc::now(),
        "nurse:claim-code",
        AuditAction::Claimed,
        gateway_id.as_str(),
        Some(session),
        None,
        &format!("carepath {}", carepath.id),
    )?;
    if let Err(e) =
        super::sessions::transition(&tx, session, Status::Accepted, Some(carepath.clone()), None)?
    {
        return Ok(ClaimOutcome::NotAccepted(e));
    }
    tx.commit()?;
    Ok(ClaimOutcome::Claimed(gateway_id))
}

/// Releases a gateway, storing its `Release` command (see
/// [`crate::store::Store::release_gateway`]).
pub fn release(
    conn: &mut Connection,
    request: &ReleaseRequest,
) -> rusqlite::Result<ReleaseOutcome> {
    let gateway_id = &request.command.gateway_id;
    let tx = conn.transaction()?;
    let Some(gateway) = super::gateways::find(&tx, gateway_id.as_str())? else {
        return Ok(ReleaseOutcome::Unknown);
    };
    match gateway.state {
        GatewayState::Released => return Ok(ReleaseOutcome::Unknown),
        GatewayState::Revoked => return Ok(ReleaseOutcome::Revoked),
        GatewayState::Active | GatewayState::Unbound => {}
    }
    let depth: Option<i64> = tx
        .query_row(BACKLOG, params![gateway_id.as_str()], |r| r.get(0))
        .optional()?;
    let depth = u64::try_from(depth.unwrap_or(0)).unwrap_or(0);
    if depth > 0 && !request.force {
        return Ok(ReleaseOutcome::Backlog(depth));
    }
    super::commands::insert_row(&tx, &request.command, &request.frame, &request.issued_by)?;
    tx.execute(RELEASE, params![gateway_id.as_str()])?;
    let detail = match (request.force, depth) {
        (true, d) if d > 0 => format!("forced with {d} readings not yet confirmed"),
        _ => String::new(),
    };
    super::audit::record(
        &tx,
        request.now,
        &request.issued_by,
        AuditAction::Released,
        gateway_id.as_str(),
        gateway.telemonitoring_id.as_deref(),
        None,
        &detail,
    )?;
    tx.commit()?;
    Ok(ReleaseOutcome::Released {
        telemonitoring_id: gateway.telemonitoring_id,
    })
}
