//! The words of the report and the dashboard in each [`Language`]. Clinical terms follow what
//! Belgian hospitals print on their own reports; units are never translated.

use tm_protocol::{ReadingKind, TimeQuality};

use super::Language;
use super::series::{Flag, Measure};
use crate::triage::rules::RuleKind;

/// Every label the renderers use.
#[derive(Debug, Clone, Copy)]
pub struct Labels {
    /// Report title.
    pub title: &'static str,
    /// "Patient (pseudonym)".
    pub patient: &'static str,
    /// "Telemonitoring id".
    pub session: &'static str,
    /// "Care path".
    pub carepath: &'static str,
    /// "Period".
    pub period: &'static str,
    /// "ongoing" (open period end).
    pub ongoing: &'static str,
    /// "Readings".
    pub readings: &'static str,
    /// "Trends".
    pub trends: &'static str,
    /// "Latest values".
    pub latest: &'static str,
    /// Table columns: time, measurement, values, time quality, device.
    pub columns: [&'static str; 5],
    /// "out of range" (legend).
    pub out_of_range: &'static str,
    /// "normal range" (legend).
    pub normal_range: &'static str,
    /// "no value" (a special value from the device).
    pub no_value: &'static str,
    /// "page".
    pub page: &'static str,
    /// Note under the table about untrusted times.
    pub untrusted_note: &'static str,
    /// "Care path alerts": the triage rules' findings.
    pub findings: &'static str,
    /// "Symptoms reported by the patient".
    pub symptoms: &'static str,
    /// The symptom table's columns: time, symptom, severity.
    pub symptom_columns: [&'static str; 3],
    lang: Language,
}

impl Labels {
    /// The labels' language.
    pub fn language(&self) -> Language {
        self.lang
    }

    /// A triage rule's name.
    pub fn rule(&self, rule: RuleKind) -> &'static str {
        use RuleKind::*;
        match (self.lang, rule) {
            (Language::En, r) => r.label(),
            (Language::Nl, WeightGain) => "Gewichtstoename",
            (Language::Nl, OvernightWeightGain) => "Gewichtstoename sinds de vorige dag",
            (Language::Nl, SystolicOutOfRange) => "Systolische druk buiten bereik",
            (Language::Nl, HeartRateOutOfRange) => "Hartslag buiten bereik",
            (Language::Nl, IrregularPulseRepeated) => "Herhaald onregelmatige pols",
            (Language::Nl, SevereSymptom) => "Ernstige klacht gemeld",
            (Language::Fr, WeightGain) => "Prise de poids",
            (Language::Fr, OvernightWeightGain) => "Prise de poids depuis la veille",
            (Language::Fr, SystolicOutOfRange) => "Pression systolique hors limites",
            (Language::Fr, HeartRateOutOfRange) => "Fréquence cardiaque hors limites",
            (Language::Fr, IrregularPulseRepeated) => "Pouls irrégulier répété",
            (Language::Fr, SevereSymptom) => "Symptôme sévère signalé",
        }
    }

    /// The labels of `lang`.
    pub fn of(lang: Language) -> Labels {
        match lang {
            Language::En => Labels {
                title: "Telemonitoring report",
                patient: "Patient (pseudonym)",
                session: "Telemonitoring id",
                carepath: "Care path",
                period: "Period",
                ongoing: "ongoing",
                readings: "Readings",
                trends: "Trends",
                latest: "Latest values",
                columns: ["Time", "Measurement", "Values", "Time quality", "Device"],
                out_of_range: "out of range",
                normal_range: "normal range",
                no_value: "no value",
                page: "page",
                untrusted_note: "TIME UNKNOWN: the device clock was not set; the reading is not charted.",
                findings: "Care path alerts",
                symptoms: "Symptoms reported by the patient",
                symptom_columns: ["Time", "Symptom", "Severity"],
                lang,
            },
            Language::Nl => Labels {
                title: "Telemonitoringsrapport",
                patient: "Patiënt (pseudoniem)",
                session: "Telemonitoring-id",
                carepath: "Zorgpad",
                period: "Periode",
                ongoing: "lopend",
                readings: "Metingen",
                trends: "Verloop",
                latest: "Laatste waarden",
                columns: ["Tijdstip", "Meting", "Waarden", "Tijdskwaliteit", "Toestel"],
                out_of_range: "buiten bereik",
                normal_range: "normaal bereik",
                no_value: "geen waarde",
                page: "pagina",
                untrusted_note: "TIJD ONBEKEND: de klok van het toestel was niet ingesteld; de meting staat niet in de grafieken.",
                findings: "Alarmen van het zorgpad",
                symptoms: "Klachten gemeld door de patiënt",
                symptom_columns: ["Tijdstip", "Klacht", "Ernst"],
                lang,
            },
            Language::Fr => Labels {
                title: "Rapport de télésurveillance",
                patient: "Patient (pseudonyme)",
                session: "Identifiant de télésurveillance",
                carepath: "Trajet de soins",
                period: "Période",
                ongoing: "en cours",
                readings: "Mesures",
                trends: "Évolution",
                latest: "Dernières valeurs",
                columns: [
                    "Heure",
                    "Mesure",
                    "Valeurs",
                    "Qualité de l'heure",
                    "Appareil",
                ],
                out_of_range: "hors limites",
                normal_range: "plage normale",
                no_value: "pas de valeur",
                page: "page",
                untrusted_note: "HEURE INCONNUE : l'horloge de l'appareil n'était pas réglée ; la mesure n'est pas dans les graphiques.",
                findings: "Alertes du trajet de soins",
                symptoms: "Symptômes signalés par le patient",
                symptom_columns: ["Heure", "Symptôme", "Sévérité"],
                lang,
            },
        }
    }

    /// A chart's title.
    pub fn measure(&self, m: Measure) -> &'static str {
        use Language::*;
        use Measure::*;
        match (m, self.lang) {
            (BodyWeight, En) => "Body weight",
            (BodyWeight, Nl) => "Lichaamsgewicht",
            (BodyWeight, Fr) => "Poids corporel",
            (BloodPressure, En) => "Blood pressure",
            (BloodPressure, Nl) => "Bloeddruk",
            (BloodPressure, Fr) => "Pression artérielle",
            (HeartRate, En) => "Heart rate",
            (HeartRate, Nl) => "Hartslag",
            (HeartRate, Fr) => "Fréquence cardiaque",
            (SpO2, En) => "Oxygen saturation",
            (SpO2, Nl) => "Zuurstofsaturatie",
            (SpO2, Fr) => "Saturation en oxygène",
            (BodyTemperature, En) => "Body temperature",
            (BodyTemperature, Nl) => "Lichaamstemperatuur",
            (BodyTemperature, Fr) => "Température corporelle",
            (GlucoseMass | GlucoseMoles, En) => "Blood glucose",
            (GlucoseMass | GlucoseMoles, Nl) => "Bloedglucose",
            (GlucoseMass | GlucoseMoles, Fr) => "Glycémie",
        }
    }

