//! The optional fields of a Portal prescription request, as the Telemonitoring Prescription
//! Portal and HUB contract lists them (dotted paths into the request body).
//!
//! The provider declares to the Portal which of them it needs and stores only those; the
//! Portal and HUB emulator (`sim/hub`) refuses a declaration outside the list and fills in the
//! declared ones when it prescribes. The list is the contract's text, so it stands here, in the
//! crate both depend on, once. How the provider interprets the rest of the contract is its own
//! (`provider/src/hub/contract.rs`); the emulator checks that independently.

/// Every optional field the contract names, besides the ones each request always carries
/// (`telemonitoringId`, `patientId`, `prescriber.id`).
pub const PRESCRIPTION_FIELDS: &[&str] = &[
    "patient.citizenId",
    "patient.firstName",
    "patient.secondName",
    "patient.lastName",
    "patient.email",
    "patient.birthDate",
    "patient.gender",
    "patient.language",
    "patient.nationality",
    "patient.street",
    "patient.number",
    "patient.bus",
    "patient.postalCode",
    "patient.city",
    "patient.country",
    "patient.tel",
    "patient.phoneNumber",
    "patient.mobilePhoneNumber",
    "prescribingHcp.id",
    "prescribingHcp.healthProviderId",
    "prescribingHcp.citizenId",
    "prescribingHcp.firstName",
    "prescribingHcp.lastName",
    "responsibleHcp.id",
    "responsibleHcp.healthProviderId",
    "responsibleHcp.citizenId",
    "responsibleHcp.firstName",
    "responsibleHcp.lastName",
    "generalPractitioner.healthProviderId",
    "generalPractitioner.citizenId",
    "generalPractitioner.firstName",
    "generalPractitioner.lastName",
    "surgery.procedure.id",
    "surgery.procedure.description",
    "surgery.procedure.startDate",
    "surgery.procedure.surgeon.id",
    "surgery.procedure.surgeon.firstName",
    "surgery.procedure.surgeon.lastName",
    "surgery.procedure.laterality",
];
