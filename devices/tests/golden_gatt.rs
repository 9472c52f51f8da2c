//! Golden tests: every vector of docs/gatt.md §2 for the GATT characteristics, with its source.

mod common;

use common::{at, dec, dec_with, hex, one, value};
use tm_devices::profiles::racp::{RacpRequest, RacpResponse, RacpResult, SequenceFilter};
use tm_devices::reading::codes;
use tm_devices::{Info, Quirk, Quirks, Source, decode};
use tm_protocol::ReadingKind;

// §2.1 Date Time (blessed-android parseDateTimeTest; Nordic DateTimeDataCallbackTest; obniz).
#[test]
fn date_time_vectors() {
    let d = dec("2A08", "E4 07 01 02 0A 15 30");
    let Some(Info::DateTime {
        time,
        clock_not_set,
    }) = d.info
    else {
        panic!("{d:?}")
    };
    assert_eq!(time.to_naive().unwrap().to_string(), "2020-01-02 10:21:48");
    assert!(!clock_not_set);

    let d = dec("2A08", "00 00 00 00 12 1A 20");
    let Some(Info::DateTime {
        time,
        clock_not_set,
    }) = d.info
    else {
        panic!("{d:?}")
    };
    assert_eq!((time.year, time.month, time.day), (None, None, None));
    assert_eq!((time.hours, time.minutes, time.seconds), (18, 26, 32));
    assert!(time.to_naive().is_none());
    assert!(clock_not_set, "an unknown date is not a set clock");

    let d = dec("2A08", "DD 07 08 1A 09 0A 14");
    let Some(Info::DateTime {
        time,
        clock_not_set,
    }) = d.info
    else {
        panic!("{d:?}")
    };
    assert_eq!(time.to_naive().unwrap().to_string(), "2013-08-26 09:10:20");
    assert!(clock_not_set, "2013 is before the first plausible year");
}

// §1.9 Current Time write example (SpeziBluetooth CurrentTimeTests values).
#[test]
fn current_time_round_trip() {
    let d = dec("2A2B", "E8 07 06 06 0C 04 2C 04 80 01");
    let Some(Info::CurrentTime(ct)) = d.info else {
        panic!("{d:?}")
    };
    assert_eq!(
        ct.time.to_naive().unwrap().to_string(),
        "2024-06-06 12:04:44"
    );
    assert_eq!(ct.day_of_week, Some(4));
    assert_eq!(ct.fractions256, 0x80);
    assert_eq!(ct.adjust_reasons, vec!["manual-update"]);
    let local = ct.time.to_naive().unwrap();
    // Our write carries fractions 0; everything else equals the example.
    assert_eq!(
        tm_devices::time::CurrentTime::encode_write(local).to_vec(),
        hex("E8 07 06 06 0C 04 2C 04 00 01")
    );
}

#[test]
fn local_time_information() {
    let d = dec("2A0F", "04 04");
    let Some(Info::LocalTimeInformation(lti)) = d.info else {
        panic!("{d:?}")
    };
    assert_eq!(lti.zone_offset_minutes, Some(60));
    assert_eq!(lti.dst_offset_minutes, Some(60));
    assert_eq!(
        tm_devices::time::LocalTimeInformation::encode(60, 60),
        Some([4, 4])
    );
    let d = dec("2A0F", "80 FF");
    let Some(Info::LocalTimeInformation(lti)) = d.info else {
        panic!("{d:?}")
    };
    assert_eq!(
        (lti.zone_offset_minutes, lti.dst_offset_minutes),
        (None, None)
    );
}

// §2.2 minimal: flags 0 means mmHg; values 18.9 / 11 / 15.9.
#[test]
fn blood_pressure_minimal() {
    let d = dec("2A35", "00 BD F0 0B 00 9F F0");
    let r = one(&d);
    assert_eq!(r.kind, ReadingKind::BloodPressure);
    assert_eq!(value(r, codes::SYSTOLIC), (18.9, "mm[Hg]".into()));
    assert_eq!(value(r, codes::DIASTOLIC).0, 11.0);
    assert_eq!(value(r, codes::MEAN_ARTERIAL).0, 15.9);
    assert!(!r.has_device_time() && !r.has_sequence());
}

