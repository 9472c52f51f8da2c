//! The devices' measurement-status flags (the cuff's irregular pulse, body movement, cuff fit;
//! the oximeter's signal quality; the glucose meter's strip and sensor faults) as Observation
//! components (docs/fhir.md §4.3).
//!
//! Each flag the decoders set becomes one component of every Observation of its reading, coded
//! the way the HL7 Personal Health Device IG reports an IEEE 11073 status bit: `code` from the
//! `ASN1ToHL7` code system (`<MDC attribute>.<bit>`: 8410608 blood-pressure measurement status,
//! 150604 pulse-oximeter device and sensor status, 8417752 glucose meter device status), the
//! flag's name as `code.text`, and `valueCodeableConcept` `Y` of HL7 table 0136. A flag with
//! no ASN1ToHL7 bit (the oximeter's measurement status, a scale's failed measurement, ...) is
//! coded in the provider's [`MEASUREMENT_FLAG_SYSTEM`], its code being the decoder's name.
//!
//! Flags that describe the sample or the decoding rather than the measurement's conditions
//! (`sample:…`, `location:…`, `site:…`, `trailing-bytes`, a good sensor contact, ...) and those
//! the time-source tag already states (`time-fault`, `device-clock-not-set`) are not repeated.

use serde_json::{Value, json};
use tm_protocol::ReadingKind;

/// HL7's code system of IEEE 11073 ASN.1 bits (the PHD IG's, on terminology.hl7.org).
pub const ASN1_TO_HL7: &str = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7";
/// HL7 table 0136, yes/no.
pub const YES_NO: &str = "http://terminology.hl7.org/CodeSystem/v2-0136";
/// The provider's code system of measurement flags without an ASN1ToHL7 bit:
/// `urn:oid:<PROVIDER_OID>.2` ([`super::provenance::PROVIDER_OID`]).
pub const MEASUREMENT_FLAG_SYSTEM: &str = "urn:oid:2.25.288514831106500359318255018466373990496.2";

/// Blood Pressure Measurement Status (0x2A35) as MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS bits.
const BLOOD_PRESSURE: &[(&str, &str, &str)] = &[
    ("body-movement", "8410608.0", "body-movement"),
    ("cuff-fit-loose", "8410608.1", "cuff-too-loose"),
    ("irregular-pulse", "8410608.2", "irregular-pulse"),
    (
        "pulse-rate-above-range",
        "8410608.3",
        "pulse-over-range-limit",
    ),
    (
        "pulse-rate-below-range",
        "8410608.4",
        "pulse-under-range-limit",
    ),
    ("improper-position", "8410608.5", "improper-body-position"),
];

/// PLX Device and Sensor Status (0x2A5E, 0x2A5F) as MDC_PULS_OXIM_DEV_STATUS bits: the BLE
/// profile numbers the same conditions in the opposite order.
const PULSE_OXIMETRY: &[(&str, &str, &str)] = &[
    ("sensor-disconnected", "150604.0", "sensor-disconnected"),
    ("sensor-malfunctioning", "150604.1", "sensor-malfunction"),
    ("sensor-displaced", "150604.2", "sensor-displaced"),
    ("unknown-sensor-connected", "150604.3", "sensor-unsupported"),
    ("sensor-unconnected-to-user", "150604.4", "sensor-off"),
    ("sensor-interference", "150604.5", "sensor-interference"),
    ("signal-analysis-ongoing", "150604.6", "signal-searching"),
    (
        "questionable-pulse",
        "150604.7",
        "signal-pulse-questionable",
    ),
    ("nonpulsatile-signal", "150604.8", "signal-non-pulsatile"),
    ("erratic-signal", "150604.9", "signal-erratic"),
    ("low-perfusion", "150604.10", "signal-low-perfusion"),
    ("poor-signal", "150604.11", "signal-poor"),
    ("inadequate-signal", "150604.12", "signal-inadequate"),
    (
        "signal-processing-irregularity",
        "150604.13",
        "signal-processing-irregularity",
    ),
    (
        "equipment-malfunction",
        "150604.14",
        "device-equipment-malfunction",
    ),
    (
        "extended-display-update-ongoing",
        "150604.15",
        "device-extended-update",
    ),
];

/// Glucose Sensor Status Annunciation (0x2A18) as MDC_GLU_METER_DEV_STATUS bits. Bit 11 of
/// the BLE field is a time fault, not 11073's temperature bit: it is left to the time source.
const GLUCOSE: &[(&str, &str, &str)] = &[
    ("battery-low", "8417752.0", "device-battery-low"),
    ("sensor-malfunction", "8417752.1", "sensor-malfunction"),
    (
        "sample-size-insufficient",
        "8417752.2",
        "sensor-sample-size-insufficient",
    ),
    (
        "strip-insertion-error",
        "8417752.3",
        "sensor-strip-insertion",
    ),
    (
        "strip-type-incorrect",
        "8417752.4",
        "sensor-strip-type-incorrect",
    ),
    ("result-above-range", "8417752.5", "sensor-result-too-high"),
    ("result-below-range", "8417752.6", "sensor-result-too-low"),
    ("temperature-too-high", "8417752.7", "sensor-temp-too-high"),
    ("temperature-too-low", "8417752.8", "sensor-temp-too-low"),
    ("read-interrupted", "8417752.9", "sensor-read-interrupt"),
    ("general-device-fault", "8417752.10", "device-gen-fault"),
];

