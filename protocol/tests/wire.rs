//! The wire contract as a black box: every message round-trips, a tampered or foreign-signed
//! frame never verifies, and decoding refuses other versions, unknown fields and oversized
//! input with an error that names the problem.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use tm_protocol::limits::*;
use tm_protocol::*;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_778_000_000 + s, 0).unwrap()
}

fn reading(n: u32) -> Reading {
    let raw = vec![0x1e, 0x78, 0x00, 0x50, 0x00, 0x5a, 0x00, (n & 0xff) as u8];
    let received_at = at(i64::from(n));
    let id = reading_id(&ReadingIdInput {
        device_address: "A4:C1:38:00:00:01",
        characteristic: "2A35",
        user_slot: Some(1),
        raw: &raw,
        has_device_time: true,
        has_sequence: false,
        received_at,
    });
    let tz = FixedOffset::east_opt(2 * 3600).unwrap();
    Reading {
        reading_id: id,
        device: DeviceInfo {
            address: "A4:C1:38:00:00:01".into(),
            manufacturer: Some("A&D Medical".into()),
            model: Some("UA-651BLE".into()),
            serial: Some("5110231".into()),
            firmware: None,
            catalog_model: Some("and-ua-651ble".into()),
        },
        kind: ReadingKind::BloodPressure,
        components: vec![
            Component {
                code: "8480-6".into(),
                value: 120.0,
                unit: "mm[Hg]".into(),
                original: None,
            },
            Component {
                code: "8462-4".into(),
                value: 80.0,
                unit: "mm[Hg]".into(),
                original: Some(Quantity {
                    value: 10.7,
                    unit: "kPa".into(),
                }),
            },
        ],
        missing: vec![MissingComponent {
            code: "8478-0".into(),
            reason: "nres".into(),
        }],
        flags: vec!["irregular-pulse".into()],
        device_time: Some(
            NaiveDate::from_ymd_opt(2026, 5, 9)
                .unwrap()
                .and_hms_opt(7, 31, 30)
                .unwrap(),
        ),
        effective_time: received_at.with_timezone(&tz),
        received_at,
        clock_offset_ms: Some(-1500),
        time_quality: TimeQuality::CorrectedByOffset,
        characteristic: "2A35".into(),
        user_slot: Some(1),
        sequence: None,
        raw,
        battery_pct: Some(80),
        rssi_dbm: Some(-67),
    }
}

fn batch(n: usize) -> ReadingBatch {
    ReadingBatch {
        v: PROTOCOL_VERSION,
        gateway_id: GatewayId::new("gw-7f3a").unwrap(),
        batch_id: BatchId::new("b-0001").unwrap(),
        created_at: at(0),
        readings: (0..n).map(|i| reading(u32::try_from(i).unwrap())).collect(),
    }
}

fn heartbeat() -> Heartbeat {
    Heartbeat {
        v: PROTOCOL_VERSION,
        gateway_id: GatewayId::new("gw-7f3a").unwrap(),
        sent_at: at(60),
        version: "0.1.0".into(),
        uptime_s: 3600,
        backlog: Backlog {
            depth: 12,
            oldest_age_s: Some(300),
            rejected: 1,
        },
        devices_unreadable: false,
        devices: vec![DeviceHealth {
            address: "A4:C1:38:00:00:01".into(),
            model: Some("and-ua-651ble".into()),
            last_seen: Some(at(10)),
            last_reading: Some(at(5)),
            battery_pct: Some(80),
            rssi_dbm: Some(-70),
        }],
        clock: ClockState::Synchronized,
        disk: DiskUse {
            used_bytes: 1 << 20,
            quota_bytes: 256 << 20,
        },
        last_error: None,
        setup: None,
    }
}

fn round_trip<M: codec::Message + PartialEq + std::fmt::Debug>(m: &M) {
    let bytes = encode(m);
    let back: M = decode(&bytes).unwrap();
    assert_eq!(&back, m);
    assert_eq!(encode(&back), bytes, "encoding is deterministic");
}

