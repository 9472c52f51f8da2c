//! Where an Observation's time came from, in a form an EHR can read: a `meta.tag` coded in the
//! provider's time-source code system, plus `issued` (docs/fhir.md §5).
//!
//! The gateway decides each reading's effective time by its time policy (docs/gatt.md §6) and
//! records how in `TimeQuality`: the device's clock (in agreement with the gateway, or corrected
//! by the offset measured at connection), or the gateway's receive time. The vital-sign
//! profiles have no element for this, and no HL7 code system names it, so the provider defines
//! one, [`TIME_SOURCE_SYSTEM`], whose codes are the protocol's `TimeQuality` names. A tag
//! rather than an extension: it needs no StructureDefinition to be read, every FHIR server
//! indexes it (`_tag`), and it does not change what the value means, only how far its time can
//! be trusted.
//!
//! `issued` is when the gateway received the bytes (`received_at`), the earliest moment the
//! value existed outside the device; the provider commits it within one batch of that.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tm_protocol::TimeQuality;

use super::values::timestamp;

/// The provider's object identifier arc: a UUID-derived OID (ITU-T X.667, `2.25.<uuid>`), so
/// it needs no registration and cannot collide; the provider's code systems are arcs under it.
pub const PROVIDER_OID: &str = "2.25.288514831106500359318255018466373990496";

/// The time-source code system: `urn:oid:<PROVIDER_OID>.1`.
pub const TIME_SOURCE_SYSTEM: &str = "urn:oid:2.25.288514831106500359318255018466373990496.1";

/// The code and display of the time source of `q`.
pub fn time_source(q: TimeQuality) -> (&'static str, &'static str) {
    match q {
        TimeQuality::DeviceSynced => (
            "device-synced",
            "Device clock, in agreement with the gateway clock",
        ),
        TimeQuality::CorrectedByOffset => (
            "corrected-by-offset",
            "Device clock, corrected by the offset measured at connection",
        ),
        TimeQuality::DeviceUnsetReceiveTime => (
            "device-unset-receive-time",
            "Gateway receive time: the device clock was not set",
        ),
        TimeQuality::NoDeviceTime => (
            "no-device-time",
            "Gateway receive time: the device sends no time",
        ),
        TimeQuality::DeviceUnsetUntrusted => (
            "device-unset-untrusted",
            "Unknown: the device clock was not set and the record came from its memory",
        ),
    }
}

/// The `meta.tag` entry naming the time source of `q`.
pub fn time_source_tag(q: TimeQuality) -> Value {
    let (code, display) = time_source(q);
    json!({"system": TIME_SOURCE_SYSTEM, "code": code, "display": display})
}

/// `issued`: the gateway's receive time, in UTC.
pub fn issued(received_at: &DateTime<Utc>) -> Value {
    json!(timestamp(received_at, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_is_an_arc_of_the_provider_oid_and_codes_are_the_protocol_names() {
        assert_eq!(TIME_SOURCE_SYSTEM, format!("urn:oid:{PROVIDER_OID}.1"));
        for q in [
            TimeQuality::DeviceSynced,
            TimeQuality::CorrectedByOffset,
            TimeQuality::DeviceUnsetReceiveTime,
            TimeQuality::NoDeviceTime,
            TimeQuality::DeviceUnsetUntrusted,
        ] {
            let name = serde_json::to_value(q).unwrap();
            assert_eq!(time_source(q).0, name.as_str().unwrap());
            assert_eq!(time_source_tag(q)["system"], TIME_SOURCE_SYSTEM);
        }
    }
}
