//! What the decoders produce: normalized readings (LOINC code, value, UCUM unit per component)
//! and, for frames that are not measurements (features, RACP responses, battery, clock, vendor
//! status adverts), [`Info`].
//!
//! A [`DecodedReading`] has everything the agent needs to build a `tm_protocol::Reading`
//! except what only the agent knows (reading id, device info, receive time, clock offset): the
//! kind, the raw device time, the user slot, the sequence number, the components, the
//! components the device reported without a number, and named status flags.

use chrono::NaiveDateTime;
use serde::Serialize;
use tm_protocol::{Component, MissingComponent, Quantity, ReadingKind};

use crate::ieee11073::{MedFloat, Special};
use crate::time::DeviceTime;

/// LOINC codes and local codes of the components. A code starting with `x-` has no LOINC code
/// chosen yet; the value is kept so that nothing a device measured is lost.
pub mod codes {
    /// Body weight, `kg`.
    pub const BODY_WEIGHT: &str = "29463-7";
    /// Body mass index, `kg/m2`.
    pub const BMI: &str = "39156-5";
    /// Body height, `cm`.
    pub const BODY_HEIGHT: &str = "8302-2";
    /// Body fat, `%`.
    pub const BODY_FAT: &str = "41982-0";
    /// Systolic blood pressure, `mm[Hg]`.
    pub const SYSTOLIC: &str = "8480-6";
    /// Diastolic blood pressure, `mm[Hg]`.
    pub const DIASTOLIC: &str = "8462-4";
    /// Mean arterial pressure, `mm[Hg]`.
    pub const MEAN_ARTERIAL: &str = "8478-0";
    /// Pulse rate / heart rate, `/min`.
    pub const HEART_RATE: &str = "8867-4";
    /// Body temperature, `Cel`.
    pub const BODY_TEMPERATURE: &str = "8310-5";
    /// Oxygen saturation, `%`.
    pub const SPO2: &str = "2708-6";
    /// Glucose by mass, `mg/dL`.
    pub const GLUCOSE_MASS: &str = "2339-0";
    /// Glucose by moles, `mmol/L`.
    pub const GLUCOSE_MOLES: &str = "15074-8";
    /// Cuff pressure while inflating (0x2A36), `mm[Hg]`.
    pub const CUFF_PRESSURE: &str = "x-cuff-pressure";
    /// Bioelectrical impedance, `Ohm`.
    pub const IMPEDANCE: &str = "x-impedance";
    /// Basal metabolism, `kJ`.
    pub const BASAL_METABOLISM: &str = "x-basal-metabolism";
    /// Muscle percentage, `%`.
    pub const MUSCLE_PERCENTAGE: &str = "x-muscle-percentage";
    /// Muscle mass, `kg`.
    pub const MUSCLE_MASS: &str = "x-muscle-mass";
    /// Fat-free mass, `kg`.
    pub const FAT_FREE_MASS: &str = "x-fat-free-mass";
    /// Soft lean mass, `kg`.
    pub const SOFT_LEAN_MASS: &str = "x-soft-lean-mass";
    /// Body water mass, `kg`.
    pub const BODY_WATER_MASS: &str = "x-body-water-mass";
    /// Pulse amplitude index, `%`.
    pub const PULSE_AMPLITUDE_INDEX: &str = "x-pulse-amplitude-index";
    /// SpO2 of the fast averaging window (PLX continuous), `%`.
    pub const SPO2_FAST: &str = "x-spo2-fast";
    /// Pulse rate of the fast averaging window, `/min`.
    pub const PULSE_RATE_FAST: &str = "x-pulse-rate-fast";
    /// SpO2 of the slow averaging window, `%`.
    pub const SPO2_SLOW: &str = "x-spo2-slow";
    /// Pulse rate of the slow averaging window, `/min`.
    pub const PULSE_RATE_SLOW: &str = "x-pulse-rate-slow";
    /// Energy expended since the last reset (heart-rate sensors), `kJ`.
    pub const ENERGY_EXPENDED: &str = "x-energy-expended";
    /// One RR interval (heart-rate sensors), `s`.
    pub const RR_INTERVAL: &str = "x-rr-interval";
}

/// One normalized measurement. Its JSON form (the CLI's) is the wire shape of the issue:
/// `kind`, `measured_at`, `user`, `components`, `status`, then only the fields that add
/// something (`device_time` only when `measured_at` cannot say it: unknown or impossible date
/// fields).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedReading {
    /// What was measured.
    pub kind: ReadingKind,
    /// The device's wall-clock time of the measurement, when the payload carries one and every
    /// field is known (for glucose: base time plus time offset). Never corrected.
    pub measured_at: Option<NaiveDateTime>,
    /// The user slot (`None` when the device has none or sent "unknown user" 0xFF).
    pub user: Option<u8>,
    /// The values.
    pub components: Vec<Component>,
    /// Named status flags (`irregular-pulse`, `cuff-fit-loose`, `sample:capillary-plasma`, ...).
    pub status: Vec<String>,
    /// The time stamp fields exactly as sent (unknown fields `null`); absent when the payload
    /// carries no time.
    pub device_time: Option<DeviceTime>,
    /// Glucose: minutes to add to `device_time` to get the user-facing time.
    pub time_offset_minutes: Option<i16>,
    /// The record sequence number, when the protocol numbers records.
    pub sequence: Option<u32>,
    /// Components the device reported without a number, with the reason.
    pub missing: Vec<MissingComponent>,
    /// The device says, or its time stamp shows, that its clock is not set: the agent must not
    /// trust `device_time` (flag bits, year before 2015, unknown date fields).
    pub clock_not_set: bool,
}

