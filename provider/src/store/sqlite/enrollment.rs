//! Enrollment's statements on SQLite: codes, failed attempts, the enrollment transaction and
//! the enrollment page's session.

use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::{GatewayId, VerifyingKey};

use crate::hub::contract::{Carepath, Status};
use crate::store::enrollment::{
    CodeRefusal, EnrollmentOutcome, EnrollmentPage, IssuedCode, digest, new_code, now_ms,
};
use crate::store::gateways::GatewayState;

const COUNT_RECENT: &str =
    "SELECT COUNT(*) FROM enrollment_codes WHERE telemonitoring_id = ?1 AND issued_at_ms > ?2";
const RETIRE: &str = "UPDATE enrollment_codes SET expires_at_ms = ?2 WHERE telemonitoring_id = ?1 \
                      AND used_at_ms IS NULL AND expires_at_ms > ?2";
const INSERT: &str = "INSERT INTO enrollment_codes (code_digest, telemonitoring_id, carepath_id, \
                      carepath_version, issued_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
/// Consumes a code in one statement: only an unused, unexpired code matches, so two redemptions
/// of one code (two requests, two provider instances) cannot both succeed.
const REDEEM: &str = "UPDATE enrollment_codes SET used_at_ms = ?2 \
    WHERE code_digest = ?1 AND used_at_ms IS NULL AND expires_at_ms > ?2 \
    RETURNING telemonitoring_id, carepath_id, carepath_version";
const PAGE: &str = "SELECT s.telemonitoring_id, s.patient_id, s.status FROM prescriptions p \
                    JOIN sessions s ON s.telemonitoring_id = p.telemonitoring_id \
                    WHERE p.page_token = ?1";

const MINUTE_MS: i64 = 60_000;

/// Issues a code for a session, or says why not.
pub fn issue(
    conn: &Connection,
    telemonitoring_id: &str,
    carepath: &Carepath,
    ttl_ms: i64,
    per_hour: u32,
) -> rusqlite::Result<Result<IssuedCode, CodeRefusal>> {
    let now = now_ms();
    let recent: i64 = conn.query_row(
        COUNT_RECENT,
        params![telemonitoring_id, now - 3_600_000],
        |r| r.get(0),
    )?;
    if recent >= i64::from(per_hour) {
        return Ok(Err(CodeRefusal::TooMany));
    }
    conn.execute(RETIRE, params![telemonitoring_id, now])?;
    let code = new_code();
    let expires = now + ttl_ms;
    conn.execute(
        INSERT,
        params![
            digest(&code),
            telemonitoring_id,
            carepath.id,
            carepath.version,
            now,
            expires
        ],
    )?;
    Ok(Ok(IssuedCode {
        code,
        expires_at_ms: expires,
    }))
}

/// Consumes a code: the session and carepath it was issued for, if valid, unused, unexpired.
pub fn redeem(conn: &Connection, code: &str) -> rusqlite::Result<Option<(String, Carepath)>> {
    conn.query_row(REDEEM, params![digest(code), now_ms()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Carepath {
                id: r.get(1)?,
                version: r.get(2)?,
            },
        ))
    })
    .optional()
}

/// Whether another attempt may be tried at `now_ms`: fewer than `limit` failures this minute.
pub fn allows(conn: &Connection, limit: u32, now_ms: i64) -> rusqlite::Result<bool> {
    let failures: Option<i64> = conn
        .query_row(
            "SELECT failures FROM enroll_failures WHERE minute = ?1",
            [now_ms.div_euclid(MINUTE_MS)],
            |r| r.get(0),
        )
        .optional()?;
    Ok(failures.unwrap_or(0) < i64::from(limit))
}

/// Records a failed attempt at `now_ms` (in the caller's transaction); minutes before the last
/// one are dropped.
pub fn record_failure(conn: &Connection, now_ms: i64) -> rusqlite::Result<()> {
    let minute = now_ms.div_euclid(MINUTE_MS);
    conn.execute(
        "INSERT INTO enroll_failures (minute, failures) VALUES (?1, 1) \
         ON CONFLICT (minute) DO UPDATE SET failures = enroll_failures.failures + 1",
        [minute],
    )?;
    conn.execute(
        "DELETE FROM enroll_failures WHERE minute < ?1",
        params![minute - 1],
    )?;
    Ok(())
}

