//! Adherence ("blue alarm"): a session whose carepath schedules daily measurements has none of
//! a scheduled kind by the deadline, in the patient's time zone.
//!
//! The rule, per scheduled measure: let `D` be the latest deadline (local `HH:MM` in the
//! patient's zone) at or before now, and `W` the deadline the day before (`D − 1 day` in local
//! time, so DST days are 23 or 25 hours long). If the session was monitored since at least `W`
//! and no reading of the measure has an effective time at or after `W`, the measure is missed.
//! A late reading (after `D`) satisfies it, so the alarm clears as soon as the patient measures.
//!
//! The schedules and the latest reading of each scheduled measure are read by the store
//! ([`crate::store::adherence`]), in the evaluator's transaction.

use chrono::{DateTime, Days, NaiveTime, TimeZone as _, Utc};

pub use crate::store::adherence::HEART_FAILURE;
use crate::store::adherence::{Measure, SessionAdherence};

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
