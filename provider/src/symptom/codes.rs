//! The heart-failure carepath's symptom ValueSets, as the patient-monitoring IG defines them
//! (`input/fsh/valuesets/HeartFailureSymptoms.fsh` and `SymptomSeverity.fsh` in
//! hl7-be/patient-monitoring): each code with the IG's display, which is what the FHIR coding
//! carries, and the words the patient reads on the check-in page in each language.
//!
//! One code of `heart-failure-symptoms`, "Tickly cough", is from the Belgian SNOMED CT
//! extension (module 11000172109). The IG's FSH writes it under the system
//! `http://snomed.info/sct/11000172109`; FHIR's SNOMED CT rules keep the system
//! `http://snomed.info/sct` for every edition and name the edition in `Coding.version`, which
//! is how the Observations code it ([`Symptom::edition`], docs/fhir.md §6).

/// SNOMED CT's code system.
pub const SNOMED: &str = "http://snomed.info/sct";
/// The Belgian edition of SNOMED CT, as a `Coding.version`.
pub const BELGIAN_EDITION: &str = "http://snomed.info/sct/11000172109";

/// One symptom of the carepath's ValueSet.
#[derive(Debug, PartialEq, Eq)]
pub struct Symptom {
    /// The SNOMED CT concept id.
    pub code: &'static str,
    /// The IG's display.
    pub display: &'static str,
    /// `Some(edition)` for a code of a national extension.
    pub edition: Option<&'static str>,
    /// What the patient reads.
    pub words: Words,
}

/// A text in each language the pages are written in: English, Dutch and French everywhere,
/// and German on the pages that offer it (the nurse's setup pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    /// English.
    pub en: &'static str,
    /// Dutch.
    pub nl: &'static str,
    /// French.
    pub fr: &'static str,
    /// German, where a page offers it.
    pub de: Option<&'static str>,
}

impl Words {
    /// The text in English, Dutch and French.
    pub const fn new(en: &'static str, nl: &'static str, fr: &'static str) -> Self {
        Words {
            en,
            nl,
            fr,
            de: None,
        }
    }

    /// The same text with its German.
    pub const fn with_de(self, de: &'static str) -> Self {
        Words {
            de: Some(de),
            ..self
        }
    }
}

const fn words([en, nl, fr]: [&'static str; 3]) -> Words {
    Words::new(en, nl, fr)
}

/// `heart-failure-symptoms`, in the IG's order.
pub const HEART_FAILURE_SYMPTOMS: [Symptom; 15] = [
    sct(
        "80313002",
        "Palpitations",
        [
            "Palpitations (racing or pounding heart)",
            "Hartkloppingen",
            "Palpitations",
        ],
    ),
    sct(
        "64379006",
        "Reduced appetite",
        ["Less appetite", "Minder eetlust", "Moins d'appétit"],
    ),
    sct(
        "267036007",
        "Shortness of breath",
        ["Shortness of breath", "Kortademigheid", "Essoufflement"],
    ),
    sct(
        "14760008",
        "Constipation",
        ["Constipation", "Verstopping", "Constipation"],
    ),
    sct("62315008", "Diarrhea", ["Diarrhoea", "Diarree", "Diarrhée"]),
    sct(
        "248548009",
        "Nocturnal shortness of breath",
        [
            "Short of breath at night",
            "'s Nachts kortademig",
            "Essoufflement la nuit",
        ],
    ),
    sct(
        "26677001",
        "Disturbed sleep pattern",
        ["Poor sleep", "Slecht geslapen", "Sommeil perturbé"],
    ),
    sct(
        "422650009",
        "Social isolation",
        [
            "Feeling alone or cut off",
            "Eenzaam of afgezonderd voelen",
            "Sentiment de solitude ou d'isolement",
        ],
    ),
    sct(
        "267038008",
        "Oedema",
        [
            "Swelling (legs, belly)",
            "Zwelling (benen, buik)",
            "Gonflement (jambes, ventre)",
        ],
    ),
    sct(
        "84229001",
        "Fatigue",
        ["Tiredness", "Vermoeidheid", "Fatigue"],
    ),
    sct(
        "29857009",
        "Chest pain",
        ["Chest pain", "Pijn op de borst", "Douleur à la poitrine"],
    ),
    sct(
        "404640003",
        "Dizziness",
        ["Dizziness", "Duizeligheid", "Vertiges"],
    ),
    sct(
        "40917007",
        "Confusion",
        ["Confusion", "Verwardheid", "Confusion"],
    ),
    sct(
        "297142003",
        "Foot swelling",
        ["Swollen feet", "Gezwollen voeten", "Pieds gonflés"],
    ),
    Symptom {
        code: "901000172101",
        display: "Tickly cough",
        edition: Some(BELGIAN_EDITION),
        words: words(["Tickly cough", "Kriebelhoest", "Toux d'irritation"]),
    },
];

const fn sct(code: &'static str, display: &'static str, patient: [&'static str; 3]) -> Symptom {
    Symptom {
        code,
        display,
        edition: None,
        words: words(patient),
    }
}

/// The symptom coded `code`, if the ValueSet has it.
pub fn symptom(code: &str) -> Option<&'static Symptom> {
    HEART_FAILURE_SYMPTOMS.iter().find(|s| s.code == code)
}

/// `symptom-severity`: how bad a symptom was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// 2667000 "Absent".
    Absent,
    /// 255604002 "Mild".
    Mild,
    /// 1255665007 "Moderate".
    Moderate,
    /// 24484000 "Severe".
    Severe,
}

