//! # PDF report (`application/pdf`)
//!
//! One report per configured language: the session's header (patient pseudonym, telemonitoring
//! id, carepath, period), one trend chart per measurement drawn as vector graphics with the
//! normal range as a band and out-of-range points in red, then the table of every reading with
//! its time quality (an untrusted time is written in capitals and red) and out-of-range values
//! marked HIGH/LOW in the report's language. Built-in fonts only, no dates in the file: the
//! same session renders to the same bytes.

mod canvas;

use chrono::{DateTime, Duration, FixedOffset};
use tm_protocol::{Reading, TimeQuality};

use super::findings::Findings;
use super::labels::{Labels, component_label, display_unit, format_value};
use super::series::{Chart, Flag, Overview, Ranges, Row, overview};
use super::{Language, SessionContext};
use crate::symptom::{Severity, SymptomAnswer, sorted_answers};
use canvas::{BAND, BLUE, Canvas, GREY, HEIGHT, INK, LIGHT, MARGIN, RED, TEAL, WIDTH, fit};

/// The attachment's content type.
pub const CONTENT_TYPE: &str = "application/pdf";

const CHART_HEIGHT: f32 = 130.0;
const ROW_HEIGHT: f32 = 12.0;
const COLUMNS: [f32; 5] = [MARGIN, 115.0, 205.0, 433.0, 512.0];

/// Renders the report of a session in `lang`: its readings and the patient's symptom answers.
pub fn render_report(
    ctx: &SessionContext,
    readings: &[Reading],
    symptoms: &[SymptomAnswer],
    lang: Language,
    ranges: &Ranges,
    findings: &Findings,
) -> Vec<u8> {
    let labels = Labels::of(lang);
    let view = overview(readings, ranges);
    let mut doc = Report {
        canvas: Canvas::new(),
        y: HEIGHT - MARGIN,
        labels,
    };
    doc.header(ctx, &view);
    doc.findings(findings);
    let (t0, t1) = time_axis(ctx, &view);
    doc.section(labels.trends);
    for chart in &view.charts {
        doc.ensure(CHART_HEIGHT);
        doc.chart(chart, ranges, t0, t1);
    }
    doc.symptoms(symptoms);
    doc.section(labels.readings);
    doc.table(&view.rows);
    doc.footer();
    let title = format!("{} {}", labels.title, ctx.telemonitoring_id);
    doc.canvas.finish(&title, lang.tag())
}

/// A position on the page. Only drawing coordinates go through here, never a clinical value:
/// the table prints values from the readings themselves.
#[allow(clippy::cast_possible_truncation)]
fn to_f32(fraction: f64) -> f32 {
    fraction as f32
}

fn time_axis(
    ctx: &SessionContext,
    view: &Overview,
) -> (DateTime<FixedOffset>, DateTime<FixedOffset>) {
    let points = view
        .charts
        .iter()
        .flat_map(|c| c.series.iter())
        .flat_map(|s| s.points.iter().map(|p| p.0));
    let first = points.clone().min().unwrap_or(ctx.period.start);
    let last = points.max().unwrap_or(ctx.period.start);
    let start = ctx.period.start.min(first);
    let end = ctx.period.end.unwrap_or(last).max(last);
    (start, end.max(start + Duration::days(1)))
}

struct Report {
    canvas: Canvas,
    /// The next free baseline, from the top.
    y: f32,
    labels: Labels,
}

impl Report {
    fn ensure(&mut self, height: f32) {
        if self.y - height < MARGIN + 20.0 {
            self.footer();
            self.canvas.new_page();
            self.y = HEIGHT - MARGIN;
        }
    }

    fn footer(&mut self) {
        let n = self.canvas.page_number();
        let text = format!("{} {n}", self.labels.page);
        self.canvas.text(
            WIDTH - MARGIN - 40.0,
            MARGIN - 16.0,
            8.0,
            false,
            GREY,
            &text,
        );
    }

    /// The triage rules' findings, one red line each; nothing without any.
    fn findings(&mut self, findings: &Findings) {
        let lines = findings.lines(&self.labels, " -> ");
        if lines.is_empty() {
            return;
        }
        self.section(self.labels.findings);
        for (_, line) in lines {
            self.ensure(ROW_HEIGHT);
            let text = fit(&line, 9.0, WIDTH - 2.0 * MARGIN);
            self.canvas.text(MARGIN, self.y, 9.0, false, RED, &text);
            self.y -= ROW_HEIGHT;
        }
    }

