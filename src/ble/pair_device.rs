//! Pairing one device from start to finish: the procedure behind `tm-gateway pair` (the nurse
//! at the gateway's terminal) and the pairing she drives from her phone
//! ([`crate::setup::SetupControl`]); only where the secrets come from differs.
//!
//! ```text
//!   Searching --advert heard--> Bonding --(prompt)--> NeedsPasskey | NeedsPin
//!                                  |                  | ConfirmNumber | TypeOnDevice
//!                                  v                  v
//!                      DeviceInformation --> Battery --> Clock --> Paired
//!   any step --error--> Failed (a plain-language reason, PairDeviceError)
//! ```
//!
//! 1. **Search**: the caller's adapter must already be scanning; the device must be heard
//!    within [`SEARCH_TIME`].
//! 2. **Bond** through our `org.bluez.Agent1` ([`super::pairing::pair`]) unless the catalog
//!    says the model needs none or only advertises. Each prompt of BlueZ is reported as its
//!    step (with the number to show, for a comparison or a passkey to type on the device)
//!    before the [`Secrets`] source is asked; an answer given goes back to `Bonding`.
//! 3. **Identify** on one connection without subscription ([`super::session`]): Device
//!    Information, battery, clock read and set. The device keeps its stored records for the
//!    agent's link.
//! 4. **Record** the device in the paired-devices file. The running agent's central watches
//!    that file ([`super::paired_watch`]) and starts collecting from the device by itself.
//!
//! Secrets pass through here only on their way to BlueZ: never logged, never kept.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use btleplug::api::Peripheral as _;
use btleplug::platform::{Adapter, Peripheral};
use tm_devices::catalog::{Bonding, ClockSetting};
use tm_protocol::setup::{PairingFailure, PairingStep};

use super::paired::{PairedDevice, PairedStore};
use super::pairing::{self, PairError, Prompt, Secrets};
use super::session::{self, IdentifyStep};
use super::{BleError, find_peripheral};

/// How long the device may take to be heard once the search starts (a device in pairing mode
/// advertises several times a second).
pub const SEARCH_TIME: Duration = Duration::from_secs(15);
/// How often BlueZ's device list is looked at while searching.
const SEARCH_POLL: Duration = Duration::from_millis(100);

/// One step reached, as the nurse is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The step.
    pub step: PairingStep,
    /// The number to show her ([`PairingStep::ConfirmNumber`], [`PairingStep::TypeOnDevice`]).
    pub shown: Option<u32>,
    /// The battery level, once read.
    pub battery_pct: Option<u8>,
}

impl Progress {
    fn at(step: PairingStep) -> Self {
        Self {
            step,
            shown: None,
            battery_pct: None,
        }
    }
}

/// Where the steps go (the terminal says nothing; the phone's setup state shows them).
pub type Reporter = Arc<dyn Fn(Progress) + Send + Sync>;

/// A device paired and recorded.
#[derive(Debug, Clone)]
pub struct Paired {
    /// Its entry, as written to the paired-devices file.
    pub device: PairedDevice,
    /// The model keeps a single bond: the vendor's phone app lost its own.
    pub single_bond: bool,
}

/// What kind of secret BlueZ asked for, for the error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// A legacy PIN.
    Pin,
    /// A passkey shown by the device.
    Passkey,
    /// A number to compare.
    Confirm,
    /// A number to type on the device.
    TypeOnDevice,
}

impl From<Prompt> for Asked {
    fn from(p: Prompt) -> Self {
        match p {
            Prompt::Pin => Self::Pin,
            Prompt::Passkey => Self::Passkey,
            Prompt::Confirm(_) => Self::Confirm,
            Prompt::Display(_) => Self::TypeOnDevice,
        }
    }
}

/// Why a pairing failed, in words for the nurse (no values, no patient data).
#[derive(Debug, thiserror::Error)]
pub enum PairDeviceError {
    /// Not heard within [`SEARCH_TIME`].
    #[error(
        "The gateway cannot hear the device: put it in pairing mode next to the gateway and try again"
    )]
    NotFound,
    /// A PIN, passkey or confirmation was asked for and none came.
    #[error("{}", no_answer(*.0))]
    NoAnswer(Asked),
    /// The device (or BlueZ) refused the bond; `.0` is what was asked, if anything.
    #[error("{}", refused(*.0))]
    Refused(Option<Asked>),
    /// Bonded, but the connection that reads the device failed.
    #[error(
        "The device paired but the gateway could not read it: keep it awake next to the gateway and try again"
    )]
    Identify(#[source] BleError),
    /// BlueZ or the adapter failed.
    #[error("The gateway's Bluetooth is not working ({0}): restart the gateway and try again")]
    Bluetooth(String),
    /// The paired-devices file cannot be written.
    #[error("The gateway could not record the device ({0}): call support")]
    Store(String),
}

