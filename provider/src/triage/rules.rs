//! The carepath's triage rules: typed, pure functions from a patient's stored readings to the
//! findings a nurse must look at.
//!
//! Every rule walks its *points* in time order (a day's weight, one cuff reading, one pulse
//! value) and asks whether its condition holds at each. Consecutive points where it holds are
//! one **episode**, from its first point to its last. A point where the condition does not
//! hold ends the episode; days without data (a day without weighing) do not, unless more than
//! [`EPISODE_GAP_DAYS`] pass without a point of that rule. The episode depends only on the
//! readings, so evaluating the same readings again, on another instance or after a restart,
//! finds the same episode, and the store raises it once (an episode that overlaps a stored one
//! is that one, continued: [`crate::store::triage`]).
//!
//! Days are the patient's calendar days in their time zone: "overnight" is yesterday's weight
//! against today's whatever the length of the night (a daylight-saving change makes a day 23 or
//! 25 hours), and a day's weight is its first one (the morning weight, before eating). Readings
//! whose time cannot be trusted (`device-unset-untrusted`) are left out: they have no place in
//! time.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use tm_protocol::{Reading, ReadingKind, TimeQuality};

use crate::normal_range::{Flag, Range};
use crate::symptom::{Severity, Symptom, SymptomAnswer};

/// LOINC body weight.
pub const WEIGHT: &str = "29463-7";
/// LOINC systolic blood pressure.
pub const SYSTOLIC: &str = "8480-6";
/// LOINC heart rate.
pub const HEART_RATE: &str = "8867-4";
/// The cuff's flag for an irregular pulse during the measurement.
pub const IRREGULAR_PULSE: &str = "irregular-pulse";

/// Which rule found something; its name is the stored and displayed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleKind {
    /// Weight up by at least the configured kilograms within the configured days.
    WeightGain,
    /// Weight up by at least the configured kilograms since the previous day.
    OvernightWeightGain,
    /// Systolic pressure outside its range.
    SystolicOutOfRange,
    /// Heart rate outside its range.
    HeartRateOutOfRange,
    /// Irregular pulse flagged by the cuff at least the configured times within the days.
    IrregularPulseRepeated,
    /// A symptom the patient rated severe on the check-in page.
    SevereSymptom,
}

impl RuleKind {
    /// Every rule.
    pub const ALL: [RuleKind; 6] = [
        Self::WeightGain,
        Self::OvernightWeightGain,
        Self::SystolicOutOfRange,
        Self::HeartRateOutOfRange,
        Self::IrregularPulseRepeated,
        Self::SevereSymptom,
    ];

    /// The rule's key (`weight-gain`).
    pub fn name(self) -> &'static str {
        match self {
            Self::WeightGain => "weight-gain",
            Self::OvernightWeightGain => "overnight-weight-gain",
            Self::SystolicOutOfRange => "systolic-out-of-range",
            Self::HeartRateOutOfRange => "heart-rate-out-of-range",
            Self::IrregularPulseRepeated => "irregular-pulse-repeated",
            Self::SevereSymptom => "severe-symptom",
        }
    }

    /// The rule named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What a nurse reads (`Weight gain`).
    pub fn label(self) -> &'static str {
        match self {
            Self::WeightGain => "Weight gain",
            Self::OvernightWeightGain => "Overnight weight gain",
            Self::SystolicOutOfRange => "Systolic pressure out of range",
            Self::HeartRateOutOfRange => "Heart rate out of range",
            Self::IrregularPulseRepeated => "Irregular pulse, repeated",
            Self::SevereSymptom => "Severe symptom reported",
        }
    }

    /// The LOINC code of the values the rule judges (the pulse, for the irregular pulse);
    /// `None` for the patient's answers, which are not charted.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Self::WeightGain | Self::OvernightWeightGain => Some(WEIGHT),
            Self::SystolicOutOfRange => Some(SYSTOLIC),
            Self::HeartRateOutOfRange | Self::IrregularPulseRepeated => Some(HEART_RATE),
            Self::SevereSymptom => None,
        }
    }
}

/// A weight gain threshold: at least `kg` within `days` calendar days.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightGain {
    /// Kilograms gained.
    pub kg: f64,
    /// Over how many days (1 is "since the previous day").
    pub days: u32,
}

/// "At least `count` times within `days` calendar days" (the last day included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated {
    /// How many flagged readings.
    pub count: u32,
    /// Within how many days.
    pub days: u32,
}