    /// The patient's answers, newest last, a severe one in red; nothing without any.
    fn symptoms(&mut self, symptoms: &[SymptomAnswer]) {
        if symptoms.is_empty() {
            return;
        }
        let l = self.labels;
        let lang = l.language();
        self.section(l.symptoms);
        let columns = [COLUMNS[0], COLUMNS[1] + 10.0, COLUMNS[3]];
        for (x, title) in columns.iter().zip(l.symptom_columns) {
            self.canvas.text(*x, self.y, 8.0, true, INK, title);
        }
        self.y -= ROW_HEIGHT;
        for a in sorted_answers(symptoms) {
            self.ensure(ROW_HEIGHT);
            let color = if a.severity == Severity::Severe {
                RED
            } else {
                INK
            };
            let at = a.end.format("%Y-%m-%d %H:%M").to_string();
            let symptom = fit(
                lang.pick(a.symptom.words),
                8.0,
                columns[2] - columns[1] - 4.0,
            );
            self.canvas.text(columns[0], self.y, 8.0, false, INK, &at);
            self.canvas
                .text(columns[1], self.y, 8.0, false, INK, &symptom);
            let severity = lang.pick(a.severity.words());
            self.canvas
                .text(columns[2], self.y, 8.0, false, color, severity);
            self.y -= ROW_HEIGHT;
        }
    }

    fn section(&mut self, title: &str) {
        self.ensure(40.0);
        self.y -= 22.0;
        self.canvas.text(MARGIN, self.y, 13.0, true, INK, title);
        self.y -= 6.0;
        self.canvas
            .line((MARGIN, self.y), (WIDTH - MARGIN, self.y), 0.6, GREY);
        self.y -= 8.0;
    }

    fn header(&mut self, ctx: &SessionContext, view: &Overview) {
        let l = self.labels;
        self.y -= 10.0;
        self.canvas.text(MARGIN, self.y, 20.0, true, INK, l.title);
        self.y -= 26.0;
        let end = ctx
            .period
            .end
            .map(|e| e.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| l.ongoing.to_owned());
        let lines = [
            (l.patient, ctx.patient_id.clone()),
            (l.session, ctx.telemonitoring_id.clone()),
            (
                l.carepath,
                format!("{} ({})", ctx.carepath.id, ctx.carepath.version),
            ),
            (
                l.period,
                format!("{} - {end}", ctx.period.start.format("%Y-%m-%d")),
            ),
            (l.readings, view.rows.len().to_string()),
        ];
        for (label, value) in lines {
            self.canvas.text(MARGIN, self.y, 10.0, true, GREY, label);
            let value = fit(&value, 9.0, WIDTH - MARGIN - 175.0);
            self.canvas.text(175.0, self.y, 9.0, false, INK, &value);
            self.y -= 15.0;
        }
    }

    fn chart(
        &mut self,
        chart: &Chart,
        ranges: &Ranges,
        t0: DateTime<FixedOffset>,
        t1: DateTime<FixedOffset>,
    ) {
        let l = self.labels;
        let top = self.y;
        let title = format!("{} ({})", l.measure(chart.measure), chart.unit);
        self.canvas
            .text(MARGIN, top - 12.0, 11.0, true, INK, &title);
        if let Some((at, values)) = chart.latest() {
            let latest = values
                .iter()
                .map(|v| format_value(*v))
                .collect::<Vec<_>>()
                .join("/");
            let text = format!(
                "{}: {latest} {} ({})",
                l.latest,
                chart.unit,
                at.format("%Y-%m-%d %H:%M")
            );
            let x = WIDTH - MARGIN - canvas::text_width(&text, 9.0, false);
            self.canvas.text(x, top - 12.0, 9.0, false, GREY, &text);
        }
        let (x0, x1) = (MARGIN + 45.0, WIDTH - MARGIN - 5.0);
        let (y0, y1) = (top - CHART_HEIGHT + 22.0, top - 22.0);
        let (v0, v1) = chart.value_bounds(ranges);
        let span = (t1 - t0).num_seconds().max(1) as f64;
        let sx = |t: DateTime<FixedOffset>| {
            x0 + (x1 - x0) * to_f32((t - t0).num_seconds() as f64 / span)
        };
        let sy = |v: f64| y0 + (y1 - y0) * to_f32((v - v0) / (v1 - v0));

        for s in &chart.series {
            if let Some(r) = ranges.get(s.code) {
                let lo = sy(r.low.unwrap_or(v0).max(v0));
                let hi = sy(r.high.unwrap_or(v1).min(v1));
                self.canvas.fill_rect(x0, lo, x1 - x0, hi - lo, BAND);
            }
        }
        for i in 0..=4 {
            let v = v0 + (v1 - v0) * f64::from(i) / 4.0;
            let y = sy(v);
            self.canvas.line((x0, y), (x1, y), 0.3, LIGHT);
            self.canvas.text(
                MARGIN,
                y - 3.0,
                7.0,
                false,
                GREY,
                &format_value((v * 10.0).round() / 10.0),
            );
        }
        self.canvas.line((x0, y0), (x1, y0), 0.6, GREY);
        self.canvas.line((x0, y0), (x0, y1), 0.6, GREY);
        let days = (t1 - t0).num_days().max(1);
        let step = (days / 8).max(1);
        let mut day = 0;
        while day <= days {
            let t = t0 + Duration::days(day);
            let x = sx(t);
            self.canvas.line((x, y0), (x, y0 - 3.0), 0.5, GREY);
            self.canvas.text(
                x - 10.0,
                y0 - 12.0,
                7.0,
                false,
                GREY,
                &t.format("%d/%m").to_string(),
            );
            day += step;
        }
        for (i, s) in chart.series.iter().enumerate() {
            let color = if i == 0 { BLUE } else { TEAL };
            let pts: Vec<(f32, f32)> = s.points.iter().map(|&(t, v)| (sx(t), sy(v))).collect();
            self.canvas.polyline(&pts, 1.2, color);
            for (&(_, v), &(x, y)) in s.points.iter().zip(&pts) {
                let c = if ranges.flag(s.code, v) == Flag::Normal {
                    color
                } else {
                    RED
                };
                self.canvas.fill_rect(x - 2.0, y - 2.0, 4.0, 4.0, c);
            }
        }
        self.y = top - CHART_HEIGHT;
    }

