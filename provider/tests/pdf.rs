//! The PDF report, read back with poppler: `pdftotext` for its content in each language,
//! `pdftoppm` for what page 1 looks like.

mod fixtures;

use std::path::Path;
use std::process::Command;

use tm_provider::outputs::Language;
use tm_provider::outputs::findings::Findings;
use tm_provider::outputs::labels::Labels;
use tm_provider::outputs::pdf::{render_report, render_reports};
use tm_provider::outputs::series::{Range, Ranges};

fn text_of(pdf: &[u8], dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.pdf"));
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) is needed; scripts/test installs it");
    assert!(out.status.success(), "pdftotext failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_language_reads_back_with_its_content() {
    let ctx = fixtures::session();
    let readings = fixtures::heart_failure_week();
    let reports = render_reports(
        &ctx,
        &readings,
        &[],
        &Ranges::heart_failure(),
        &Findings::none(),
    );
    assert_eq!(
        reports.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![Language::En, Language::Nl, Language::Fr]
    );
    let tmp = tempfile::tempdir().unwrap();
    let expect = [
        (
            "Telemonitoring report",
            ["Body weight", "Blood pressure", "TIME UNKNOWN", "HIGH"],
        ),
        (
            "Telemonitoringsrapport",
            ["Lichaamsgewicht", "Bloeddruk", "TIJD ONBEKEND", "HOOG"],
        ),
        (
            "Rapport de télésurveillance",
            [
                "Poids corporel",
                "Pression artérielle",
                "HEURE INCONNUE",
                "ÉLEVÉ",
            ],
        ),
    ];
    for ((lang, pdf), (title, words)) in reports.iter().zip(expect) {
        assert!(pdf.starts_with(b"%PDF-"));
        let text = text_of(pdf, tmp.path(), lang.tag());
        assert!(text.contains(title), "{lang:?}: no title in\n{text}");
        for w in words {
            assert!(text.contains(w), "{lang:?}: {w:?} missing in\n{text}");
        }
        assert!(text.contains("EFD5E060-9522-48BE-9ECC-3BFA54EA3666"));
        assert!(text.contains("tm-4711"));
        assert!(text.contains("carepath/heart-failure (1.0.0)"));
        assert!(text.contains("2026-05-01 -"), "period start");
        // Every reading is a row, the untrusted glucose and the undecoded bytes included.
        let rows = text
            .lines()
            .filter(|l| l.trim_start().starts_with("2026-05-"))
            .count();
        assert_eq!(rows, readings.len(), "one row per reading");
        // The 152/95 reading of day 6 is marked high on both values.
        let day6 = text
            .lines()
            .find(|l| l.contains("2026-05-06 07:30"))
            .expect("row of day 6");
        assert!(day6.contains("SYS 152 mmHg"), "{day6}");
        assert_eq!(day6.matches(words[3]).count(), 2, "{day6}");
        // A normal day carries no mark.
        let day1 = text
            .lines()
            .find(|l| l.contains("2026-05-01 07:30"))
            .unwrap();
        assert!(!day1.contains(words[3]), "{day1}");
    }
    assert!(reports[1].1 != reports[0].1);
}

#[test]
fn ranges_are_configurable_and_rendering_is_deterministic() {
    let ctx = fixtures::session();
    let readings = fixtures::heart_failure_week();
    let strict = {
        let mut r = Ranges::heart_failure();
        r.0.insert(
            "29463-7".into(),
            Range {
                low: None,
                high: Some(80.0),
            },
        );
        r
    };
    let a = render_report(
        &ctx,
        &readings,
        &[],
        Language::En,
        &strict,
        &Findings::none(),
    );
    assert_eq!(
        a,
        render_report(
            &ctx,
            &readings,
            &[],
            Language::En,
            &strict,
            &Findings::none()
        )
    );
    let tmp = tempfile::tempdir().unwrap();
    let text = text_of(&a, tmp.path(), "strict");
    let heavy = text
        .lines()
        .find(|l| l.contains("W 80.9 kg"))
        .expect("80.9 kg row");
    assert!(heavy.contains("HIGH"), "{heavy}");
    let default = text_of(
        &render_report(
            &ctx,
            &readings,
            &[],
            Language::En,
            &Ranges::heart_failure(),
            &Findings::none(),
        ),
        tmp.path(),
        "default",
    );
    let heavy = default.lines().find(|l| l.contains("W 80.9 kg")).unwrap();
    assert!(!heavy.contains("HIGH"), "{heavy}");
}