/// Flags that are context, not a condition of the measurement, or that the time source states.
const NOT_A_CONDITION: &[&str] = &[
    "trailing-bytes",
    "context-follows",
    "multiple-packet-measurement",
    "sensor-contact-detected",
    "validated-data",
    "fully-qualified-data",
    "data-from-measurement-storage",
    "time-fault",
    "device-clock-not-set",
];

/// How one flag is coded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagCoding {
    /// [`ASN1_TO_HL7`] or [`MEASUREMENT_FLAG_SYSTEM`].
    pub system: &'static str,
    /// `<MDC attribute>.<bit>`, or the decoder's name of the flag.
    pub code: String,
    /// The ASN.1 name of the bit; none for the provider's codes (the code is the name).
    pub display: Option<&'static str>,
}

/// The coding of `flag` on a reading of `kind`; `None` when the flag is not a condition of the
/// measurement.
pub fn flag_coding(kind: ReadingKind, flag: &str) -> Option<FlagCoding> {
    if NOT_A_CONDITION.contains(&flag) || flag.contains(':') {
        return None;
    }
    let table = match kind {
        ReadingKind::BloodPressure => BLOOD_PRESSURE,
        ReadingKind::PulseOximetry => PULSE_OXIMETRY,
        ReadingKind::Glucose => GLUCOSE,
        _ => &[],
    };
    Some(match table.iter().find(|(name, ..)| *name == flag) {
        Some((_, code, display)) => FlagCoding {
            system: ASN1_TO_HL7,
            code: (*code).to_owned(),
            display: Some(display),
        },
        None => FlagCoding {
            system: MEASUREMENT_FLAG_SYSTEM,
            code: flag.to_owned(),
            display: None,
        },
    })
}

/// The status components of a reading of `kind` with `flags`, in the flags' order.
pub fn components(kind: ReadingKind, flags: &[String]) -> Vec<Value> {
    flags
        .iter()
        .filter_map(|flag| {
            let c = flag_coding(kind, flag)?;
            let mut coding = json!({"system": c.system, "code": c.code});
            if let Some(display) = c.display {
                coding["display"] = json!(display);
            }
            Some(json!({
                "code": {"coding": [coding], "text": flag},
                "valueCodeableConcept": {"coding": [{"system": YES_NO, "code": "Y", "display": "Yes"}]},
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuff_flags_are_11073_bits_and_context_is_left_out() {
        let flags: Vec<String> = [
            "irregular-pulse",
            "cuff-fit-loose",
            "body-movement",
            "trailing-bytes",
        ]
        .map(String::from)
        .to_vec();
        let c = components(ReadingKind::BloodPressure, &flags);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0]["code"]["coding"][0]["system"], ASN1_TO_HL7);
        assert_eq!(c[0]["code"]["coding"][0]["code"], "8410608.2");
        assert_eq!(c[0]["code"]["text"], "irregular-pulse");
        assert_eq!(c[0]["valueCodeableConcept"]["coding"][0]["code"], "Y");
        assert_eq!(c[1]["code"]["coding"][0]["code"], "8410608.1");
        assert_eq!(c[2]["code"]["coding"][0]["code"], "8410608.0");
    }

    #[test]
    fn flags_without_a_standard_bit_use_the_provider_system_and_samples_are_not_flags() {
        let c = flag_coding(
            ReadingKind::PulseOximetry,
            "questionable-measurement-detected",
        )
        .unwrap();
        assert_eq!(c.system, MEASUREMENT_FLAG_SYSTEM);
        assert_eq!(c.code, "questionable-measurement-detected");
        assert_eq!(c.display, None);
        let c = flag_coding(ReadingKind::PulseOximetry, "low-perfusion").unwrap();
        assert_eq!((c.system, c.code.as_str()), (ASN1_TO_HL7, "150604.10"));
        assert_eq!(c.display, Some("signal-low-perfusion"));
        let c = flag_coding(ReadingKind::Glucose, "strip-type-incorrect").unwrap();
        assert_eq!(c.code, "8417752.4");
        assert!(flag_coding(ReadingKind::Glucose, "sample:capillary-plasma").is_none());
        assert!(flag_coding(ReadingKind::Glucose, "time-fault").is_none());
        // The same name on another device is not that device's bit.
        let c = flag_coding(ReadingKind::BodyWeight, "irregular-pulse").unwrap();
        assert_eq!(c.system, MEASUREMENT_FLAG_SYSTEM);
    }
}