    fn table_header(&mut self) {
        let l = self.labels;
        self.canvas.fill_rect(
            MARGIN - 2.0,
            self.y - 3.0,
            WIDTH - 2.0 * MARGIN + 4.0,
            ROW_HEIGHT,
            LIGHT,
        );
        for (x, title) in COLUMNS.iter().zip(l.columns) {
            self.canvas.text(*x, self.y, 8.0, true, INK, title);
        }
        self.y -= ROW_HEIGHT;
    }

    fn table(&mut self, rows: &[Row]) {
        let l = self.labels;
        self.ensure(ROW_HEIGHT * 3.0);
        self.table_header();
        let mut untrusted = false;
        for row in rows {
            if self.y - ROW_HEIGHT < MARGIN + 20.0 {
                self.ensure(f32::MAX);
                self.table_header();
            }
            let trusted = row.time_quality != TimeQuality::DeviceUnsetUntrusted;
            untrusted |= !trusted;
            let time_color = if trusted { INK } else { RED };
            let y = self.y;
            self.canvas.text(
                COLUMNS[0],
                y,
                8.0,
                false,
                time_color,
                &row.at.format("%Y-%m-%d %H:%M").to_string(),
            );
            self.canvas.text(
                COLUMNS[1],
                y,
                8.0,
                false,
                INK,
                &fit(l.kind(row.kind), 8.0, COLUMNS[2] - COLUMNS[1] - 4.0),
            );
            let mut x = COLUMNS[2];
            for cell in &row.cells {
                let text = match cell.value {
                    Some(v) => format!(
                        "{} {} {}{}",
                        component_label(&cell.code),
                        format_value(v),
                        display_unit(&cell.unit),
                        match cell.flag {
                            Flag::Normal => String::new(),
                            f => format!(" {}", l.flag(f)),
                        }
                    ),
                    None => format!("{} {}", component_label(&cell.code), l.no_value),
                };
                let flagged = cell.flag != Flag::Normal;
                let w = canvas::text_width(&text, 7.5, flagged) + 8.0;
                if x + w > COLUMNS[3] {
                    break;
                }
                let color = if flagged { RED } else { INK };
                self.canvas.text(x, y, 7.5, flagged, color, &text);
                x += w;
            }
            self.canvas.text(
                COLUMNS[3],
                y,
                7.5,
                !trusted,
                time_color,
                &fit(
                    l.time_quality(row.time_quality),
                    7.5,
                    COLUMNS[4] - COLUMNS[3] - 2.0,
                ),
            );
            self.canvas.text(
                COLUMNS[4],
                y,
                8.0,
                false,
                GREY,
                &fit(&row.device, 8.0, WIDTH - MARGIN - COLUMNS[4]),
            );
            self.y -= ROW_HEIGHT;
        }
        if untrusted {
            self.ensure(ROW_HEIGHT * 2.0);
            self.y -= 6.0;
            self.canvas
                .text(MARGIN, self.y, 8.0, false, RED, l.untrusted_note);
            self.y -= ROW_HEIGHT;
        }
        self.ensure(ROW_HEIGHT * 2.0);
        self.y -= 6.0;
        self.canvas.fill_rect(MARGIN, self.y - 1.0, 10.0, 7.0, BAND);
        self.canvas
            .text(MARGIN + 14.0, self.y, 8.0, false, GREY, l.normal_range);
        self.canvas.fill_rect(MARGIN + 120.0, self.y, 5.0, 5.0, RED);
        self.canvas
            .text(MARGIN + 130.0, self.y, 8.0, false, GREY, l.out_of_range);
        self.y -= ROW_HEIGHT;
    }
}

/// The reports of every language the session is configured with, in that order.
pub fn render_reports(
    ctx: &SessionContext,
    readings: &[Reading],
    symptoms: &[SymptomAnswer],
    ranges: &Ranges,
    findings: &Findings,
) -> Vec<(Language, Vec<u8>)> {
    ctx.languages
        .iter()
        .map(|&lang| {
            let report = render_report(ctx, readings, symptoms, lang, ranges, findings);
            (lang, report)
        })
        .collect()
}