/// Page 1 rendered at 50 dpi: mostly white paper, but with ink, the red out-of-range marks and
/// the blue trend lines of the charts.
#[test]
fn page_one_renders_with_charts() {
    let tmp = tempfile::tempdir().unwrap();
    let pdf = render_report(
        &fixtures::session(),
        &fixtures::heart_failure_week(),
        &fixtures::symptom_week(),
        Language::En,
        &Ranges::heart_failure(),
        &Findings::none(),
    );
    let path = tmp.path().join("report.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let prefix = tmp.path().join("page");
    let status = Command::new("pdftoppm")
        .args(["-r", "50", "-f", "1", "-l", "1", "-singlefile"])
        .arg(&path)
        .arg(&prefix)
        .status()
        .expect("pdftoppm (poppler-utils) is needed; scripts/test installs it");
    assert!(status.success());
    let ppm = std::fs::read(tmp.path().join("page.ppm")).unwrap();
    let (w, h, pixels) = parse_ppm(&ppm);
    assert_eq!((w, h), (414, 585), "A4 at 50 dpi");
    let mut ink = 0usize;
    let mut red = 0usize;
    let mut blue = 0usize;
    for p in pixels.chunks(3) {
        let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        if r + g + b < 600 {
            ink += 1;
        }
        if r > 150 && g < 90 && b < 90 {
            red += 1;
        }
        if b > 120 && r < 90 && b - r > 60 {
            blue += 1;
        }
    }
    let total = w * h;
    assert!(ink * 100 > total, "page 1 is blank: {ink} of {total}");
    assert!(ink * 2 < total, "page 1 is mostly ink: {ink} of {total}");
    assert!(red > 10, "no out-of-range marks ({red})");
    assert!(blue > 50, "no trend lines ({blue})");
}

fn parse_ppm(data: &[u8]) -> (usize, usize, &[u8]) {
    // "P6\n<w> <h>\n255\n" then RGB bytes.
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while !data[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(std::str::from_utf8(&data[start..pos]).unwrap().to_owned());
    }
    assert_eq!(fields[0], "P6");
    let w: usize = fields[1].parse().unwrap();
    let h: usize = fields[2].parse().unwrap();
    (w, h, &data[pos + 1..pos + 1 + w * h * 3])
}

/// The carepath's alerts of the golden week, in every language, above the trends: the same
/// rules as the nurses' worklist, over the report's own readings.
#[test]
fn the_report_lists_what_the_carepath_rules_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, readings) = (fixtures::session(), fixtures::heart_failure_week());
    let symptoms = fixtures::symptom_week();
    let rules = tm_provider::triage::rules::Rules::heart_failure();
    let findings = Findings::of(
        &readings,
        &symptoms,
        Some(&rules),
        chrono_tz::Europe::Brussels,
    );
    let rules_found: Vec<&str> = findings.list.iter().map(|f| f.rule.name()).collect();
    assert!(
        rules_found.contains(&"systolic-out-of-range") && rules_found.contains(&"severe-symptom"),
        "{rules_found:?}"
    );
    for (lang, heading) in [
        (Language::En, "Care path alerts"),
        (Language::Nl, "Alarmen van het zorgpad"),
        (Language::Fr, "Alertes du trajet de soins"),
    ] {
        let pdf = render_report(
            &ctx,
            &readings,
            &symptoms,
            lang,
            &Ranges::heart_failure(),
            &findings,
        );
        let text = text_of(&pdf, tmp.path(), lang.tag());
        let at = text
            .find(heading)
            .unwrap_or_else(|| panic!("{heading}:\n{text}"));
        for (_, line) in findings.lines(&Labels::of(lang), " -> ") {
            // pdftotext may break a long line; its start is on one.
            let start: String = line.chars().take(40).collect();
            let found = text
                .find(&start)
                .unwrap_or_else(|| panic!("{start}:\n{text}"));
            assert!(found > at, "{start} before the heading");
        }
        assert!(text.find(heading) < text.find(Labels::of(lang).trends));
    }
}

/// The patient's answers have their own section in each language, after the trends: every
/// check-in's symptoms with their severities, in the patient's words.
#[test]
fn the_report_lists_the_patients_symptoms_in_each_language() {
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, readings, symptoms) = (
        fixtures::session(),
        fixtures::heart_failure_week(),
        fixtures::symptom_week(),
    );
    for (lang, heading, breath, severe) in [
        (
            Language::En,
            "Symptoms reported by the patient",
            "Shortness of breath",
            "Severe",
        ),
        (
            Language::Nl,
            "Klachten gemeld door de patiënt",
            "Kortademigheid",
            "Ernstig",
        ),
        (
            Language::Fr,
            "Symptômes signalés par le patient",
            "Essoufflement",
            "Sévère",
        ),
    ] {
        let pdf = render_report(
            &ctx,
            &readings,
            &symptoms,
            lang,
            &Ranges::heart_failure(),
            &Findings::none(),
        );
        let text = text_of(&pdf, tmp.path(), lang.tag());
        let at = text
            .find(heading)
            .unwrap_or_else(|| panic!("{heading}:\n{text}"));
        assert!(text.find(Labels::of(lang).trends) < Some(at));
        let section = &text[at..];
        // Day 6: breathlessness rated severe at the 08:00 check-in.
        let line = section
            .lines()
            .find(|l| l.contains("2026-05-06 08:00") && l.contains(breath))
            .unwrap_or_else(|| panic!("no day-6 {breath} line:\n{section}"));
        assert!(line.trim_end().ends_with(severe), "{line}");
        let answered = section.lines().filter(|l| l.contains(" 08:00 ")).count();
        assert!(answered >= 25, "{answered} answer lines:\n{section}");
    }
    // Without answers there is no such section.
    let pdf = render_report(
        &ctx,
        &readings,
        &[],
        Language::En,
        &Ranges::heart_failure(),
        &Findings::none(),
    );
    assert!(!text_of(&pdf, tmp.path(), "none").contains("Symptoms reported by the patient"));
}
