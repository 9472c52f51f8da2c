//! `[attachments]`: how a session's outputs are published and what the FHIR Bundle carries. A
//! file shape with defaults for every field (a configuration without the section still
//! starts), validated into [`AttachmentSettings`], and the URI-signing key, created on first
//! start like the provider key (random, mode 0600, never logged).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tm_protocol::config_file::ConfigError;

use crate::attachments::OutputOptions;
use crate::attachments::token::{KeyError, MIN_KEY_BYTES, UriSigner};
use crate::hub::contract::CAREPATHS;
use crate::outputs::Language;
use crate::outputs::dashboard::DashboardOptions;
use crate::outputs::fhir::performer::OrganizationIdentifier;
use crate::outputs::fhir::{FhirOptions, Measurement, Organization};
use crate::outputs::series::Ranges;

/// The heart-failure carepath's limit: at most this many attachment updates a day.
pub const HEART_FAILURE_UPDATES_PER_DAY: u32 = 5;

/// `[attachments]` as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentsSection {
    /// The HMAC key signing attachment URIs (raw bytes, mode 0600, created on first start);
    /// default `attachments.key` next to the database.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// How long a published URI works. The EHR downloads soon after each update; a URI of an
    /// ended session stops working after this.
    #[serde(default = "default_token_lifetime_hours")]
    pub token_lifetime_hours: u32,
    /// Languages of the PDF report, one attachment each (`contentLanguage`); the first is the
    /// dashboard's.
    #[serde(default = "default_languages")]
    pub languages: Vec<Language>,
    /// Origins allowed to frame the dashboard (`frame-ancestors`); empty: nobody.
    #[serde(default)]
    pub frame_ancestors: Vec<String>,
    /// Attachment updates a day for a carepath missing from `updates_per_day`.
    #[serde(default = "default_updates_per_day")]
    pub default_updates_per_day: u32,
    /// Attachment updates a day per carepath id (the carepath's rule; heart failure: 5).
    #[serde(default = "default_carepath_limits")]
    pub updates_per_day: BTreeMap<String, u32>,
    /// Normal ranges per LOINC code (`"8480-6" = { low = 90, high = 140 }`); default: the
    /// heart-failure ranges.
    #[serde(default)]
    pub ranges: Option<Ranges>,
    /// The system of the Observations' identifiers (an absolute URI, e.g. `urn:oid:...`);
    /// default: `<public_url>/fhir/reading` as at the store's first start, kept from then on
    /// ([`crate::store::Store::fhir_identifier_system`]).
    #[serde(default)]
    pub identifier_system: Option<String>,
    /// Measurement kinds the FHIR Bundle carries besides those its carepath monitors
    /// (heart failure: heart rate, blood pressure, body weight), e.g. `["spo2", "glucose"]`;
    /// each of `body-weight`, `blood-pressure`, `heart-rate`, `spo2`, `body-temperature`,
    /// `glucose`, `bmi`, `body-height`, at most once. Default: none. The PDF and the dashboard
    /// show every measurement whatever this says.
    #[serde(default)]
    pub extra_measurements: Vec<Measurement>,
    /// The provider organisation, the performer of every device Observation; default: named
    /// [`crate::outputs::fhir::performer::DEFAULT_ORGANIZATION_NAME`], no identifier.
    #[serde(default)]
    pub organization: Option<OrganizationSection>,
}

/// `[attachments.organization]`: the organisation that runs this provider, as the EHR shows it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationSection {
    /// `Organization.name` (not empty).
    pub name: String,
    /// `Organization.identifier`, e.g. the Belgian enterprise number: `{ system =
    /// "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe", value = "..." }`.
    #[serde(default)]
    pub identifier: Option<OrganizationIdentifier>,
}

fn default_token_lifetime_hours() -> u32 {
    30 * 24
}
fn default_languages() -> Vec<Language> {
    Language::ALL.to_vec()
}
fn default_updates_per_day() -> u32 {
    HEART_FAILURE_UPDATES_PER_DAY
}
fn default_carepath_limits() -> BTreeMap<String, u32> {
    BTreeMap::from([(CAREPATHS[0].id.to_owned(), HEART_FAILURE_UPDATES_PER_DAY)])
}

