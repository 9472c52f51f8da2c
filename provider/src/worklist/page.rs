//! The worklist page (`GET /clinical`), server-rendered: open alerts first, then acknowledged
//! ones, then the latest resolved; each with the patient's pseudonym, the rule, what fired it,
//! the values with their times in the patients' time zone, a small chart, and the forms that
//! acknowledge or resolve it with a note. Pure: records in, markup out; every stored text is
//! escaped.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::html::escape;
use crate::store::triage::ClinicalAlert;
use crate::triage::rules::RuleKind;

/// A stored instant in `tz` (`2026-05-07 07:00`); the text itself when it is not one.
pub fn local(text: &str, tz: Tz) -> String {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| text.to_owned())
}

/// The rule's label, or its stored name for a rule this version does not know.
pub fn rule_label(rule: &str) -> String {
    RuleKind::from_name(rule).map_or_else(|| rule.to_owned(), |k| k.label().to_owned())
}

/// The page for `alerts` (in worklist order), with each alert's chart by id.
pub fn render(
    alerts: &[ClinicalAlert],
    charts: &HashMap<i64, String>,
    tz: Tz,
    now: DateTime<Utc>,
) -> String {
    let count = |state: &str| alerts.iter().filter(|a| a.state == state).count();
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Clinical worklist</title><style>\
         body{font-family:system-ui,sans-serif;margin:1rem;max-width:60rem}\
         section.alert{border:1px solid #ccc;border-left:6px solid #c0392b;border-radius:4px;\
         padding:.5rem 1rem;margin:.75rem 0}\
         section.alert[data-state=acknowledged]{border-left-color:#e67e22}\
         section.alert[data-state=resolved]{border-left-color:#7f8c8d;color:#555}\
         .summary{font-size:1.15rem;font-weight:600}\
         form{display:inline-block;margin:.25rem 1rem .25rem 0;vertical-align:top}\
         textarea{display:block;width:18rem;height:3rem}\
         table{border-collapse:collapse}td{padding:0 .75rem 0 0}\
         </style></head><body><h1>Clinical worklist</h1>",
    );
    let _ = write!(
        html,
        "<p><span id=\"open-count\">Open: {}</span> · <span id=\"acknowledged-count\">\
         Acknowledged: {}</span> · <span>Times in {}</span> · <span>As of {}</span></p>",
        count("open"),
        count("acknowledged"),
        escape(tz.name()),
        now.with_timezone(&tz).format("%Y-%m-%d %H:%M")
    );
    if alerts.is_empty() {
        html.push_str("<p id=\"nothing\">No alert.</p>");
    }
    for a in alerts {
        section(&mut html, a, charts.get(&a.alert_id), tz);
    }
    html.push_str("</body></html>");
    html
}

fn section(html: &mut String, a: &ClinicalAlert, chart: Option<&String>, tz: Tz) {
    let _ = write!(
        html,
        "<section class=\"alert\" id=\"alert-{id}\" data-state=\"{state}\" data-rule=\"{rule}\">\
         <h2>{patient} · {label} <small>({state})</small></h2>\
         <p class=\"summary\">{summary}</p>\
         <p>Since {start}, last {last}; raised {raised}.</p>",
        id = a.alert_id,
        state = escape(&a.state),
        rule = escape(&a.rule),
        patient = escape(&a.patient_id),
        label = escape(&rule_label(&a.rule)),
        summary = escape(&a.summary),
        start = local(&a.episode_start, tz),
        last = local(&a.episode_last, tz),
        raised = local(&a.raised_at, tz),
    );
    html.push_str("<table class=\"evidence\">");
    for e in a.evidence.as_array().into_iter().flatten() {
        let at = e["at"].as_str().unwrap_or("");
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            local(at, tz),
            escape(&evidence_value(e))
        );
    }
    html.push_str("</table>");
    if let Some(svg) = chart {
        html.push_str(svg);
    }
    for (when, by, note, what) in [
        (
            &a.acknowledged_at,
            &a.acknowledged_by,
            &a.acknowledge_note,
            "Acknowledged",
        ),
        (&a.resolved_at, &a.resolved_by, &a.resolve_note, "Resolved"),
    ] {
        if let Some(when) = when {
            let _ = write!(
                html,
                "<p class=\"step\">{what} {} by {}: {}</p>",
                local(when, tz),
                escape(by.as_deref().unwrap_or("")),
                escape(note.as_deref().unwrap_or(""))
            );
        }
    }
    let id = a.alert_id;
    if a.state == "open" {
        step_form(html, id, "acknowledge", "Acknowledge");
    }
    if a.state != "resolved" {
        step_form(html, id, "resolve", "Resolve");
    }
    html.push_str("</section>");
}