impl PairDeviceError {
    /// The kind of failure the page says in the nurse's language.
    pub fn failure(&self) -> PairingFailure {
        match self {
            Self::NotFound => PairingFailure::NotFound,
            Self::NoAnswer(_) => PairingFailure::NoAnswer,
            Self::Refused(Some(_)) => PairingFailure::WrongSecret,
            Self::Refused(None) => PairingFailure::Refused,
            Self::Identify(_) => PairingFailure::Unreadable,
            Self::Bluetooth(_) | Self::Store(_) => PairingFailure::Gateway,
        }
    }
}

fn no_answer(asked: Asked) -> &'static str {
    match asked {
        Asked::Pin => "No PIN was typed in time",
        Asked::Passkey => "No passkey was typed in time",
        Asked::Confirm | Asked::TypeOnDevice => "The pairing was not confirmed in time",
    }
}

fn refused(asked: Option<Asked>) -> &'static str {
    match asked {
        Some(Asked::Passkey) => {
            "The device refused the passkey: check the number on its screen and try again"
        }
        Some(Asked::Pin) => "The device refused the PIN: check the PIN on its screen and try again",
        Some(Asked::Confirm) => {
            "The numbers were not confirmed: check that both show the same number and try again"
        }
        Some(Asked::TypeOnDevice) => {
            "The device refused the pairing: type the number shown on the phone on the device and try again"
        }
        None => "The device refused to pair: put it in pairing mode and try again",
    }
}

/// The step a prompt shows, with its number.
fn prompt_progress(prompt: Prompt) -> Progress {
    let (step, shown) = match prompt {
        Prompt::Pin => (PairingStep::NeedsPin, None),
        Prompt::Passkey => (PairingStep::NeedsPasskey, None),
        Prompt::Confirm(n) => (PairingStep::ConfirmNumber, Some(n)),
        Prompt::Display(n) => (PairingStep::TypeOnDevice, Some(n)),
    };
    Progress {
        step,
        shown,
        battery_pct: None,
    }
}

/// The last prompt and whether it was answered, kept to name a refusal.
type LastPrompt = Arc<Mutex<Option<(Asked, bool)>>>;

/// `secrets` wrapped to report each prompt and remember it.
fn reporting_secrets(secrets: Secrets, report: Reporter, last: LastPrompt) -> Secrets {
    Arc::new(move |prompt| {
        report(prompt_progress(prompt));
        let answer = secrets(prompt);
        if let Ok(mut l) = last.lock() {
            *l = Some((prompt.into(), answer.is_some()));
        }
        if answer.is_some() && !matches!(prompt, Prompt::Display(_)) {
            report(Progress::at(PairingStep::Bonding));
        }
        answer
    })
}

/// Looks for `address` among the devices BlueZ knows, for up to [`SEARCH_TIME`].
async fn search(adapter: &Adapter, address: &str) -> Result<Peripheral, PairDeviceError> {
    let deadline = tokio::time::Instant::now() + SEARCH_TIME;
    loop {
        match find_peripheral(adapter, address).await {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => return Err(PairDeviceError::Bluetooth(e.to_string())),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PairDeviceError::NotFound);
        }
        tokio::time::sleep(SEARCH_POLL).await;
    }
}

