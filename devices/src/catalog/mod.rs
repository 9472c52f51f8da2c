//! The declarative catalog of device models: `devices/catalog/*.toml`, one file per vendor
//! family, embedded at build time so this crate needs no file access at run time.
//!
//! Each `[[model]]` says how to recognise the model (advertised name patterns, service UUIDs,
//! service-data UUIDs, manufacturer ids, DIS manufacturer and model strings), which profile it
//! speaks, how it bonds (just-works, passkey, PIN), how its clock is set (CTS 0x2A2B, Date Time
//! 0x2A08 within seconds of connecting, CTS only on the first CTS notification, a vendor
//! command, none), whether it only advertises, whether it keeps a single bond (pairing the
//! gateway un-pairs the phone app), and its decoding quirks. Files are parsed with
//! `deny_unknown_fields`: an unknown key, profile, bonding method or quirk name is an error,
//! never silently ignored. [`Catalog::validate`] adds the rules serde cannot express.
//!
//! Recognition order: a DIS model string ([`Catalog::by_dis_model`]) is authoritative (quirks
//! are keyed on it); before connecting, [`Catalog::match_advert`] scores name patterns and
//! vendor data above the generic SIG service matches in `generic-sig.toml`.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::quirks::{Quirk, Quirks};

mod rules;

use rules::{SIG_BASE_TAIL, validate_model};
pub use rules::{glob_match, normalize_uuid};

/// The embedded catalog files, by name.
pub const FILES: &[(&str, &str)] = &[
    ("a-and-d.toml", include_str!("../../catalog/a-and-d.toml")),
    ("ascensia.toml", include_str!("../../catalog/ascensia.toml")),
    ("beurer.toml", include_str!("../../catalog/beurer.toml")),
    (
        "generic-sig.toml",
        include_str!("../../catalog/generic-sig.toml"),
    ),
    ("masimo.toml", include_str!("../../catalog/masimo.toml")),
    ("omron.toml", include_str!("../../catalog/omron.toml")),
    ("roche.toml", include_str!("../../catalog/roche.toml")),
    ("taidoc.toml", include_str!("../../catalog/taidoc.toml")),
    ("xiaomi.toml", include_str!("../../catalog/xiaomi.toml")),
];

/// The measurement profile a model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// SIG Blood Pressure Service 0x1810.
    BloodPressure,
    /// SIG Weight Scale Service 0x181D.
    WeightScale,
    /// SIG Body Composition Service 0x181B (usually with 0x181D and User Data 0x181C).
    BodyComposition,
    /// SIG Health Thermometer 0x1809.
    Thermometer,
    /// SIG Glucose Service 0x1808 with RACP.
    Glucose,
    /// SIG Pulse Oximeter Service 0x1822.
    PulseOximeter,
    /// SIG Heart Rate 0x180D.
    HeartRate,
    /// Xiaomi scale service-data adverts (no connection).
    XiaomiScaleAdvert,
}

/// How the device bonds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bonding {
    /// No bond needed.
    None,
    /// Just Works: the agent confirms without a code.
    JustWorks,
    /// Passkey entry: the device shows a 6-digit code the nurse types in.
    Passkey,
    /// Legacy PIN code request.
    Pin,
}

/// How the device clock is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockSetting {
    /// Write Current Time 0x2A2B (and Local Time Information when present) after connecting.
    Cts,
    /// Write Date Time 0x2A08 within seconds of connecting (A&D, Accu-Chek Aviva Connect).
    DateTime,
    /// Write CTS only in answer to the first CTS notification of a connection (Omron).
    CtsOnFirstNotification,
    /// A vendor-specific command; the driver knows it.
    Vendor,
    /// The clock cannot be set from the gateway.
    None,
}

/// How to recognise a model. All lists are alternatives; any match counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recognition {
    /// Advertised local-name patterns, case-insensitive; `*` matches any run, `?` one character.
    #[serde(default)]
    pub name_patterns: Vec<String>,
    /// Advertised service UUIDs (16-bit `1810` or 128-bit).
    #[serde(default)]
    pub service_uuids: Vec<String>,
    /// Service-data UUIDs of the advert (16-bit or 128-bit).
    #[serde(default)]
    pub service_data_uuids: Vec<String>,
    /// Manufacturer-data company ids.
    #[serde(default)]
    pub manufacturer_ids: Vec<u16>,
    /// DIS Manufacturer Name 0x2A29 (exact, case-insensitive).
    #[serde(default)]
    pub dis_manufacturer: Option<String>,
    /// DIS Model Number 0x2A24 values (patterns like the names).
    #[serde(default)]
    pub dis_models: Vec<String>,
}

/// One device model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Stable id, unique in the catalog (`beurer-bm85`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// The profile it speaks.
    pub profile: Profile,
    /// How to recognise it.
    pub recognition: Recognition,
    /// How it bonds.
    pub bonding: Bonding,
    /// How its clock is set.
    pub clock: ClockSetting,
    /// It only advertises; the gateway never connects.
    #[serde(default)]
    pub advertisement_only: bool,
    /// It keeps one bond only: pairing the gateway un-pairs the vendor's phone app.
    #[serde(default)]
    pub single_bond: bool,
    /// How to put it in pairing mode, for the nurse.
    #[serde(default)]
    pub pairing_hint: Option<String>,
    /// Decoding and link deviations.
    #[serde(default)]
    pub quirks: Vec<Quirk>,
    /// Evidence and remarks.
    #[serde(default)]
    pub notes: Option<String>,
}

