//! Readings to what the PDF report and the dashboard draw: one [`Chart`] per measurement (blood
//! pressure draws systolic and diastolic together), each a set of time series, plus the table
//! rows of every reading, with values outside the configured [`Ranges`] marked.
//!
//! Charts only hold readings whose time can be trusted: a reading of quality
//! `device-unset-untrusted` has no place on a time axis. It still appears in the table, flagged,
//! like every other reading (undecoded bytes and cuff-pressure frames included): the report
//! shows everything the devices sent.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::Deserialize;
use tm_protocol::{Reading, ReadingKind, TimeQuality};

use super::fhir::values::decimal as observation_decimal;

pub use crate::normal_range::{Flag, Range};

/// Normal ranges per LOINC code, configurable per carepath or per patient.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Ranges(pub BTreeMap<String, Range>);

impl Ranges {
    /// Ranges commonly used to review heart-failure telemonitoring (adult): systolic 90-140,
    /// diastolic 60-90 mmHg, heart rate 50-100 /min, SpO2 at least 92 %, temperature
    /// 36.0-37.8 °C, glucose 70-180 mg/dL (3.9-10.0 mmol/L). Weight has no absolute range.
    pub fn heart_failure() -> Self {
        let r = |code: &str, low, high| (code.to_owned(), Range { low, high });
        Ranges(BTreeMap::from([
            r("8480-6", Some(90.0), Some(140.0)),
            r("8462-4", Some(60.0), Some(90.0)),
            r("8867-4", Some(50.0), Some(100.0)),
            r("2708-6", Some(92.0), None),
            r("8310-5", Some(36.0), Some(37.8)),
            r("2339-0", Some(70.0), Some(180.0)),
            r("15074-8", Some(3.9), Some(10.0)),
        ]))
    }

    /// The range of `code`.
    pub fn get(&self, code: &str) -> Option<Range> {
        self.0.get(code).copied()
    }

    /// Where `value` of `code` lies.
    pub fn flag(&self, code: &str, value: f64) -> Flag {
        self.get(code).map_or(Flag::Normal, |r| r.flag(value))
    }
}

impl Default for Ranges {
    fn default() -> Self {
        Self::heart_failure()
    }
}

/// What a chart shows; its title is translated by the renderer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Measure {
    /// Body weight.
    BodyWeight,
    /// Systolic and diastolic blood pressure.
    BloodPressure,
    /// Heart rate, from the cuff, the oximeter or a strap.
    HeartRate,
    /// Oxygen saturation.
    SpO2,
    /// Body temperature.
    BodyTemperature,
    /// Capillary glucose (mg/dL).
    GlucoseMass,
    /// Capillary glucose (mmol/L).
    GlucoseMoles,
}

impl Measure {
    /// Every chart, in report order, with the LOINC codes of its lines and their unit.
    pub const ALL: [(Measure, &'static [&'static str], &'static str); 7] = [
        (Measure::BodyWeight, &["29463-7"], "kg"),
        (Measure::BloodPressure, &["8480-6", "8462-4"], "mmHg"),
        (Measure::HeartRate, &["8867-4"], "/min"),
        (Measure::SpO2, &["2708-6"], "%"),
        (Measure::BodyTemperature, &["8310-5"], "°C"),
        (Measure::GlucoseMass, &["2339-0"], "mg/dL"),
        (Measure::GlucoseMoles, &["15074-8"], "mmol/L"),
    ];
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// LOINC code of the values.
    pub code: &'static str,
    /// (time, value), in time order.
    pub points: Vec<(DateTime<FixedOffset>, f64)>,
}

/// One chart: a measurement with its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// What it shows.
    pub measure: Measure,
    /// Unit text of the axis.
    pub unit: &'static str,
    /// The lines (one, or systolic + diastolic).
    pub series: Vec<Series>,
}

impl Chart {
    /// The latest point of the first line.
    pub fn latest(&self) -> Option<(DateTime<FixedOffset>, Vec<f64>)> {
        let first = self.series.first()?;
        let (at, _) = *first.points.last()?;
        let values = self
            .series
            .iter()
            .filter_map(|s| s.points.iter().rev().find(|(t, _)| *t == at).map(|p| p.1))
            .collect();
        Some((at, values))
    }

