//! Published snapshots' statements on SQLite, and the publishing transactions around them.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::sessions;
use crate::hub::contract::{Carepath, Status};
use crate::store::sessions::TransitionError;
use crate::store::snapshots::{Announcer, PublishOutcome, PublishedSession, Snapshot};
use crate::symptom::Row;

const SNAPSHOT: &str = "SELECT published_through, published_at, period_start, period_end \
                        FROM session_outputs WHERE telemonitoring_id = ?1";
const UPSERT_SNAPSHOT: &str = "INSERT INTO session_outputs (telemonitoring_id, \
    published_through, published_at, period_start, period_end) VALUES (?1, ?2, ?3, ?4, ?5) \
    ON CONFLICT(telemonitoring_id) DO UPDATE SET published_through = excluded.published_through, \
    published_at = excluded.published_at, period_end = excluded.period_end";
const LATEST_READING: &str = "SELECT MAX(rowid) FROM readings WHERE telemonitoring_id = ?1";
const SNAPSHOT_READINGS: &str = "SELECT kind, payload FROM readings WHERE telemonitoring_id = ?1 \
                                 AND rowid <= ?2 ORDER BY rowid";
const FIRST_ENROLLMENT: &str = "SELECT MIN(enrolled_at) FROM gateways WHERE telemonitoring_id = ?1";
const CREATED_AT: &str = "SELECT created_at FROM sessions WHERE telemonitoring_id = ?1";
const PENDING_SESSIONS: &str = "SELECT s.telemonitoring_id FROM sessions s \
    LEFT JOIN session_outputs o ON o.telemonitoring_id = s.telemonitoring_id \
    WHERE s.status IN ('accepted', 'in-progress') AND EXISTS (SELECT 1 FROM readings r \
    WHERE r.telemonitoring_id = s.telemonitoring_id AND r.rowid > COALESCE(o.published_through, 0))";

fn time(s: &str, column: usize) -> rusqlite::Result<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })
}

/// The session's published snapshot, if any.
pub fn snapshot(conn: &Connection, id: &str) -> rusqlite::Result<Option<Snapshot>> {
    let row: Option<(i64, String, String, Option<String>)> = conn
        .query_row(SNAPSHOT, params![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    row.map(|(through, at, start, end)| {
        Ok(Snapshot {
            published_through: through,
            published_at: time(&at, 1)?.with_timezone(&Utc),
            period_start: time(&start, 2)?,
            period_end: end.as_deref().map(|e| time(e, 3)).transpose()?,
        })
    })
    .transpose()
}

/// The highest rowid of the session's readings (0 when it has none).
pub fn latest_reading(conn: &Connection, id: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(LATEST_READING, params![id], |r| r.get::<_, Option<i64>>(0))?
        .unwrap_or(0))
}

/// Whether the session has readings its published snapshot does not include.
pub fn has_pending(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    let through = snapshot(conn, id)?.map_or(0, |s| s.published_through);
    Ok(latest_reading(conn, id)? > through)
}

/// The live sessions (accepted or in progress) with pending readings.
pub fn pending_sessions(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(PENDING_SESSIONS)?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// The published snapshot of `id` with its session and readings: `None` when the session does
/// not exist or has published nothing yet.
pub fn published_session(
    conn: &Connection,
    id: &str,
) -> rusqlite::Result<Option<PublishedSession>> {
    let (Some(session), Some(snap)) = (sessions::find(conn, id)?, snapshot(conn, id)?) else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(SNAPSHOT_READINGS)?;
    let mut rows = stmt.query(params![id, snap.published_through])?;
    let (mut readings, mut symptoms) = (Vec::new(), Vec::new());
    while let Some(r) = rows.next()? {
        let (kind, payload): (String, String) = (r.get(0)?, r.get(1)?);
        match Row::decode(&kind, &payload).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into())
        })? {
            Row::Reading(r) => readings.push(*r),
            Row::Symptom(a) => symptoms.push(a),
        }
    }
    Ok(Some(PublishedSession {
        telemonitoring_id: session.telemonitoring_id,
        patient_id: session.patient_id,
        prescriber_id: session.prescriber_id,
        carepath: session.carepath,
        snapshot: snap,
        readings,
        symptoms,
    }))
}

