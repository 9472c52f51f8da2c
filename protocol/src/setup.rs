//! The messages of a home's setup from the nurse's phone.
//!
//! **Claim.** A gateway that is not enrolled announces itself: `tm-gateway run` posts a
//! [`ClaimHello`] (signed with its own key, which the hello carries, so the signature proves
//! possession) to [`crate::routes::http::CLAIM_HELLO`] every few seconds. The provider keeps
//! the newest hello of each key as an unclaimed gateway, findable by its
//! [`crate::claim::ClaimCode`] only. When a nurse's page claims that code, the provider
//! enrolls the gateway for the page's session, and the next hello is answered with the same
//! signed [`crate::EnrollmentResponse`] a `tm-gateway enroll` gets.
//!
//! **Setup mode.** The page then drives the gateway with signed commands
//! ([`crate::CommandAction::Setup`], `Pair`, `PairSecret`, `Unpair`). While in setup mode the
//! gateway scans, polls its commands every second and sends a heartbeat every two seconds
//! whose [`SetupState`] lists the health devices it sees and the progress of each pairing; the
//! page shows the newest one. Setup mode ends by itself at its `until`, and the gateway goes
//! back to its normal rhythm.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most nearby devices one [`SetupState`] lists (strongest signal first).
pub const MAX_NEARBY: usize = 16;
/// Most pairings one [`SetupState`] reports (the newest first).
pub const MAX_PAIRINGS: usize = 8;
/// How far a hello's `sent_at` may be from the provider's clock; an older (or later) hello is
/// refused, so a recorded one cannot be replayed for long.
pub const HELLO_SKEW_S: i64 = 300;
/// The signer id of a [`ClaimHello`] frame (the gateway has no id yet).
pub const HELLO_SIGNER: &str = "unclaimed";

/// An unenrolled gateway's announcement, signed with the key it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimHello {
    /// Protocol version.
    pub v: u16,
    /// The gateway's Ed25519 public key (32 bytes, base64 in JSON); its claim code is derived
    /// from it.
    #[serde(with = "crate::messages::b64")]
    pub public_key: Vec<u8>,
    /// Agent version (the `tm-gateway` package version).
    pub agent_version: String,
    /// When it was built (gateway clock); refused beyond [`HELLO_SKEW_S`] of the provider's.
    pub sent_at: DateTime<Utc>,
}

/// What a gateway in setup mode reports in its heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupState {
    /// When setup mode ends (gateway clock) unless the page renews it.
    pub until: DateTime<Utc>,
    /// The health devices the gateway hears now (the catalog recognises them), strongest
    /// first, at most [`MAX_NEARBY`]; paired ones included.
    pub nearby: Vec<NearbyDevice>,
    /// The pairings asked for in this setup, newest first, at most [`MAX_PAIRINGS`].
    pub pairings: Vec<PairingProgress>,
}

/// A health device in range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearbyDevice {
    /// Bluetooth address, upper case.
    pub address: String,
    /// The advertised name.
    pub name: Option<String>,
    /// The catalog model it matches (its pairing hint and profile are the catalog's).
    pub model_id: Option<String>,
    /// Signal strength in dBm, when BlueZ reported one.
    pub rssi_dbm: Option<i16>,
    /// Already paired with this gateway.
    pub paired: bool,
}

/// Where one pairing is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingProgress {
    /// The device.
    pub address: String,
    /// The step it is at (or ended on).
    pub step: PairingStep,
    /// A number to show the nurse: the passkey to type on the device
    /// ([`PairingStep::TypeOnDevice`]) or to compare ([`PairingStep::ConfirmNumber`]).
    pub shown: Option<u32>,
    /// Why it failed, in plain words (no values, no patient data), in English.
    pub error: Option<String>,
    /// Why it failed, as a kind the page says in the nurse's language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<PairingFailure>,
    /// The device's battery in percent, once read.
    pub battery_pct: Option<u8>,
    /// When the step was reached (gateway clock).
    pub at: DateTime<Utc>,
}

/// The steps of a pairing, in order; it ends in `paired`, `failed` or `unpaired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairingStep {
    /// Looking for the device's advertisement.
    Searching,
    /// The bond is being made.
    Bonding,
    /// The device asks for the PIN it shows: a `PairSecret` must bring it.
    NeedsPin,
    /// The device asks for the passkey it shows: a `PairSecret` must bring it.
    NeedsPasskey,
    /// The device and the gateway show a number: a `PairSecret` of `yes` (or the number)
    /// confirms it.
    ConfirmNumber,
    /// The nurse must type the shown number on the device.
    TypeOnDevice,
    /// Reading the device information (maker, model, serial).
    DeviceInformation,
    /// Reading the battery level.
    Battery,
    /// Setting the device's clock.
    Clock,
    /// Paired: the agent now collects its readings.
    Paired,
    /// The pairing failed; `error` says why; a new `Pair` retries.
    Failed,
    /// The device was unpaired from this page.
    Unpaired,
}

/// Why a pairing failed, each with what the nurse should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairingFailure {
    /// The gateway does not hear the device: pairing mode, closer, again.
    NotFound,
    /// The PIN, passkey or confirmation did not come in time.
    NoAnswer,
    /// The device refused the PIN, passkey or number it was given: check it, again.
    WrongSecret,
    /// The device refused to pair without asking for anything: pairing mode, again.
    Refused,
    /// Paired, but the device could not be read: keep it awake next to the gateway, again.
    Unreadable,
    /// The gateway itself failed (Bluetooth, its storage): restart it or call support.
    Gateway,
}

impl PairingStep {
    /// Whether the pairing has ended at this step.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Paired | Self::Failed | Self::Unpaired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setup_state_round_trips_in_its_documented_shape() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let state = SetupState {
            until: at,
            nearby: vec![NearbyDevice {
                address: "C0:FF:EE:00:00:03".into(),
                name: Some("Nonin3230".into()),
                model_id: Some("nonin-3230".into()),
                rssi_dbm: Some(-61),
                paired: false,
            }],
            pairings: vec![PairingProgress {
                address: "C0:FF:EE:00:00:03".into(),
                step: PairingStep::NeedsPasskey,
                shown: None,
                error: None,
                failure: None,
                battery_pct: None,
                at,
            }],
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["pairings"][0]["step"], "needs-passkey");
        assert!(json["pairings"][0].get("failure").is_none());
        assert_eq!(
            serde_json::to_value(PairingFailure::WrongSecret).unwrap(),
            "wrong-secret"
        );
        assert_eq!(json["nearby"][0]["rssi_dbm"], -61);
        let back: SetupState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
        assert!(PairingStep::Failed.is_final() && !PairingStep::Bonding.is_final());
    }
}