/// The enrollment transaction (see [`crate::store::Store::enroll_gateway`]): only a bad code
/// commits (its failure counted); every other refusal rolls back, so the code stays usable.
pub fn enroll(
    c: &mut Connection,
    code: &str,
    gw: &GatewayId,
    key: &VerifyingKey,
) -> rusqlite::Result<EnrollmentOutcome> {
    let tx = c.transaction()?;
    let Some((session_id, carepath)) = redeem(&tx, code)? else {
        record_failure(&tx, now_ms())?;
        tx.commit()?;
        return Ok(EnrollmentOutcome::BadCode);
    };
    if super::gateways::find(&tx, gw.as_str())?.is_some_and(|g| g.state != GatewayState::Released) {
        return Ok(EnrollmentOutcome::AlreadyEnrolled);
    }
    match super::sessions::find(&tx, &session_id)? {
        Some(s) if s.status == Status::Requested => {}
        _ => return Ok(EnrollmentOutcome::NotWaiting),
    }
    if !super::gateways::bind(&tx, gw, key, &session_id)? {
        return Ok(EnrollmentOutcome::AlreadyEnrolled);
    }
    super::audit::record_enrollment(&tx, gw.as_str(), &session_id, &carepath.id)?;
    if let Err(e) =
        super::sessions::transition(&tx, &session_id, Status::Accepted, Some(carepath), None)?
    {
        return Ok(EnrollmentOutcome::NotAccepted(e));
    }
    tx.commit()?;
    Ok(EnrollmentOutcome::Enrolled)
}

