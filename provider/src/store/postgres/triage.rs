//! Clinical triage's statements on PostgreSQL (see [`crate::store::triage`]). A session's
//! triage locks its session row `FOR UPDATE`: two sweeps of one session run one after the
//! other, and the ingest's `FOR SHARE` holders have committed before the cursor is read.
//! Times are `timestamptz`, handed back as RFC 3339 text as the SQLite side writes them.

use crate::symptom::{KIND, Rows};
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::PgStore;
use crate::store::triage::{
    AlertStep, ClinicalAlert, Episode, Judge, TriageOutcome, TriageSubject, sql,
};
use crate::store::{StoreError, time_text};

/// Sessions with readings after their cursor.
pub async fn pending(pg: &PgStore, limit: u32) -> Result<Vec<String>, StoreError> {
    let client = pg.client().await?;
    let rows = client
        .query(
            "SELECT s.telemonitoring_id FROM sessions s \
             LEFT JOIN triage_progress p USING (telemonitoring_id) \
             WHERE EXISTS (SELECT 1 FROM readings r WHERE r.telemonitoring_id = s.telemonitoring_id \
                           AND r.seq > COALESCE(p.triaged_through, 0)) \
             ORDER BY s.telemonitoring_id LIMIT $1",
            &[&i64::from(limit)],
        )
        .await
        .map_err(pg.sql())?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(pg.sql()))
        .collect()
}

/// One session's triage in one transaction.
pub async fn judge(
    pg: &PgStore,
    telemonitoring_id: &str,
    context_days: i64,
    now: DateTime<Utc>,
    judge: Judge,
) -> Result<TriageOutcome, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    let Some(session) = tx
        .query_opt(
            "SELECT patient_id, carepath_id FROM sessions WHERE telemonitoring_id = $1 FOR UPDATE",
            &[&telemonitoring_id],
        )
        .await
        .map_err(pg.sql())?
    else {
        return Ok(TriageOutcome::default());
    };
    let subject = TriageSubject {
        telemonitoring_id: telemonitoring_id.to_owned(),
        patient_id: session.try_get(0).map_err(pg.sql())?,
        carepath_id: session.try_get(1).map_err(pg.sql())?,
    };
    let through: i64 = tx
        .query_opt(
            "SELECT triaged_through FROM triage_progress WHERE telemonitoring_id = $1",
            &[&telemonitoring_id],
        )
        .await
        .map_err(pg.sql())?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(pg.sql())?
        .unwrap_or(0);
    let span = tx
        .query_one(
            "SELECT COUNT(*), MAX(seq), MIN(effective_time) FROM readings \
             WHERE telemonitoring_id = $1 AND seq > $2",
            &[&telemonitoring_id, &through],
        )
        .await
        .map_err(pg.sql())?;
    let new_readings: i64 = span.try_get(0).map_err(pg.sql())?;
    let newest: Option<i64> = span.try_get(1).map_err(pg.sql())?;
    let oldest: Option<DateTime<Utc>> = span.try_get(2).map_err(pg.sql())?;
    let (Some(newest), Some(oldest)) = (newest, oldest) else {
        return Ok(TriageOutcome::default());
    };
    let mut outcome = TriageOutcome {
        new_readings: usize::try_from(new_readings).unwrap_or(usize::MAX),
        ..TriageOutcome::default()
    };
    let from = oldest - chrono::Duration::days(context_days);
    let rows = tx
        .query(
            "SELECT kind, payload FROM readings WHERE telemonitoring_id = $1 \
             AND effective_time >= $2 ORDER BY seq",
            &[&telemonitoring_id, &from],
        )
        .await
        .map_err(pg.sql())?;
    let mut stored = Rows::default();
    for r in &rows {
        let kind: &str = r.try_get(0).map_err(pg.sql())?;
        let payload: &str = r.try_get(1).map_err(pg.sql())?;
        stored.push(kind, payload);
    }
    outcome.undecodable = stored.undecodable;
    for e in judge(&subject, &stored) {
        record(&*tx, telemonitoring_id, &e, now, &mut outcome)
            .await
            .map_err(pg.sql())?;
    }
    tx.execute(
        "INSERT INTO triage_progress (telemonitoring_id, triaged_through) VALUES ($1, $2) \
         ON CONFLICT (telemonitoring_id) DO UPDATE SET triaged_through = excluded.triaged_through",
        &[&telemonitoring_id, &newest],
    )
    .await
    .map_err(pg.sql())?;
    tx.commit().await.map_err(pg.sql())?;
    Ok(outcome)
}