impl Default for AttachmentsSection {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// The validated section.
#[derive(Debug, Clone)]
pub struct AttachmentSettings {
    /// The URI-signing key file: as configured, else `attachments.key` next to the database.
    pub key_file: PathBuf,
    /// Lifetime of a published URI (`token_lifetime_hours`, more than 0; default 30 days).
    pub token_lifetime: chrono::Duration,
    /// PDF languages in the configured order, repeats dropped (at least one); the first is
    /// the dashboard's.
    pub languages: Vec<Language>,
    /// Origins allowed to frame the dashboard, each an http(s) origin; empty: nobody.
    pub frame_ancestors: Vec<String>,
    /// Updates a day for a session whose carepath has no entry (or none at all); more than 0.
    pub default_updates_per_day: u32,
    /// Updates a day per carepath id, each more than 0; sets
    /// [`Self::min_update_interval`].
    pub updates_per_day: BTreeMap<String, u32>,
    /// Normal ranges per LOINC code, as configured or the heart-failure defaults.
    pub ranges: Ranges,
    /// `identifier_system` as configured (validated: an absolute URI); `None`: the pinned one.
    pub identifier_system: Option<String>,
    /// The extra measurement kinds of the FHIR Bundle (each named once).
    pub extra_measurements: BTreeSet<Measurement>,
    /// The performer organisation (name not empty, identifier system an absolute URI).
    pub organization: Organization,
}

/// Whether `s` is an absolute URI of a scheme FHIR systems use.
fn absolute_uri(s: &str) -> bool {
    (s.starts_with("urn:") || s.starts_with("https://") || s.starts_with("http://"))
        && !s.contains(char::is_whitespace)
}

/// The validated `[attachments.organization]`.
fn organization(f: Option<OrganizationSection>) -> Result<Organization, ConfigError> {
    let Some(f) = f else {
        return Ok(Organization::default());
    };
    if f.name.trim().is_empty() {
        return Err(ConfigError::Invalid(
            "attachments.organization.name must not be empty".into(),
        ));
    }
    if let Some(i) = &f.identifier {
        if !absolute_uri(&i.system) {
            return Err(ConfigError::Invalid(format!(
                "attachments.organization.identifier.system: {:?} is not an absolute URI",
                i.system
            )));
        }
        if i.value.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "attachments.organization.identifier.value must not be empty".into(),
            ));
        }
    }
    Ok(Organization {
        name: f.name.trim().to_owned(),
        identifier: f.identifier,
    })
}

/// The validated `extra_measurements`: a kind named twice is a mistake in the file.
fn extra_measurements(kinds: Vec<Measurement>) -> Result<BTreeSet<Measurement>, ConfigError> {
    let mut set = BTreeSet::new();
    for kind in kinds {
        if !set.insert(kind) {
            return Err(ConfigError::Invalid(format!(
                "attachments.extra_measurements names {:?} twice",
                kind.name()
            )));
        }
    }
    Ok(set)
}

impl AttachmentSettings {
    /// Validates `f`; the key file defaults to `attachments.key` in `key_dir`.
    pub fn from_section(f: AttachmentsSection, key_dir: &Path) -> Result<Self, ConfigError> {
        if f.languages.is_empty() {
            return Err(ConfigError::Invalid(
                "attachments.languages needs at least one language".into(),
            ));
        }
        let mut languages = Vec::new();
        for l in f.languages {
            if !languages.contains(&l) {
                languages.push(l);
            }
        }
        if f.token_lifetime_hours == 0 {
            return Err(ConfigError::Invalid(
                "attachments.token_lifetime_hours must be > 0".into(),
            ));
        }
        if f.default_updates_per_day == 0 || f.updates_per_day.values().any(|n| *n == 0) {
            return Err(ConfigError::Invalid(
                "attachments: updates per day must be > 0".into(),
            ));
        }
        for origin in &f.frame_ancestors {
            if !(origin.starts_with("https://") || origin.starts_with("http://"))
                || origin.contains([' ', ';', ','])
            {
                return Err(ConfigError::Invalid(format!(
                    "attachments.frame_ancestors: {origin:?} is not an http(s) origin"
                )));
            }
        }
        if let Some(system) = f.identifier_system.as_deref().filter(|s| !absolute_uri(s)) {
            return Err(ConfigError::Invalid(format!(
                "attachments.identifier_system: {system:?} is not an absolute URI \
                 (urn:..., https://...)"
            )));
        }
        Ok(Self {
            key_file: f
                .key_file
                .unwrap_or_else(|| key_dir.join("attachments.key")),
            token_lifetime: chrono::Duration::hours(i64::from(f.token_lifetime_hours)),
            languages,
            frame_ancestors: f.frame_ancestors,
            default_updates_per_day: f.default_updates_per_day,
            updates_per_day: f.updates_per_day,
            ranges: f.ranges.unwrap_or_else(Ranges::heart_failure),
            identifier_system: f.identifier_system,
            extra_measurements: extra_measurements(f.extra_measurements)?,
            organization: organization(f.organization)?,
        })
    }

    /// The shortest time between two attachment updates of a session on `carepath`: a day
    /// divided by the carepath's updates per day.
    pub fn min_update_interval(&self, carepath: Option<&str>) -> Duration {
        let per_day = carepath
            .and_then(|c| self.updates_per_day.get(c))
            .copied()
            .unwrap_or(self.default_updates_per_day)
            .max(1);
        Duration::from_millis(86_400_000 / u64::from(per_day)).max(Duration::from_millis(1))
    }

    /// The rendering options, the Observations' identifiers under `identifier_system`; the
    /// Bundle flags values against the same ranges as the PDF and the dashboard.
    pub fn output_options(
        &self,
        identifier_system: &str,
        triage: &crate::triage::Triage,
        time_zone: chrono_tz::Tz,
    ) -> OutputOptions {
        OutputOptions {
            triage: triage.clone(),
            time_zone,
            fhir: FhirOptions {
                observation_identifier_system: identifier_system.to_owned(),
                ranges: self.ranges.clone(),
                extra_measurements: self.extra_measurements.clone(),
                organization: self.organization.clone(),
            },
            ranges: self.ranges.clone(),
            dashboard: DashboardOptions {
                frame_ancestors: self.frame_ancestors.clone(),
            },
        }
    }
}

