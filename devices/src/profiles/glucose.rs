//! Glucose Service 0x1808: Glucose Measurement 0x2A18, Glucose Measurement Context 0x2A34 and
//! Glucose Feature 0x2A51. Stored records are fetched with the RACP ([`super::racp`]).
//!
//! Measurement layout: flags u8 (bit0 time offset, bit1 concentration + type/location, bit2
//! mol/L instead of kg/L, bit3 sensor status annunciation, bit4 context follows), sequence u16,
//! base time (Date Time), [time offset s16 minutes], [concentration SFLOAT, type/location u8],
//! [annunciation u16]. kg/L becomes `mg/dL` (x 100 000), mol/L becomes `mmol/L` (x 1 000). The
//! user-facing time is base time + offset; both are kept raw, `measured_at` is their sum.
//! Annunciation bit 11 ("time fault") marks the device clock as not set.

use serde::Serialize;
use tm_protocol::ReadingKind;

use crate::error::DecodeError;
use crate::ieee11073::MedFloat;
use crate::reader::{Field, Reader};
use crate::reading::{Decoded, DecodedReading, Info, codes};
use crate::source::Source;
use crate::time::{DeviceTime, named_bits};

const ANNUNCIATION_BITS: [(u32, &str); 12] = [
    (1 << 0, "battery-low"),
    (1 << 1, "sensor-malfunction"),
    (1 << 2, "sample-size-insufficient"),
    (1 << 3, "strip-insertion-error"),
    (1 << 4, "strip-type-incorrect"),
    (1 << 5, "result-above-range"),
    (1 << 6, "result-below-range"),
    (1 << 7, "temperature-too-high"),
    (1 << 8, "temperature-too-low"),
    (1 << 9, "read-interrupted"),
    (1 << 10, "general-device-fault"),
    (1 << 11, "time-fault"),
];

const FEATURE_BITS: [(u32, &str); 11] = [
    (1 << 0, "low-battery-detection"),
    (1 << 1, "sensor-malfunction-detection"),
    (1 << 2, "sample-size"),
    (1 << 3, "strip-insertion-error-detection"),
    (1 << 4, "strip-type-error-detection"),
    (1 << 5, "result-high-low-detection"),
    (1 << 6, "temperature-high-low-detection"),
    (1 << 7, "read-interrupt-detection"),
    (1 << 8, "general-device-fault"),
    (1 << 9, "time-fault"),
    (1 << 10, "multiple-bond"),
];

const SAMPLE_TYPES: [&str; 10] = [
    "capillary-whole-blood",
    "capillary-plasma",
    "venous-whole-blood",
    "venous-plasma",
    "arterial-whole-blood",
    "arterial-plasma",
    "undetermined-whole-blood",
    "undetermined-plasma",
    "interstitial-fluid",
    "control-solution",
];

fn lookup(table: &[&'static str], code: u8) -> Option<&'static str> {
    usize::from(code)
        .checked_sub(1)
        .and_then(|i| table.get(i))
        .copied()
}

/// Decodes Glucose Measurement 0x2A18.
pub fn decode_measurement(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(1, "the format needs")?;
    let flags = r.u8()?;
    let has_offset = flags & 0x01 != 0;
    let has_concentration = flags & 0x02 != 0;
    let mol_per_l = flags & 0x04 != 0;
    let has_annunciation = flags & 0x08 != 0;
    r.require_fields(
        1,
        &[
            Field::always("sequence number", 2),
            Field::always("base time", DeviceTime::LEN),
            Field::when(has_offset, "time offset", 2),
            Field::when(has_concentration, "concentration, type and location", 3),
            Field::when(has_annunciation, "sensor status annunciation", 2),
        ],
    )?;

    let mut reading = DecodedReading::new(ReadingKind::Glucose);
    reading.sequence = Some(u32::from(r.u16_le()?));
    let base = DeviceTime::read(&mut r)?;
    reading.set_time(base);
    if has_offset {
        let offset = r.i16_le()?;
        reading.time_offset_minutes = Some(offset);
        reading.measured_at = base
            .to_naive()
            .and_then(|t| t.checked_add_signed(chrono::Duration::minutes(i64::from(offset))));
    }
    if has_concentration {
        let value = r.sfloat()?;
        if mol_per_l {
            reading.push_med_scaled(codes::GLUCOSE_MOLES, value, 3, "mmol/L");
        } else {
            reading.push_med_scaled(codes::GLUCOSE_MASS, value, 5, "mg/dL");
        }
        let type_location = r.u8()?;
        let sample = type_location & 0x0F;
        let location = type_location >> 4;
        reading.status.push(match lookup(&SAMPLE_TYPES, sample) {
            Some(name) => format!("sample:{name}"),
            None => format!("sample:reserved-{sample}"),
        });
        reading.status.push(match location {
            1 => "location:finger".to_string(),
            2 => "location:alternate-site-test".to_string(),
            3 => "location:earlobe".to_string(),
            4 => "location:control-solution".to_string(),
            15 => "location:not-available".to_string(),
            other => format!("location:reserved-{other}"),
        });
    }
    if has_annunciation {
        let bits = r.u16_le()?;
        reading.flags(named_bits(u32::from(bits), &ANNUNCIATION_BITS));
        if bits & (1 << 11) != 0 {
            reading.clock_not_set = true;
        }
    }
    if flags & 0x10 != 0 {
        reading.flags(["context-follows"]);
    }
    if r.remaining() > 0 {
        reading.flags(["trailing-bytes"]);
    }
    Ok(Decoded::reading(reading))
}

/// A number in a context record, or the reason it has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextValue {
    /// The value in `unit`; `None` for a special value.
    pub value: Option<f64>,
    /// UCUM unit.
    pub unit: &'static str,
    /// Why there is no value (`nan`, `nres`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<&'static str>,
}

impl ContextValue {
    fn new(v: MedFloat, shift: i32, unit: &'static str) -> Self {
        match v.scaled(shift) {
            Ok(value) => ContextValue {
                value: Some(value),
                unit,
                missing: None,
            },
            Err(s) => ContextValue {
                value: None,
                unit,
                missing: Some(s.reason()),
            },
        }
    }
}

/// Glucose Measurement Context 0x2A34: what the patient told the meter about a measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GlucoseContext {
    /// The measurement this belongs to.
    pub sequence: u16,
    /// Meal the carbohydrates belong to (`breakfast`, ...), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carbohydrate_meal: Option<String>,
    /// Carbohydrate intake in grams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carbohydrate: Option<ContextValue>,
    /// `preprandial`, `postprandial`, `fasting`, `casual`, `bedtime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meal: Option<String>,
    /// Who tested (`self`, `health-care-professional`, `lab-test`, `not-available`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tester: Option<String>,
    /// Health state (`minor-health-issues`, ..., `no-health-issues`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Exercise duration in seconds (`None` when the meter reports an overrun, 0xFFFF).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exercise_duration_s: Option<u16>,
    /// Exercise intensity in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exercise_intensity_pct: Option<u8>,
    /// Medication kind (`rapid-acting-insulin`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medication_kind: Option<String>,
    /// Medication amount, in `mg` or `mL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medication: Option<ContextValue>,
    /// HbA1c in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hba1c: Option<ContextValue>,
}

