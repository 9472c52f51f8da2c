//! Adherence ("blue alarm"): a session whose carepath schedules daily measurements has none of
//! a scheduled kind by the deadline, in the patient's time zone.
//!
//! The rule, per scheduled measure: let `D` be the latest deadline (local `HH:MM` in the
//! patient's zone) at or before now, and `W` the deadline the day before (`D − 1 day` in local
//! time, so DST days are 23 or 25 hours long). If the session was monitored since at least `W`
//! and no reading of the measure has an effective time at or after `W`, the measure is missed.
//! A late reading (after `D`) satisfies it, so the alarm clears as soon as the patient measures.

use chrono::{DateTime, Days, NaiveTime, TimeZone as _, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

use super::health::parse_time;

/// A scheduled measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// Body weight.
    BodyWeight,
    /// Blood pressure.
    BloodPressure,
    /// Heart rate (a blood pressure reading's pulse counts).
    HeartRate,
}

impl Measure {
    /// Stable name, used in alert subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BodyWeight => "body-weight",
            Self::BloodPressure => "blood-pressure",
            Self::HeartRate => "heart-rate",
        }
    }

    /// Whether a stored reading (its kind and JSON payload) counts for this measure.
    fn satisfied_by(self, kind: &str, payload: &str) -> bool {
        match self {
            Self::BodyWeight => kind == "body-weight",
            Self::BloodPressure => kind == "blood-pressure",
            // LOINC 8867-4: heart rate; blood pressure monitors report the pulse with it.
            Self::HeartRate => {
                kind == "heart-rate" || (kind == "blood-pressure" && payload.contains("\"8867-4\""))
            }
        }
    }
}

/// The heart-failure carepath (docs/fhir.md §3).
pub const HEART_FAILURE: &str =
    "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure";

/// The daily measures a carepath schedules; empty when it schedules none we check.
pub fn schedule(carepath_id: &str) -> &'static [Measure] {
    match carepath_id {
        HEART_FAILURE => &[
            Measure::BodyWeight,
            Measure::BloodPressure,
            Measure::HeartRate,
        ],
        _ => &[],
    }
}

/// One monitored session and the latest reading time of each scheduled measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAdherence {
    /// The session.
    pub telemonitoring_id: String,
    /// Its gateway (the first enrolled), for the alert's context.
    pub gateway_id: Option<String>,
    /// Since when it is monitored (its gateway's enrollment).
    pub monitored_since: DateTime<Utc>,
    /// Scheduled measures with their latest effective time.
    pub latest: Vec<(Measure, Option<DateTime<Utc>>)>,
}

/// The latest deadline at or before `now`, and the one a day earlier (the window start).
pub fn window(
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
    deadline: NaiveTime,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |date: chrono::NaiveDate| -> DateTime<Utc> {
        let local = date.and_time(deadline);
        tz.from_local_datetime(&local)
            .earliest()
            // A deadline inside a DST gap: the first instant after the gap.
            .or_else(|| {
                tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map_or(now, |t| t.with_timezone(&Utc))
    };
    let today = now.with_timezone(&tz).date_naive();
    let mut d = today;
    if at(d) > now {
        d = d.checked_sub_days(Days::new(1)).unwrap_or(d);
    }
    let previous = d.checked_sub_days(Days::new(1)).unwrap_or(d);
    (at(d), at(previous))
}

/// The measures `s` missed at `now`, each with the window start it has no reading since.
pub fn missed(
    s: &SessionAdherence,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
    deadline: NaiveTime,
) -> Vec<(Measure, DateTime<Utc>)> {
    let (_, since) = window(now, tz, deadline);
    if s.monitored_since > since {
        return vec![];
    }
    s.latest
        .iter()
        .filter(|(_, last)| last.is_none_or(|t| t < since))
        .map(|(m, _)| (*m, since))
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const ELEVEN: NaiveTime = NaiveTime::from_hms_opt(11, 0, 0).unwrap();

    #[test]
    fn the_window_follows_the_patients_clock_across_dst() {
        let tz = chrono_tz::Europe::Brussels;
        // Winter: 11:00 Brussels is 10:00 UTC.
        let (d, w) = window(utc("2026-01-06T10:30:00Z"), tz, ELEVEN);
        assert_eq!(d, utc("2026-01-06T10:00:00Z"));
        assert_eq!(w, utc("2026-01-05T10:00:00Z"));
        // Before today's deadline the latest deadline is yesterday's.
        let (d, _) = window(utc("2026-01-06T09:59:00Z"), tz, ELEVEN);
        assert_eq!(d, utc("2026-01-05T10:00:00Z"));
        // The day after the spring change (29 March 2026): a 23-hour window.
        let (d, w) = window(utc("2026-03-30T12:00:00Z"), tz, ELEVEN);
        assert_eq!(d, utc("2026-03-30T09:00:00Z"));
        assert_eq!(w, utc("2026-03-29T09:00:00Z"));
        let (d, w) = window(utc("2026-03-29T12:00:00Z"), tz, ELEVEN);
        assert_eq!(d - w, chrono::Duration::hours(23));
    }

    #[test]
    fn a_measure_is_missed_without_a_reading_since_the_window_start() {
        let tz = chrono_tz::Europe::Brussels;
        let mut s = SessionAdherence {
            telemonitoring_id: "tm-1".into(),
            gateway_id: None,
            monitored_since: utc("2026-01-04T08:00:00Z"),
            latest: vec![
                (Measure::BodyWeight, Some(utc("2026-01-05T07:00:00Z"))),
                (Measure::BloodPressure, Some(utc("2026-01-05T11:00:00Z"))),
                (Measure::HeartRate, None),
            ],
        };
        let now = utc("2026-01-06T10:30:00Z");
        let missed: Vec<_> = missed(&s, now, tz, ELEVEN)
            .into_iter()
            .map(|m| m.0)
            .collect();
        assert_eq!(missed, vec![Measure::BodyWeight, Measure::HeartRate]);
        // A session enrolled after the window start is not judged yet.
        s.monitored_since = utc("2026-01-05T12:00:00Z");
        assert!(super::missed(&s, now, tz, ELEVEN).is_empty());
    }
}
