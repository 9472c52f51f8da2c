//! One `Device` entry per measuring device (docs/fhir.md §6), built from what the gateway read
//! from Device Information and from the link: the Bluetooth address as the PHD IG writes a
//! transport address, the serial number, the IEEE 11073 device specialization, manufacturer,
//! model and firmware. Observations reference it by its `urn:uuid:` fullUrl.

use serde_json::{Value, json};
use tm_protocol::{DeviceInfo, ReadingKind};

/// What makes two readings' devices the same Device: address, manufacturer, model, serial.
pub(super) fn device_key(d: &DeviceInfo) -> String {
    format!(
        "{}|{}|{}|{}",
        d.address.to_ascii_uppercase(),
        d.manufacturer.as_deref().unwrap_or(""),
        d.model.as_deref().unwrap_or(""),
        d.serial.as_deref().unwrap_or("")
    )
}

/// The Bluetooth address as the PHD IG writes a transport address: EUI-48, upper-case hex
/// pairs separated by dashes.
const BLUETOOTH_ADDRESS_SYSTEM: &str = "http://hl7.org/fhir/sid/eui-48/bluetooth";
const DEVICE_IDENTIFIER_TYPES: &str =
    "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers";
const IDENTIFIER_TYPES: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const MDC: &str = "urn:iso:std:iso:11073:10101";

/// The ISO/IEEE 11073-10101 device specialization of a device that measures `kind` (the PHD
/// IG's `DeviceTypes11073MDC` codes).
fn device_type(kind: ReadingKind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        ReadingKind::BloodPressure | ReadingKind::CuffPressure => {
            ("528391", "MDC_DEV_SPEC_PROFILE_BP")
        }
        ReadingKind::BodyWeight => ("528399", "MDC_DEV_SPEC_PROFILE_SCALE"),
        ReadingKind::BodyComposition => ("528404", "MDC_DEV_SPEC_PROFILE_BCA"),
        ReadingKind::PulseOximetry => ("528388", "MDC_DEV_SPEC_PROFILE_PULS_OXIM"),
        ReadingKind::BodyTemperature => ("528392", "MDC_DEV_SPEC_PROFILE_TEMP"),
        ReadingKind::Glucose => ("528401", "MDC_DEV_SPEC_PROFILE_GLUCOSE"),
        ReadingKind::HeartRate => ("528525", "MDC_DEV_SUB_SPEC_PROFILE_HR"),
        ReadingKind::Unrecognized => return None,
    })
}

/// The Device of `d`, typed by the kind of its first charted reading.
pub(super) fn device_resource(id: &str, d: &DeviceInfo, kind: ReadingKind) -> Value {
    let mut dev = serde_json::Map::new();
    dev.insert("resourceType".into(), json!("Device"));
    dev.insert("id".into(), json!(id));
    let mut identifiers = vec![json!({
        "type": {"coding": [{"system": DEVICE_IDENTIFIER_TYPES, "code": "BTMAC"}]},
        "system": BLUETOOTH_ADDRESS_SYSTEM,
        "value": d.address.to_ascii_uppercase().replace(':', "-"),
    })];
    if let Some(serial) = &d.serial {
        identifiers.push(json!({
            "type": {"coding": [{"system": IDENTIFIER_TYPES, "code": "SNO"}]},
            "value": serial,
        }));
    }
    dev.insert("identifier".into(), Value::Array(identifiers));
    if let Some(m) = &d.manufacturer {
        dev.insert("manufacturer".into(), json!(m));
    }
    if let Some(serial) = &d.serial {
        dev.insert("serialNumber".into(), json!(serial));
    }
    if let Some(name) = d.model.as_ref().or(d.catalog_model.as_ref()) {
        dev.insert(
            "deviceName".into(),
            json!([{"name": name, "type": "model-name"}]),
        );
    }
    if let Some(model) = &d.model {
        dev.insert("modelNumber".into(), json!(model));
    }
    if let Some((code, display)) = device_type(kind) {
        dev.insert(
            "type".into(),
            json!({"coding": [{"system": MDC, "code": code, "display": display}]}),
        );
    }
    if let Some(fw) = &d.firmware {
        dev.insert("version".into(), json!([{ "value": fw }]));
    }
    Value::Object(dev)
}
