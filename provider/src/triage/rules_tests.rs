//! The rules on fixed instants, in Brussels (daylight-saving changes on 2026-03-29 and
//! 2026-10-25) and in UTC.

use chrono::{NaiveDate, TimeZone};

use super::*;

const BRUSSELS: Tz = chrono_tz::Europe::Brussels;

/// `hh:mm` local time in Brussels on `date` (`2026-03-28`).
fn local(date: &str, hh: u32, mm: u32) -> DateTime<Utc> {
    let d: NaiveDate = date.parse().unwrap();
    BRUSSELS
        .from_local_datetime(&d.and_hms_opt(hh, mm, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn weighed(at: DateTime<Utc>, kg: f64) -> Measured {
    Measured {
        at,
        kind: ReadingKind::BodyWeight,
        values: vec![(WEIGHT.into(), kg)],
        irregular_pulse: false,
    }
}

fn cuff(at: DateTime<Utc>, systolic: f64, pulse: f64, irregular: bool) -> Measured {
    Measured {
        at,
        kind: ReadingKind::BloodPressure,
        values: vec![
            (SYSTOLIC.into(), systolic),
            ("8462-4".into(), 80.0),
            (HEART_RATE.into(), pulse),
        ],
        irregular_pulse: irregular,
    }
}

fn only(rule: RuleKind) -> Rules {
    let hf = Rules::heart_failure();
    Rules {
        weight_gain: hf.weight_gain.filter(|_| rule == RuleKind::WeightGain),
        overnight_gain_kg: hf
            .overnight_gain_kg
            .filter(|_| rule == RuleKind::OvernightWeightGain),
        systolic: hf.systolic.filter(|_| rule == RuleKind::SystolicOutOfRange),
        heart_rate: hf
            .heart_rate
            .filter(|_| rule == RuleKind::HeartRateOutOfRange),
        irregular_pulse: hf
            .irregular_pulse
            .filter(|_| rule == RuleKind::IrregularPulseRepeated),
        severe_symptom: rule == RuleKind::SevereSymptom,
    }
}

#[test]
fn one_kilogram_overnight_fires_across_both_daylight_saving_changes() {
    let rules = only(RuleKind::OvernightWeightGain);
    for (before, after) in [("2026-03-28", "2026-03-29"), ("2026-10-24", "2026-10-25")] {
        let readings = [
            weighed(local(before, 7, 0), 80.0),
            weighed(local(after, 7, 0), 81.0),
        ];
        let found = evaluate(&rules, &readings, &[], BRUSSELS);
        assert_eq!(found.len(), 1, "{before} -> {after}: {found:?}");
        let f = &found[0];
        assert_eq!(f.rule, RuleKind::OvernightWeightGain);
        assert_eq!(f.episode, local(after, 7, 0));
        assert_eq!(f.evidence[0].value, 80.0);
        assert_eq!(f.evidence[1].value, 81.0);
        assert_eq!(f.summary, "weight +1.0 kg since the day before");
    }
    // The nights were 23 and 25 hours long; both are one night.
    assert_eq!(
        local("2026-03-29", 7, 0) - local("2026-03-28", 7, 0),
        chrono::Duration::hours(23)
    );
    assert_eq!(
        local("2026-10-25", 7, 0) - local("2026-10-24", 7, 0),
        chrono::Duration::hours(25)
    );
}

#[test]
fn the_day_is_the_patients_day_not_utcs() {
    let rules = only(RuleKind::OvernightWeightGain);
    // 23:30 UTC on 12 January is 00:30 on 13 January in Brussels: the first weight of the
    // patient's next day, but a second weight of the same day in UTC.
    let evening = Utc.with_ymd_and_hms(2026, 1, 12, 6, 30, 0).unwrap();
    let night = Utc.with_ymd_and_hms(2026, 1, 12, 23, 30, 0).unwrap();
    let readings = [weighed(evening, 80.0), weighed(night, 81.2)];
    assert_eq!(evaluate(&rules, &readings, &[], BRUSSELS).len(), 1);
    assert!(evaluate(&rules, &readings, &[], chrono_tz::UTC).is_empty());
}

#[test]
fn a_days_weight_is_its_first_and_a_lower_one_later_does_not_hide_the_gain() {
    let rules = only(RuleKind::OvernightWeightGain);
    let readings = [
        weighed(local("2026-02-02", 7, 5), 80.0),
        weighed(local("2026-02-03", 7, 10), 81.1),
        // After the diuretic: the morning weight still counts.
        weighed(local("2026-02-03", 18, 0), 79.9),
    ];
    let found = evaluate(&rules, &readings, &[], BRUSSELS);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].evidence[1].value, 81.1);
}

#[test]
fn two_kilograms_within_three_days_fires_once_and_ends_when_the_gain_is_gone() {
    let rules = only(RuleKind::WeightGain);
    let readings = [
        weighed(local("2026-05-04", 7, 0), 80.0),
        weighed(local("2026-05-05", 7, 0), 80.7),
        weighed(local("2026-05-06", 7, 0), 81.4),
        // 2.0 kg above 4 May, within three days: fires (each night alone is under 1 kg).
        weighed(local("2026-05-07", 7, 0), 82.0),
        // 0.9 kg above 5 May, the lightest of the three days before: the episode ends.
        weighed(local("2026-05-08", 7, 0), 81.6),
    ];
    let found = evaluate(&rules, &readings, &[], BRUSSELS);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].episode, local("2026-05-07", 7, 0));
    assert_eq!(found[0].last, local("2026-05-07", 7, 0));
    assert_eq!(found[0].summary, "weight +2.0 kg in 3 days");
    assert!(
        evaluate(
            &only(RuleKind::OvernightWeightGain),
            &readings,
            &[],
            BRUSSELS
        )
        .is_empty()
    );
    // Four days apart is outside the window.
    let slow = [
        weighed(local("2026-05-04", 7, 0), 80.0),
        weighed(local("2026-05-08", 7, 0), 82.5),
    ];
    assert!(evaluate(&rules, &slow, &[], BRUSSELS).is_empty());
}

