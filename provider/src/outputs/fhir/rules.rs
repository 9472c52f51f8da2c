//! The rule table (docs/fhir.md §4): for each LOINC code a device reading carries, the Observation
//! it becomes: profile, display exactly as the IG examples spell it, the one UCUM code the
//! profile allows, the human unit text, and the category.
//!
//! A component whose code is not in this table, or whose unit differs from the rule's, is not
//! charted in FHIR; the caller reports it (see [`super::NotCharted`]) and the PDF still shows it.
//! Each rule names the [`Measurement`] it belongs to, which decides whether the session's
//! carepath carries it ([`super::scope`]).

use super::scope::Measurement;

/// LOINC's code system.
pub const LOINC: &str = "http://loinc.org";
/// UCUM's code system.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// Observation categories.
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// Why a value is missing.
pub const DATA_ABSENT_REASON: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
/// The subject identifier system: the Portal's pseudonymous patient id (`$tmp_patientId`).
pub const PATIENT_IDENTIFIER_SYSTEM: &str =
    "https://www.telemonitoring-prescription.com/FHIR/patient";

/// Blood pressure panel (the `bp` profile's code).
pub const BP_PANEL: Coding = Coding {
    code: "85354-9",
    display: "Blood pressure panel with all children optional",
};
/// SpO2 measured by a pulse oximeter: the second coding next to 2708-6, as the IG example has it.
pub const SPO2_BY_PULSE_OXIMETRY: Coding = Coding {
    code: "59408-5",
    display: "Oxygen saturation in Arterial blood by Pulse oximetry",
};

/// A LOINC coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coding {
    /// The code.
    pub code: &'static str,
    /// Its display, as the profile's pattern and the IG examples spell it.
    pub display: &'static str,
}

/// The Observation category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `vital-signs` "Vital Signs".
    VitalSigns,
    /// `laboratory` "Laboratory": capillary glucose is a point-of-care chemistry result, not a
    /// vital sign, and no vital-sign profile covers it.
    Laboratory,
}

impl Category {
    /// Code and display.
    pub fn coding(self) -> (&'static str, &'static str) {
        match self {
            Category::VitalSigns => ("vital-signs", "Vital Signs"),
            Category::Laboratory => ("laboratory", "Laboratory"),
        }
    }
}

/// How one measured quantity becomes an Observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Short name, part of the Observation's identifier (`<reading_id>-<slug>`).
    pub slug: &'static str,
    /// The LOINC code and display.
    pub coding: Coding,
    /// `http://hl7.org/fhir/StructureDefinition/<profile>`, when a core profile applies.
    pub profile: Option<&'static str>,
    /// The UCUM code the profile requires (and the devices crate emits).
    pub ucum: &'static str,
    /// `valueQuantity.unit`, the human-readable unit.
    pub unit_text: &'static str,
    /// The category.
    pub category: Category,
    /// The kind of measurement, for the carepath's scope.
    pub measurement: Measurement,
}

/// Systolic blood pressure, a component of the BP panel.
pub const SYSTOLIC: Rule = Rule {
    slug: "systolic",
    coding: Coding {
        code: "8480-6",
        display: "Systolic blood pressure",
    },
    profile: None,
    ucum: "mm[Hg]",
    unit_text: "mmHg",
    category: Category::VitalSigns,
    measurement: Measurement::BloodPressure,
};
/// Diastolic blood pressure, a component of the BP panel.
pub const DIASTOLIC: Rule = Rule {
    slug: "diastolic",
    coding: Coding {
        code: "8462-4",
        display: "Diastolic blood pressure",
    },
    ..SYSTOLIC
};
/// Mean arterial pressure, an extra component of the BP panel when the cuff reports it.
pub const MEAN_ARTERIAL: Rule = Rule {
    slug: "mean-arterial",
    coding: Coding {
        code: "8478-0",
        display: "Mean blood pressure",
    },
    ..SYSTOLIC
};