/// Cuts a new snapshot of `id` at `now` (all readings stored so far); `ending` closes the
/// period. Call inside the transaction that announces it.
fn cut(conn: &Connection, id: &str, now: DateTime<Utc>, ending: bool) -> rusqlite::Result<()> {
    let stamp = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let start = match snapshot(conn, id)? {
        Some(s) => s.period_start.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => {
            let enrolled: Option<String> =
                conn.query_row(FIRST_ENROLLMENT, params![id], |r| r.get(0))?;
            let raw = match enrolled {
                Some(e) => e,
                None => conn.query_row(CREATED_AT, params![id], |r| r.get(0))?,
            };
            time(&raw, 0)?.to_rfc3339_opts(SecondsFormat::Millis, true)
        }
    };
    conn.execute(
        UPSERT_SNAPSHOT,
        params![
            id,
            latest_reading(conn, id)?,
            stamp,
            start,
            ending.then(|| stamp.clone())
        ],
    )?;
    Ok(())
}

/// Moves `id` to `to` in the caller's transaction, queueing the HUB update. Moving to
/// in-progress or completed with readings stored cuts a new snapshot and sends the full
/// attachment set `announcer` describes with it; any other move sends no attachments. Returns
/// the attachments announced (0 when none).
pub fn transition_with_outputs(
    conn: &Connection,
    announcer: &dyn Announcer,
    id: &str,
    to: Status,
    carepath: Option<Carepath>,
    now: DateTime<Utc>,
) -> rusqlite::Result<Result<usize, TransitionError>> {
    let with_outputs =
        matches!(to, Status::InProgress | Status::Completed) && latest_reading(conn, id)? > 0;
    let Some(current) = sessions::find(conn, id)? else {
        return Ok(Err(TransitionError::Unknown));
    };
    if !current.status.may_become(to) {
        return Ok(Err(TransitionError::Illegal {
            from: current.status,
            to,
        }));
    }
    let attachments = if with_outputs {
        cut(conn, id, now, to == Status::Completed)?;
        let published = published_session(conn, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        Some(announcer.describe(published, now))
    } else {
        None
    };
    let n = attachments.as_ref().map_or(0, Vec::len);
    Ok(sessions::transition(conn, id, to, carepath, attachments)?.map(|_| n))
}

/// When `id` is due, as `announcer` judges what is stored.
pub fn when_due(
    conn: &Connection,
    announcer: &dyn Announcer,
    id: &str,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let Some(session) = sessions::find(conn, id)? else {
        return Ok(None);
    };
    let last = snapshot(conn, id)?.map(|s| s.published_at);
    let pending = has_pending(conn, id)?;
    Ok(announcer.next_update(session.status, session.carepath.as_ref(), pending, last))
}

/// Publishes `id` if it is due now, in one transaction: a new snapshot and the move to
/// in-progress with its attachments ([`transition_with_outputs`]).
pub fn publish_if_due(
    conn: &mut Connection,
    announcer: &dyn Announcer,
    id: &str,
) -> rusqlite::Result<Result<PublishOutcome, TransitionError>> {
    let tx = conn.transaction()?;
    let now = Utc::now();
    let Some(when) = when_due(&tx, announcer, id)? else {
        return Ok(Ok(PublishOutcome::NotDue));
    };
    if when > now {
        return Ok(Ok(PublishOutcome::Later(when)));
    }
    let moved = transition_with_outputs(&tx, announcer, id, Status::InProgress, None, now)?;
    tx.commit()?;
    Ok(moved.map(|attachments| PublishOutcome::Published { attachments }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn readings_above_the_snapshot_are_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        store
            .sqlite()
            .expect("a SQLite store")
            .write(|c| {
                for (session, status) in [("tm-1", "in-progress"), ("tm-2", "completed")] {
                    c.execute(
                        "INSERT INTO sessions VALUES (?1,'p','rx',?2,NULL,NULL,'t','t')",
                        params![session, status],
                    )?;
                    c.execute(
                        "INSERT INTO readings (reading_id, gateway_id, telemonitoring_id, \
                         batch_id, kind, effective_time, received_at, ingested_at, payload, \
                         record_order) \
                         VALUES ('r', 'gw', ?1, 'b', 'glucose', '', '', '', '{}', 0)",
                        [session],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        assert!(store.has_pending_readings("tm-1").await.unwrap());
        assert!(!store.has_pending_readings("tm-3").await.unwrap());
        // An ended session takes no update, whatever it has pending.
        assert_eq!(
            store.sessions_with_pending_readings().await.unwrap(),
            ["tm-1"]
        );
        assert_eq!(store.published_session("tm-1").await.unwrap(), None);
        store
            .sqlite()
            .expect("a SQLite store")
            .write(|c| {
                c.execute(
                    "INSERT INTO session_outputs VALUES ('tm-1', 1, \
                     '2026-05-01T07:30:00.000Z', '2026-05-01T07:00:00.000Z', NULL)",
                    [],
                )
            })
            .await
            .unwrap();
        assert!(!store.has_pending_readings("tm-1").await.unwrap());
        assert!(
            store
                .sessions_with_pending_readings()
                .await
                .unwrap()
                .is_empty()
        );
    }
}
