//! Golden tests: the advertisement vectors of docs/gatt.md §2.3 (Xiaomi) and §2.6 (Omron).

mod common;

use common::{at, dec, one, value};
use tm_devices::reading::codes;
use tm_devices::{Info, Quirks, Source, decode};
use tm_protocol::ReadingKind;

// Theengs decoder test_ble.cpp, Mi scale v1.
#[test]
fn mi_scale_v1_kg_and_lb() {
    let d = dec("adv:181D", "22 3E 30 E6 07 02 0E 10 29 3A");
    let r = one(&d);
    assert_eq!(r.kind, ReadingKind::BodyWeight);
    assert_eq!(value(r, codes::BODY_WEIGHT), (61.75, "kg".into()));
    assert_eq!(at(r).as_deref(), Some("2022-02-14 16:41:58"));
    assert!(!r.clock_not_set);

    let d = dec("adv:181D", "23 72 33 E6 07 02 0E 10 29 3A");
    let w = &one(&d).components[0];
    assert_eq!(
        w.original.as_ref().map(|o| (o.value, o.unit.as_str())),
        Some((131.7, "[lb_av]"))
    );
    assert_eq!((w.value, w.unit.as_str()), (59.738, "kg"));
}

// ble_monitor test_miscale_v1: stabilized but load removed -> no reading; 1970 clock.
#[test]
fn mi_scale_v1_load_removed_is_not_a_reading() {
    let d = dec("adv:181D", "A2 20 44 B2 07 01 01 0A 1A 15");
    assert!(d.readings.is_empty());
    let Some(Info::ScaleFrame(state)) = d.info else {
        panic!("{d:?}")
    };
    assert!(state.stabilized && state.load_removed);
    // The same frame with the load still on is 87.2 kg at an unset (1970) clock.
    let d = dec("adv:181D", "22 20 44 B2 07 01 01 0A 1A 15");
    let r = one(&d);
    assert_eq!(value(r, codes::BODY_WEIGHT).0, 87.2);
    assert_eq!(at(r).as_deref(), Some("1970-01-01 10:26:21"));
    assert!(r.clock_not_set);
}

// ble_monitor test_miscale_v1_ext_weight.
#[test]
fn mi_scale_v1_heavy() {
    let d = dec("adv:181D", "22 9E 43 E5 07 04 0B 10 13 01");
    assert_eq!(value(one(&d), codes::BODY_WEIGHT).0, 86.55);
    assert_eq!(at(one(&d)).as_deref(), Some("2021-04-11 16:19:01"));
}

#[test]
fn mi_scale_v1_unstable_is_not_a_reading() {
    let d = dec("adv:181D", "02 3E 30 E6 07 02 0E 10 29 3A");
    assert!(d.readings.is_empty());
}

// Theengs decoder, Mi Body Composition Scale 2 (XMTZC05HM).
#[test]
fn mi_body_composition_scale_2() {
    let d = dec("adv:181B", "02 26 E6 07 02 0E 10 29 3A F7 01 9A 38");
    let r = one(&d);
    assert_eq!(r.kind, ReadingKind::BodyComposition);
    assert_eq!(value(r, codes::BODY_WEIGHT), (72.45, "kg".into()));
    assert_eq!(value(r, codes::IMPEDANCE), (503.0, "Ohm".into()));
    assert_eq!(at(r).as_deref(), Some("2022-02-14 16:41:58"));

    let d = dec("adv:181B", "03 26 E6 07 02 0E 10 29 3A F7 01 F1 36");
    let r = one(&d);
    let w = &r.components[0];
    assert_eq!(w.original.as_ref().map(|o| o.value), Some(140.65));
    assert_eq!(value(r, codes::IMPEDANCE).0, 503.0);

    // Object weighing mode (5.1 kg): not a patient's weight.
    let d = dec("adv:181B", "06 24 E6 07 02 0E 10 29 3A 00 00 FC 03");
    assert!(d.readings.is_empty());
    let Some(Info::ScaleFrame(state)) = d.info else {
        panic!("{d:?}")
    };
    assert!(state.object_mode && state.stabilized);
}

#[test]
fn mi_frames_of_the_wrong_size_are_errors() {
    let err = decode(Source::ServiceData(0x181D), &[0x22, 0x3E], &Quirks::NONE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "adv:181D: 2 bytes, the format is exactly 10"
    );
}

