//! Check-in links and answers on SQLite (see [`crate::store::checkin`]): every write runs on
//! the single writer, so checking a link and storing what it sent cannot interleave with a
//! revocation or the end of the session.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::store::checkin::{CheckinLink, Issue, LIVE, Saved, may_issue};
use crate::store::time_text;
use crate::symptom::{KIND, RECORD_ORDER, SymptomAnswer};

const LIVE_LINK: &str = "SELECT l.telemonitoring_id, l.language, l.issued_at \
    FROM checkin_links l JOIN sessions s USING (telemonitoring_id) \
    WHERE l.token_hash = ?1 AND l.revoked_at IS NULL AND s.status IN (?2, ?3)";
const REVOKE: &str = "UPDATE checkin_links SET revoked_at = ?2 \
    WHERE telemonitoring_id = ?1 AND revoked_at IS NULL";
const INSERT_ANSWER: &str = "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, \
    batch_id, kind, effective_time, received_at, ingested_at, payload, record_order) \
    VALUES (?1, '', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
    ON CONFLICT (telemonitoring_id, record_order, reading_id) DO NOTHING";

fn utc(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
}

/// Issues a link (session, token hash, language), revoking the session's earlier ones.
pub fn issue(
    conn: &mut Connection,
    link: &(String, String, &'static str),
    carepaths: &[&str],
    now: DateTime<Utc>,
) -> rusqlite::Result<Issue> {
    let (telemonitoring_id, token_hash, language) = link;
    let tx = conn.transaction()?;
    let session = tx
        .query_row(
            "SELECT status, carepath_id FROM sessions WHERE telemonitoring_id = ?1",
            [telemonitoring_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let decided = may_issue(session, carepaths);
    if decided != Issue::Issued {
        return Ok(decided);
    }
    tx.execute(REVOKE, params![telemonitoring_id, time_text(now)])?;
    tx.execute(
        "INSERT INTO checkin_links (token_hash, telemonitoring_id, language, issued_at) \
         VALUES (?1, ?2, ?3, ?4)",
        params![token_hash, telemonitoring_id, language, time_text(now)],
    )?;
    tx.commit()?;
    Ok(Issue::Issued)
}

/// Revokes the session's links; how many were live.
pub fn revoke(
    conn: &mut Connection,
    telemonitoring_id: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    conn.execute(REVOKE, params![telemonitoring_id, time_text(now)])
}

/// The live link of `token_hash`.
pub fn find(conn: &Connection, token_hash: &str) -> rusqlite::Result<Option<CheckinLink>> {
    let row: Option<(String, String, String)> = conn
        .query_row(LIVE_LINK, params![token_hash, LIVE[0], LIVE[1]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    row.map(|(telemonitoring_id, language, issued)| {
        Ok(CheckinLink {
            telemonitoring_id,
            language,
            issued_at: utc(&issued)?,
        })
    })
    .transpose()
}

/// When the session's live link was issued.
pub fn issued_at(
    conn: &Connection,
    telemonitoring_id: &str,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let issued: Option<String> = conn.query_row(
        "SELECT MAX(issued_at) FROM checkin_links \
             WHERE telemonitoring_id = ?1 AND revoked_at IS NULL",
        [telemonitoring_id],
        |r| r.get(0),
    )?;
    issued.as_deref().map(utc).transpose()
}

/// Stores a check-in's answers if `link` (token hash, session) is live.
pub fn save(
    conn: &mut Connection,
    link: &(String, String),
    answers: &[SymptomAnswer],
    now: DateTime<Utc>,
) -> rusqlite::Result<Saved> {
    let tx = conn.transaction()?;
    let found = find(&tx, &link.0)?;
    if found.is_none_or(|l| l.telemonitoring_id != link.1) {
        return Ok(Saved::LinkGone);
    }
    let mut inserted = 0;
    {
        let mut insert = tx.prepare(INSERT_ANSWER)?;
        for a in answers {
            inserted += insert.execute(params![
                a.answer_id,
                link.1,
                a.submission,
                KIND,
                a.end.to_rfc3339(),
                a.end.with_timezone(&Utc).to_rfc3339(),
                now.to_rfc3339(),
                a.to_json(),
                RECORD_ORDER
            ])?;
        }
    }
    tx.commit()?;
    Ok(Saved::Stored { inserted })
}
