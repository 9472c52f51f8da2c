//! The embedded catalog loads, and its rules hold: unknown keys and quirk names are errors,
//! quirks reach the decoder through the DIS model string, adverts match the right family.

use tm_devices::catalog::{Advert, Bonding, ClockSetting, FILES, Profile};
use tm_devices::{Catalog, Quirks};

#[test]
fn every_catalog_file_loads() {
    let on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    for name in &on_disk {
        assert!(
            FILES.iter().any(|(f, _)| f == name),
            "{name} is not embedded in catalog::FILES"
        );
    }
    for (name, text) in FILES {
        let entries = Catalog::parse_file(name, text).unwrap_or_else(|e| panic!("{e}"));
        assert!(!entries.is_empty(), "{name} has no model");
    }
    let catalog = Catalog::embedded().unwrap();
    assert!(catalog.entries().len() >= 20);
}

#[test]
fn families_of_the_reference_are_covered() {
    let c = Catalog::embedded().unwrap();
    for id in [
        "omron-bp7000",
        "and-ua-651ble",
        "and-uc-352ble",
        "beurer-bm85",
        "beurer-bf720",
        "xiaomi-mi-scale-2",
        "xiaomi-mi-body-composition-scale-2",
        "roche-accu-chek-guide",
        "ascensia-contour-next-one",
        "taidoc-glucose",
        "masimo-mightysat",
    ] {
        assert!(c.by_id(id).is_some(), "{id} missing");
    }
    let omron = &c.by_id("omron-bp7000").unwrap().model;
    assert_eq!(omron.clock, ClockSetting::CtsOnFirstNotification);
    assert!(omron.single_bond);
    assert_eq!(
        c.by_id("and-ua-651ble").unwrap().model.clock,
        ClockSetting::DateTime
    );
    assert_eq!(
        c.by_id("beurer-bf720").unwrap().model.bonding,
        Bonding::Passkey
    );
    let mi = &c.by_id("xiaomi-mi-scale-2").unwrap().model;
    assert!(mi.advertisement_only);
    assert_eq!(mi.profile, Profile::XiaomiScaleAdvert);
}

#[test]
fn dis_model_selects_the_bm85_quirks() {
    let c = Catalog::embedded().unwrap();
    let q = c.by_dis_model(" bm85 ").unwrap().model.decode_quirks();
    assert!(q.bp_big_endian_pulse_status && q.bp_always_user_id);
    assert_eq!(
        c.by_dis_model("BM57").unwrap().model.decode_quirks(),
        Quirks::NONE
    );
    assert!(c.by_dis_model("no such model").is_none());
}

#[test]
fn adverts_match_vendor_before_generic() {
    let c = Catalog::embedded().unwrap();
    let omron = c
        .match_advert(&Advert {
            name: Some("BLESmart_0000021F0123456789AB"),
            service_uuids: &["1810"],
            manufacturer_ids: &[0x020E],
            ..Advert::default()
        })
        .unwrap();
    assert_eq!(omron.model.id, "omron-bp7000");
    let generic = c
        .match_advert(&Advert {
            name: Some("Some cuff"),
            service_uuids: &["00001810-0000-1000-8000-00805f9b34fb"],
            ..Advert::default()
        })
        .unwrap();
    assert_eq!(generic.model.id, "sig-blood-pressure");
    let mi = c
        .match_advert(&Advert {
            service_data_uuids: &["181b"],
            ..Advert::default()
        })
        .unwrap();
    assert_eq!(mi.model.id, "xiaomi-mi-body-composition-scale-2");
    assert!(
        c.match_advert(&Advert {
            name: Some("Headphones"),
            ..Advert::default()
        })
        .is_none()
    );
}

const VALID: &str = r#"
vendor = "Test"
[[model]]
id = "t-1"
name = "T1"
profile = "blood-pressure"
bonding = "just-works"
clock = "cts"
recognition.service_uuids = ["1810"]
"#;

#[test]
fn unknown_keys_and_names_are_errors() {
    assert!(Catalog::from_files(&[("t.toml", VALID)]).is_ok());
    let unknown_key = VALID.replace("clock = \"cts\"", "clock = \"cts\"\ncolour = \"red\"");
    let err = Catalog::from_files(&[("t.toml", &unknown_key)]).unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
    let unknown_quirk = VALID.replace(
        "clock = \"cts\"",
        "clock = \"cts\"\nquirks = [\"bp-sideways\"]",
    );
    let err = Catalog::from_files(&[("t.toml", &unknown_quirk)]).unwrap_err();
    assert!(err.to_string().contains("bp-sideways"), "{err}");
    let unknown_recognition = VALID.replace("recognition.service_uuids", "recognition.colours");
    assert!(Catalog::from_files(&[("t.toml", &unknown_recognition)]).is_err());
    let bad_bonding = VALID.replace("just-works", "telepathy");
    assert!(Catalog::from_files(&[("t.toml", &bad_bonding)]).is_err());
}

#[test]
fn validation_rules() {
    let misplaced_quirk = VALID.replace(
        "clock = \"cts\"",
        "clock = \"cts\"\nquirks = [\"glucose-reversed-sequence\"]",
    );
    let err = Catalog::from_files(&[("t.toml", &misplaced_quirk)]).unwrap_err();
    assert!(err.to_string().contains("does not apply"), "{err}");
    let bad_uuid = VALID.replace("[\"1810\"]", "[\"18100\"]");
    assert!(Catalog::from_files(&[("t.toml", &bad_uuid)]).is_err());
    let twice = Catalog::from_files(&[("a.toml", VALID), ("b.toml", VALID)]).unwrap_err();
    assert!(twice.to_string().contains("twice"), "{twice}");
    let advert_bonds = VALID.replace(
        "clock = \"cts\"",
        "clock = \"none\"\nadvertisement_only = true",
    );
    assert!(Catalog::from_files(&[("t.toml", &advert_bonds)]).is_err());
}
