//! Adherence's statements on PostgreSQL: the monitored sessions with a schedule and their recent
//! readings, read in the alert evaluation's transaction ([`super::alerts::evaluate`]).
//!
//! Two statements whatever the number of sessions: the sessions, then the recent readings of
//! all those with a schedule (`= ANY`, through the `readings_session_time` index). "Recent"
//! is the SQLite side's bound, kept exactly: a reading counts when the local date of its
//! effective time (the gateway's offset, which `timestamptz` does not keep but the stored
//! payload does) is on or after the UTC date three days before now. The index range starts 14
//! hours before that date (the earliest instant any offset's local date can begin), and the
//! payload's date decides. Only instants older than any window are left out either way; the
//! bound being the same, both backends report the same latest times.
//!
//! Text is ordered byte-wise (`COLLATE "C"`), as SQLite orders it, whatever the database's
//! collation.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::store::adherence::{Measure, SessionAdherence, schedule};

const SESSIONS: &str = "SELECT s.telemonitoring_id, s.carepath_id, MIN(g.enrolled_at), \
    MIN(g.gateway_id COLLATE \"C\") \
    FROM sessions s JOIN gateways g ON g.telemonitoring_id = s.telemonitoring_id \
    WHERE s.status IN ('accepted', 'in-progress') AND s.carepath_id IS NOT NULL \
    GROUP BY s.telemonitoring_id, s.carepath_id ORDER BY s.telemonitoring_id COLLATE \"C\"";
const RECENT: &str = "SELECT telemonitoring_id, kind, effective_time, payload FROM readings \
    WHERE telemonitoring_id = ANY($1) AND effective_time >= $2 \
    AND left(payload::json ->> 'effective_time', 10) COLLATE \"C\" >= $3";

/// The latest offset east of UTC a local time can carry (+14:00).
const MAX_OFFSET_HOURS: i64 = 14;

/// Monitored sessions with a schedule, and their recent readings per measure (readings older
/// than three days before `now` cannot satisfy any window and are not read).
pub async fn load(
    c: &impl GenericClient,
    now: DateTime<Utc>,
) -> Result<Vec<SessionAdherence>, tokio_postgres::Error> {
    let mut sessions = Vec::new();
    for r in c.query(SESSIONS, &[]).await? {
        let id: String = r.try_get(0)?;
        let carepath: String = r.try_get(1)?;
        let measures = schedule(&carepath);
        if measures.is_empty() {
            continue;
        }
        sessions.push(SessionAdherence {
            telemonitoring_id: id,
            gateway_id: r.try_get(3)?,
            monitored_since: r.try_get::<_, Option<DateTime<Utc>>>(2)?.unwrap_or(now),
            latest: measures.iter().map(|m| (*m, None)).collect(),
        });
    }
    if sessions.is_empty() {
        return Ok(sessions);
    }
    let day = (now - chrono::Duration::days(3)).date_naive();
    let from =
        day.and_time(chrono::NaiveTime::MIN).and_utc() - chrono::Duration::hours(MAX_OFFSET_HOURS);
    let bound = day.format("%Y-%m-%d").to_string();
    let ids: Vec<&str> = sessions
        .iter()
        .map(|s| s.telemonitoring_id.as_str())
        .collect();
    let index: HashMap<String, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.telemonitoring_id.clone(), i))
        .collect();
    for r in c.query(RECENT, &[&ids, &from, &bound]).await? {
        let session: String = r.try_get(0)?;
        let kind: String = r.try_get(1)?;
        let time: DateTime<Utc> = r.try_get(2)?;
        let payload: String = r.try_get(3)?;
        let Some(&i) = index.get(&session) else {
            continue;
        };
        note_reading(&mut sessions[i].latest, &kind, &payload, time);
    }
    Ok(sessions)
}

/// Takes a reading into the latest time of each measure it satisfies.
fn note_reading(
    latest: &mut [(Measure, Option<DateTime<Utc>>)],
    kind: &str,
    payload: &str,
    time: DateTime<Utc>,
) {
    for (m, last) in latest {
        if m.satisfied_by(kind, payload) && last.is_none_or(|l| l < time) {
            *last = Some(time);
        }
    }
}
