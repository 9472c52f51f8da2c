//! The small chart beside an alert: one measurement over the days before the episode, as an
//! inline SVG; the values that fired the rule are drawn larger and red, the rule's range as
//! dashed lines. Pure: points in, markup out.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::normal_range::Range;

const W: f64 = 320.0;
const H: f64 = 80.0;
const PAD: f64 = 6.0;

/// The chart of `points` (time, value), with `fired` (the instants of the values that fired)
/// marked and `range` drawn; `None` without points.
pub fn sparkline(
    points: &[(DateTime<Utc>, f64)],
    fired: &[DateTime<Utc>],
    range: Option<Range>,
    label: &str,
) -> Option<String> {
    let (first, last) = (points.first()?.0, points.last()?.0);
    let mut lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    for bound in range.iter().flat_map(|r| [r.low, r.high]).flatten() {
        lo = lo.min(bound);
        hi = hi.max(bound);
    }
    if hi - lo < 1e-9 {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    let span = (last - first).num_seconds().max(1) as f64;
    let x = |t: DateTime<Utc>| PAD + (t - first).num_seconds() as f64 / span * (W - 2.0 * PAD);
    let y = |v: f64| H - PAD - (v - lo) / (hi - lo) * (H - 2.0 * PAD);
    let mut svg = format!(
        "<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{label}\">"
    );
    for bound in range.iter().flat_map(|r| [r.low, r.high]).flatten() {
        let _ = write!(
            svg,
            "<line class=\"bound\" x1=\"{PAD}\" x2=\"{:.1}\" y1=\"{yb:.1}\" y2=\"{yb:.1}\" \
             stroke=\"#888\" stroke-dasharray=\"4 3\"/>",
            W - PAD,
            yb = y(bound)
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
        .collect();
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"1.5\" points=\"{}\"/>",
        path.join(" ")
    );
    for &(t, v) in points {
        let hit = fired.contains(&t);
        let _ = write!(
            svg,
            "<circle class=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"{}\"/>",
            if hit { "fired" } else { "value" },
            x(t),
            y(v),
            if hit { 4 } else { 2 },
            if hit { "#c0392b" } else { "#1f5fa8" }
        );
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn every_value_is_a_point_and_the_fired_ones_are_marked() {
        let t = |d| Utc.with_ymd_and_hms(2026, 5, d, 6, 0, 0).unwrap();
        let points = [(t(4), 80.0), (t(5), 80.7), (t(6), 81.4), (t(7), 82.0)];
        let svg = sparkline(&points, &[t(4), t(7)], None, "Weight").unwrap();
        assert_eq!(svg.matches("<circle").count(), 4);
        assert_eq!(svg.matches("class=\"fired\"").count(), 2);
        assert!(!svg.contains("class=\"bound\""));
        // The first point at the left edge and lowest, the last at the right edge and highest.
        assert!(svg.contains("points=\"6.0,74.0 "));
        assert!(svg.contains(" 314.0,6.0\""));
        let ranged = Range {
            low: Some(90.0),
            high: Some(140.0),
        };
        let svg = sparkline(&[(t(1), 150.0)], &[], Some(ranged), "Systolic").unwrap();
        assert_eq!(svg.matches("class=\"bound\"").count(), 2);
        assert!(sparkline(&[], &[], None, "Weight").is_none());
    }
}
