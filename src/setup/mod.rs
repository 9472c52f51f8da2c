//! Setup mode: the nurse sets up the home from her phone (the protocol side:
//! [`tm_protocol::setup`]).
//!
//! One [`SetupMode`] handle per enrolled run, shared by the actors that change their rhythm
//! while it is on:
//!
//! - the **command actor** ([`crate::sync::commands`]) polls every [`COMMAND_POLL`] instead
//!   of every heartbeat interval (MQTT pushes commands at once anyway), and its executor turns
//!   `setup`, `pair`, `pair-secret` and `unpair` into calls on [`SetupControl`];
//! - the **heartbeat actor** ([`crate::sync::heartbeat`]) sends a heartbeat every
//!   [`SETUP_HEARTBEAT`], and at once when a pairing reaches a new step, carrying
//!   [`SetupState`] (the devices in range and the pairings); once setup mode ends it sends one
//!   more without it and goes back to its interval;
//! - the **scanner** ([`scanner::Scanner`]) scans while setup mode is on and lists the health
//!   devices it hears every [`scanner::LIST_PERIOD`];
//! - **pairing jobs** ([`remote`]) run in the background, one device at a time, and wait for
//!   the nurse's `pair-secret` when the device asks for a passkey.
//!
//! Setup mode is on while `until` (wall clock) is in the future: a `setup` command sets it
//! (at most [`MAX_SETUP`] ahead), one in the past ends it, and a gateway just claimed starts in
//! it for [`FIRST_SETUP`]. Nothing stops it explicitly: every reader compares `until` with the
//! clock, so it ends by itself. The handle holds watch channels (readers wake on a change,
//! nothing polls a flag) and the slots where a pairing waits for its secret.

pub mod remote;
pub mod scanner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tm_protocol::setup::{MAX_NEARBY, MAX_PAIRINGS, NearbyDevice, PairingProgress, SetupState};
use tokio::sync::watch;

pub use remote::SetupControl;

/// The command poll's period in setup mode (the page waits for each tap's effect).
pub const COMMAND_POLL: Duration = Duration::from_secs(1);
/// The heartbeat's period in setup mode; a pairing step sends one at once besides.
pub const SETUP_HEARTBEAT: Duration = Duration::from_secs(2);
/// Setup mode of a gateway that was just claimed: the nurse is at the home with her phone.
pub const FIRST_SETUP: Duration = Duration::from_secs(10 * 60);
/// The furthest ahead a `setup` command may set `until`: a provider clock far ahead of the
/// gateway's cannot keep the radio scanning for hours.
pub const MAX_SETUP: Duration = Duration::from_secs(60 * 60);

/// The shared setup-mode handle (cheap to clone; clones share the state).
#[derive(Debug, Clone, Default)]
pub struct SetupMode {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// When setup mode ends (wall clock); `None` or a past instant: off.
    until: watch::Sender<Option<DateTime<Utc>>>,
    /// The health devices the scanner heard last, strongest first, at most [`MAX_NEARBY`].
    /// Read by the heartbeat; a change does not wake it (signal strengths change all the
    /// time).
    nearby: watch::Sender<Vec<NearbyDevice>>,
    /// The pairings of this setup, newest first, at most [`MAX_PAIRINGS`]; a change wakes the
    /// heartbeat so the page sees each step at once.
    pairings: watch::Sender<Vec<PairingProgress>>,
    /// Per upper-case address, where a pairing that waits for a secret receives it. The
    /// waiting side blocks on the other end (on a blocking thread, answering BlueZ); dropping
    /// the sender wakes it with nothing. Held only for an insert or a remove.
    secrets: Mutex<HashMap<String, std::sync::mpsc::SyncSender<String>>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            until: watch::Sender::new(None),
            nearby: watch::Sender::new(Vec::new()),
            pairings: watch::Sender::new(Vec::new()),
            secrets: Mutex::default(),
        }
    }
}

impl SetupMode {
    /// Setup mode off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Setup mode on until `until` (at most [`MAX_SETUP`] after `now`), or off when `until`
    /// is not after `now`. Starting a new setup forgets the pairings that ended in an earlier
    /// one. Returns the `until` in force.
    pub fn set_until(&self, until: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let max = now + chrono::Duration::from_std(MAX_SETUP).unwrap_or(chrono::Duration::MAX);
        let until = (until > now).then_some(until.min(max));
        if until.is_some() && !self.is_active(now) {
            self.inner
                .pairings
                .send_modify(|p| p.retain(|p| !p.step.is_final()));
        }
        if until.is_none() {
            self.inner.nearby.send_replace(Vec::new());
        }
        self.inner.until.send_replace(until);
        until
    }