/// Pairs `address` on the adapter named `adapter_name` (`adapter` is it, already scanning),
/// asking `secrets` for what BlueZ prompts, telling `report` each step, and records the
/// device in `store`. `Paired` is reported once it is recorded; a failure is returned, not
/// reported (the caller words it).
pub async fn pair_device(
    adapter: &Adapter,
    adapter_name: &str,
    address: &str,
    store: &PairedStore,
    secrets: Secrets,
    report: Reporter,
) -> Result<Paired, PairDeviceError> {
    let address = address.to_ascii_uppercase();
    report(Progress::at(PairingStep::Searching));
    let p = search(adapter, &address).await?;
    let props = p
        .properties()
        .await
        .map_err(|e| PairDeviceError::Bluetooth(e.to_string()))?
        .unwrap_or_default();
    let entry = super::catalog_entry(&props);
    let advert_only = entry.is_some_and(|e| e.model.advertisement_only);
    if !advert_only && entry.is_none_or(|e| e.model.bonding != Bonding::None) {
        report(Progress::at(PairingStep::Bonding));
        let last: LastPrompt = Arc::default();
        let wrapped = reporting_secrets(secrets, report.clone(), last.clone());
        if let Err(e) = pairing::pair(adapter_name, &address, wrapped).await {
            let last = last.lock().ok().and_then(|l| *l);
            return Err(match (e, last) {
                (PairError::Bus(e), _) => PairDeviceError::Bluetooth(e.to_string()),
                (PairError::Refused(_), Some((asked, false))) if asked != Asked::TypeOnDevice => {
                    PairDeviceError::NoAnswer(asked)
                }
                (PairError::Refused(_), last) => PairDeviceError::Refused(last.map(|l| l.0)),
            });
        }
    }
    let mut d = PairedDevice::new(&address);
    d.name = props.local_name.clone();
    d.model_id = entry.map(|e| e.model.id.clone());
    if !advert_only {
        let clock = entry.map_or(ClockSetting::Cts, |e| e.model.clock);
        let step_report = report.clone();
        let on_step = move |s: IdentifyStep| {
            step_report(match s {
                IdentifyStep::DeviceInformation => Progress::at(PairingStep::DeviceInformation),
                IdentifyStep::Battery => Progress::at(PairingStep::Battery),
                IdentifyStep::Clock { battery_pct } => Progress {
                    battery_pct,
                    ..Progress::at(PairingStep::Clock)
                },
            });
        };
        let identified = session::identify_reporting(&p, clock, &on_step).await;
        let _ = p.disconnect().await;
        let s = identified.map_err(PairDeviceError::Identify)?;
        d.manufacturer = s.dis.manufacturer;
        d.model = s.dis.model;
        d.serial = s.dis.serial;
        d.firmware = s.dis.firmware;
        d.battery_pct = s.battery_pct;
    }
    d.last_seen = Some(chrono::Utc::now());
    let (writer, entry_to_write) = (store.clone(), d.clone());
    tokio::task::spawn_blocking(move || writer.upsert(entry_to_write))
        .await
        .map_err(|e| PairDeviceError::Store(e.to_string()))?
        .map_err(|e| PairDeviceError::Store(e.to_string()))?;
    report(Progress {
        battery_pct: d.battery_pct,
        ..Progress::at(PairingStep::Paired)
    });
    Ok(Paired {
        device: d,
        single_bond: entry.is_some_and(|e| e.model.single_bond),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_named_after_what_was_asked() {
        assert_eq!(
            PairDeviceError::Refused(Some(Asked::Passkey)).to_string(),
            "The device refused the passkey: check the number on its screen and try again"
        );
        assert_eq!(
            PairDeviceError::NoAnswer(Asked::Passkey).to_string(),
            "No passkey was typed in time"
        );
        assert!(
            PairDeviceError::NotFound
                .to_string()
                .contains("cannot hear")
        );
        assert_eq!(
            prompt_progress(Prompt::Display(27_182)),
            Progress {
                step: PairingStep::TypeOnDevice,
                shown: Some(27_182),
                battery_pct: None
            }
        );
    }

    #[test]
    fn a_prompt_is_reported_before_it_is_asked_and_bonding_after_an_answer() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let report: Reporter = Arc::new(move |p| s.lock().unwrap().push(p.step));
        let last: LastPrompt = Arc::default();
        let s = seen.clone();
        let secrets: Secrets = Arc::new(move |_| {
            s.lock().unwrap().push(PairingStep::Searching); // marks "asked now"
            Some("123456".into())
        });
        let wrapped = reporting_secrets(secrets, report, last.clone());
        assert_eq!(wrapped(Prompt::Passkey).as_deref(), Some("123456"));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                PairingStep::NeedsPasskey,
                PairingStep::Searching,
                PairingStep::Bonding
            ]
        );
        assert_eq!(*last.lock().unwrap(), Some((Asked::Passkey, true)));
    }
}