/// The episode continues the stored alert it overlaps, or is raised.
async fn record(
    c: &impl GenericClient,
    telemonitoring_id: &str,
    e: &Episode,
    now: DateTime<Utc>,
    outcome: &mut TriageOutcome,
) -> Result<(), tokio_postgres::Error> {
    let continued = c
        .execute(
            "UPDATE clinical_alerts SET episode_last = GREATEST(episode_last, $4) \
             WHERE telemonitoring_id = $1 AND rule = $2 AND episode_start <= $4 \
             AND episode_last >= $3",
            &[&telemonitoring_id, &e.rule, &e.start, &e.last],
        )
        .await?;
    if continued > 0 {
        outcome.continued += 1;
        return Ok(());
    }
    let raised = c
        .query_opt(
            "INSERT INTO clinical_alerts (telemonitoring_id, rule, episode_start, episode_last, \
             summary, evidence, state, raised_at) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7) \
             ON CONFLICT (telemonitoring_id, rule, episode_start) DO NOTHING RETURNING alert_id",
            &[
                &telemonitoring_id,
                &e.rule,
                &e.start,
                &e.last,
                &e.summary,
                &e.evidence,
                &now,
            ],
        )
        .await?;
    if let Some(r) = raised {
        outcome.raised.push((r.try_get(0)?, e.rule.clone()));
    }
    Ok(())
}

fn text(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(time_text)
}

fn row(r: &tokio_postgres::Row) -> Result<ClinicalAlert, tokio_postgres::Error> {
    let evidence: &str = r.try_get(8)?;
    Ok(ClinicalAlert {
        alert_id: r.try_get(0)?,
        telemonitoring_id: r.try_get(1)?,
        patient_id: r.try_get(2)?,
        carepath_id: r.try_get(16)?,
        rule: r.try_get(3)?,
        state: r.try_get(4)?,
        episode_start: time_text(r.try_get(5)?),
        episode_last: time_text(r.try_get(6)?),
        summary: r.try_get(7)?,
        evidence: serde_json::from_str(evidence).unwrap_or(serde_json::Value::Null),
        raised_at: time_text(r.try_get(9)?),
        acknowledged_at: text(r.try_get(10)?),
        acknowledged_by: r.try_get(11)?,
        acknowledge_note: r.try_get(12)?,
        resolved_at: text(r.try_get(13)?),
        resolved_by: r.try_get(14)?,
        resolve_note: r.try_get(15)?,
    })
}

/// The alerts in worklist order.
pub async fn list(
    pg: &PgStore,
    unresolved: bool,
    limit: u32,
) -> Result<Vec<ClinicalAlert>, StoreError> {
    let filter = if unresolved {
        "WHERE a.state <> 'resolved'"
    } else {
        ""
    };
    let client = pg.client().await?;
    let rows = client
        .query(
            &format!("{} {filter} {} LIMIT $1", sql::COLUMNS, sql::ORDER),
            &[&i64::from(limit)],
        )
        .await
        .map_err(pg.sql())?;
    rows.iter().map(|r| row(r).map_err(pg.sql())).collect()
}

/// One alert.
pub async fn one(pg: &PgStore, alert_id: i64) -> Result<Option<ClinicalAlert>, StoreError> {
    let client = pg.client().await?;
    let r = client
        .query_opt(
            &format!("{} WHERE a.alert_id = $1", sql::COLUMNS),
            &[&alert_id],
        )
        .await
        .map_err(pg.sql())?;
    r.map(|r| row(&r).map_err(pg.sql())).transpose()
}

/// A nurse's step, as one conditional statement.
pub async fn step(
    pg: &PgStore,
    alert_id: i64,
    step: AlertStep,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let statement = match step {
        AlertStep::Acknowledge => {
            "UPDATE clinical_alerts SET state = 'acknowledged', acknowledged_at = $2, \
             acknowledged_by = $3, acknowledge_note = $4 WHERE alert_id = $1 AND state = 'open'"
        }
        AlertStep::Resolve => {
            "UPDATE clinical_alerts SET state = 'resolved', resolved_at = $2, resolved_by = $3, \
             resolve_note = $4 WHERE alert_id = $1 AND state <> 'resolved'"
        }
    };
    let client = pg.client().await?;
    let n = client
        .execute(statement, &[&alert_id, &now, &by, &note])
        .await
        .map_err(pg.sql())?;
    Ok(n == 1)
}

/// A session's readings measured from `from` to `to`, oldest first.
pub async fn between(
    pg: &PgStore,
    telemonitoring_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<tm_protocol::Reading>, StoreError> {
    let client = pg.client().await?;
    let rows = client
        .query(
            "SELECT payload FROM readings WHERE telemonitoring_id = $1 AND kind <> $5 \
             AND effective_time BETWEEN $2 AND $3 ORDER BY effective_time LIMIT $4",
            &[&telemonitoring_id, &from, &to, &i64::from(limit), &KIND],
        )
        .await
        .map_err(pg.sql())?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let payload: &str = r.try_get(0).map_err(pg.sql())?;
        if let Ok(reading) = serde_json::from_str(payload) {
            out.push(reading);
        }
    }
    Ok(out)
}

/// Alerts per (rule, state).
pub async fn counts(pg: &PgStore) -> Result<Vec<(String, String, i64)>, StoreError> {
    let client = pg.client().await?;
    let rows = client
        .query(
            "SELECT rule, state, COUNT(*) FROM clinical_alerts GROUP BY rule, state \
             ORDER BY rule, state",
            &[],
        )
        .await
        .map_err(pg.sql())?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.get::<_, String>(1), r.try_get(2)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(pg.sql())
}
