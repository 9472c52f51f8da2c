//! Enrollment codes, redemption and failed attempts on PostgreSQL.
//!
//! The statements are the SQLite side's; what its single writer serialized is serialized here
//! by the database, whichever instance runs them:
//! - **issuing** a code ([`issue`]) locks the session row (`FOR UPDATE`) before it counts the
//!   session's codes of the last hour, retires the older ones and inserts the new one, so two
//!   instances issuing at once cannot both pass the hourly limit;
//! - **redeeming** a code ([`enroll`]) is one statement, `UPDATE ... SET used_at_ms = ..
//!   WHERE code_digest = .. AND used_at_ms IS NULL AND expires_at_ms > .. RETURNING ..`: the
//!   second of two concurrent redemptions waits for the first's row lock, re-checks the row
//!   and finds it used, so exactly one succeeds. Before it, the enrollment locks the session
//!   row the code was issued for (the code's session never changes), keeping the lock order of
//!   every session change: the session row first, then what hangs off it (the code, the
//!   gateway, the outbox row). Every refusal after the redemption rolls back, the code
//!   included;
//! - **failed attempts** are counted per minute in `enroll_failures`, with an upsert
//!   (`ON CONFLICT (minute) DO UPDATE`), so every instance counts into the same rows and the
//!   limit holds across instances and restarts.

use tm_protocol::{GatewayId, VerifyingKey};
use tokio_postgres::GenericClient;

use super::{PgStore, audit, gateways, sessions};
use crate::hub::contract::{Carepath, Status};
use crate::store::StoreError;
use crate::store::enrollment::{
    CodeRefusal, EnrollmentOutcome, EnrollmentPage, IssuedCode, digest, new_code, now_ms,
};
use crate::store::gateways::GatewayState;

const COUNT_RECENT: &str =
    "SELECT COUNT(*) FROM enrollment_codes WHERE telemonitoring_id = $1 AND issued_at_ms > $2";
const RETIRE: &str = "UPDATE enrollment_codes SET expires_at_ms = $2 WHERE telemonitoring_id = $1 \
    AND used_at_ms IS NULL AND expires_at_ms > $2";
const INSERT: &str = "INSERT INTO enrollment_codes (code_digest, telemonitoring_id, carepath_id, \
    carepath_version, issued_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)";
/// The session a code was issued for (known or not, used or not).
const CODE_SESSION: &str = "SELECT telemonitoring_id FROM enrollment_codes WHERE code_digest = $1";
/// Consumes a code in one statement: only an unused, unexpired code matches, so two
/// redemptions of one code (two requests, two provider instances) cannot both succeed.
const REDEEM: &str = "UPDATE enrollment_codes SET used_at_ms = $2 \
    WHERE code_digest = $1 AND used_at_ms IS NULL AND expires_at_ms > $2 \
    RETURNING telemonitoring_id, carepath_id, carepath_version";
const FAILURES: &str = "SELECT failures FROM enroll_failures WHERE minute = $1";
const COUNT_FAILURE: &str = "INSERT INTO enroll_failures (minute, failures) VALUES ($1, 1) \
    ON CONFLICT (minute) DO UPDATE SET failures = enroll_failures.failures + 1";
const DROP_OLD_FAILURES: &str = "DELETE FROM enroll_failures WHERE minute < $1";
const PAGE: &str = "SELECT s.telemonitoring_id, s.patient_id, s.status FROM prescriptions p \
    JOIN sessions s ON s.telemonitoring_id = p.telemonitoring_id WHERE p.page_token = $1";

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// Issues a code for a session, or says why not, in one transaction under the session's row
/// lock (see [`crate::store::Store::issue_enrollment_code`]).
pub async fn issue(
    pg: &PgStore,
    telemonitoring_id: &str,
    carepath: &Carepath,
    ttl_ms: i64,
    per_hour: u32,
) -> Result<Result<IssuedCode, CodeRefusal>, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    sessions::lock(&*tx, telemonitoring_id)
        .await
        .map_err(pg.sql())?;
    let issued = issue_locked(&*tx, telemonitoring_id, carepath, ttl_ms, per_hour)
        .await
        .map_err(pg.sql())?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(issued)
}

/// The statements of [`issue`], under the session's lock.
async fn issue_locked(
    c: &impl GenericClient,
    telemonitoring_id: &str,
    carepath: &Carepath,
    ttl_ms: i64,
    per_hour: u32,
) -> Result<Result<IssuedCode, CodeRefusal>, tokio_postgres::Error> {
    let now = now_ms();
    let recent: i64 = c
        .query_one(COUNT_RECENT, &[&telemonitoring_id, &(now - HOUR_MS)])
        .await?
        .try_get(0)?;
    if recent >= i64::from(per_hour) {
        return Ok(Err(CodeRefusal::TooMany));
    }
    c.execute(RETIRE, &[&telemonitoring_id, &now]).await?;
    let code = new_code();
    let expires = now + ttl_ms;
    c.execute(
        INSERT,
        &[
            &digest(&code),
            &telemonitoring_id,
            &carepath.id,
            &carepath.version,
            &now,
            &expires,
        ],
    )
    .await?;
    Ok(Ok(IssuedCode {
        code,
        expires_at_ms: expires,
    }))
}