/// The serialized form of [`DecodedReading`].
#[derive(Serialize)]
struct ReadingView<'a> {
    kind: ReadingKind,
    measured_at: Option<NaiveDateTime>,
    user: Option<u8>,
    components: &'a [Component],
    status: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    device_time: Option<&'a DeviceTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_offset_minutes: Option<i16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence: Option<u32>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    missing: &'a [MissingComponent],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    clock_not_set: bool,
}

impl Serialize for DecodedReading {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ReadingView {
            kind: self.kind,
            measured_at: self.measured_at,
            user: self.user,
            components: &self.components,
            status: &self.status,
            device_time: self.device_time.as_ref().filter(|t| t.to_naive().is_none()),
            time_offset_minutes: self.time_offset_minutes,
            sequence: self.sequence,
            missing: &self.missing,
            clock_not_set: self.clock_not_set,
        }
        .serialize(serializer)
    }
}

impl DecodedReading {
    /// An empty reading of `kind`; decoders fill it in.
    pub(crate) fn new(kind: ReadingKind) -> Self {
        DecodedReading {
            kind,
            measured_at: None,
            user: None,
            components: Vec::new(),
            status: Vec::new(),
            device_time: None,
            time_offset_minutes: None,
            sequence: None,
            missing: Vec::new(),
            clock_not_set: false,
        }
    }

    /// Whether the payload carries a device time stamp (an input of the reading id).
    pub fn has_device_time(&self) -> bool {
        self.device_time.is_some()
    }

    /// Whether the payload carries a record sequence number (an input of the reading id).
    pub fn has_sequence(&self) -> bool {
        self.sequence.is_some()
    }

    /// Records the device time stamp; `measured_at` follows it.
    pub(crate) fn set_time(&mut self, t: DeviceTime) {
        self.measured_at = t.to_naive();
        self.clock_not_set |= t.looks_unset();
        self.device_time = Some(t);
    }

    /// Adds a component in its final unit.
    pub(crate) fn push(&mut self, code: &str, value: f64, unit: &str) {
        self.components.push(Component {
            code: code.to_string(),
            value,
            unit: unit.to_string(),
            original: None,
        });
    }

    /// Adds a component converted from the device's unit, keeping the original.
    pub(crate) fn push_converted(
        &mut self,
        code: &str,
        value: f64,
        unit: &str,
        original: f64,
        original_unit: &str,
    ) {
        self.components.push(Component {
            code: code.to_string(),
            value,
            unit: unit.to_string(),
            original: Some(Quantity {
                value: original,
                unit: original_unit.to_string(),
            }),
        });
    }

    /// Records a component the device sent as a special value.
    pub(crate) fn push_missing(&mut self, code: &str, reason: &str) {
        self.missing.push(MissingComponent {
            code: code.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Adds an IEEE-11073 value in its final unit, or records why it has none.
    pub(crate) fn push_med(&mut self, code: &str, value: MedFloat, unit: &str) {
        self.push_med_scaled(code, value, 0, unit);
    }

    /// Adds an IEEE-11073 value multiplied by 10^`shift`, or records why it has none.
    pub(crate) fn push_med_scaled(&mut self, code: &str, value: MedFloat, shift: i32, unit: &str) {
        match value.scaled(shift) {
            Ok(v) => self.push(code, v, unit),
            Err(special) => self.push_missing(code, special_reason(special)),
        }
    }

    /// Adds named flags.
    pub(crate) fn flags<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.status.extend(names.into_iter().map(str::to_string));
    }
}

fn special_reason(s: Special) -> &'static str {
    s.reason()
}

/// Rounds to `decimals` places: converted values carry no more precision than the device's.
pub(crate) fn round_to(value: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (value * f).round() / f
}

/// Everything one frame decodes to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decoded {
    /// The measurements in the frame; empty for a frame without one (an unstable scale frame, a
    /// feature read, a RACP response).
    pub readings: Vec<DecodedReading>,
    /// What a non-measurement frame says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<Info>,
}

impl Decoded {
    pub(crate) fn reading(r: DecodedReading) -> Self {
        Decoded {
            readings: vec![r],
            info: None,
        }
    }

    pub(crate) fn info(info: Info) -> Self {
        Decoded {
            readings: Vec::new(),
            info: Some(info),
        }
    }
}

/// What a frame that is not a measurement says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Info {
    /// Weight Scale Feature 0x2A9E.
    WeightScaleFeature(crate::profiles::weight::WeightScaleFeature),
    /// A feature characteristic that is a set of named bits (0x2A49, 0x2A51, 0x2A9B).
    Features {
        /// The characteristic, e.g. `2A49`.
        characteristic: String,
        /// Names of the supported features.
        supported: Vec<&'static str>,
    },
    /// PLX Features 0x2A60.
    PlxFeatures(crate::profiles::plx::PlxFeatures),
    /// Record Access Control Point 0x2A52 response.
    Racp(crate::profiles::racp::RacpResponse),
    /// Glucose Measurement Context 0x2A34 (joins the measurement with the same sequence).
    GlucoseContext(crate::profiles::glucose::GlucoseContext),
    /// Battery Level 0x2A19.
    Battery {
        /// Percent, 0..100.
        percent: u8,
    },
    /// Current Time 0x2A2B.
    CurrentTime(crate::time::CurrentTime),
    /// Date Time 0x2A08.
    DateTime {
        /// The raw fields.
        time: DeviceTime,
        /// Whether the clock looks never set.
        clock_not_set: bool,
    },
    /// Local Time Information 0x2A0F.
    LocalTimeInformation(crate::time::LocalTimeInformation),
    /// An Xiaomi scale frame that holds no reading, and why.
    ScaleFrame(crate::adverts::xiaomi::ScaleFrameState),
    /// Omron manufacturer data: pairing mode, clock state, per-user record counters.
    Omron(crate::adverts::omron::OmronAdvert),
}