    /// When setup mode ends, if it is on at `now`.
    pub fn until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (*self.inner.until.borrow()).filter(|u| *u > now)
    }

    /// Whether setup mode is on at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.until(now).is_some()
    }

    /// How long setup mode stays on after `now`; `None` when off.
    pub fn remaining(&self, now: DateTime<Utc>) -> Option<Duration> {
        self.until(now)
            .map(|u| (u - now).to_std().unwrap_or_default())
    }

    /// `setup` while setup mode is on (never past its end, plus a moment, so the reader wakes
    /// just after it), else `normal`.
    pub fn period(&self, normal: Duration, setup: Duration, now: DateTime<Utc>) -> Duration {
        match self.remaining(now) {
            Some(left) => setup.min(left + Duration::from_millis(20)),
            None => normal,
        }
    }

    /// Wakes on every change of `until` (a `setup` command).
    pub fn watch_until(&self) -> watch::Receiver<Option<DateTime<Utc>>> {
        self.inner.until.subscribe()
    }

    /// Wakes on every step of a pairing.
    pub fn watch_pairings(&self) -> watch::Receiver<Vec<PairingProgress>> {
        self.inner.pairings.subscribe()
    }

    /// What a heartbeat at `now` reports; `None` when setup mode is off.
    pub fn state(&self, now: DateTime<Utc>) -> Option<SetupState> {
        let until = self.until(now)?;
        Some(SetupState {
            until,
            nearby: self.inner.nearby.borrow().clone(),
            pairings: self.inner.pairings.borrow().clone(),
        })
    }

    /// The devices heard now (the scanner), cut to [`MAX_NEARBY`].
    pub fn set_nearby(&self, mut nearby: Vec<NearbyDevice>) {
        nearby.truncate(MAX_NEARBY);
        self.inner.nearby.send_if_modified(|n| {
            let changed = *n != nearby;
            *n = nearby;
            changed
        });
    }

    /// Records that the pairing of `address` is at `progress` now. A new pairing of an address
    /// (one at `Searching`) goes first; a later step replaces its entry in place, keeping the
    /// battery level once read.
    pub fn report(&self, address: &str, progress: &crate::ble::pair_device::Progress) {
        self.report_at(address, progress, None, Utc::now());
    }

    /// Records that the pairing of `address` failed because of `error`.
    pub fn report_failed(&self, address: &str, error: &crate::ble::pair_device::PairDeviceError) {
        let failed = crate::ble::pair_device::Progress {
            step: tm_protocol::setup::PairingStep::Failed,
            shown: None,
            battery_pct: None,
        };
        self.report_at(
            address,
            &failed,
            Some((error.to_string(), error.failure())),
            Utc::now(),
        );
    }

    fn report_at(
        &self,
        address: &str,
        progress: &crate::ble::pair_device::Progress,
        error: Option<(String, tm_protocol::setup::PairingFailure)>,
        at: DateTime<Utc>,
    ) {
        let address = address.to_ascii_uppercase();
        self.inner.pairings.send_modify(|all| {
            let existing = all.iter().position(|p| p.address == address);
            let starts = progress.step == tm_protocol::setup::PairingStep::Searching;
            let battery_pct = progress.battery_pct.or_else(|| {
                existing
                    .filter(|_| !starts)
                    .and_then(|i| all[i].battery_pct)
            });
            let entry = PairingProgress {
                address: address.clone(),
                step: progress.step,
                shown: progress.shown,
                failure: error.as_ref().map(|(_, kind)| *kind),
                error: error.map(|(text, _)| text),
                battery_pct,
                at,
            };
            match existing {
                Some(i) if !starts => all[i] = entry,
                Some(i) => {
                    all.remove(i);
                    all.insert(0, entry);
                }
                None => all.insert(0, entry),
            }
            all.truncate(MAX_PAIRINGS);
        });
    }

    /// Whether a pairing of `address` is under way (reported, not at a final step).
    pub fn pairing_under_way(&self, address: &str) -> bool {
        self.inner
            .pairings
            .borrow()
            .iter()
            .any(|p| p.address.eq_ignore_ascii_case(address) && !p.step.is_final())
    }

    /// Registers where the pairing job of `address` receives its secrets (for the job's
    /// whole run, so the slot exists before any prompt is reported).
    fn await_secret(&self, address: &str, slot: std::sync::mpsc::SyncSender<String>) {
        if let Ok(mut s) = self.inner.secrets.lock() {
            s.insert(address.to_ascii_uppercase(), slot);
        }
    }

    /// Drops the slot of `address`, waking a pairing that still waits with nothing.
    fn forget_secret(&self, address: &str) {
        if let Ok(mut s) = self.inner.secrets.lock() {
            s.remove(&address.to_ascii_uppercase());
        }
    }

    /// Hands `secret` to the pairing of `address` when it is at a step that asks for one (a
    /// PIN, a passkey, a confirmation); `false` otherwise.
    fn deliver_secret(&self, address: &str, secret: String) -> bool {
        use tm_protocol::setup::PairingStep::{ConfirmNumber, NeedsPasskey, NeedsPin};
        let asking = self.inner.pairings.borrow().iter().any(|p| {
            p.address.eq_ignore_ascii_case(address)
                && matches!(p.step, NeedsPin | NeedsPasskey | ConfirmNumber)
        });
        if !asking {
            return false;
        }
        let slots = self.inner.secrets.lock();
        slots.ok().is_some_and(|s| {
            s.get(&address.to_ascii_uppercase())
                .is_some_and(|tx| tx.try_send(secret).is_ok())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ble::pair_device::Progress;
    use tm_protocol::setup::PairingStep;

    fn at(step: PairingStep, battery_pct: Option<u8>) -> Progress {
        Progress {
            step,
            shown: None,
            battery_pct,
        }
    }

    #[test]
    fn setup_mode_ends_by_itself_and_is_capped() {
        let mode = SetupMode::new();
        let now = Utc::now();
        assert!(mode.state(now).is_none());
        let until = now + chrono::Duration::seconds(30);
        assert_eq!(mode.set_until(until, now), Some(until));
        assert!(mode.is_active(now));
        assert_eq!(mode.state(now).unwrap().until, until);
        assert!(!mode.is_active(until), "off at until");
        assert!(mode.state(until + chrono::Duration::seconds(1)).is_none());
        // The periods: the setup one, never past the end; the normal one once it ended.
        let normal = Duration::from_secs(60);
        assert_eq!(mode.period(normal, SETUP_HEARTBEAT, now), SETUP_HEARTBEAT);
        let late = until - chrono::Duration::milliseconds(500);
        assert_eq!(
            mode.period(normal, SETUP_HEARTBEAT, late),
            Duration::from_millis(520)
        );
        assert_eq!(mode.period(normal, SETUP_HEARTBEAT, until), normal);
        // Days ahead is cut to the cap; the past ends it.
        let far = mode
            .set_until(now + chrono::Duration::days(2), now)
            .unwrap();
        assert_eq!((far - now).to_std().unwrap(), MAX_SETUP);
        assert_eq!(
            mode.set_until(now - chrono::Duration::seconds(1), now),
            None
        );
        assert!(!mode.is_active(now));
    }

    #[test]
    fn pairings_are_newest_first_and_keep_their_battery() {
        let mode = SetupMode::new();
        let now = Utc::now();
        mode.set_until(now + chrono::Duration::minutes(5), now);
        mode.report("c0:ff:ee:00:00:01", &at(PairingStep::Searching, None));
        mode.report("C0:FF:EE:00:00:03", &at(PairingStep::Searching, None));
        mode.report("C0:FF:EE:00:00:01", &at(PairingStep::Clock, Some(88)));
        mode.report("C0:FF:EE:00:00:01", &at(PairingStep::Paired, None));
        let state = mode.state(now).unwrap();
        let steps: Vec<_> = state
            .pairings
            .iter()
            .map(|p| (p.address.as_str(), p.step, p.battery_pct))
            .collect();
        assert_eq!(
            steps,
            vec![
                ("C0:FF:EE:00:00:03", PairingStep::Searching, None),
                ("C0:FF:EE:00:00:01", PairingStep::Paired, Some(88)),
            ]
        );
        assert!(mode.pairing_under_way("c0:ff:ee:00:00:03"));
        assert!(!mode.pairing_under_way("C0:FF:EE:00:00:01"));
        mode.report_failed(
            "C0:FF:EE:00:00:03",
            &crate::ble::pair_device::PairDeviceError::NoAnswer(
                crate::ble::pair_device::Asked::Passkey,
            ),
        );
        let failed = &mode.state(now).unwrap().pairings[0];
        assert_eq!(
            failed.error.as_deref(),
            Some("No passkey was typed in time")
        );
        assert_eq!(
            failed.failure,
            Some(tm_protocol::setup::PairingFailure::NoAnswer)
        );
        // A new setup after this one ended forgets the finished pairings.
        mode.set_until(now, now);
        mode.set_until(now + chrono::Duration::minutes(5), now);
        assert!(mode.state(now).unwrap().pairings.is_empty());
        for i in 0..20 {
            mode.report(
                &format!("C0:FF:EE:00:01:{i:02X}"),
                &at(PairingStep::Searching, None),
            );
        }
        assert_eq!(mode.state(now).unwrap().pairings.len(), MAX_PAIRINGS);
    }

    #[test]
    fn a_secret_reaches_only_a_pairing_that_asks_for_one() {
        const OXI: &str = "C0:FF:EE:00:00:03";
        let mode = SetupMode::new();
        assert!(!mode.deliver_secret(OXI, "123456".into()), "no pairing");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        mode.await_secret("c0:ff:ee:00:00:03", tx);
        mode.report(OXI, &at(PairingStep::Bonding, None));
        assert!(
            !mode.deliver_secret(OXI, "123456".into()),
            "not asked for yet"
        );
        mode.report(OXI, &at(PairingStep::NeedsPasskey, None));
        assert!(mode.deliver_secret("c0:ff:ee:00:00:03", "123456".into()));
        assert_eq!(rx.try_recv().unwrap(), "123456");
        mode.report(OXI, &at(PairingStep::Failed, None));
        assert!(!mode.deliver_secret(OXI, "123456".into()), "ended");
        mode.forget_secret(OXI);
        assert!(
            rx.recv().is_err(),
            "a forgotten slot wakes the waiting side"
        );
    }
}