#[test]
fn every_message_round_trips() {
    round_trip(&batch(3));
    round_trip(&Receipt {
        v: PROTOCOL_VERSION,
        batch_id: BatchId::new("b-0001").unwrap(),
        accepted: vec![reading(1).reading_id],
        rejected: vec![Rejection {
            reading_id: reading(2).reading_id,
            reason: "device not bound to this session".into(),
        }],
        duplicates: vec![],
    });
    round_trip(&Receipt {
        v: PROTOCOL_VERSION,
        batch_id: BatchId::new("b-0002").unwrap(),
        accepted: vec![reading(1).reading_id, reading(3).reading_id],
        rejected: vec![],
        duplicates: vec![reading(3).reading_id],
    });
    round_trip(&heartbeat());
    for action in [
        CommandAction::ResyncNow,
        CommandAction::SetLogLevel {
            level: "debug".into(),
        },
        CommandAction::RereadDevices,
    ] {
        round_trip(&Command {
            v: PROTOCOL_VERSION,
            command_id: CommandId::new("c-1").unwrap(),
            gateway_id: GatewayId::new("gw-7f3a").unwrap(),
            issued_at: at(0),
            expires_at: at(600),
            action,
        });
    }
    for status in [
        CommandStatus::Done,
        CommandStatus::NotAvailable,
        CommandStatus::Failed,
    ] {
        round_trip(&CommandResult {
            v: PROTOCOL_VERSION,
            gateway_id: GatewayId::new("gw-7f3a").unwrap(),
            command_id: CommandId::new("c-1").unwrap(),
            status,
            detail: "reconnecting to 2 paired devices".into(),
            finished_at: at(5),
        });
    }
    for state in [LinkState::Online, LinkState::Offline] {
        round_trip(&Status {
            v: PROTOCOL_VERSION,
            gateway_id: GatewayId::new("gw-7f3a").unwrap(),
            state,
            connection: 1_764_547_200_123,
        });
    }
    let (key, _) = SigningKey::generate().unwrap();
    round_trip(&EnrollmentRequest {
        v: PROTOCOL_VERSION,
        code: "K7P-2QX".into(),
        public_key: key.verifying_key().as_bytes().to_vec(),
        agent_version: "0.1.0".into(),
    });
    round_trip(&EnrollmentResponse {
        v: PROTOCOL_VERSION,
        gateway_id: GatewayId::new("gw-7f3a").unwrap(),
        provider_public_key: key.verifying_key().as_bytes().to_vec(),
        sync: SyncSettings {
            transport: Transport::Mqtt,
            https_url: "https://provider.example/".into(),
            mqtt_url: Some("mqtts://broker.example:8883".into()),
            heartbeat_interval_s: 60,
        },
    });
}

#[test]
fn wire_shape_is_readable_json() {
    let json: serde_json::Value = serde_json::from_slice(&encode(&batch(1))).unwrap();
    let r = &json["readings"][0];
    assert_eq!(json["v"], 1);
    assert_eq!(r["kind"], "blood-pressure");
    assert_eq!(r["time_quality"], "corrected-by-offset");
    assert_eq!(r["components"][0]["code"], "8480-6");
    assert_eq!(r["components"][1]["original"]["unit"], "kPa");
    assert_eq!(r["raw"], "HngAUABaAAA=");
    assert_eq!(r["effective_time"], "2026-05-05T18:53:20+02:00");
}