// §2.2 Nordic IntermediateCuffPressureDataCallbackTest.
#[test]
fn intermediate_cuff_pressure() {
    let d = dec(
        "2A36",
        "1E 04 00 00 00 00 00 00 00 04 11 14 29 3B 3C 00 01 27 00",
    );
    let r = one(&d);
    assert_eq!(r.kind, ReadingKind::CuffPressure);
    assert_eq!(r.components.len(), 2, "cuff pressure and pulse only: {r:?}");
    assert_eq!(value(r, codes::CUFF_PRESSURE), (4.0, "mm[Hg]".into()));
    assert_eq!(value(r, codes::HEART_RATE), (60.0, "/min".into()));
    let t = r.device_time.unwrap();
    assert_eq!((t.year, t.month, t.day), (None, Some(4), Some(17)));
    assert_eq!((t.hours, t.minutes, t.seconds), (20, 41, 59));
    assert!(r.measured_at.is_none() && r.clock_not_set);
    assert_eq!(r.user, Some(1));
    assert_eq!(
        r.status,
        vec![
            "body-movement",
            "cuff-fit-loose",
            "irregular-pulse",
            "improper-position"
        ]
    );
}

fn bm85() -> Quirks {
    Quirks::from_list(&[Quirk::BpBigEndianPulseStatus, Quirk::BpAlwaysUserId])
}

// §2.2 Beurer BM85 real captures (derdilla), decoded with the BM85 quirks.
#[test]
fn beurer_bm85_with_quirks() {
    let d = dec_with(
        "2A35",
        "56 6A 00 47 00 00 00 EA 07 08 0B 12 1F 00 00 3F 00 00 00",
        &bm85(),
    );
    let r = one(&d);
    assert_eq!(value(r, codes::SYSTOLIC).0, 106.0);
    assert_eq!(value(r, codes::DIASTOLIC).0, 71.0);
    assert_eq!(value(r, codes::MEAN_ARTERIAL).0, 0.0);
    assert_eq!(value(r, codes::HEART_RATE).0, 63.0);
    assert_eq!(at(r).as_deref(), Some("2026-08-11 18:31:00"));
    assert_eq!(r.user, Some(0));
    assert!(r.status.is_empty(), "{:?}", r.status);

    let d = dec_with(
        "2A35",
        "56 76 00 50 00 00 00 EA 07 08 0B 14 1B 00 00 3C 00 00 04",
        &bm85(),
    );
    let r = one(&d);
    assert_eq!(value(r, codes::SYSTOLIC).0, 118.0);
    assert_eq!(value(r, codes::DIASTOLIC).0, 80.0);
    assert_eq!(value(r, codes::HEART_RATE).0, 60.0);
    assert_eq!(r.status, vec!["irregular-pulse"]);
}

// Without the quirks the BM85 frame decodes to nonsense pulse: the quirk is what makes it right.
#[test]
fn beurer_bm85_without_quirks_differs() {
    let d = dec(
        "2A35",
        "56 76 00 50 00 00 00 EA 07 08 0B 14 1B 00 00 3C 00 00 04",
    );
    let r = one(&d);
    assert_ne!(value(r, codes::HEART_RATE).0, 60.0);
    assert!(r.status.contains(&"trailing-bytes".to_string()));
}

// §2.2 pub.dev ble_gatt_parser example.
#[test]
fn blood_pressure_with_pulse() {
    let d = dec("2A35", "04 78 00 50 00 5D 00 48 00");
    let r = one(&d);
    assert_eq!(value(r, codes::SYSTOLIC).0, 120.0);
    assert_eq!(value(r, codes::DIASTOLIC).0, 80.0);
    assert_eq!(value(r, codes::MEAN_ARTERIAL).0, 93.0);
    assert_eq!(value(r, codes::HEART_RATE).0, 72.0);
}

#[test]
fn blood_pressure_kpa_is_converted_and_original_kept() {
    // 17.6 kPa (A&D example SFLOAT B0 F0) systolic, NaN diastolic.
    let d = dec("2A35", "01 B0 F0 FF 07 9F F0");
    let r = one(&d);
    let sys = r
        .components
        .iter()
        .find(|c| c.code == codes::SYSTOLIC)
        .unwrap();
    assert_eq!((sys.value, sys.unit.as_str()), (132.0, "mm[Hg]"));
    let orig = sys.original.as_ref().unwrap();
    assert_eq!((orig.value, orig.unit.as_str()), (17.6, "kPa"));
    assert_eq!(r.missing.len(), 1);
    assert_eq!(
        (r.missing[0].code.as_str(), r.missing[0].reason.as_str()),
        (codes::DIASTOLIC, "nan")
    );
}