/// The session of the enrollment page `token`.
pub fn page(conn: &Connection, token: &str) -> rusqlite::Result<Option<EnrollmentPage>> {
    conn.query_row(PAGE, params![token], |r| {
        let status: String = r.get(2)?;
        Ok(EnrollmentPage {
            telemonitoring_id: r.get(0)?,
            patient_id: r.get(1)?,
            status: Status::parse(&status).unwrap_or(Status::Cancelled),
        })
    })
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for sql in super::super::migrations::MIGRATIONS {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute(
            "INSERT INTO sessions VALUES ('tm-1','p-1','rx-1','requested',NULL,NULL,'t','t')",
            [],
        )
        .unwrap();
        conn
    }

    fn heart_failure() -> Carepath {
        Carepath {
            id: "hf".into(),
            version: "1".into(),
        }
    }

    fn issued(conn: &Connection, per_hour: u32) -> IssuedCode {
        issue(conn, "tm-1", &heart_failure(), 60_000, per_hour)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_code_works_once() {
        let conn = store();
        let code = issued(&conn, 5).code;
        let (session, carepath) = redeem(&conn, &code.to_lowercase()).unwrap().unwrap();
        assert_eq!((session.as_str(), carepath), ("tm-1", heart_failure()));
        assert!(
            redeem(&conn, &code).unwrap().is_none(),
            "second use refused"
        );
        assert!(redeem(&conn, "NOTACODE").unwrap().is_none());
    }

    #[test]
    fn concurrent_redemptions_of_one_code_succeed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let setup = Connection::open(&path).unwrap();
        for sql in super::super::migrations::MIGRATIONS {
            setup.execute_batch(sql).unwrap();
        }
        setup
            .execute(
                "INSERT INTO sessions VALUES ('tm-1','p-1','rx-1','requested',NULL,NULL,'t','t')",
                [],
            )
            .unwrap();
        let code = issued(&setup, 5).code;
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, code, start) = (path.clone(), code.clone(), start.clone());
                std::thread::spawn(move || {
                    let conn = Connection::open(&path).unwrap();
                    conn.busy_timeout(std::time::Duration::from_secs(5))
                        .unwrap();
                    start.wait();
                    redeem(&conn, &code).unwrap().is_some()
                })
            })
            .collect();
        let won = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(won, 1, "one gateway gets the session");
    }

    #[test]
    fn an_expired_code_is_refused() {
        let conn = store();
        let IssuedCode {
            code,
            expires_at_ms,
        } = issued(&conn, 5);
        // Move the expiry into the past, as if the nurse came back the next day.
        conn.execute(
            "UPDATE enrollment_codes SET expires_at_ms = ?1",
            params![now_ms() - 1],
        )
        .unwrap();
        assert!(expires_at_ms > now_ms());
        assert!(redeem(&conn, &code).unwrap().is_none());
    }

    #[test]
    fn a_new_code_retires_the_old_one() {
        let conn = store();
        let old = issued(&conn, 5).code;
        let new = issued(&conn, 5).code;
        assert!(redeem(&conn, &old).unwrap().is_none());
        assert!(redeem(&conn, &new).unwrap().is_some());
    }

    #[test]
    fn issuing_is_rate_limited_per_session() {
        let conn = store();
        for _ in 0..3 {
            issued(&conn, 3);
        }
        let refused = issue(&conn, "tm-1", &heart_failure(), 60_000, 3).unwrap();
        assert_eq!(refused, Err(CodeRefusal::TooMany));
        assert!(CodeRefusal::TooMany.to_string().contains("too many codes"));
    }

    #[test]
    fn failures_are_counted_per_minute() {
        let conn = store();
        let t = 1_767_225_600_000_i64;
        for _ in 0..3 {
            assert!(allows(&conn, 3, t).unwrap());
            record_failure(&conn, t + 1).unwrap();
        }
        assert!(
            !allows(&conn, 3, t + 59_000).unwrap(),
            "the fourth in the minute"
        );
        assert!(allows(&conn, 3, t + MINUTE_MS).unwrap(), "the next minute");
        record_failure(&conn, t + 3 * MINUTE_MS).unwrap();
        let kept: i64 = conn
            .query_row("SELECT COUNT(*) FROM enroll_failures", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1, "old minutes are dropped");
    }

    #[tokio::test]
    async fn a_refused_enrollment_keeps_the_code() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        let codes = store
            .sqlite().expect("a SQLite store")
            .write(|c| {
                c.execute_batch(
                    "INSERT INTO sessions VALUES ('tm-1','p-1','rx-1','requested',NULL,NULL,'t','t');
                     INSERT INTO sessions VALUES ('tm-2','p-2','rx-1','requested',NULL,NULL,'t','t');",
                )?;
                let first = issue(c, "tm-1", &heart_failure(), 60_000, 5)?.unwrap();
                let second = issue(c, "tm-2", &heart_failure(), 60_000, 5)?.unwrap();
                Ok((first.code, second.code))
            })
            .await
            .unwrap();
        let (key, _) = tm_protocol::SigningKey::generate().unwrap();
        let gw = GatewayId::new("gw-1").unwrap();
        let enroll =
            |code: &str| store.enroll_gateway(code.to_owned(), gw.clone(), key.verifying_key());
        assert_eq!(
            enroll("NOTACODE").await.unwrap(),
            EnrollmentOutcome::BadCode
        );
        let failures: i64 = store
            .sqlite()
            .expect("a SQLite store")
            .read(|c| {
                c.query_row("SELECT SUM(failures) FROM enroll_failures", [], |r| {
                    r.get(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(failures, 1, "the bad code is counted");
        assert_eq!(enroll(&codes.0).await.unwrap(), EnrollmentOutcome::Enrolled);
        let accepted = store
            .sqlite()
            .expect("a SQLite store")
            .read(|c| super::super::sessions::find(c, "tm-1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(accepted.status, Status::Accepted);
        assert_eq!(accepted.carepath, Some(heart_failure()));
        assert_eq!(
            enroll(&codes.1).await.unwrap(),
            EnrollmentOutcome::AlreadyEnrolled
        );
        let unused: i64 = store
            .sqlite()
            .expect("a SQLite store")
            .read(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM enrollment_codes WHERE used_at_ms IS NULL",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(unused, 1, "the refused enrollment did not consume its code");
    }
}