/// Why the URI-signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UriKeyError {
    /// Creating it failed.
    #[error("cannot create the attachment signing key: {0}")]
    Create(#[from] tm_protocol::IdentityError),
    /// Reading it failed, or it is too short.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Readable by others than the provider's user.
    #[error("the attachment signing key {path} has mode {mode:o}; it must be 0600 (chmod 600 it)")]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

/// Loads the URI-signing key at `path`, creating 32 random bytes with mode 0600 when absent.
/// Returns the raw key (the attachment server and the publisher each build a signer from it).
pub fn load_or_create_uri_key(path: &Path) -> Result<Vec<u8>, UriKeyError> {
    if !path.exists() {
        let mut key = [0u8; MIN_KEY_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| KeyError::TooShort(0))?;
        tm_protocol::identity::write_private(path, &key)?;
        tracing::info!(path = %path.display(), "created attachment signing key");
    }
    let io = |source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(UriKeyError::Insecure {
            path: path.to_path_buf(),
            mode,
        });
    }
    let key = std::fs::read(path).map_err(io)?;
    UriSigner::new(&key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_limit_heart_failure_to_five_updates_a_day() {
        let s = AttachmentSettings::from_section(AttachmentsSection::default(), Path::new("/d"))
            .unwrap();
        assert_eq!(s.key_file, Path::new("/d/attachments.key"));
        assert_eq!(s.languages, Language::ALL.to_vec());
        let hf = s.min_update_interval(Some(CAREPATHS[0].id));
        assert_eq!(hf, Duration::from_secs(86_400 / 5));
        let bad: AttachmentsSection = toml::from_str("languages = []").unwrap();
        assert!(AttachmentSettings::from_section(bad, Path::new("")).is_err());
        let bad: AttachmentsSection = toml::from_str("frame_ancestors = [\"*; x\"]").unwrap();
        assert!(AttachmentSettings::from_section(bad, Path::new("")).is_err());
        assert!(toml::from_str::<AttachmentsSection>("languages = [\"de\"]").is_err());
    }

    fn load(text: &str) -> Result<AttachmentSettings, String> {
        let section: AttachmentsSection = toml::from_str(text).map_err(|e| e.to_string())?;
        AttachmentSettings::from_section(section, Path::new("")).map_err(|e| e.to_string())
    }

    #[test]
    fn extra_measurements_are_validated_strictly_and_reach_the_fhir_options() {
        let s = load("").unwrap();
        assert!(s.extra_measurements.is_empty());
        let s = load("extra_measurements = [\"spo2\", \"body-temperature\", \"glucose\"]").unwrap();
        let fhir = s
            .output_options(
                "urn:oid:2.999.1",
                &crate::triage::Triage::default(),
                chrono_tz::UTC,
            )
            .fhir;
        assert_eq!(
            fhir.extra_measurements,
            BTreeSet::from([
                Measurement::Spo2,
                Measurement::BodyTemperature,
                Measurement::Glucose
            ])
        );
        assert_eq!(fhir.ranges, s.ranges);
        let unknown = load("extra_measurements = [\"oxygen\"]").unwrap_err();
        assert!(unknown.contains("unknown variant `oxygen`"), "{unknown}");
        let twice = load("extra_measurements = [\"spo2\", \"spo2\"]").unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
        assert!(load("extra_measurements = \"spo2\"").is_err());
    }

    #[test]
    fn the_organization_is_the_configured_one_or_the_default() {
        let s = load("").unwrap();
        assert_eq!(s.organization, Organization::default());
        let s = load(
            "[organization]\nname = \"Zorg op afstand NV\"\n\
             identifier = { system = \"https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe\", value = \"0123456749\" }\n",
        )
        .unwrap();
        let org = s
            .output_options(
                "urn:oid:2.999.1",
                &crate::triage::Triage::default(),
                chrono_tz::UTC,
            )
            .fhir
            .organization;
        assert_eq!(org.name, "Zorg op afstand NV");
        assert_eq!(org.identifier.unwrap().value, "0123456749");
        for bad in [
            "[organization]\nname = \" \"\n",
            "[organization]\nname = \"X\"\nidentifier = { system = \"cbe\", value = \"1\" }\n",
            "[organization]\nname = \"X\"\nidentifier = { system = \"urn:x\", value = \"\" }\n",
            "[organization]\nname = \"X\"\nwebsite = \"https://x\"\n",
            "[organization]\n",
        ] {
            assert!(load(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_is_created_once_with_private_mode_and_refused_when_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attachments.key");
        let a = load_or_create_uri_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(a.len(), MIN_KEY_BYTES);
        assert_eq!(load_or_create_uri_key(&path).unwrap(), a);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_uri_key(&path),
            Err(UriKeyError::Insecure { mode: 0o644, .. })
        ));
    }
}