fn named(table: &[&'static str], code: u8, not_available: bool) -> String {
    match lookup(table, code) {
        Some(name) => name.to_string(),
        None if not_available && code == 15 => "not-available".to_string(),
        None => format!("reserved-{code}"),
    }
}

/// Decodes Glucose Measurement Context 0x2A34.
pub fn decode_context(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut r = Reader::new(source, bytes);
    r.require(1, "the format needs")?;
    let flags = r.u8()?;
    let bit = |n: u8| flags & (1 << n) != 0;
    r.require_fields(
        1,
        &[
            Field::always("sequence number", 2),
            Field::when(bit(7), "extended flags", 1),
            Field::when(bit(0), "carbohydrate", 3),
            Field::when(bit(1), "meal", 1),
            Field::when(bit(2), "tester and health", 1),
            Field::when(bit(3), "exercise", 3),
            Field::when(bit(4), "medication", 3),
            Field::when(bit(6), "HbA1c", 2),
        ],
    )?;

    let sequence = r.u16_le()?;
    if bit(7) {
        // Extended flags are reserved for future use; nothing to interpret yet.
        r.u8()?;
    }
    let mut ctx = GlucoseContext {
        sequence,
        carbohydrate_meal: None,
        carbohydrate: None,
        meal: None,
        tester: None,
        health: None,
        exercise_duration_s: None,
        exercise_intensity_pct: None,
        medication_kind: None,
        medication: None,
        hba1c: None,
    };
    if bit(0) {
        let id = r.u8()?;
        const MEALS: [&str; 7] = [
            "breakfast",
            "lunch",
            "dinner",
            "snack",
            "drink",
            "supper",
            "brunch",
        ];
        ctx.carbohydrate_meal = Some(named(&MEALS, id, false));
        ctx.carbohydrate = Some(ContextValue::new(r.sfloat()?, 3, "g"));
    }
    if bit(1) {
        const MEAL: [&str; 5] = [
            "preprandial",
            "postprandial",
            "fasting",
            "casual",
            "bedtime",
        ];
        ctx.meal = Some(named(&MEAL, r.u8()?, false));
    }
    if bit(2) {
        let b = r.u8()?;
        const TESTER: [&str; 3] = ["self", "health-care-professional", "lab-test"];
        const HEALTH: [&str; 5] = [
            "minor-health-issues",
            "major-health-issues",
            "during-menses",
            "under-stress",
            "no-health-issues",
        ];
        ctx.tester = Some(named(&TESTER, b & 0x0F, true));
        ctx.health = Some(named(&HEALTH, b >> 4, true));
    }
    if bit(3) {
        let duration = r.u16_le()?;
        ctx.exercise_duration_s = (duration != 0xFFFF).then_some(duration);
        ctx.exercise_intensity_pct = Some(r.u8()?);
    }
    if bit(4) {
        const MEDICATION: [&str; 5] = [
            "rapid-acting-insulin",
            "short-acting-insulin",
            "intermediate-acting-insulin",
            "long-acting-insulin",
            "pre-mixed-insulin",
        ];
        ctx.medication_kind = Some(named(&MEDICATION, r.u8()?, false));
        let amount = r.sfloat()?;
        // Bit 5 chooses litres over kilograms.
        ctx.medication = Some(if bit(5) {
            ContextValue::new(amount, 3, "mL")
        } else {
            ContextValue::new(amount, 6, "mg")
        });
    }
    if bit(6) {
        ctx.hba1c = Some(ContextValue::new(r.sfloat()?, 0, "%"));
    }
    Ok(Decoded::info(Info::GlucoseContext(ctx)))
}

/// Decodes Glucose Feature 0x2A51.
pub fn decode_feature(source: Source, bytes: &[u8]) -> Result<Decoded, DecodeError> {
    super::decode_feature_bits(source, bytes, 2, &FEATURE_BITS)
}