impl Model {
    /// The decoder quirks of this model.
    pub fn decode_quirks(&self) -> Quirks {
        Quirks::from_list(&self.quirks)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    vendor: String,
    #[serde(rename = "model")]
    models: Vec<Model>,
}

/// A catalog file that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("catalog {file}: {message}")]
pub struct CatalogError {
    /// The file.
    pub file: String,
    /// What is wrong (serde's message names the key and line).
    pub message: String,
}

/// An entry of the catalog with the vendor of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The vendor family (the file's `vendor`).
    pub vendor: String,
    /// The model.
    pub model: Model,
}

/// What an advertisement shows, for [`Catalog::match_advert`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Advert<'a> {
    /// Advertised local name.
    pub name: Option<&'a str>,
    /// Advertised service UUIDs (any form `1810` or 128-bit).
    pub service_uuids: &'a [&'a str],
    /// Service-data UUIDs.
    pub service_data_uuids: &'a [&'a str],
    /// Manufacturer-data company ids.
    pub manufacturer_ids: &'a [u16],
}

/// The loaded catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    entries: Vec<Entry>,
}

impl Catalog {
    /// Parses one catalog file.
    pub fn parse_file(file: &str, text: &str) -> Result<Vec<Entry>, CatalogError> {
        let parsed: CatalogFile = toml::from_str(text).map_err(|e| CatalogError {
            file: file.to_string(),
            message: e.message().to_string(),
        })?;
        Ok(parsed
            .models
            .into_iter()
            .map(|model| Entry {
                vendor: parsed.vendor.clone(),
                model,
            })
            .collect())
    }

    /// Parses and validates a set of files.
    pub fn from_files(files: &[(&str, &str)]) -> Result<Catalog, CatalogError> {
        let mut entries = Vec::new();
        for (name, text) in files {
            let parsed = Catalog::parse_file(name, text)?;
            for entry in &parsed {
                validate_model(&entry.model).map_err(|message| CatalogError {
                    file: (*name).to_string(),
                    message: format!("model {:?}: {message}", entry.model.id),
                })?;
            }
            entries.extend(parsed);
        }
        let catalog = Catalog { entries };
        catalog.validate()?;
        Ok(catalog)
    }

    /// The catalog embedded in this build, parsed once.
    pub fn embedded() -> Result<&'static Catalog, CatalogError> {
        static CATALOG: OnceLock<Result<Catalog, CatalogError>> = OnceLock::new();
        CATALOG
            .get_or_init(|| Catalog::from_files(FILES))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Checks rules across files: ids are unique.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let mut seen = HashSet::new();
        for e in &self.entries {
            if !seen.insert(e.model.id.as_str()) {
                return Err(CatalogError {
                    file: e.vendor.clone(),
                    message: format!("model id {:?} appears twice", e.model.id),
                });
            }
        }
        Ok(())
    }

    /// All entries, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The model with this id.
    pub fn by_id(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.model.id == id)
    }

    /// The model whose DIS model string matches (case-insensitive, surrounding spaces ignored).
    pub fn by_dis_model(&self, dis_model: &str) -> Option<&Entry> {
        let wanted = dis_model.trim();
        self.entries.iter().find(|e| {
            e.model
                .recognition
                .dis_models
                .iter()
                .any(|p| glob_match(p, wanted))
        })
    }

    /// The best match for an advertisement: a name pattern scores 4, a manufacturer id, a
    /// service-data UUID or a vendor (128-bit) service UUID 2, a SIG service UUID 1. A vendor
    /// model needs at least 2 (a SIG service alone is not evidence of the vendor); the highest
    /// score wins, the first entry on a tie. `None` when nothing matches.
    pub fn match_advert(&self, advert: &Advert<'_>) -> Option<&Entry> {
        let norm = |list: &[&str]| -> Vec<String> {
            list.iter().filter_map(|u| normalize_uuid(u)).collect()
        };
        let services = norm(advert.service_uuids);
        let service_data = norm(advert.service_data_uuids);
        let mut best: Option<(u32, &Entry)> = None;
        for e in &self.entries {
            let rec = &e.model.recognition;
            let mut score = 0;
            if let Some(name) = advert.name
                && rec.name_patterns.iter().any(|p| glob_match(p, name))
            {
                score += 4;
            }
            if rec
                .manufacturer_ids
                .iter()
                .any(|id| advert.manufacturer_ids.contains(id))
            {
                score += 2;
            }
            let any_uuid = |listed: &[String], seen: &[String]| {
                listed
                    .iter()
                    .filter_map(|u| normalize_uuid(u))
                    .any(|u| seen.contains(&u))
            };
            if any_uuid(&rec.service_data_uuids, &service_data) {
                score += 2;
            }
            let (sig, vendor): (Vec<String>, Vec<String>) = rec
                .service_uuids
                .iter()
                .filter_map(|u| normalize_uuid(u))
                .partition(|u| u.ends_with(SIG_BASE_TAIL));
            if any_uuid(&vendor, &services) {
                score += 2;
            }
            if any_uuid(&sig, &services) {
                score += 1;
            }
            // A vendor model needs a vendor-specific match; a SIG service alone only picks the
            // generic entries, which list nothing else.
            let specific = !rec.name_patterns.is_empty()
                || !rec.manufacturer_ids.is_empty()
                || !rec.service_data_uuids.is_empty()
                || !vendor.is_empty();
            let needed = if specific { 2 } else { 1 };
            if score >= needed && best.is_none_or(|(b, _)| score > b) {
                best = Some((score, e));
            }
        }
        best.map(|(_, e)| e)
    }
}
