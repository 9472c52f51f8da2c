//! The setup commands of the nurse's page, as the command executor calls them: enter or end
//! setup mode, pair a device in the background, hand a pairing the secret it waits for, unpair.
//!
//! **A pairing is a job**, spawned at once so the command actor stays free: the `pair-secret`
//! that the same pairing needs arrives as another command while it waits. Jobs run one at a
//! time (BlueZ sends every prompt to one default agent, so two bonds at once could answer each
//! other's prompts); a second `pair` waits at `searching`. Each job holds a [`ScanLease`] and
//! runs [`pair_device`] with its steps reported to [`SetupMode`], ending at `paired` or at
//! `failed` with the reason in plain words.
//!
//! **The secret's way**: each job registers a one-place channel under the device's address in
//! [`SetupMode`] before it starts (so the slot exists by the time the page sees a prompt).
//! BlueZ asks our agent, which asks the job's [`Secrets`] on a blocking thread: the prompt's
//! step is reported and the callback waits on the channel up to [`SECRET_WAIT`]. The executor's
//! `pair-secret` finds the slot by address, and sends the digits into it only while that
//! pairing is at a step that asks for a secret. The secret is never logged and never stored; it
//! lives in that channel until BlueZ has it. When the job ends or the agent stops, the slot is
//! removed, which wakes a blocking thread still waiting at once.
//!
//! [`ScanLease`]: super::scanner::ScanLease

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::SetupMode;
use super::scanner::Radio;
use crate::ble::pair_device::{self, Progress, Reporter};
use crate::ble::paired::PairedStore;
use crate::ble::pairing::{Prompt, Secrets};

/// How long a pairing waits for the nurse's PIN, passkey or confirmation.
pub const SECRET_WAIT: Duration = Duration::from_secs(90);

/// Why a `pair-secret` found no taker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no pairing of that device is waiting for a secret")]
pub struct NoPairingWaiting;

/// What the executor drives; one per enrolled run (cheap to clone).
#[derive(Debug, Clone)]
pub struct SetupControl {
    /// Shared with the heartbeat, the command poll and the scanner.
    pub mode: SetupMode,
    /// The setup side's BlueZ session, shared with the scanner.
    pub radio: Radio,
    /// Where a paired device is recorded (and removed by `unpair`); the central watches it.
    pub store: PairedStore,
    /// The agent's token: pairing jobs stop with the run.
    pub cancel: CancellationToken,
    /// Held by the running job: one pairing at a time.
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl SetupControl {
    /// The setup side of one run.
    pub fn new(
        mode: SetupMode,
        radio: Radio,
        store: PairedStore,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            mode,
            radio,
            store,
            cancel,
            one_at_a_time: Arc::default(),
        }
    }

    /// `setup {until}`: the `until` in force, `None` when setup mode is now off.
    pub fn enter(&self, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let until = self.mode.set_until(until, Utc::now());
        match until {
            Some(u) => tracing::info!(until = %u, "setup mode on"),
            None => tracing::info!("setup mode off"),
        }
        until
    }

    /// `pair {address}`: starts the job and returns at once; `false` when a pairing of that
    /// device is already under way (it goes on).
    pub fn pair(&self, address: &str) -> bool {
        let address = address.to_ascii_uppercase();
        if self.mode.pairing_under_way(&address) {
            return false;
        }
        self.mode.report(
            &address,
            &Progress {
                step: tm_protocol::setup::PairingStep::Searching,
                shown: None,
                battery_pct: None,
            },
        );
        let job = self.clone();
        let span = tracing::info_span!("pairing", device = %address);
        tokio::spawn(async move { job.run_job(address).await }.instrument(span));
        true
    }

    /// `pair-secret {address, secret}`: hands `secret` to the pairing of `address` that waits.
    pub fn secret(&self, address: &str, secret: &str) -> Result<(), NoPairingWaiting> {
        if self.mode.deliver_secret(address, secret.trim().to_owned()) {
            Ok(())
        } else {
            Err(NoPairingWaiting)
        }
    }

    /// `unpair {address}`: removes the bond and the entry (the central stops its link);
    /// whether the device was paired.
    pub async fn unpair(&self, address: &str) -> Result<bool, String> {
        crate::ble::pairing::unpair(self.radio.adapter_name(), address)
            .await
            .map_err(|e| e.to_string())?;
        let store = self.store.clone();
        let address_owned = address.to_owned();
        let removed = tokio::task::spawn_blocking(move || store.remove(&address_owned))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        self.mode.report(
            address,
            &Progress {
                step: tm_protocol::setup::PairingStep::Unpaired,
                shown: None,
                battery_pct: None,
            },
        );
        Ok(removed)
    }

    async fn run_job(self, address: String) {
        let cancel = self.cancel.clone();
        tokio::select! {
            () = cancel.cancelled() => {
                // Wakes a blocking thread that still waits for a secret.
                self.mode.forget_secret(&address);
            }
            () = self.pair_one(&address) => {}
        }
    }

    async fn pair_one(&self, address: &str) {
        let _turn = self.one_at_a_time.lock().await;
        let (slot, secrets) = std::sync::mpsc::sync_channel(1);
        self.mode.await_secret(address, slot);
        let lease = match self.radio.scan().await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %e, "pairing: cannot scan");
                self.mode.report_failed(
                    address,
                    &pair_device::PairDeviceError::Bluetooth(e.to_string()),
                );
                return;
            }
        };
        let report: Reporter = {
            let (mode, address) = (self.mode.clone(), address.to_owned());
            Arc::new(move |p: Progress| {
                tracing::info!(step = ?p.step, "pairing step");
                mode.report(&address, &p);
            })
        };
        let result = pair_device::pair_device(
            &lease.adapter,
            self.radio.adapter_name(),
            address,
            &self.store,
            waiting_for(secrets),
            report,
        )
        .await;
        drop(lease);
        self.mode.forget_secret(address);
        match result {
            Ok(paired) => {
                tracing::info!(model = ?paired.device.model_id, "paired from the setup page");
            }
            Err(e) => {
                tracing::warn!(error = %e, "pairing failed");
                self.mode.report_failed(address, &e);
            }
        }
    }
}

/// The secrets of a remote pairing: each prompt waits for the next `pair-secret` (up to
/// [`SECRET_WAIT`]) on the job's channel; a number to type on the device needs no answer.
fn waiting_for(secrets: std::sync::mpsc::Receiver<String>) -> Secrets {
    let secrets = std::sync::Mutex::new(secrets);
    Arc::new(move |prompt| {
        if matches!(prompt, Prompt::Display(_)) {
            return None;
        }
        // The page may answer as soon as it sees the prompt's step, which is reported just
        // before this runs: a secret already in the channel is this prompt's answer.
        let secrets = secrets.lock().ok()?;
        secrets.recv_timeout(SECRET_WAIT).ok()
    })
}
