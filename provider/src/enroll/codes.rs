//! One-time enrollment codes: 8 characters from an alphabet without look-alikes (40 bits),
//! stored only as a SHA-256 digest, expiring after `code_ttl_s`, single use, and at most
//! `codes_per_session_per_hour` issued per session. Issuing a new code retires the older
//! unused ones of the same session.

use rusqlite::{OptionalExtension as _, params};

use crate::hub::contract::Carepath;

/// The code alphabet: no 0/O, 1/I/L.
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789#";
const CODE_LEN: usize = 8;

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

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The stored digest of a code (case and separators do not matter to the nurse).
pub fn digest(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        normal.as_bytes(),
    ))
}

fn new_code() -> String {
    let mut raw = [0u8; CODE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .expect("system randomness");
    // 31 symbols used ('#' excluded by the modulo); a tiny bias is irrelevant at 8 symbols
    // with single use, expiry and rate limits.
    raw.iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % 31]))
        .collect()
}

/// Issues a code for a session, or says why not.
pub fn issue(
    conn: &rusqlite::Connection,
    telemonitoring_id: &str,
    carepath: &Carepath,
    ttl_ms: i64,
    per_hour: u32,
) -> rusqlite::Result<Result<(String, i64), &'static str>> {
    let now = now_ms();
    let recent: i64 = conn.query_row(
        COUNT_RECENT,
        params![telemonitoring_id, now - 3_600_000],
        |r| r.get(0),
    )?;
    if recent >= i64::from(per_hour) {
        return Ok(Err(
            "too many codes issued for this session in the last hour; use the last one or wait",
        ));
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
    Ok(Ok((code, expires)))
}

/// Consumes a code: the session and carepath it was issued for, if valid, unused, unexpired.
pub fn redeem(
    conn: &rusqlite::Connection,
    code: &str,
) -> rusqlite::Result<Option<(String, Carepath)>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_case_and_separators() {
        assert_eq!(digest("abcd-efgh"), digest("ABCDEFGH"));
        let c = new_code();
        assert_eq!(c.len(), CODE_LEN);
        assert!(c.bytes().all(|b| ALPHABET[..31].contains(&b)));
    }

    fn store() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for sql in crate::db::MIGRATIONS {
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

    #[test]
    fn a_code_works_once() {
        let conn = store();
        let (code, _) = issue(&conn, "tm-1", &heart_failure(), 60_000, 5)
            .unwrap()
            .unwrap();
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
        let setup = rusqlite::Connection::open(&path).unwrap();
        for sql in crate::db::MIGRATIONS {
            setup.execute_batch(sql).unwrap();
        }
        setup
            .execute(
                "INSERT INTO sessions VALUES ('tm-1','p-1','rx-1','requested',NULL,NULL,'t','t')",
                [],
            )
            .unwrap();
        let (code, _) = issue(&setup, "tm-1", &heart_failure(), 60_000, 5)
            .unwrap()
            .unwrap();
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (path, code, start) = (path.clone(), code.clone(), start.clone());
                std::thread::spawn(move || {
                    let conn = rusqlite::Connection::open(&path).unwrap();
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
        let (code, expires) = issue(&conn, "tm-1", &heart_failure(), 60_000, 5)
            .unwrap()
            .unwrap();
        // Move the expiry into the past, as if the nurse came back the next day.
        conn.execute(
            "UPDATE enrollment_codes SET expires_at_ms = ?1",
            params![now_ms() - 1],
        )
        .unwrap();
        assert!(expires > now_ms());
        assert!(redeem(&conn, &code).unwrap().is_none());
    }

    #[test]
    fn a_new_code_retires_the_old_one() {
        let conn = store();
        let (old, _) = issue(&conn, "tm-1", &heart_failure(), 60_000, 5)
            .unwrap()
            .unwrap();
        let (new, _) = issue(&conn, "tm-1", &heart_failure(), 60_000, 5)
            .unwrap()
            .unwrap();
        assert!(redeem(&conn, &old).unwrap().is_none());
        assert!(redeem(&conn, &new).unwrap().is_some());
    }

    #[test]
    fn issuing_is_rate_limited_per_session() {
        let conn = store();
        for _ in 0..3 {
            issue(&conn, "tm-1", &heart_failure(), 60_000, 3)
                .unwrap()
                .unwrap();
        }
        let refused = issue(&conn, "tm-1", &heart_failure(), 60_000, 3).unwrap();
        assert!(refused.unwrap_err().contains("too many codes"));
    }
}
