//! `tm-gateway decode` as an operator runs it: the built binary, its stdout JSON, its exit
//! status and its one-line errors.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tm-gateway"))
        .arg("decode")
        .args(args)
        .env_remove("TM_LOG")
        .output()
        .expect("run tm-gateway")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn blood_pressure_prints_the_documented_json() {
    // 120/80 MAP 93 mmHg, 2026-05-09 07:31:30, status irregular pulse.
    let o = run(&["2A35", "12 78 00 50 00 5D 00 EA 07 05 09 07 1F 1E 04 00"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        concat!(
            r#"{"readings":[{"kind":"blood-pressure","measured_at":"2026-05-09T07:31:30","user":null,"#,
            r#""components":[{"code":"8480-6","value":120.0,"unit":"mm[Hg]"},"#,
            r#"{"code":"8462-4","value":80.0,"unit":"mm[Hg]"},"#,
            r#"{"code":"8478-0","value":93.0,"unit":"mm[Hg]"}],"status":["irregular-pulse"]}]}"#,
            "\n"
        )
    );
}

#[test]
fn model_applies_catalog_quirks() {
    let frame = "56 76 00 50 00 00 00 EA 07 08 0B 14 1B 00 00 3C 00 00 04";
    let o = run(&["2A35", frame, "--model", "BM85"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let reading = &json["readings"][0];
    assert_eq!(reading["status"], serde_json::json!(["irregular-pulse"]));
    assert_eq!(reading["components"][3]["code"], "8867-4");
    assert_eq!(reading["components"][3]["value"], 60.0);
    assert_eq!(reading["measured_at"], "2026-08-11T20:27:00");

    let o = run(&["2A35", frame, "--model", "XYZ-1"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "--model \"XYZ-1\": no catalog model has this DIS model string\n"
    );
}

#[test]
fn unstable_scale_frame_has_no_reading() {
    let o = run(&["adv:181D", "02 3E 30 E6 07 02 0E 10 29 3A"]);
    assert_eq!(o.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["readings"], serde_json::json!([]));

    let o = run(&["adv:181B", "02 26 E6 07 02 0E 10 29 3A F7 01 9A 38"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["readings"][0]["kind"], "body-composition");
    assert_eq!(json["readings"][0]["components"][0]["value"], 72.45);
}

#[test]
fn manufacturer_data_and_racp_print_info() {
    let o = run(&["mfr:020E", "01 01 D0 02 64 11 00 11"]);
    assert_eq!(o.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["readings"], serde_json::json!([]));
    assert_eq!(json["info"]["type"], "omron");
    assert_eq!(json["info"]["users"][0]["sequence"], 720);

    let o = run(&["2A52", "06", "00", "01", "06"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["info"]["result"], "no-records-found");
}

#[test]
fn malformed_input_exits_2_with_one_line() {
    for (args, expected) in [
        (
            vec!["2A35", "00 78 00 50 00 5D"],
            "0x2A35: 6 bytes end before the pressures (6 bytes from offset 1)",
        ),
        (vec!["2A35", "00 7"], "HEX: 3 hex digits, a byte needs two"),
        (vec!["2A35", "0g"], "HEX: 'g' is not a hex digit"),
        (vec!["2A00", "01"], "0x2A00: no decoder for this source"),
        (
            vec!["adv:181D", "22 3E"],
            "adv:181D: 2 bytes, the format is exactly 10",
        ),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&o), format!("{expected}\n"), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    let o = run(&["bogus:1", "00"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}
