//! # Dashboard (`x-tm-dashboard`)
//!
//! A server-rendered HTML page the EHR embeds in an iframe: the session header, a card per
//! measurement with its latest value (red when out of range) and an inline SVG trend chart.
//! No script and nothing external (no CDN, fonts or images), so the page works on a locked-down
//! hospital network and its Content-Security-Policy can forbid everything but inline styles.
//! Which EHR origins may frame it is configuration ([`DashboardOptions::frame_ancestors`]).

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset};
use tm_protocol::Reading;

use super::findings::Findings;
use super::labels::{Labels, format_value};
use super::series::{Chart, Flag, Ranges, overview};
use super::{Language, SessionContext};
use crate::html::escape as esc;
use crate::symptom::{Severity, SymptomAnswer, sorted_answers};

/// The attachment's content type at the HUB.
pub const CONTENT_TYPE: &str = "x-tm-dashboard";

/// Options of the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardOptions {
    /// Origins allowed to frame the page (`https://ehr.hospital.be`); empty means none.
    pub frame_ancestors: Vec<String>,
}

impl DashboardOptions {
    /// The Content-Security-Policy header value: nothing but inline styles, framed only by the
    /// configured origins.
    pub fn content_security_policy(&self) -> String {
        let ancestors = if self.frame_ancestors.is_empty() {
            "'none'".to_owned()
        } else {
            self.frame_ancestors.join(" ")
        };
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors {ancestors}"
        )
    }
}