fn step_form(html: &mut String, id: i64, step: &str, button: &str) {
    let _ = write!(
        html,
        "<form method=\"post\" action=\"/clinical/alerts/{id}/{step}\" class=\"{step}\">\
         <label>Note <textarea name=\"note\" required maxlength=\"1000\"></textarea></label>\
         <button type=\"submit\">{button}</button></form>"
    );
}

/// An evidence value as the nurse reads it: `82 kg`, or for a symptom the patient rated,
/// `Shortness of breath: Severe`.
fn evidence_value(e: &serde_json::Value) -> String {
    let unit = e["unit"].as_str().unwrap_or("");
    let code = e["code"].as_str().unwrap_or("");
    let value = e["value"].as_f64().unwrap_or(f64::NAN);
    match crate::triage::rules::symptom_evidence(code, unit, value) {
        Some((symptom, severity)) => format!("{}: {}", symptom.display, severity.display()),
        None => format!("{} {unit}", e["value"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: i64, state: &str) -> ClinicalAlert {
        ClinicalAlert {
            alert_id: id,
            telemonitoring_id: "TM-1".into(),
            patient_id: "<PSEUDO-1>".into(),
            carepath_id: None,
            rule: "weight-gain".into(),
            state: state.into(),
            episode_start: "2026-05-07T05:00:00.000000+00:00".into(),
            episode_last: "2026-05-08T05:00:00.000000+00:00".into(),
            summary: "weight +2.0 kg in 3 days".into(),
            evidence: serde_json::json!([
                {"at": "2026-05-04T05:00:00.000000+00:00", "code": "29463-7", "value": 80.0, "unit": "kg"},
                {"at": "2026-05-07T05:00:00.000000+00:00", "code": "29463-7", "value": 82.0, "unit": "kg"}
            ]),
            raised_at: "2026-05-07T05:01:00.000000+00:00".into(),
            acknowledged_at: None,
            acknowledged_by: None,
            acknowledge_note: None,
            resolved_at: None,
            resolved_by: None,
            resolve_note: None,
        }
    }

    #[test]
    fn an_open_alert_shows_what_fired_in_local_time_with_both_forms() {
        let now = DateTime::parse_from_rfc3339("2026-05-08T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let html = render(
            &[alert(7, "open")],
            &HashMap::new(),
            chrono_tz::Europe::Brussels,
            now,
        );
        assert!(html.contains("&lt;PSEUDO-1&gt; · Weight gain"));
        assert!(html.contains("Open: 1</span>"));
        assert!(html.contains("<p class=\"summary\">weight +2.0 kg in 3 days</p>"));
        // 05:00 UTC is 07:00 in Brussels in May.
        assert!(html.contains("Since 2026-05-07 07:00, last 2026-05-08 07:00"));
        assert!(html.contains("<td>2026-05-04 07:00</td><td>80.0 kg</td>"));
        assert!(html.contains("action=\"/clinical/alerts/7/acknowledge\""));
        assert!(html.contains("action=\"/clinical/alerts/7/resolve\""));
        let mut done = alert(8, "resolved");
        done.resolved_at = Some("2026-05-08T06:00:00.000000+00:00".into());
        done.resolved_by = Some("nurse.an".into());
        done.resolve_note = Some("called, <b>diuretic</b> adjusted".into());
        let html = render(&[done], &HashMap::new(), chrono_tz::Europe::Brussels, now);
        assert!(!html.contains("<form"));
        assert!(html.contains(
            "Resolved 2026-05-08 08:00 by nurse.an: called, &lt;b&gt;diuretic&lt;/b&gt; adjusted"
        ));
    }
}
