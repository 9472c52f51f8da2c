//! Configuration sections of the Portal-facing features: `[portal]` (headers, prescribers,
//! patient fields) and `[enrollment]` (codes, sync settings); `[hub]` is in
//! [`crate::hub::settings`]. File
//! shapes with `deny_unknown_fields`; every section has defaults so a provider without a Portal
//! activation still starts.

use std::collections::BTreeMap;

use serde::Deserialize;
use tm_protocol::config_file::ConfigError;

use crate::hub::contract::PRESCRIPTION_FIELDS;

/// `[portal]`: what the provider declared to the Portal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalSection {
    /// Fixed headers every Portal call carries (name -> value). Values are shared secrets:
    /// never logged.
    #[serde(default)]
    pub fixed_headers: BTreeMap<String, String>,
    /// The optional prescription fields we need (dotted paths of the contract's list). Only
    /// these are stored.
    #[serde(default)]
    pub patient_fields: Vec<String>,
    /// Hospitals that activated us.
    #[serde(default)]
    pub prescribers: Vec<Prescriber>,
    /// Largest accepted request body.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_max_body() -> usize {
    64 * 1024
}

/// What a file without `[portal]` gets: the same defaults as an empty section (a derived
/// `Default` would make the body limit 0 and refuse every Portal call as too large).
impl Default for PortalSection {
    fn default() -> Self {
        Self {
            fixed_headers: BTreeMap::new(),
            patient_fields: Vec::new(),
            prescribers: Vec::new(),
            max_body_bytes: default_max_body(),
        }
    }
}

/// One prescriber (hospital) and its activation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prescriber {
    /// The Portal's prescriber id.
    pub id: String,
    /// Whether the data-processing agreement is signed; without it every request is refused.
    pub dpa_signed: bool,
    /// Prescriber-specific headers the hospital configured at activation.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[enrollment]`: codes and what enrolled gateways are told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentSection {
    /// Lifetime of an enrollment code.
    #[serde(default = "default_code_ttl_s")]
    pub code_ttl_s: u64,
    /// Codes a session may be issued per hour (the nurse's page).
    #[serde(default = "default_codes_per_hour")]
    pub codes_per_session_per_hour: u32,
    /// Failed enrollment attempts accepted per minute, all gateways together; beyond, 429.
    #[serde(default = "default_failures_per_minute")]
    pub failed_attempts_per_minute: u32,
    /// Transport the gateways use: "https" or "mqtt".
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Broker URL for the MQTT transport.
    #[serde(default)]
    pub mqtt_url: Option<String>,
    /// Heartbeat interval told to gateways.
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_interval_s: u32,
}

fn default_code_ttl_s() -> u64 {
    900
}
fn default_codes_per_hour() -> u32 {
    5
}
fn default_failures_per_minute() -> u32 {
    10
}
fn default_transport() -> String {
    "https".into()
}
fn default_heartbeat_s() -> u32 {
    60
}

impl Default for EnrollmentSection {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// Checks the sections' values.
pub fn validate(portal: &PortalSection, enrollment: &EnrollmentSection) -> Result<(), ConfigError> {
    for f in &portal.patient_fields {
        if !PRESCRIPTION_FIELDS.contains(&f.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "portal.patient_fields: {f:?} is not a field of the Portal contract"
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for p in &portal.prescribers {
        if p.id.is_empty() || !seen.insert(&p.id) {
            return Err(ConfigError::Invalid(format!(
                "portal.prescribers: id {:?} is empty or repeated",
                p.id
            )));
        }
    }
    if !matches!(enrollment.transport.as_str(), "https" | "mqtt") {
        return Err(ConfigError::Invalid(
            "enrollment.transport must be \"https\" or \"mqtt\"".into(),
        ));
    }
    if enrollment.transport == "mqtt" && enrollment.mqtt_url.is_none() {
        return Err(ConfigError::Invalid(
            "enrollment.mqtt_url is required with transport = \"mqtt\"".into(),
        ));
    }
    if enrollment.code_ttl_s == 0 {
        return Err(ConfigError::Invalid(
            "enrollment.code_ttl_s must be > 0".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_section_has_the_defaults_of_an_empty_one() {
        let empty: PortalSection = toml::from_str("").unwrap();
        assert_eq!(empty.max_body_bytes, 64 * 1024);
        assert_eq!(
            PortalSection::default().max_body_bytes,
            empty.max_body_bytes
        );
    }
}
