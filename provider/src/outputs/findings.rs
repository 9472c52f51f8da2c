//! What the carepath's triage rules find in the readings an output shows, as the PDF and the
//! dashboard list them: the same rules as the nurses' worklist (`crate::triage`), judged over
//! the snapshot's own readings, so an attachment's bytes still depend on its readings only.

use chrono_tz::Tz;
use tm_protocol::Reading;

use super::labels::{Labels, format_value};
use crate::symptom::SymptomAnswer;
use crate::triage::rules::{self, Finding, Rules};

/// The findings of a session's readings, with the time zone their days were taken in.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    /// The episodes, by start.
    pub list: Vec<Finding>,
    /// The patients' time zone.
    pub tz: Tz,
}

impl Findings {
    /// No rule for the session.
    pub fn none() -> Self {
        Self {
            list: Vec::new(),
            tz: chrono_tz::Europe::Brussels,
        }
    }

    /// What `rules` (`None`: the session's carepath has none) find in `readings` and the
    /// patient's `symptoms`.
    pub fn of(
        readings: &[Reading],
        symptoms: &[SymptomAnswer],
        rules: Option<&Rules>,
        tz: Tz,
    ) -> Self {
        Self {
            list: rules.map_or_else(Vec::new, |r| {
                rules::evaluate_readings(r, readings, symptoms, tz)
            }),
            tz,
        }
    }

    /// One line per finding in `l`'s language: the rule, then each value with its local time
    /// (`Weight gain: 80 kg 2026-05-04 07:00 -> 82.1 kg 2026-05-07 07:00`, values written as the
    /// report's table writes them), `arrow` between
    /// values.
    pub fn lines(&self, l: &Labels, arrow: &str) -> Vec<(&'static str, String)> {
        self.list
            .iter()
            .map(|f| {
                let values: Vec<String> = f
                    .evidence
                    .iter()
                    .map(|e| {
                        let at = e.at.with_timezone(&self.tz).format("%Y-%m-%d %H:%M");
                        if let Some((symptom, severity)) = e.symptom() {
                            let lang = l.language();
                            return format!(
                                "{}: {} {at}",
                                lang.pick(symptom.words),
                                lang.pick(severity.words())
                            );
                        }
                        let unit = if e.unit == "mm[Hg]" { "mmHg" } else { e.unit };
                        format!("{} {unit} {at}", format_value(e.value))
                    })
                    .collect();
                (
                    f.rule.name(),
                    format!("{}: {}", l.rule(f.rule), values.join(arrow)),
                )
            })
            .collect()
    }
}