    /// A reading kind in the table.
    pub fn kind(&self, k: ReadingKind) -> &'static str {
        use Language::*;
        use ReadingKind::*;
        match (k, self.lang) {
            (BodyWeight, l) => self.measure_of(Measure::BodyWeight, l),
            (BodyComposition, En) => "Body composition",
            (BodyComposition, Nl) => "Lichaamssamenstelling",
            (BodyComposition, Fr) => "Composition corporelle",
            (BloodPressure, l) => self.measure_of(Measure::BloodPressure, l),
            (CuffPressure, En) => "Cuff pressure (not charted)",
            (CuffPressure, Nl) => "Manchetdruk (niet in grafiek)",
            (CuffPressure, Fr) => "Pression du brassard (non tracée)",
            (BodyTemperature, l) => self.measure_of(Measure::BodyTemperature, l),
            (Glucose, l) => self.measure_of(Measure::GlucoseMass, l),
            (PulseOximetry, En) => "Pulse oximetry",
            (PulseOximetry, Nl) => "Pulsoximetrie",
            (PulseOximetry, Fr) => "Oxymétrie de pouls",
            (HeartRate, l) => self.measure_of(Measure::HeartRate, l),
            (Unrecognized, En) => "Undecoded data (kept)",
            (Unrecognized, Nl) => "Niet-gedecodeerde gegevens (bewaard)",
            (Unrecognized, Fr) => "Données non décodées (conservées)",
        }
    }

    fn measure_of(&self, m: Measure, l: Language) -> &'static str {
        Labels::of(l).measure(m)
    }

    /// A time quality in the table; the untrusted one is written in capitals.
    pub fn time_quality(&self, q: TimeQuality) -> &'static str {
        use Language::*;
        use TimeQuality::*;
        match (q, self.lang) {
            (DeviceSynced, En) => "device clock",
            (DeviceSynced, Nl) => "toestelklok",
            (DeviceSynced, Fr) => "horloge appareil",
            (CorrectedByOffset, En) => "corrected",
            (CorrectedByOffset, Nl) => "gecorrigeerd",
            (CorrectedByOffset, Fr) => "corrigée",
            (DeviceUnsetReceiveTime | NoDeviceTime, En) => "time received",
            (DeviceUnsetReceiveTime | NoDeviceTime, Nl) => "ontvangsttijd",
            (DeviceUnsetReceiveTime | NoDeviceTime, Fr) => "heure de réception",
            (DeviceUnsetUntrusted, En) => "TIME UNKNOWN",
            (DeviceUnsetUntrusted, Nl) => "TIJD ONBEKEND",
            (DeviceUnsetUntrusted, Fr) => "HEURE INCONNUE",
        }
    }

    /// The mark of an out-of-range value.
    pub fn flag(&self, f: Flag) -> &'static str {
        use Language::*;
        match (f, self.lang) {
            (Flag::Normal, _) => "",
            (Flag::High, En) => "HIGH",
            (Flag::High, Nl) => "HOOG",
            (Flag::High, Fr) => "ÉLEVÉ",
            (Flag::Low, En) => "LOW",
            (Flag::Low, Nl) => "LAAG",
            (Flag::Low, Fr) => "BAS",
        }
    }
}

/// A short label of a component code in the table (units follow the value).
pub fn component_label(code: &str) -> &str {
    match code {
        "29463-7" => "W",
        "8480-6" => "SYS",
        "8462-4" => "DIA",
        "8478-0" => "MAP",
        "8867-4" => "HR",
        "2708-6" => "SpO2",
        "8310-5" => "T",
        "2339-0" | "15074-8" => "GLU",
        "39156-5" => "BMI",
        "8302-2" => "H",
        "41982-0" => "FAT",
        other => other.strip_prefix("x-").unwrap_or(other),
    }
}

/// A UCUM unit as a reader writes it.
pub fn display_unit(ucum: &str) -> &str {
    match ucum {
        "mm[Hg]" => "mmHg",
        "Cel" => "°C",
        "[degF]" => "°F",
        "kg/m2" => "kg/m²",
        other => other,
    }
}

/// A value with at most two decimals, trailing zeros dropped.
pub fn format_value(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_owned() }
}