impl Severity {
    /// The ValueSet's codes, mildest first.
    pub const ALL: [Severity; 4] = [Self::Absent, Self::Mild, Self::Moderate, Self::Severe];

    /// The SNOMED CT concept id.
    pub fn code(self) -> &'static str {
        match self {
            Self::Absent => "2667000",
            Self::Mild => "255604002",
            Self::Moderate => "1255665007",
            Self::Severe => "24484000",
        }
    }

    /// The IG's display.
    pub fn display(self) -> &'static str {
        match self {
            Self::Absent => "Absent",
            Self::Mild => "Mild",
            Self::Moderate => "Moderate",
            Self::Severe => "Severe",
        }
    }

    /// The severity coded `code`.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// What the patient reads.
    pub fn words(self) -> Words {
        words(match self {
            Self::Absent => ["None", "Geen", "Aucun"],
            Self::Mild => ["Mild", "Licht", "Léger"],
            Self::Moderate => ["Moderate", "Matig", "Modéré"],
            Self::Severe => ["Severe", "Ernstig", "Sévère"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_sets_are_the_igs() {
        let codes: Vec<&str> = HEART_FAILURE_SYMPTOMS.iter().map(|s| s.code).collect();
        assert_eq!(
            codes,
            [
                "80313002",
                "64379006",
                "267036007",
                "14760008",
                "62315008",
                "248548009",
                "26677001",
                "422650009",
                "267038008",
                "84229001",
                "29857009",
                "404640003",
                "40917007",
                "297142003",
                "901000172101"
            ]
        );
        let severities: Vec<(&str, &str)> = Severity::ALL
            .iter()
            .map(|s| (s.code(), s.display()))
            .collect();
        assert_eq!(
            severities,
            [
                ("2667000", "Absent"),
                ("255604002", "Mild"),
                ("1255665007", "Moderate"),
                ("24484000", "Severe")
            ]
        );
        assert_eq!(
            symptom("901000172101").unwrap().edition,
            Some(BELGIAN_EDITION)
        );
        assert!(symptom("123").is_none());
        assert_eq!(Severity::from_code("24484000"), Some(Severity::Severe));
    }

    #[test]
    fn every_symptom_and_severity_has_words_in_every_language() {
        let all = HEART_FAILURE_SYMPTOMS
            .iter()
            .map(|s| s.words)
            .chain(Severity::ALL.map(Severity::words));
        for w in all {
            assert!(
                !w.en.is_empty() && !w.nl.is_empty() && !w.fr.is_empty(),
                "{w:?}"
            );
        }
        assert_eq!(symptom("84229001").unwrap().words.nl, "Vermoeidheid");
    }
}