// ble_monitor issue #1003 advert; layout SpeziOmron OmronManufacturerData.
#[test]
fn omron_each_user_data() {
    let d = dec("mfr:020E", "01 01 D0 02 64 11 00 11");
    let Some(Info::Omron(a)) = d.info else {
        panic!("{d:?}")
    };
    assert_eq!(a.user_count, 2);
    assert!(!a.time_not_set && !a.pairing_mode);
    assert_eq!(
        a.users
            .iter()
            .map(|u| (u.user, u.sequence, u.records))
            .collect::<Vec<_>>(),
        vec![(1, 720, 100), (2, 17, 17)]
    );
    assert_eq!(a.unparsed_bytes, 0);
}

// hass-omron issue #7 (HEM-7380T), format 0x06.
#[test]
fn omron_pairing_mode_and_forced_transfer() {
    let d = dec("mfr:020E", "06 49 ED 01 64 31 00 31 00 2A 00 02");
    let Some(Info::Omron(a)) = d.info else {
        panic!("{d:?}")
    };
    assert_eq!(a.data_type, 0x06);
    assert!(a.pairing_mode && a.forced_transfer && !a.time_not_set);
    assert_eq!(a.user_count, 2);
    assert_eq!(a.users[0].sequence, 493);
    assert_eq!(a.unparsed_bytes, 4);
}

#[test]
fn omron_time_not_set_flag() {
    let d = dec("mfr:020E", "01 04 05 00 05");
    let Some(Info::Omron(a)) = d.info else {
        panic!("{d:?}")
    };
    assert!(a.time_not_set);
    assert_eq!(a.user_count, 1);
    let err = decode(
        Source::ManufacturerData(0x020E),
        &[0x01, 0x01, 0xD0],
        &Quirks::NONE,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mfr:020E: 3 bytes, the user count requires at least 8"
    );
}

#[test]
fn unknown_sources_are_typed_errors() {
    let err = decode(Source::ManufacturerData(0x004C), &[1], &Quirks::NONE).unwrap_err();
    assert_eq!(err.to_string(), "mfr:004C: no decoder for this source");
    let err = decode(Source::Characteristic(0x2A00), &[1], &Quirks::NONE).unwrap_err();
    assert_eq!(err.to_string(), "0x2A00: no decoder for this source");
}

// §2.6 hass-omron tests/test_record_parsers.py: EEPROM records.
#[test]
fn omron_eeprom_records() {
    use tm_devices::omron_records::{RecordLayout, decode_record};
    let r = decode_record(
        &common::hex("65 58 54 1A 33 1A DE 18 00 00 4C 00 BA 00"),
        RecordLayout::ByteAligned,
    )
    .unwrap()
    .unwrap();
    assert_eq!(value(&r, codes::SYSTOLIC).0, 126.0);
    assert_eq!(value(&r, codes::DIASTOLIC).0, 88.0);
    assert_eq!(value(&r, codes::HEART_RATE).0, 84.0);
    assert_eq!(at(&r).as_deref(), Some("2026-06-17 19:35:30"));

    let r = decode_record(
        &common::hex("64 57 43 1A 73 16 16 1C 00 00 46 00 19 00"),
        RecordLayout::ByteAligned,
    )
    .unwrap()
    .unwrap();
    assert_eq!(value(&r, codes::SYSTOLIC).0, 125.0);
    assert_eq!(value(&r, codes::DIASTOLIC).0, 87.0);
    assert_eq!(value(&r, codes::HEART_RATE).0, 67.0);
    assert_eq!(at(&r).as_deref(), Some("2026-05-19 19:48:22"));

    let r = decode_record(
        &common::hex("5B 78 1A 48 19 D7 1B 42 00 00 14 00 69 96"),
        RecordLayout::BitPacked,
    )
    .unwrap()
    .unwrap();
    assert_eq!(value(&r, codes::SYSTOLIC).0, 145.0);
    assert_eq!(value(&r, codes::DIASTOLIC).0, 91.0);
    assert_eq!(value(&r, codes::HEART_RATE).0, 72.0);
    assert_eq!(at(&r).as_deref(), Some("2026-06-14 23:45:02"));

    for layout in [RecordLayout::ByteAligned, RecordLayout::BitPacked] {
        assert_eq!(decode_record(&[0xFF; 14], layout), Ok(None));
        assert_eq!(decode_record(&[0x00; 14], layout), Ok(None));
        assert!(decode_record(&[0x00; 13], layout).is_err());
    }
}
