//! Who performed each Observation (docs/fhir.md §5): every vital-sign example of the IG names
//! one, the device vendor's Organization for device data and the patient for what the patient
//! registered. Every reading the provider charts is measured by a device and brought in by the
//! gateway the provider runs, so its performer is the provider organisation: an `Organization`
//! entry of the Bundle, from `[attachments.organization]`.
//!
//! When self-reported entries (the carepath's symptoms) are charted, they name the patient, by
//! the same logical identifier as the subject, as the IG's `BodyWeightExample2` does.

use serde::Deserialize;
use serde_json::{Value, json};

use super::ids::stable_uuid;

/// The name the Organization has when the configuration gives none.
pub const DEFAULT_ORGANIZATION_NAME: &str = "Telemonitoring provider";

/// An identifier of the provider organisation (for a Belgian company, its enterprise number in
/// `https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationIdentifier {
    /// An absolute URI.
    pub system: String,
    /// The value in that system.
    pub value: String,
}

/// The provider organisation, the performer of device Observations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// `Organization.name`, as the EHR shows it.
    pub name: String,
    /// `Organization.identifier`, when configured.
    pub identifier: Option<OrganizationIdentifier>,
}

impl Default for Organization {
    fn default() -> Self {
        Organization {
            name: DEFAULT_ORGANIZATION_NAME.into(),
            identifier: None,
        }
    }
}

impl Organization {
    /// The resource id: derived from the name and identifier, so it is stable across updates.
    pub fn id(&self) -> String {
        let identifier = self
            .identifier
            .as_ref()
            .map(|i| format!("{}|{}", i.system, i.value))
            .unwrap_or_default();
        stable_uuid("Organization", &format!("{}|{identifier}", self.name))
    }

    /// The `Organization` resource.
    pub fn resource(&self) -> Value {
        let mut org = json!({
            "resourceType": "Organization",
            "id": self.id(),
            "active": true,
            "name": self.name,
        });
        if let Some(i) = &self.identifier {
            org["identifier"] = json!([{"system": i.system, "value": i.value}]);
        }
        org
    }

    /// `Observation.performer` naming this organisation by its `fullUrl`.
    pub fn performer(&self) -> Value {
        json!([{"reference": format!("urn:uuid:{}", self.id()), "display": self.name}])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_organization_is_stable_and_named_by_its_performer_reference() {
        let org = Organization {
            name: "Zorg op afstand NV".into(),
            identifier: Some(OrganizationIdentifier {
                system: "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/cbe".into(),
                value: "0123456749".into(),
            }),
        };
        assert_eq!(org.id(), org.clone().id());
        assert_ne!(org.id(), Organization::default().id());
        let r = org.resource();
        assert_eq!(r["resourceType"], "Organization");
        assert_eq!(r["identifier"][0]["value"], "0123456749");
        assert_eq!(
            org.performer()[0]["reference"],
            format!("urn:uuid:{}", r["id"].as_str().unwrap())
        );
        assert!(
            Organization::default()
                .resource()
                .get("identifier")
                .is_none()
        );
    }
}