/// A carepath's rules, or a patient's; `None` switches a rule off.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// [`RuleKind::WeightGain`].
    pub weight_gain: Option<WeightGain>,
    /// [`RuleKind::OvernightWeightGain`], in kilograms.
    pub overnight_gain_kg: Option<f64>,
    /// [`RuleKind::SystolicOutOfRange`], mmHg.
    pub systolic: Option<Range>,
    /// [`RuleKind::HeartRateOutOfRange`], beats per minute.
    pub heart_rate: Option<Range>,
    /// [`RuleKind::IrregularPulseRepeated`].
    pub irregular_pulse: Option<Repeated>,
    /// [`RuleKind::SevereSymptom`].
    pub severe_symptom: bool,
}

impl Rules {
    /// Heart failure, as the usual self-care advice for patients words it: call when the
    /// weight is up 2 kg in 3 days or 1 kg overnight; systolic 90-140 mmHg and heart rate
    /// 50-100 /min (the charted ranges); an irregular pulse twice within 7 days; any symptom
    /// the patient rates severe.
    pub fn heart_failure() -> Self {
        Self {
            weight_gain: Some(WeightGain { kg: 2.0, days: 3 }),
            overnight_gain_kg: Some(1.0),
            systolic: Some(Range {
                low: Some(90.0),
                high: Some(140.0),
            }),
            heart_rate: Some(Range {
                low: Some(50.0),
                high: Some(100.0),
            }),
            irregular_pulse: Some(Repeated { count: 2, days: 7 }),
            severe_symptom: true,
        }
    }

    /// How many days of readings before a new reading [`evaluate`] needs to judge it: the
    /// longest window of a rule, plus [`EPISODE_GAP_DAYS`] so that an episode still running
    /// is seen from a point of it the store already knows.
    pub fn context_days(&self) -> i64 {
        let gain = self.weight_gain.map_or(0, |g| g.days);
        let overnight = u32::from(self.overnight_gain_kg.is_some());
        let irregular = self.irregular_pulse.map_or(0, |r| r.days);
        i64::from(gain.max(overnight).max(irregular).max(1)) + EPISODE_GAP_DAYS
    }
}

/// One value that made a rule fire, as the worklist shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// When it was measured.
    pub at: DateTime<Utc>,
    /// LOINC code; for a symptom, its SNOMED CT code.
    pub code: &'static str,
    /// The value, in `unit`; for a symptom, its severity's rank ([`severity_rank`]).
    pub value: f64,
    /// UCUM unit; [`SEVERITY`] for a symptom.
    pub unit: &'static str,
}

/// The unit of a symptom's evidence: its severity's rank, 0 (absent) to 3 (severe).
pub const SEVERITY: &str = "{severity}";

/// A severity's rank, as evidence carries it.
pub fn severity_rank(s: Severity) -> f64 {
    match s {
        Severity::Absent => 0.0,
        Severity::Mild => 1.0,
        Severity::Moderate => 2.0,
        Severity::Severe => 3.0,
    }
}

/// The symptom and severity an evidence value of `code`, `unit` and `value` stands for: `None`
/// unless it is a symptom's evidence (unit [`SEVERITY`]). Also how the worklist reads the
/// evidence it stored.
pub fn symptom_evidence(
    code: &str,
    unit: &str,
    value: f64,
) -> Option<(&'static Symptom, Severity)> {
    if unit != SEVERITY {
        return None;
    }
    let severity = Severity::ALL
        .into_iter()
        .find(|&s| severity_rank(s) == value)?;
    Some((crate::symptom::codes::symptom(code)?, severity))
}

impl Evidence {
    /// The symptom and severity of a symptom's evidence.
    pub fn symptom(&self) -> Option<(&'static Symptom, Severity)> {
        symptom_evidence(self.code, self.unit, self.value)
    }
}

/// More days than this between two points of a rule end its episode.
pub const EPISODE_GAP_DAYS: i64 = 3;

/// An episode of one rule: the first point where it held, with the values that made it fire.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The rule.
    pub rule: RuleKind,
    /// The instant of the episode's first point: with the rule and the session, the episode's
    /// identity.
    pub episode: DateTime<Utc>,
    /// The instant of its last point so far.
    pub last: DateTime<Utc>,
    /// The values compared at that point (the baseline first, then the value that fired).
    pub evidence: Vec<Evidence>,
    /// What fired, for a nurse: "weight +2.4 kg in 3 days".
    pub summary: String,
}

/// One reading as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// When it was measured.
    pub at: DateTime<Utc>,
    /// What was measured.
    pub kind: ReadingKind,
    /// Its values by LOINC code.
    pub values: Vec<(String, f64)>,
    /// The cuff flagged an irregular pulse.
    pub irregular_pulse: bool,
}

impl Measured {
    /// The reading as the rules see it; `None` when its time cannot be trusted.
    pub fn from_reading(r: &Reading) -> Option<Self> {
        if r.time_quality == TimeQuality::DeviceUnsetUntrusted {
            return None;
        }
        Some(Self {
            at: r.effective_time.with_timezone(&Utc),
            kind: r.kind,
            values: r
                .components
                .iter()
                .map(|c| (c.code.clone(), c.value))
                .collect(),
            irregular_pulse: r.flags.iter().any(|f| f == IRREGULAR_PULSE),
        })
    }