/// Renders the page in `lang`: the readings' cards, then the patient's symptom answers.
pub fn render_dashboard(
    ctx: &SessionContext,
    readings: &[Reading],
    symptoms: &[SymptomAnswer],
    lang: Language,
    ranges: &Ranges,
    findings: &Findings,
) -> String {
    let l = Labels::of(lang);
    let view = overview(readings, ranges);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{} {}</title>\
<style>body{{font-family:sans-serif;margin:12px;color:#1a1a1f}}h1{{font-size:18px}}\
.meta{{color:#555;font-size:13px}}.cards{{display:flex;flex-wrap:wrap;gap:12px}}\
.card{{border:1px solid #ddd;border-radius:6px;padding:8px;width:340px}}\
.latest{{font-size:22px;font-weight:bold}}.out{{color:#c41a1a}}\
.findings li{{color:#c41a1a;margin:2px 0}}</style></head><body>",
        lang.tag(),
        esc(l.title),
        esc(&ctx.telemonitoring_id)
    );
    let end = ctx
        .period
        .end
        .map(|e| e.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| l.ongoing.to_owned());
    let _ = write!(
        html,
        "<h1>{}</h1><p class=\"meta\"><span id=\"patient\">{}: {}</span> · {}: {} · {}: {} - {} · {}: {}",
        esc(l.title),
        esc(l.patient),
        esc(&ctx.patient_id),
        esc(l.carepath),
        esc(&ctx.carepath.id),
        esc(l.period),
        ctx.period.start.format("%Y-%m-%d"),
        esc(&end),
        esc(l.readings),
        view.rows.len()
    );
    html.push_str("</p>");
    let lines = findings.lines(&l, " \u{2192} ");
    if !lines.is_empty() {
        let _ = write!(
            html,
            "<section id=\"findings\"><h2>{}</h2><ul class=\"findings\">",
            esc(l.findings)
        );
        for (rule, line) in lines {
            let _ = write!(html, "<li data-rule=\"{}\">{}</li>", esc(rule), esc(&line));
        }
        html.push_str("</ul></section>");
    }
    html.push_str("<div class=\"cards\">");
    for chart in &view.charts {
        card(&mut html, chart, ranges, &l);
    }
    html.push_str("</div>");
    symptom_table(&mut html, symptoms, &l);
    html.push_str("</body></html>");
    html
}

/// Dashboard rows of the patient's answers at most.
const SYMPTOM_ROWS: usize = 50;

/// The patient's answers, newest first, those rated absent left out (the time of the last
/// check-in says the patient answered); nothing without any answer.
fn symptom_table(html: &mut String, symptoms: &[SymptomAnswer], l: &Labels) {
    let sorted = sorted_answers(symptoms);
    let Some(last) = sorted.last() else {
        return;
    };
    let lang = l.language();
    let [time, symptom, severity] = l.symptom_columns;
    let _ = write!(
        html,
        "<section id=\"symptoms\"><h2>{}</h2><p class=\"meta\">{}: {}</p>\
         <table><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(l.symptoms),
        esc(l.latest),
        last.end.format("%Y-%m-%d %H:%M"),
        esc(time),
        esc(symptom),
        esc(severity)
    );
    let rated = sorted
        .iter()
        .rev()
        .filter(|a| a.severity != Severity::Absent);
    for a in rated.take(SYMPTOM_ROWS) {
        let _ = write!(
            html,
            "<tr data-symptom=\"{}\"><td>{}</td><td>{}</td><td{}>{}</td></tr>",
            a.symptom.code,
            a.end.format("%Y-%m-%d %H:%M"),
            esc(lang.pick(a.symptom.words)),
            if a.severity == Severity::Severe {
                " class=\"out\""
            } else {
                ""
            },
            esc(lang.pick(a.severity.words()))
        );
    }
    html.push_str("</table></section>");
}

fn card(html: &mut String, chart: &Chart, ranges: &Ranges, l: &Labels) {
    let measure = format!("{:?}", chart.measure).to_lowercase();
    let _ = write!(
        html,
        "<section class=\"card\" data-measure=\"{measure}\"><h2>{}</h2>",
        esc(l.measure(chart.measure))
    );
    if let Some((at, values)) = chart.latest() {
        let out = chart
            .series
            .iter()
            .zip(&values)
            .any(|(s, v)| ranges.flag(s.code, *v) != Flag::Normal);
        let text = values
            .iter()
            .map(|v| format_value(*v))
            .collect::<Vec<_>>()
            .join("/");
        let _ = write!(
            html,
            "<div class=\"latest{}\">{} {}</div><div class=\"meta\">{}: {}</div>",
            if out { " out" } else { "" },
            text,
            esc(chart.unit),
            esc(l.latest),
            at.format("%Y-%m-%d %H:%M")
        );
    }
    svg(html, chart, ranges);
    html.push_str("</section>");
}

/// A position in the SVG, rounded to a tenth of a pixel.
fn px(v: f64) -> String {
    format!("{:.1}", v)
}

fn svg(html: &mut String, chart: &Chart, ranges: &Ranges) {
    let (w, h, pad) = (320.0, 120.0, 8.0);
    let points: Vec<DateTime<FixedOffset>> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let (Some(t0), Some(t1)) = (points.iter().min(), points.iter().max()) else {
        return;
    };
    let span = (*t1 - *t0).num_seconds().max(1) as f64;
    let (v0, v1) = chart.value_bounds(ranges);
    let sx =
        |t: DateTime<FixedOffset>| pad + (w - 2.0 * pad) * ((t - *t0).num_seconds() as f64 / span);
    let sy = |v: f64| h - pad - (h - 2.0 * pad) * ((v - v0) / (v1 - v0));
    let _ = write!(
        html,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">"
    );
    for s in &chart.series {
        if let Some(r) = ranges.get(s.code) {
            let top = sy(r.high.unwrap_or(v1).min(v1));
            let bottom = sy(r.low.unwrap_or(v0).max(v0));
            let _ = write!(
                html,
                "<rect class=\"range\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#e0f2e0\"/>",
                px(pad),
                px(top),
                px(w - 2.0 * pad),
                px(bottom - top)
            );
        }
    }
    for (i, s) in chart.series.iter().enumerate() {
        let color = if i == 0 { "#1a4da6" } else { "#1a9999" };
        let line: Vec<String> = s
            .points
            .iter()
            .map(|&(t, v)| format!("{},{}", px(sx(t)), px(sy(v))))
            .collect();
        let _ = write!(
            html,
            "<polyline data-code=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            s.code,
            line.join(" ")
        );
        for &(t, v) in &s.points {
            let out = ranges.flag(s.code, v) != Flag::Normal;
            let _ = write!(
                html,
                "<circle class=\"{}\" cx=\"{}\" cy=\"{}\" r=\"2.5\" fill=\"{}\"><title>{} {}</title></circle>",
                if out { "point out" } else { "point" },
                px(sx(t)),
                px(sy(v)),
                if out { "#c41a1a" } else { color },
                t.format("%Y-%m-%d %H:%M"),
                format_value(v)
            );
        }
    }
    html.push_str("</svg>");
}