#[test]
fn blood_pressure_short_frame_error_names_the_field() {
    let err = decode(
        Source::Characteristic(0x2A35),
        &hex("02 78 00 50 00 5D 00"),
        &Quirks::NONE,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "0x2A35: 7 bytes end before the time stamp the flags announce (7 bytes from offset 7)"
    );
    let err = decode(
        Source::Characteristic(0x2A35),
        &hex("00 78 00 50 00 5D"),
        &Quirks::NONE,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "0x2A35: 6 bytes end before the pressures (6 bytes from offset 1)"
    );
}

// §1.4 Spezi BloodPressureTests: 0x1FF = all nine features.
#[test]
fn blood_pressure_feature() {
    let d = dec("2A49", "FF 01");
    let Some(Info::Features { supported, .. }) = d.info else {
        panic!()
    };
    assert_eq!(supported.len(), 9);
}

// §2.3 bluetooth-sig-python weight vectors.
#[test]
fn weight_measurement_vectors() {
    let r = dec("2A9D", "00 B0 36");
    assert_eq!(value(one(&r), codes::BODY_WEIGHT), (70.0, "kg".into()));

    let d = dec("2A9D", "01 54 3D");
    let w = &one(&d).components[0];
    assert_eq!((w.value, w.unit.as_str()), (71.214, "kg"));
    assert_eq!(
        w.original.as_ref().map(|o| (o.value, o.unit.as_str())),
        Some((157.0, "[lb_av]"))
    );

    let d = dec("2A9D", "02 B0 36 E7 07 0C 19 0E 1E 2D");
    assert_eq!(value(one(&d), codes::BODY_WEIGHT).0, 70.0);
    assert_eq!(at(one(&d)).as_deref(), Some("2023-12-25 14:30:45"));

    let d = dec("2A9D", "0C B0 36 05 F5 00 D6 06");
    let r = one(&d);
    assert_eq!(value(r, codes::BODY_WEIGHT).0, 70.0);
    assert_eq!(r.user, Some(5));
    assert_eq!(value(r, codes::BMI), (24.5, "kg/m2".into()));
    assert_eq!(value(r, codes::BODY_HEIGHT), (175.0, "cm".into()));
}

#[test]
fn weight_scale_feature_vector() {
    let d = dec("2A9E", "8F 00 00 00");
    let Some(Info::WeightScaleFeature(f)) = d.info else {
        panic!()
    };
    assert!(f.time_stamp && f.multiple_users && f.bmi);
    assert_eq!(f.weight_resolution_kg, Some(0.5));
    assert_eq!(f.height_resolution_m, Some(0.01));
}

#[test]
fn body_composition_vector() {
    let d = dec("2A9C", "00 0E 46 00 40 1F B0 36 E8 03");
    let r = one(&d);
    assert_eq!(r.kind, ReadingKind::BodyComposition);
    assert_eq!(value(r, codes::BODY_FAT), (7.0, "%".into()));
    assert_eq!(value(r, codes::IMPEDANCE), (800.0, "Ohm".into()));
    assert_eq!(value(r, codes::BODY_WEIGHT).0, 70.0);
    assert_eq!(value(r, codes::BODY_HEIGHT), (100.0, "cm".into()));
}

// §2.4 pub.dev ble_gatt_parser thermometer example.
#[test]
fn temperature_vector() {
    let d = dec("2A1C", "00 6C 01 00 FF");
    assert_eq!(
        value(one(&d), codes::BODY_TEMPERATURE),
        (36.4, "Cel".into())
    );
    // Fahrenheit with time and site: 98.6 F = 37 Cel, ear.
    let d = dec("2A1E", "07 DA 03 00 FF E8 07 05 09 07 1F 1E 03");
    let r = one(&d);
    assert_eq!(value(r, codes::BODY_TEMPERATURE).0, 37.0);
    assert_eq!(at(r).as_deref(), Some("2024-05-09 07:31:30"));
    assert_eq!(r.status, vec!["site:ear", "intermediate"]);
}