    fn value(&self, code: &str) -> Option<f64> {
        self.values.iter().find(|(c, _)| c == code).map(|&(_, v)| v)
    }
}

/// Every episode the rules find in `readings` and the patient's `symptoms` (any order), the
/// days taken in `tz`: sorted by episode start, then rule.
pub fn evaluate(
    rules: &Rules,
    readings: &[Measured],
    symptoms: &[SymptomAnswer],
    tz: Tz,
) -> Vec<Finding> {
    let mut sorted: Vec<&Measured> = readings.iter().collect();
    sorted.sort_by_key(|m| m.at);
    let mut out = Vec::new();
    let days = daily_weights(&sorted, tz);
    if let Some(g) = rules.weight_gain {
        out.extend(weight_rule(&days, g, RuleKind::WeightGain));
    }
    if let Some(kg) = rules.overnight_gain_kg {
        let g = WeightGain { kg, days: 1 };
        out.extend(weight_rule(&days, g, RuleKind::OvernightWeightGain));
    }
    if let Some(range) = rules.systolic {
        out.extend(range_rule(
            &sorted,
            SYSTOLIC,
            "mm[Hg]",
            range,
            RuleKind::SystolicOutOfRange,
        ));
    }
    if let Some(range) = rules.heart_rate {
        out.extend(range_rule(
            &sorted,
            HEART_RATE,
            "/min",
            range,
            RuleKind::HeartRateOutOfRange,
        ));
    }
    if let Some(rep) = rules.irregular_pulse {
        out.extend(irregular_rule(&sorted, rep, tz));
    }
    if rules.severe_symptom {
        out.extend(severe_symptom_rule(symptoms));
    }
    out.sort_by_key(|f| (f.episode, f.rule));
    out
}

/// [`evaluate`] over stored readings (those whose time cannot be trusted left out) and
/// answers.
pub fn evaluate_readings(
    rules: &Rules,
    readings: &[Reading],
    symptoms: &[SymptomAnswer],
    tz: Tz,
) -> Vec<Finding> {
    let measured: Vec<Measured> = readings.iter().filter_map(Measured::from_reading).collect();
    evaluate(rules, &measured, symptoms, tz)
}

/// Turns a walk over points into episodes: each point comes with the finding it would raise,
/// or `None` where the condition does not hold; a run keeps its first finding and extends its
/// `last` to the run's last point.
struct Episodes {
    out: Vec<Finding>,
    in_episode: bool,
    previous: Option<DateTime<Utc>>,
}

impl Episodes {
    fn new() -> Self {
        Self {
            out: Vec::new(),
            in_episode: false,
            previous: None,
        }
    }

    fn point(&mut self, at: DateTime<Utc>, finding: Option<Finding>) {
        let gap = self
            .previous
            .is_some_and(|p| at - p > chrono::Duration::days(EPISODE_GAP_DAYS));
        self.previous = Some(at);
        if gap {
            self.in_episode = false;
        }
        match finding {
            Some(f) if !self.in_episode => {
                self.out.push(f);
                self.in_episode = true;
            }
            Some(_) => {
                if let Some(current) = self.out.last_mut() {
                    current.last = at;
                }
            }
            None => self.in_episode = false,
        }
    }
}

/// The first weight of each local day.
fn daily_weights(sorted: &[&Measured], tz: Tz) -> BTreeMap<NaiveDate, (DateTime<Utc>, f64)> {
    let mut days = BTreeMap::new();
    for m in sorted {
        if let Some(kg) = m.value(WEIGHT) {
            let day = m.at.with_timezone(&tz).date_naive();
            days.entry(day).or_insert((m.at, kg));
        }
    }
    days
}

fn weight_rule(
    days: &BTreeMap<NaiveDate, (DateTime<Utc>, f64)>,
    gain: WeightGain,
    rule: RuleKind,
) -> Vec<Finding> {
    let mut episodes = Episodes::new();
    for (&day, &(at, kg)) in days {
        let Some(first) = day.checked_sub_days(chrono::Days::new(u64::from(gain.days))) else {
            continue;
        };
        // The lightest of the earlier days in the window: a gain from any of them counts.
        let baseline = days
            .range(first..day)
            .map(|(_, &(t, w))| (t, w))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((base_at, base_kg)) = baseline else {
            // Nothing to compare with: neither fires nor ends an episode.
            continue;
        };
        let up = kg - base_kg;
        // Rounded to the scale's 10 g so that 2.0 kg read as 1.9999999 still fires.
        let fired = (up * 100.0).round() >= (gain.kg * 100.0).round();
        episodes.point(
            at,
            fired.then(|| Finding {
                rule,
                episode: at,
                last: at,
                evidence: vec![weight(base_at, base_kg), weight(at, kg)],
                summary: if gain.days == 1 {
                    format!("weight +{up:.1} kg since the day before")
                } else {
                    format!("weight +{up:.1} kg in {} days", gain.days)
                },
            }),
        );
    }
    episodes.out
}