    /// Smallest and largest value over all lines, widened to include the configured range.
    pub fn value_bounds(&self, ranges: &Ranges) -> (f64, f64) {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for s in &self.series {
            for &(_, v) in &s.points {
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if let Some(r) = ranges.get(s.code) {
                for b in [r.low, r.high].into_iter().flatten() {
                    lo = lo.min(b);
                    hi = hi.max(b);
                }
            }
        }
        if hi - lo < 1e-9 {
            (lo - 1.0, hi + 1.0)
        } else {
            let pad = (hi - lo) * 0.08;
            (lo - pad, hi + pad)
        }
    }
}

/// A charted component of a table row.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// LOINC or local code.
    pub code: String,
    /// The value, rounded for display; `None` when the device sent a special value.
    pub value: Option<f64>,
    /// UCUM unit.
    pub unit: String,
    /// Against the range.
    pub flag: Flag,
}

/// One reading in the report's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The effective time (not trustworthy when `time_quality` says so).
    pub at: DateTime<FixedOffset>,
    /// What was measured.
    pub kind: ReadingKind,
    /// How far the time can be trusted.
    pub time_quality: TimeQuality,
    /// The values.
    pub cells: Vec<Cell>,
    /// The device's model (or manufacturer) for the reader.
    pub device: String,
}

impl Row {
    /// Whether any value is out of range.
    pub fn out_of_range(&self) -> bool {
        self.cells.iter().any(|c| c.flag != Flag::Normal)
    }
}

/// Whether a reading's time can be placed on a chart.
pub fn time_is_trusted(q: TimeQuality) -> bool {
    q != TimeQuality::DeviceUnsetUntrusted
}

/// Everything the PDF and the dashboard draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// Charts that have at least one point, in [`Measure::ALL`] order.
    pub charts: Vec<Chart>,
    /// Every reading, in time order.
    pub rows: Vec<Row>,
}

/// Builds the charts and the table of `readings`.
pub fn overview(readings: &[Reading], ranges: &Ranges) -> Overview {
    let mut sorted: Vec<&Reading> = readings.iter().collect();
    sorted
        .sort_by(|a, b| (a.effective_time, &a.reading_id).cmp(&(b.effective_time, &b.reading_id)));
    sorted.dedup_by(|a, b| a.reading_id == b.reading_id);

    let charted = |r: &Reading| {
        time_is_trusted(r.time_quality)
            && !matches!(
                r.kind,
                ReadingKind::Unrecognized | ReadingKind::CuffPressure
            )
    };
    let mut charts = Vec::new();
    for (measure, codes, unit) in Measure::ALL {
        let series: Vec<Series> = codes
            .iter()
            .map(|&code| Series {
                code,
                points: sorted
                    .iter()
                    .filter(|r| charted(r))
                    .flat_map(|r| {
                        r.components
                            .iter()
                            .filter(|c| c.code == code)
                            .map(|c| (r.effective_time, observation_decimal(c.value)))
                    })
                    .collect(),
            })
            .collect();
        if series.iter().any(|s| !s.points.is_empty()) {
            charts.push(Chart {
                measure,
                unit,
                series,
            });
        }
    }

    let rows = sorted
        .iter()
        .map(|r| {
            let mut cells: Vec<Cell> = r
                .components
                .iter()
                .map(|c| Cell {
                    code: c.code.clone(),
                    value: Some(observation_decimal(c.value)),
                    unit: c.unit.clone(),
                    flag: ranges.flag(&c.code, c.value),
                })
                .collect();
            cells.extend(r.missing.iter().map(|m| Cell {
                code: m.code.clone(),
                value: None,
                unit: String::new(),
                flag: Flag::Normal,
            }));
            Row {
                at: r.effective_time,
                kind: r.kind,
                time_quality: r.time_quality,
                cells,
                device: r
                    .device
                    .model
                    .clone()
                    .or_else(|| r.device.manufacturer.clone())
                    .unwrap_or_else(|| r.device.address.clone()),
            }
        })
        .collect();
    Overview { charts, rows }
}