/// A receipt without duplicates has exactly the bytes it had before `duplicates` existed, and
/// such a receipt (from an older provider) still decodes; duplicates are named when present.
#[test]
fn receipt_names_duplicates_only_when_there_are_some() {
    let id = reading(1).reading_id;
    let plain = Receipt {
        v: PROTOCOL_VERSION,
        batch_id: BatchId::new("b-0001").unwrap(),
        accepted: vec![id.clone()],
        rejected: vec![],
        duplicates: vec![],
    };
    let before = format!(r#"{{"v":1,"batch_id":"b-0001","accepted":["{id}"],"rejected":[]}}"#);
    assert_eq!(String::from_utf8(encode(&plain)).unwrap(), before);
    assert_eq!(decode::<Receipt>(before.as_bytes()).unwrap(), plain);
    let dup = Receipt {
        duplicates: vec![id.clone()],
        ..plain
    };
    let json: serde_json::Value = serde_json::from_slice(&encode(&dup)).unwrap();
    assert_eq!(json["duplicates"][0], id.as_str());
    assert_eq!(json["accepted"][0], id.as_str());
}

#[test]
fn unknown_version_is_refused_by_name() {
    let mut json: serde_json::Value = serde_json::from_slice(&encode(&batch(1))).unwrap();
    json["v"] = 2.into();
    json["from_the_future"] = true.into();
    let err = decode::<ReadingBatch>(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::UnsupportedVersion {
            found: 2,
            supported: 1,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "reading batch: unsupported protocol version 2 (this build speaks 1)"
    );
    json.as_object_mut().unwrap().remove("v");
    let err = decode::<ReadingBatch>(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(matches!(err, DecodeError::MissingVersion { .. }));
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    let base: serde_json::Value = serde_json::from_slice(&encode(&batch(1))).unwrap();
    for pointer in [
        "",
        "/readings/0",
        "/readings/0/device",
        "/readings/0/components/0",
    ] {
        let mut json = base.clone();
        json.pointer_mut(pointer).unwrap()["surprise"] = 1.into();
        let err = decode::<ReadingBatch>(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unknown field `surprise`"),
            "{pointer}: {text}"
        );
    }
    let mut hb: serde_json::Value = serde_json::from_slice(&encode(&heartbeat())).unwrap();
    hb["backlog"]["extra"] = 0.into();
    assert!(decode::<Heartbeat>(&serde_json::to_vec(&hb).unwrap()).is_err());
}

#[test]
fn malformed_ids_are_refused() {
    let mut json: serde_json::Value = serde_json::from_slice(&encode(&batch(1))).unwrap();
    json["gateway_id"] = "gw/+/#".into();
    let err = decode::<ReadingBatch>(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(err.to_string().contains("invalid gateway id"), "{err}");
    let mut json: serde_json::Value = serde_json::from_slice(&encode(&batch(1))).unwrap();
    json["readings"][0]["reading_id"] = "abc".into();
    let err = decode::<ReadingBatch>(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(err.to_string().contains("invalid reading id"), "{err}");
}

#[test]
fn size_limits_name_the_limit_hit() {
    let too_many = batch(MAX_READINGS_PER_BATCH + 1);
    let err = decode::<ReadingBatch>(&encode(&too_many)).unwrap_err();
    assert!(
        err.to_string()
            .contains("MAX_READINGS_PER_BATCH exceeded (1001 > 1000)"),
        "{err}"
    );

    let mut big_raw = batch(1);
    big_raw.readings[0].raw = vec![0; MAX_RAW_PAYLOAD_BYTES + 1];
    let err = decode::<ReadingBatch>(&encode(&big_raw)).unwrap_err();
    assert!(err.to_string().contains("MAX_RAW_PAYLOAD_BYTES"), "{err}");

    let mut many_components = batch(1);
    let c = many_components.readings[0].components[0].clone();
    many_components.readings[0].components = vec![c; MAX_COMPONENTS_PER_READING + 1];
    let err = decode::<ReadingBatch>(&encode(&many_components)).unwrap_err();
    assert!(
        err.to_string().contains("MAX_COMPONENTS_PER_READING"),
        "{err}"
    );

    let mut long_text = heartbeat();
    long_text.last_error = Some("x".repeat(MAX_TEXT_BYTES + 1));
    let err = decode::<Heartbeat>(&encode(&long_text)).unwrap_err();
    assert!(
        err.to_string().contains("MAX_TEXT_BYTES (last error)"),
        "{err}"
    );

    let nearby = setup::NearbyDevice {
        address: "C0:FF:EE:00:00:01".into(),
        name: None,
        model_id: None,
        rssi_dbm: None,
        paired: false,
    };
    let mut crowded = heartbeat();
    crowded.setup = Some(setup::SetupState {
        until: at(600),
        nearby: vec![nearby.clone(); setup::MAX_NEARBY],
        pairings: Vec::new(),
    });
    round_trip(&crowded);
    if let Some(s) = crowded.setup.as_mut() {
        s.nearby.push(nearby);
    }
    let err = decode::<Heartbeat>(&encode(&crowded)).unwrap_err();
    assert!(err.to_string().contains("MAX_NEARBY"), "{err}");

    let long_secret = Command {
        v: PROTOCOL_VERSION,
        command_id: CommandId::new("cmd-1").unwrap(),
        gateway_id: GatewayId::new("gw-7f3a").unwrap(),
        issued_at: at(0),
        expires_at: at(120),
        action: CommandAction::PairSecret {
            address: "C0:FF:EE:00:00:03".into(),
            secret: "1".repeat(MAX_TEXT_BYTES + 1),
        },
    };
    let err = decode::<Command>(&encode(&long_secret)).unwrap_err();
    assert!(err.to_string().contains("MAX_TEXT_BYTES (secret)"), "{err}");

    let hello = setup::ClaimHello {
        v: PROTOCOL_VERSION,
        public_key: vec![7; 32],
        agent_version: "x".repeat(MAX_TEXT_BYTES + 1),
        sent_at: at(0),
    };
    let err = decode::<setup::ClaimHello>(&encode(&hello)).unwrap_err();
    assert!(err.to_string().contains("claim hello"), "{err}");

    let huge = vec![b' '; MAX_FRAME_BYTES + 1];
    let err = decode::<ReadingBatch>(&huge).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Limit {
                limit: "MAX_FRAME_BYTES",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn limits_fit_a_full_batch_in_one_frame() {
    // The gateway must be able to ship MAX_READINGS_PER_BATCH typical readings in one frame.
    let full = encode(&batch(MAX_READINGS_PER_BATCH));
    assert!(
        full.len() < MAX_FRAME_BYTES,
        "full batch is {} bytes",
        full.len()
    );
}

#[test]
fn signed_batch_end_to_end() {
    let (key, _) = SigningKey::generate().unwrap();
    let b = batch(2);
    let framed = seal(
        MessageKind::ReadingBatch,
        b.gateway_id.as_str(),
        &encode(&b),
        &key,
    );
    let frame = Frame::parse(&framed).unwrap();
    assert_eq!(frame.signer(), "gw-7f3a");
    let payload = frame
        .verify(MessageKind::ReadingBatch, &key.verifying_key())
        .unwrap();
    assert_eq!(decode::<ReadingBatch>(payload).unwrap(), b);
}

fn verifies(bytes: &[u8], key: &VerifyingKey) -> bool {
    Frame::parse(bytes)
        .and_then(|f| f.verify(MessageKind::ReadingBatch, key))
        .is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Flipping any single bit of a sealed frame (header, signer, signature or payload) makes
    /// it fail to parse or fail to verify.
    #[test]
    fn any_flipped_bit_fails_verification(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        bit in any::<proptest::sample::Index>(),
    ) {
        let (key, _) = SigningKey::generate().unwrap();
        let mut framed = seal(MessageKind::ReadingBatch, "gw-1", &payload, &key);
        prop_assert!(verifies(&framed, &key.verifying_key()));
        let i = bit.index(framed.len() * 8);
        framed[i / 8] ^= 1 << (i % 8);
        prop_assert!(!verifies(&framed, &key.verifying_key()));
    }

    /// A frame signed by one key never verifies under another.
    #[test]
    fn wrong_key_fails_verification(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let framed = seal(MessageKind::ReadingBatch, "gw-1", &payload, &key);
        prop_assert!(!verifies(&framed, &other.verifying_key()));
    }

    /// Truncating a frame anywhere makes it fail.
    #[test]
    fn truncation_fails(payload in proptest::collection::vec(any::<u8>(), 1..256), cut in any::<proptest::sample::Index>()) {
        let (key, _) = SigningKey::generate().unwrap();
        let framed = seal(MessageKind::ReadingBatch, "gw-1", &payload, &key);
        let n = cut.index(framed.len());
        prop_assert!(!verifies(&framed[..n], &key.verifying_key()));
    }

    /// Arbitrary bytes never panic the frame parser or the decoders.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Frame::parse(&bytes);
        let _ = decode::<ReadingBatch>(&bytes);
        let _ = decode::<Receipt>(&bytes);
        let _ = decode::<Heartbeat>(&bytes);
        let _ = decode::<Command>(&bytes);
        let _ = decode::<CommandResult>(&bytes);
        let _ = decode::<EnrollmentRequest>(&bytes);
    }
}

/// The batch `readings` (JSON texts) make, as a gateway would encode it.
fn batch_text(readings: &[String]) -> String {
    let mut json = String::from_utf8(encode(&batch(0))).unwrap();
    let empty = "\"readings\":[]";
    assert!(json.contains(empty));
    json = json.replacen(
        empty,
        &format!("\"readings\":[{}]", readings.join(" , ")),
        1,
    );
    json
}

fn reading_text(n: u32) -> String {
    serde_json::to_string(&reading(n)).unwrap()
}

#[test]
fn a_received_batch_is_the_decoded_batch_with_each_readings_own_text() {
    let readings = [reading_text(1), reading_text(2), reading_text(3)];
    let json = batch_text(&readings);
    let expected = decode::<ReadingBatch>(json.as_bytes()).unwrap();
    assert_eq!(expected.readings.len(), 3);
    let received = received::decode_received(json.as_bytes()).unwrap();
    assert_eq!(received.batch, expected);
    let texts: Vec<&str> = received.texts.iter().map(|t| t.get()).collect();
    assert_eq!(
        texts,
        readings.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for (text, reading) in received.texts.iter().zip(&received.batch.readings) {
        assert_eq!(
            &serde_json::from_str::<Reading>(text.get()).unwrap(),
            reading
        );
    }
    let full = batch(MAX_READINGS_PER_BATCH);
    assert_eq!(
        received::decode_received(&encode(&full)).unwrap().batch,
        full
    );
}

#[test]
fn a_received_batch_is_refused_where_decode_refuses_it_with_the_same_error() {
    let good = reading_text(1);
    let with_extra = good.replacen("\"raw\"", "\"extra\":1,\"raw\"", 1);
    let oversized_raw = {
        let mut r = reading(1);
        r.raw = vec![0; MAX_RAW_PAYLOAD_BYTES + 1];
        serde_json::to_string(&r).unwrap()
    };
    let v = format!("\"v\":{PROTOCOL_VERSION}");
    let cases = [
        batch_text(std::slice::from_ref(&good)).replacen(&v, "\"v\":99,\"future\":true", 1),
        batch_text(std::slice::from_ref(&good)).replacen(&format!("{v},"), "", 1),
        batch_text(&[with_extra]),
        batch_text(std::slice::from_ref(&good)).replacen(
            "\"readings\"",
            "\"extra\":1,\"readings\"",
            1,
        ),
        batch_text(&[oversized_raw]),
        batch_text(&vec![good.clone(); MAX_READINGS_PER_BATCH + 1]),
        batch_text(&[good.replacen("\"blood-pressure\"", "\"x-ray\"", 1)]),
        batch_text(std::slice::from_ref(&good))[..40].to_string(),
    ];
    for json in cases {
        let expected = decode::<ReadingBatch>(json.as_bytes()).unwrap_err();
        let got = received::decode_received(json.as_bytes()).unwrap_err();
        assert_eq!(
            std::mem::discriminant(&got),
            std::mem::discriminant(&expected),
            "{got} / {expected}"
        );
        if let (DecodeError::Limit { limit: a, .. }, DecodeError::Limit { limit: b, .. }) =
            (&got, &expected)
        {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn an_error_inside_a_received_reading_names_the_reading() {
    let bad = reading_text(2).replacen("\"blood-pressure\"", "\"x-ray\"", 1);
    let json = batch_text(&[reading_text(1), bad]);
    let err = received::decode_received(json.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("reading 1:"), "{err}");
}

#[test]
fn a_kinds_wire_name_is_its_json_encoding() {
    for kind in ReadingKind::ALL {
        assert_eq!(
            serde_json::to_value(kind).unwrap(),
            serde_json::Value::from(kind.wire_name())
        );
    }
}