fn weight(at: DateTime<Utc>, value: f64) -> Evidence {
    Evidence {
        at,
        code: WEIGHT,
        value,
        unit: "kg",
    }
}

fn range_rule(
    sorted: &[&Measured],
    code: &'static str,
    unit: &'static str,
    range: Range,
    rule: RuleKind,
) -> Vec<Finding> {
    let mut episodes = Episodes::new();
    for m in sorted {
        let Some(v) = m.value(code) else { continue };
        let side = match range.flag(v) {
            Flag::Low => range.low.map(|l| ("below", l)),
            Flag::High => range.high.map(|h| ("above", h)),
            Flag::Normal => None,
        };
        episodes.point(
            m.at,
            side.map(|(side, bound)| Finding {
                rule,
                episode: m.at,
                last: m.at,
                evidence: vec![Evidence {
                    at: m.at,
                    code,
                    value: v,
                    unit,
                }],
                summary: format!("{} {v} {unit}, {side} {bound}", label(code)),
            }),
        );
    }
    episodes.out
}

fn label(code: &str) -> &'static str {
    match code {
        SYSTOLIC => "systolic",
        HEART_RATE => "heart rate",
        _ => "value",
    }
}

/// At each cuff reading: the flagged cuff readings of the window of `rep.days` local days that
/// ends with the reading's day, up to the reading itself.
fn irregular_rule(sorted: &[&Measured], rep: Repeated, tz: Tz) -> Vec<Finding> {
    let cuff: Vec<&Measured> = sorted
        .iter()
        .copied()
        .filter(|m| m.kind == ReadingKind::BloodPressure)
        .collect();
    let mut episodes = Episodes::new();
    for (i, m) in cuff.iter().enumerate() {
        let day = m.at.with_timezone(&tz).date_naive();
        let first = day
            .checked_sub_days(chrono::Days::new(u64::from(rep.days.saturating_sub(1))))
            .unwrap_or(day);
        let flagged: Vec<&&Measured> = cuff[..=i]
            .iter()
            .filter(|p| p.irregular_pulse && p.at.with_timezone(&tz).date_naive() >= first)
            .collect();
        let fired = flagged.len() >= rep.count as usize && rep.count > 0;
        episodes.point(
            m.at,
            fired.then(|| Finding {
                rule: RuleKind::IrregularPulseRepeated,
                episode: m.at,
                last: m.at,
                evidence: flagged
                    .iter()
                    .filter_map(|p| {
                        p.value(HEART_RATE).map(|v| Evidence {
                            at: p.at,
                            code: HEART_RATE,
                            value: v,
                            unit: "/min",
                        })
                    })
                    .collect(),
                summary: format!(
                    "irregular pulse {} times in {} days",
                    flagged.len(),
                    rep.days
                ),
            }),
        );
    }
    episodes.out
}

/// At each check-in (the answers sent together): whether the patient rated a symptom severe.
/// A check-in without a severe answer ends the episode; one answered again the same way
/// continues it.
fn severe_symptom_rule(symptoms: &[SymptomAnswer]) -> Vec<Finding> {
    let mut checkins: BTreeMap<(DateTime<Utc>, &str), BTreeMap<&str, &SymptomAnswer>> =
        BTreeMap::new();
    for a in symptoms {
        let at = a.end.with_timezone(&Utc);
        let checkin = checkins.entry((at, &a.submission)).or_default();
        checkin.insert(&a.answer_id, a);
    }
    let mut episodes = Episodes::new();
    for ((at, _), answers) in checkins {
        let mut severe: Vec<&SymptomAnswer> = answers
            .into_values()
            .filter(|a| a.severity == Severity::Severe)
            .collect();
        severe.sort_by_key(|a| a.symptom.code);
        let names: Vec<&str> = severe.iter().map(|a| a.symptom.display).collect();
        episodes.point(
            at,
            (!severe.is_empty()).then(|| Finding {
                rule: RuleKind::SevereSymptom,
                episode: at,
                last: at,
                evidence: severe
                    .iter()
                    .map(|a| Evidence {
                        at,
                        code: a.symptom.code,
                        value: severity_rank(a.severity),
                        unit: SEVERITY,
                    })
                    .collect(),
                summary: format!("severe: {}", names.join(", ")),
            }),
        );
    }
    episodes.out
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
