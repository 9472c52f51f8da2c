//! Clinical triage's statements on SQLite (see [`crate::store::triage`]): everything runs on
//! the single writer, so one sweep at a time judges a session.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::store::time_text;
use crate::store::triage::{
    AlertStep, ClinicalAlert, Episode, Judge, TriageOutcome, TriageSubject, sql,
};
use crate::symptom::{KIND, Rows};

/// Sessions with readings after their cursor.
pub fn pending(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT s.telemonitoring_id FROM sessions s \
         LEFT JOIN triage_progress p USING (telemonitoring_id) \
         WHERE EXISTS (SELECT 1 FROM readings r WHERE r.telemonitoring_id = s.telemonitoring_id \
                       AND r.rowid > COALESCE(p.triaged_through, 0)) \
         ORDER BY s.telemonitoring_id LIMIT ?1",
    )?;
    stmt.query_map([limit], |r| r.get(0))?.collect()
}

/// One session's triage in one transaction.
pub fn judge(
    conn: &mut Connection,
    telemonitoring_id: &str,
    context_days: i64,
    now: DateTime<Utc>,
    judge: Judge,
) -> rusqlite::Result<TriageOutcome> {
    let tx = conn.transaction()?;
    let subject = tx
        .query_row(
            "SELECT patient_id, carepath_id FROM sessions WHERE telemonitoring_id = ?1",
            [telemonitoring_id],
            |r| {
                Ok(TriageSubject {
                    telemonitoring_id: telemonitoring_id.to_owned(),
                    patient_id: r.get(0)?,
                    carepath_id: r.get(1)?,
                })
            },
        )
        .optional()?;
    let Some(subject) = subject else {
        return Ok(TriageOutcome::default());
    };
    let through: i64 = tx
        .query_row(
            "SELECT triaged_through FROM triage_progress WHERE telemonitoring_id = ?1",
            [telemonitoring_id],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let (new_readings, newest, oldest): (i64, Option<i64>, Option<f64>) = tx.query_row(
        "SELECT COUNT(*), MAX(rowid), MIN(julianday(effective_time)) FROM readings \
         WHERE telemonitoring_id = ?1 AND rowid > ?2",
        params![telemonitoring_id, through],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (Some(newest), Some(oldest)) = (newest, oldest) else {
        return Ok(TriageOutcome::default());
    };
    let mut outcome = TriageOutcome {
        new_readings: usize::try_from(new_readings).unwrap_or(usize::MAX),
        ..TriageOutcome::default()
    };
    let mut stored = Rows::default();
    {
        let mut stmt = tx.prepare(
            "SELECT kind, payload FROM readings WHERE telemonitoring_id = ?1 \
             AND julianday(effective_time) >= ?2 ORDER BY rowid",
        )?;
        let mut rows = stmt.query(params![telemonitoring_id, oldest - context_days as f64])?;
        while let Some(row) = rows.next()? {
            let (kind, payload): (String, String) = (row.get(0)?, row.get(1)?);
            stored.push(&kind, &payload);
        }
    }
    outcome.undecodable = stored.undecodable;
    for e in judge(&subject, &stored) {
        record(&tx, telemonitoring_id, &e, now, &mut outcome)?;
    }
    tx.execute(
        "INSERT INTO triage_progress (telemonitoring_id, triaged_through) VALUES (?1, ?2) \
         ON CONFLICT (telemonitoring_id) DO UPDATE SET triaged_through = excluded.triaged_through",
        params![telemonitoring_id, newest],
    )?;
    tx.commit()?;
    Ok(outcome)
}

/// The episode continues the stored alert it overlaps, or is raised.
fn record(
    tx: &Connection,
    telemonitoring_id: &str,
    e: &Episode,
    now: DateTime<Utc>,
    outcome: &mut TriageOutcome,
) -> rusqlite::Result<()> {
    let (start, last) = (time_text(e.start), time_text(e.last));
    let continued = tx.execute(
        "UPDATE clinical_alerts SET episode_last = MAX(episode_last, ?4) \
         WHERE telemonitoring_id = ?1 AND rule = ?2 AND episode_start <= ?4 \
         AND episode_last >= ?3",
        params![telemonitoring_id, e.rule, start, last],
    )?;
    if continued > 0 {
        outcome.continued += 1;
        return Ok(());
    }
    let inserted = tx.execute(
        "INSERT INTO clinical_alerts (telemonitoring_id, rule, episode_start, episode_last, \
         summary, evidence, state, raised_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', ?7) \
         ON CONFLICT (telemonitoring_id, rule, episode_start) DO NOTHING",
        params![
            telemonitoring_id,
            e.rule,
            start,
            last,
            e.summary,
            e.evidence,
            time_text(now)
        ],
    )?;
    if inserted > 0 {
        outcome
            .raised
            .push((tx.last_insert_rowid(), e.rule.clone()));
    }
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClinicalAlert> {
    let evidence: String = r.get(8)?;
    Ok(ClinicalAlert {
        alert_id: r.get(0)?,
        telemonitoring_id: r.get(1)?,
        patient_id: r.get(2)?,
        carepath_id: r.get(16)?,
        rule: r.get(3)?,
        state: r.get(4)?,
        episode_start: r.get(5)?,
        episode_last: r.get(6)?,
        summary: r.get(7)?,
        evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::Null),
        raised_at: r.get(9)?,
        acknowledged_at: r.get(10)?,
        acknowledged_by: r.get(11)?,
        acknowledge_note: r.get(12)?,
        resolved_at: r.get(13)?,
        resolved_by: r.get(14)?,
        resolve_note: r.get(15)?,
    })
}

/// The alerts in worklist order.
pub fn list(
    conn: &Connection,
    unresolved: bool,
    limit: u32,
) -> rusqlite::Result<Vec<ClinicalAlert>> {
    let filter = if unresolved {
        "WHERE a.state <> 'resolved'"
    } else {
        ""
    };
    let mut stmt = conn.prepare(&format!(
        "{} {filter} {} LIMIT ?1",
        sql::COLUMNS,
        sql::ORDER
    ))?;
    stmt.query_map([limit], row)?.collect()
}

/// One alert.
pub fn one(conn: &Connection, alert_id: i64) -> rusqlite::Result<Option<ClinicalAlert>> {
    conn.query_row(
        &format!("{} WHERE a.alert_id = ?1", sql::COLUMNS),
        [alert_id],
        row,
    )
    .optional()
}

/// A nurse's step, as one conditional statement.
pub fn step(
    conn: &Connection,
    alert_id: i64,
    step: AlertStep,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let statement = match step {
        AlertStep::Acknowledge => {
            "UPDATE clinical_alerts SET state = 'acknowledged', acknowledged_at = ?2, \
             acknowledged_by = ?3, acknowledge_note = ?4 WHERE alert_id = ?1 AND state = 'open'"
        }
        AlertStep::Resolve => {
            "UPDATE clinical_alerts SET state = 'resolved', resolved_at = ?2, resolved_by = ?3, \
             resolve_note = ?4 WHERE alert_id = ?1 AND state <> 'resolved'"
        }
    };
    Ok(conn.execute(statement, params![alert_id, time_text(now), by, note])? == 1)
}

/// A session's readings measured from `from` to `to`, oldest first.
pub fn between(
    conn: &Connection,
    telemonitoring_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u32,
) -> rusqlite::Result<Vec<tm_protocol::Reading>> {
    let mut stmt = conn.prepare(
        "SELECT payload FROM readings WHERE telemonitoring_id = ?1 AND kind <> ?5 \
         AND julianday(effective_time) BETWEEN julianday(?2) AND julianday(?3) \
         ORDER BY julianday(effective_time) LIMIT ?4",
    )?;
    let payloads = stmt
        .query_map(
            params![
                telemonitoring_id,
                time_text(from),
                time_text(to),
                limit,
                KIND
            ],
            |r| r.get::<_, String>(0),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(payloads
        .iter()
        .filter_map(|p| serde_json::from_str(p).ok())
        .collect())
}

/// Alerts per (rule, state).
pub fn counts(conn: &Connection) -> rusqlite::Result<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT rule, state, COUNT(*) FROM clinical_alerts GROUP BY rule, state ORDER BY rule, state",
    )?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}