/// The quantities charted as standalone Observations.
pub const SINGLE_VALUE_RULES: &[Rule] = &[
    Rule {
        slug: "body-weight",
        coding: Coding {
            code: "29463-7",
            display: "Body Weight",
        },
        profile: Some("bodyweight"),
        ucum: "kg",
        unit_text: "kg",
        category: Category::VitalSigns,
        measurement: Measurement::BodyWeight,
    },
    Rule {
        slug: "heart-rate",
        coding: Coding {
            code: "8867-4",
            display: "Heart rate",
        },
        profile: Some("heartrate"),
        ucum: "/min",
        unit_text: "/min",
        category: Category::VitalSigns,
        measurement: Measurement::HeartRate,
    },
    Rule {
        slug: "spo2",
        coding: Coding {
            code: "2708-6",
            display: "Oxygen saturation in Arterial blood",
        },
        profile: Some("oxygensat"),
        ucum: "%",
        unit_text: "%O2",
        category: Category::VitalSigns,
        measurement: Measurement::Spo2,
    },
    Rule {
        slug: "body-temperature",
        coding: Coding {
            code: "8310-5",
            display: "Body Temperature",
        },
        profile: Some("bodytemp"),
        ucum: "Cel",
        unit_text: "C",
        category: Category::VitalSigns,
        measurement: Measurement::BodyTemperature,
    },
    Rule {
        slug: "bmi",
        coding: Coding {
            code: "39156-5",
            display: "Body mass index (BMI) [Ratio]",
        },
        profile: Some("bmi"),
        ucum: "kg/m2",
        unit_text: "kg/m2",
        category: Category::VitalSigns,
        measurement: Measurement::Bmi,
    },
    Rule {
        slug: "body-height",
        coding: Coding {
            code: "8302-2",
            display: "Body height",
        },
        profile: Some("bodyheight"),
        ucum: "cm",
        unit_text: "cm",
        category: Category::VitalSigns,
        measurement: Measurement::BodyHeight,
    },
    // Glucose on a sample other than capillary blood (a meter that names a venous or arterial
    // sample); a meter's capillary reading is coded by [`GLUCOMETER_MASS`] and
    // [`GLUCOMETER_MOLES`].
    Rule {
        slug: "glucose-mass",
        coding: Coding {
            code: "2339-0",
            display: "Glucose [Mass/volume] in Blood",
        },
        profile: None,
        ucum: "mg/dL",
        unit_text: "mg/dL",
        category: Category::Laboratory,
        measurement: Measurement::Glucose,
    },
    Rule {
        slug: "glucose-moles",
        coding: Coding {
            code: "15074-8",
            display: "Glucose [Moles/volume] in Blood",
        },
        profile: None,
        ucum: "mmol/L",
        unit_text: "mmol/L",
        category: Category::Laboratory,
        measurement: Measurement::Glucose,
    },
];

/// Glucose from a meter on capillary blood, in mg/dL: the device's 2339-0 is coded with the
/// glucometer's LOINC code.
pub const GLUCOMETER_MASS: Rule = Rule {
    slug: "glucose-mass",
    coding: Coding {
        code: "41653-7",
        display: "Glucose [Mass/volume] in Capillary blood by Glucometer",
    },
    profile: None,
    ucum: "mg/dL",
    unit_text: "mg/dL",
    category: Category::Laboratory,
    measurement: Measurement::Glucose,
};
/// Glucose from a meter on capillary blood, in mmol/L (the device's 15074-8).
pub const GLUCOMETER_MOLES: Rule = Rule {
    slug: "glucose-moles",
    coding: Coding {
        code: "14743-9",
        display: "Glucose [Moles/volume] in Capillary blood by Glucometer",
    },
    ucum: "mmol/L",
    unit_text: "mmol/L",
    ..GLUCOMETER_MASS
};

/// The glucometer rule for a glucose code the devices emit (2339-0 mg/dL, 15074-8 mmol/L).
pub fn glucometer_rule(code: &str) -> Option<&'static Rule> {
    match code {
        "2339-0" => Some(&GLUCOMETER_MASS),
        "15074-8" => Some(&GLUCOMETER_MOLES),
        _ => None,
    }
}

/// The standalone rule for a LOINC code.
pub fn single_value_rule(code: &str) -> Option<&'static Rule> {
    SINGLE_VALUE_RULES.iter().find(|r| r.coding.code == code)
}

/// The BP panel component rule for a LOINC code.
pub fn bp_component_rule(code: &str) -> Option<&'static Rule> {
    [&SYSTOLIC, &DIASTOLIC, &MEAN_ARTERIAL]
        .into_iter()
        .find(|r| r.coding.code == code)
}

/// The `data-absent-reason` code for a device's special value (`nan`, `nres`, ...).
pub fn data_absent_reason(device_reason: &str) -> (&'static str, &'static str) {
    match device_reason {
        "nan" => ("not-a-number", "Not a Number (NaN)"),
        "positive-infinity" => ("positive-infinity", "Positive Infinity (PINF)"),
        "negative-infinity" => ("negative-infinity", "Negative Infinity (NINF)"),
        _ => ("error", "Error"),
    }
}