// §2.4 Nordic RecordAccessControlPointDataCallbackTest.
#[test]
fn racp_response_vectors() {
    let racp = |h: &str| {
        tm_devices::profiles::racp::decode_response(Source::Characteristic(0x2A52), &hex(h))
            .unwrap()
    };
    assert_eq!(
        racp("06 00 01 01"),
        RacpResponse::General {
            request: 1,
            result: RacpResult::Success
        }
    );
    assert_eq!(
        racp("06 00 01 06"),
        RacpResponse::General {
            request: 1,
            result: RacpResult::NoRecordsFound
        }
    );
    assert_eq!(
        racp("06 00 0C 02"),
        RacpResponse::General {
            request: 12,
            result: RacpResult::OpCodeNotSupported
        }
    );
    assert_eq!(
        racp("05 00 02 01"),
        RacpResponse::NumberOfRecords { count: 258 }
    );
    // §2.6 Omron extended RACP responses (SpeziOmronTests).
    assert_eq!(
        racp("05 00 FF FF"),
        RacpResponse::NumberOfRecords { count: 0xFFFF }
    );
    assert_eq!(
        racp("11 00 FF FF"),
        RacpResponse::OmronLatestSequence { sequence: 0xFFFF }
    );
}

#[test]
fn racp_request_encodings() {
    assert_eq!(RacpRequest::ReportAll.encode(), hex("01 01"));
    assert_eq!(
        RacpRequest::ReportFromSequence {
            from: 0x1234,
            filter: SequenceFilter::Sig
        }
        .encode(),
        hex("01 03 01 34 12")
    );
    assert_eq!(RacpRequest::CountAll.encode(), hex("04 01"));
    // §2.6 Omron filter type 0x04 (SpeziOmronTests).
    assert_eq!(
        RacpRequest::ReportFromSequence {
            from: 0xFFFF,
            filter: SequenceFilter::Omron
        }
        .encode(),
        hex("01 03 04 FF FF")
    );
    assert_eq!(
        RacpRequest::CountFromSequence {
            from: 0xFFFF,
            filter: SequenceFilter::Omron
        }
        .encode(),
        hex("04 03 04 FF FF")
    );
}

// §2.4 Nordic GlucoseFeatureDataCallbackTest: F0 03 = bits 4..9.
#[test]
fn glucose_feature_vector() {
    let d = dec("2A51", "F0 03");
    let Some(Info::Features { supported, .. }) = d.info else {
        panic!()
    };
    assert_eq!(
        supported,
        vec![
            "strip-type-error-detection",
            "result-high-low-detection",
            "temperature-high-low-detection",
            "read-interrupt-detection",
            "general-device-fault",
            "time-fault"
        ]
    );
}

#[test]
fn glucose_measurement_with_offset_and_units() {
    // seq 7, 2026-05-09 07:31:30, offset +60 min, 92 x 10^-5 kg/L capillary plasma at the finger,
    // annunciation battery low + time fault.
    let d = dec("2A18", "0B 07 00 EA 07 05 09 07 1F 1E 3C 00 5C B0 12 01 08");
    let r = one(&d);
    assert_eq!(r.sequence, Some(7));
    assert_eq!(value(r, codes::GLUCOSE_MASS), (92.0, "mg/dL".into()));
    assert_eq!(at(r).as_deref(), Some("2026-05-09 08:31:30"));
    assert_eq!(r.time_offset_minutes, Some(60));
    assert!(r.clock_not_set, "time fault");
    assert_eq!(
        r.status,
        vec![
            "sample:capillary-plasma",
            "location:finger",
            "battery-low",
            "time-fault"
        ]
    );
    // mol/L: 5.1 x 10^-3 mol/L = 5.1 mmol/L.
    let d = dec("2A18", "06 08 00 EA 07 05 09 07 1F 1E 33 C0 11");
    assert_eq!(value(one(&d), codes::GLUCOSE_MOLES), (5.1, "mmol/L".into()));
}

#[test]
fn glucose_context() {
    // seq 7, carbohydrate lunch 0.05 kg = 50 g, meal postprandial, HbA1c 6.5 %.
    let d = dec("2A34", "43 07 00 02 32 D0 02 41 F0");
    let Some(Info::GlucoseContext(c)) = d.info else {
        panic!("{d:?}")
    };
    assert_eq!(c.sequence, 7);
    assert_eq!(c.carbohydrate_meal.as_deref(), Some("lunch"));
    assert_eq!(c.carbohydrate.unwrap().value, Some(50.0));
    assert_eq!(c.meal.as_deref(), Some("postprandial"));
    assert_eq!(c.hba1c.unwrap().value, Some(6.5));
}