#[test]
fn a_run_of_high_systolic_readings_is_one_episode_and_a_normal_one_ends_it() {
    let rules = only(RuleKind::SystolicOutOfRange);
    let readings = [
        cuff(local("2026-06-01", 8, 0), 150.0, 70.0, false),
        cuff(local("2026-06-01", 20, 0), 152.0, 70.0, false),
        cuff(local("2026-06-02", 8, 0), 138.0, 70.0, false),
        cuff(local("2026-06-02", 20, 0), 85.0, 70.0, false),
    ];
    let found = evaluate(&rules, &readings, &[], BRUSSELS);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].episode, local("2026-06-01", 8, 0));
    assert_eq!(found[0].last, local("2026-06-01", 20, 0));
    assert_eq!(found[0].summary, "systolic 150 mm[Hg], above 140");
    assert_eq!(found[1].summary, "systolic 85 mm[Hg], below 90");
    // The same readings in another order give the same episodes.
    let mut shuffled = readings.to_vec();
    shuffled.reverse();
    assert_eq!(evaluate(&rules, &shuffled, &[], BRUSSELS), found);
}

#[test]
fn more_than_three_days_without_a_reading_ends_an_episode() {
    let rules = only(RuleKind::HeartRateOutOfRange);
    let readings = [
        cuff(local("2026-06-01", 8, 0), 120.0, 110.0, false),
        cuff(local("2026-06-04", 8, 0), 120.0, 112.0, false),
        cuff(local("2026-06-08", 8, 0), 120.0, 45.0, false),
    ];
    let found = evaluate(&rules, &readings, &[], BRUSSELS);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].last, local("2026-06-04", 8, 0));
    assert_eq!(found[1].summary, "heart rate 45 /min, below 50");
}

#[test]
fn an_irregular_pulse_twice_within_seven_days_fires() {
    let rules = only(RuleKind::IrregularPulseRepeated);
    let once_a_week = [
        cuff(local("2026-07-01", 8, 0), 120.0, 70.0, true),
        cuff(local("2026-07-08", 8, 0), 120.0, 72.0, true),
    ];
    assert!(evaluate(&rules, &once_a_week, &[], BRUSSELS).is_empty());
    let twice = [
        cuff(local("2026-07-01", 8, 0), 120.0, 70.0, true),
        cuff(local("2026-07-03", 8, 0), 120.0, 70.0, false),
        cuff(local("2026-07-07", 8, 0), 120.0, 88.0, true),
        // Still two flagged within the 7 days ending today: the same episode.
        cuff(local("2026-07-07", 20, 0), 120.0, 70.0, false),
    ];
    let found = evaluate(&rules, &twice, &[], BRUSSELS);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].episode, local("2026-07-07", 8, 0));
    assert_eq!(found[0].last, local("2026-07-07", 20, 0));
    assert_eq!(found[0].evidence.len(), 2);
    assert_eq!(found[0].summary, "irregular pulse 2 times in 7 days");
}