/// Consumes a code: the session and carepath it was issued for, if valid, unused, unexpired.
async fn redeem(
    c: &impl GenericClient,
    code_digest: &str,
) -> Result<Option<(String, Carepath)>, tokio_postgres::Error> {
    let Some(r) = c.query_opt(REDEEM, &[&code_digest, &now_ms()]).await? else {
        return Ok(None);
    };
    Ok(Some((
        r.try_get(0)?,
        Carepath {
            id: r.try_get(1)?,
            version: r.try_get(2)?,
        },
    )))
}

/// Whether another attempt may be tried at `now_ms`: fewer than `limit` failures this minute.
pub async fn allows(pg: &PgStore, limit: u32, now_ms: i64) -> Result<bool, StoreError> {
    let c = pg.client().await?;
    let failures: Option<i64> = c
        .query_opt(FAILURES, &[&now_ms.div_euclid(MINUTE_MS)])
        .await
        .map_err(pg.sql())?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(pg.sql())?;
    Ok(failures.unwrap_or(0) < i64::from(limit))
}

/// Records a failed attempt at `now_ms` (in the caller's transaction); minutes before the last
/// one are dropped.
pub(crate) async fn record_failure(
    c: &impl GenericClient,
    now_ms: i64,
) -> Result<(), tokio_postgres::Error> {
    let minute = now_ms.div_euclid(MINUTE_MS);
    c.execute(COUNT_FAILURE, &[&minute]).await?;
    c.execute(DROP_OLD_FAILURES, &[&(minute - 1)]).await?;
    Ok(())
}

/// The enrollment transaction (see [`crate::store::Store::enroll_gateway`]): only a bad code
/// commits (its failure counted); every other refusal rolls back, so the code stays usable.
pub async fn enroll(
    pg: &PgStore,
    code: &str,
    gw: &GatewayId,
    key: &VerifyingKey,
) -> Result<EnrollmentOutcome, StoreError> {
    let code_digest = digest(code);
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    // The session row first, as every session change does (nothing when the code is unknown).
    let issued_for: Option<String> = tx
        .query_opt(CODE_SESSION, &[&code_digest])
        .await
        .map_err(pg.sql())?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(pg.sql())?;
    let session = match &issued_for {
        Some(id) => sessions::lock(&*tx, id).await.map_err(pg.sql())?,
        None => None,
    };
    let Some((session_id, carepath)) = redeem(&*tx, &code_digest).await.map_err(pg.sql())? else {
        record_failure(&*tx, now_ms()).await.map_err(pg.sql())?;
        tx.commit().await.map_err(pg.sql())?;
        return Ok(EnrollmentOutcome::BadCode);
    };
    if gateways::find(&*tx, gw.as_str())
        .await
        .map_err(pg.sql())?
        .is_some_and(|g| g.state != GatewayState::Released)
    {
        return Ok(EnrollmentOutcome::AlreadyEnrolled);
    }
    match session {
        Some(s) if s.status == Status::Requested => {}
        _ => return Ok(EnrollmentOutcome::NotWaiting),
    }
    // Another instance may have registered the same gateway id since the lookup.
    if !gateways::insert(&*tx, gw, key, &session_id)
        .await
        .map_err(pg.sql())?
    {
        return Ok(EnrollmentOutcome::AlreadyEnrolled);
    }
    audit::record_enrollment(&*tx, gw.as_str(), &session_id, &carepath.id)
        .await
        .map_err(pg.sql())?;
    if let Err(e) = sessions::transition(
        pg,
        &*tx,
        &session_id,
        Status::Accepted,
        Some(carepath),
        None,
    )
    .await?
    {
        return Ok(EnrollmentOutcome::NotAccepted(e));
    }
    tx.commit().await.map_err(pg.sql())?;
    Ok(EnrollmentOutcome::Enrolled)
}

/// The session of the enrollment page `token`.
pub async fn page(pg: &PgStore, token: &str) -> Result<Option<EnrollmentPage>, StoreError> {
    let c = pg.client().await?;
    let Some(r) = c.query_opt(PAGE, &[&token]).await.map_err(pg.sql())? else {
        return Ok(None);
    };
    let page = || {
        let status: String = r.try_get(2)?;
        Ok::<_, tokio_postgres::Error>(EnrollmentPage {
            telemonitoring_id: r.try_get(0)?,
            patient_id: r.try_get(1)?,
            status: Status::parse(&status).unwrap_or(Status::Cancelled),
        })
    };
    page().map(Some).map_err(pg.sql())
}