// §2.4 Nordic HeartRateMeasurementDataCallbackTest and ble_gatt_parser.
#[test]
fn heart_rate_vectors() {
    let d = dec("2A37", "00 55");
    assert_eq!(value(one(&d), codes::HEART_RATE), (85.0, "/min".into()));
    let d = dec("2A37", "04 FF");
    assert_eq!(value(one(&d), codes::HEART_RATE).0, 255.0);
    assert_eq!(one(&d).status, vec!["sensor-contact-not-detected"]);
    let d = dec("2A37", "1E 55 32 00 21 00");
    let r = one(&d);
    assert_eq!(value(r, codes::HEART_RATE).0, 85.0);
    assert_eq!(r.status, vec!["sensor-contact-detected"]);
    assert_eq!(value(r, codes::ENERGY_EXPENDED), (50.0, "kJ".into()));
    assert_eq!(value(r, codes::RR_INTERVAL).0, 0.0322); // 33/1024 s
    let d = dec("2A37", "16 50 00 04 80 03");
    let rr: Vec<f64> = one(&d)
        .components
        .iter()
        .filter(|c| c.code == codes::RR_INTERVAL)
        .map(|c| c.value)
        .collect();
    assert_eq!(value(one(&d), codes::HEART_RATE).0, 80.0);
    assert_eq!(rr, vec![1.0, 0.875]);
    // RR intervals announced (bit 4) but none sent: refused, the field named.
    let err = decode(Source::Characteristic(0x2A37), &[0x10, 0x50], &Quirks::NONE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0x2A37: 2 bytes end before the RR intervals the flags announce (2 bytes from offset 2)"
    );
}

#[test]
fn battery_level() {
    assert_eq!(dec("2A19", "5A").info, Some(Info::Battery { percent: 90 }));
    let err = decode(Source::Characteristic(0x2A19), &[101], &Quirks::NONE).unwrap_err();
    assert_eq!(err.to_string(), "0x2A19: battery level 101 is above 100 %");
}

// §2.5 SpeziBluetooth PLXTests and ble_gatt_parser.
#[test]
fn plx_vectors() {
    let d = dec("2A5F", "00 E8 F3 84 F3");
    assert_eq!(value(one(&d), codes::SPO2), (100.0, "%".into()));
    assert_eq!(value(one(&d), codes::HEART_RATE), (90.0, "/min".into()));
    assert_eq!(dec("2A5F", "00 64 00 5A 00").readings, d.readings);

    let d = dec("2A5F", "1C 5F 00 5A 00 20 00 00 00 00 57 F0");
    let r = one(&d);
    assert_eq!(value(r, codes::SPO2).0, 95.0);
    assert_eq!(value(r, codes::HEART_RATE).0, 90.0);
    assert_eq!(r.status, vec!["measurement-ongoing"]);
    assert_eq!(value(r, codes::PULSE_AMPLITUDE_INDEX).0, 8.7);

    let d = dec("2A5F", "00 62 00 40 00");
    assert_eq!(value(one(&d), codes::SPO2).0, 98.0);
    assert_eq!(value(one(&d), codes::HEART_RATE).0, 64.0);

    let d = dec("2A60", "A3 00 40 10 80 01 00");
    let Some(Info::PlxFeatures(f)) = d.info else {
        panic!()
    };
    assert_eq!(
        f.supported,
        vec![
            "measurement-status",
            "device-and-sensor-status",
            "spo2pr-slow",
            "multiple-bonds"
        ]
    );
    assert_eq!(
        f.measurement_status_support,
        vec!["early-estimated-data", "calibration-ongoing"]
    );
    assert_eq!(
        f.device_status_support,
        vec!["nonpulsatile-signal", "questionable-pulse"]
    );
}

#[test]
fn plx_spot_check_clock_not_set() {
    // time stamp + clock-not-set flag; 97 %, 61 bpm, 2000-01-01 00:00:05.
    let d = dec("2A5E", "11 61 00 3D 00 D0 07 01 01 00 00 05");
    let r = one(&d);
    assert!(r.clock_not_set && r.has_device_time());
    assert!(r.status.contains(&"device-clock-not-set".to_string()));
}