#[test]
fn a_rule_switched_off_finds_nothing_and_names_round_trip() {
    let off = Rules {
        weight_gain: None,
        overnight_gain_kg: None,
        systolic: None,
        heart_rate: None,
        irregular_pulse: None,
        severe_symptom: false,
    };
    let readings = [
        weighed(local("2026-02-02", 7, 0), 80.0),
        weighed(local("2026-02-03", 7, 0), 85.0),
        cuff(local("2026-02-03", 8, 0), 200.0, 150.0, true),
        cuff(local("2026-02-03", 9, 0), 200.0, 150.0, true),
    ];
    assert!(evaluate(&off, &readings, &[], BRUSSELS).is_empty());
    assert_eq!(
        evaluate(&Rules::heart_failure(), &readings, &[], BRUSSELS).len(),
        5
    );
    for k in RuleKind::ALL {
        assert_eq!(RuleKind::from_name(k.name()), Some(k));
    }
}

fn checkin(at: &str, submission: &str, answers: &[(&str, Severity)]) -> Vec<SymptomAnswer> {
    let end = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    answers
        .iter()
        .map(|&(code, severity)| {
            let symptom = crate::symptom::codes::symptom(code).unwrap();
            let start = end - chrono::Duration::minutes(3);
            SymptomAnswer::new("tm-1", submission, symptom, severity, start, end)
        })
        .collect()
}

#[test]
fn a_severe_symptom_fires_once_per_run_of_check_ins() {
    const BREATH: &str = "267036007";
    const FATIGUE: &str = "84229001";
    let mut answers = Vec::new();
    answers.extend(checkin(
        "2026-03-27T08:00:00+01:00",
        "a",
        &[(BREATH, Severity::Moderate)],
    ));
    answers.extend(checkin(
        "2026-03-28T08:00:00+01:00",
        "b",
        &[(BREATH, Severity::Severe), (FATIGUE, Severity::Severe)],
    ));
    // Across the change to summer time: the next morning is 23 hours later.
    answers.extend(checkin(
        "2026-03-29T08:00:00+02:00",
        "c",
        &[(BREATH, Severity::Severe)],
    ));
    answers.extend(checkin(
        "2026-03-30T08:00:00+02:00",
        "d",
        &[(BREATH, Severity::Mild)],
    ));
    answers.extend(checkin(
        "2026-03-31T08:00:00+02:00",
        "e",
        &[(FATIGUE, Severity::Severe)],
    ));
    let rules = only(RuleKind::SevereSymptom);
    let found = evaluate(&rules, &[], &answers, BRUSSELS);
    assert_eq!(found.len(), 2, "{found:?}");
    let first = &found[0];
    assert_eq!(first.rule, RuleKind::SevereSymptom);
    assert_eq!(first.episode.to_rfc3339(), "2026-03-28T07:00:00+00:00");
    assert_eq!(first.last.to_rfc3339(), "2026-03-29T06:00:00+00:00");
    assert_eq!(first.summary, "severe: Shortness of breath, Fatigue");
    let named: Vec<_> = first
        .evidence
        .iter()
        .map(|e| e.symptom().map(|(s, sev)| (s.code, sev)))
        .collect();
    assert_eq!(
        named,
        [
            Some((BREATH, Severity::Severe)),
            Some((FATIGUE, Severity::Severe))
        ]
    );
    assert_eq!(found[1].episode.to_rfc3339(), "2026-03-31T06:00:00+00:00");
    // The same answers in another order, or sent twice, find the same episodes.
    let mut again = answers.clone();
    again.reverse();
    again.extend(answers.clone());
    assert_eq!(evaluate(&rules, &[], &again, BRUSSELS), found);
    // Off, or no severe answer: nothing.
    assert!(evaluate(&Rules::none(), &[], &answers, BRUSSELS).is_empty());
    let mild = checkin(
        "2026-03-28T08:00:00+01:00",
        "x",
        &[(BREATH, Severity::Moderate)],
    );
    assert!(evaluate(&rules, &[], &mild, BRUSSELS).is_empty());
}
