//! Our reading of the Portal/HUB contract, in one place (docs/portal-hub.md §3 status rules,
//! §5 interpretations). Everything that decides *what* is sent to the HUB or answered to the
//! Portal comes from here; the modules around it only move bytes.
//!
//! - Statuses and the legal transitions ([`Status::may_become`]): requested -> accepted ->
//!   in-progress -> completed; requested|accepted -> cancelled. Re-sending the current status
//!   (a retry, or new attachments while in progress) is an update, not a transition.
//! - Actions ([`Action::outcome`]): stop -> completed from accepted or in-progress, cancelled
//!   from requested; cancel -> cancelled from requested or accepted, refused when in progress.
//! - The HUB's Authorization header is `Bearer <access_token>` ([`authorization`]).
//! - `contentMD5` is base64 of the raw 16-byte digest ([`content_md5`]).
//! - At most [`SOFT_ATTACHMENT_LIMIT`] attachments; one left out of the array is deleted.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

/// The HUB's soft limit of attachments per session.
pub const SOFT_ATTACHMENT_LIMIT: usize = 10;

/// A session's status. Stored as text (the contract's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Created by the Portal's prescription request; waiting for enrollment.
    Requested,
    /// Enrollment done: a gateway is bound to the session.
    Accepted,
    /// Data is flowing; attachments are published.
    InProgress,
    /// Ended normally (stop, or end of the carepath). Final.
    Completed,
    /// Ended before any data (cancel, or stop while requested). Final.
    Cancelled,
}

impl Status {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Accepted => "accepted",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the contract's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requested" => Self::Requested,
            "accepted" => Self::Accepted,
            "in-progress" => Self::InProgress,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the session has ended (no status ever follows).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }

    /// Whether the HUB accepts `self -> next`, including the idempotent re-send of the current
    /// status while the session is live.
    pub fn may_become(self, next: Self) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Requested, Accepted | Cancelled)
                | (Accepted, Accepted | InProgress | Completed | Cancelled)
                | (InProgress, InProgress | Completed)
        )
    }
}

/// An action the Portal sends to the Action URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// End the session.
    Stop,
    /// Cancel the session before data.
    Cancel,
}

/// What an action does to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOutcome {
    /// The session moves to this status.
    MoveTo(Status),
    /// The session already is where the action leads: nothing to do.
    AlreadyThere,
    /// The action is refused in this status (409 with a message).
    Refused(&'static str),
}

impl Action {
    /// The business rule (docs/portal-hub.md §3 and §5).
    pub fn outcome(self, current: Status) -> ActionOutcome {
        use ActionOutcome::*;
        use Status::*;
        match (self, current) {
            (Action::Stop, Requested) => MoveTo(Cancelled),
            (Action::Stop, Accepted | InProgress) => MoveTo(Completed),
            (Action::Stop, Completed | Cancelled) => AlreadyThere,
            (Action::Cancel, Requested | Accepted) => MoveTo(Cancelled),
            (Action::Cancel, Cancelled) => AlreadyThere,
            (Action::Cancel, InProgress) => {
                Refused("the session is in progress: data was measured, use stop instead")
            }
            (Action::Cancel, Completed) => Refused("the session is already completed"),
        }
    }
}

/// A carepath as the HUB wants it: `{id, version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Carepath {
    /// The IG's carepath identifier.
    pub id: String,
    /// Its version.
    pub version: String,
}

/// A carepath the enrollment page offers.
#[derive(Debug, Clone, Copy)]
pub struct KnownCarepath {
    /// Label for the nurse.
    pub label: &'static str,
    /// HUB identifier.
    pub id: &'static str,
    /// Version.
    pub version: &'static str,
}

/// The carepaths with a HUB identifier in the IG (docs/fhir.md §3); the first is the
/// default.
pub const CAREPATHS: &[KnownCarepath] = &[
    KnownCarepath {
        label: "Heart failure",
        id: "https://hl7belgium.org/fhir/patient-monitoring/carepath/heart-failure",
        version: "1.0.0",
    },
    KnownCarepath {
        label: "Holter monitoring",
        id: "https://hl7belgium.org/fhir/patient-monitoring/carepath/holter-monitoring",
        version: "1.0.0",
    },
    KnownCarepath {
        label: "Perioperative abdominal",
        id: "https://hl7belgium.org/fhir/patient-monitoring/carepath/perioperative-abdominal",
        version: "1.0.0",
    },
    KnownCarepath {
        label: "CIED",
        id: "https://hl7belgium.org/fhir/patient-monitoring/carepath/cied",
        version: "1.0.0",
    },
    KnownCarepath {
        label: "CPAP / PAP",
        id: "https://hl7belgium.org/fhir/patient-monitoring/carepath/cpap",
        version: "1.0.0",
    },
];

/// The body of `PUT /prescription`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate {
    /// The session.
    pub telemonitoring_id: String,
    /// The status being set.
    pub status: Status,
    /// Extra context for the EHR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_context: Option<String>,
    /// Sent with every update (docs/portal-hub.md §4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carepath: Option<Carepath>,
    /// The full attachment set (in-progress and completed only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<serde_json::Value>>,
}

/// The Authorization header value for a HUB call.
pub fn authorization(access_token: &str) -> String {
    format!("Bearer {access_token}")
}

/// `contentMD5` of an attachment: base64 of the raw MD5 digest.
pub fn content_md5(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

/// The optional prescription fields the contract lists (dotted paths); the provider declares
/// which of them it needs, and stores only those.
pub use tm_protocol::prescription::PRESCRIPTION_FIELDS;

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Status; 5] = [
        Status::Requested,
        Status::Accepted,
        Status::InProgress,
        Status::Completed,
        Status::Cancelled,
    ];

    #[test]
    fn final_statuses_never_move_and_nothing_returns_to_requested() {
        for from in ALL {
            assert!(!from.may_become(Status::Requested));
            if from.is_final() {
                assert!(ALL.iter().all(|to| !from.may_become(*to)));
            }
            assert_eq!(Status::parse(from.as_str()), Some(from));
        }
    }

    #[test]
    fn every_action_outcome_is_a_legal_transition() {
        for action in [Action::Stop, Action::Cancel] {
            for from in ALL {
                if let ActionOutcome::MoveTo(to) = action.outcome(from) {
                    assert!(from.may_become(to), "{action:?} from {from:?}");
                }
            }
        }
        assert!(matches!(
            Action::Cancel.outcome(Status::InProgress),
            ActionOutcome::Refused(_)
        ));
        assert_eq!(
            Action::Stop.outcome(Status::Requested),
            ActionOutcome::MoveTo(Status::Cancelled)
        );
    }

    #[test]
    fn md5_is_base64_of_the_raw_digest() {
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        assert_eq!(authorization("t"), "Bearer t");
    }
}
