//! Adherence's statements on SQLite: the monitored sessions with a schedule and their recent
//! readings.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::parse_time;
use crate::store::adherence::{Measure, SessionAdherence, schedule};

const SESSIONS: &str = "SELECT s.telemonitoring_id, s.carepath_id, MIN(g.enrolled_at), MIN(g.gateway_id) \
    FROM sessions s JOIN gateways g ON g.telemonitoring_id = s.telemonitoring_id \
    WHERE s.status IN ('accepted', 'in-progress') AND s.carepath_id IS NOT NULL \
    GROUP BY s.telemonitoring_id, s.carepath_id ORDER BY s.telemonitoring_id";
const RECENT: &str = "SELECT kind, effective_time, payload FROM readings \
    WHERE telemonitoring_id = ?1 AND effective_time >= ?2";

/// Monitored sessions with a schedule, and their recent readings per measure (readings older
/// than three days before `now` cannot satisfy any window and are not read).
pub fn load(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Vec<SessionAdherence>> {
    let mut stmt = conn.prepare(SESSIONS)?;
    let sessions: Vec<(String, String, String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    // effective_time carries the gateway's offset; a date-only bound compares correctly as text
    // against any offset once it is a day wider than needed.
    let bound = (now - chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    let mut recent = conn.prepare(RECENT)?;
    let mut out = Vec::new();
    for (id, carepath, enrolled_at, gateway) in sessions {
        let measures = schedule(&carepath);
        if measures.is_empty() {
            continue;
        }
        let mut latest: Vec<(Measure, Option<DateTime<Utc>>)> =
            measures.iter().map(|m| (*m, None)).collect();
        let rows = recent.query_map(params![id, bound], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (kind, time, payload) = row?;
            let Some(time) = parse_time(&time) else {
                continue;
            };
            for (m, last) in &mut latest {
                if m.satisfied_by(&kind, &payload) && last.is_none_or(|l| l < time) {
                    *last = Some(time);
                }
            }
        }
        out.push(SessionAdherence {
            telemonitoring_id: id,
            gateway_id: gateway,
            monitored_since: parse_time(&enrolled_at).unwrap_or(now),
            latest,
        });
    }
    Ok(out)
}
