//! One task per paired device: the link state machine.
//!
//! ```text
//!   Idle --advertised--> Connecting --ok--> Subscribed --link lost--> Idle
//!                            |  ^                 
//!                          error |                
//!                            v  |                 
//!                          Backoff (exponential, with jitter)
//! ```
//! Every notification is captured with its receive time and stashed at once; the stash
//! resolves after the commit, and only then does the RACP high-water mark move. The task ends
//! when its cancellation token fires or its event channel closes: nothing is leaked.

use std::time::Duration;

use btleplug::api::Peripheral as _;
use btleplug::platform::Adapter;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::capture::{Capture, to_stashables};
use super::paired::{PairedDevice, PairedStore};
use super::session::{self, Session};
use super::{BleError, LinkEvent, short_uuid};
use crate::stash::{StashHandle, Stashable};

/// First backoff delay; doubles per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest backoff delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// First pause before a refused stash is tried again; doubles up to [`STASH_RETRY_MAX`].
pub const STASH_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two tries of a refused stash.
pub const STASH_RETRY_MAX: Duration = Duration::from_secs(10);
/// Shortest interval between two checks that a subscribed device is still connected.
pub const LIVENESS_CHECK: Duration = Duration::from_secs(1);
/// Records arriving this soon after subscription come from the device's memory.
pub const STORED_WINDOW: Duration = Duration::from_secs(1);

/// The link's lifecycle.
enum LinkState {
    /// Waiting for the device to advertise.
    Idle,
    /// Connecting and preparing (attempt number, from 0).
    Connecting(u32),
    /// Connected and subscribed; notifications flow to the stash.
    Subscribed(Box<Session>, tokio::time::Instant),
    /// Waiting before the next attempt.
    Backoff(u32),
    /// Shutting down.
    Stopped,
}

/// Everything one link task owns. The central starts one per paired device that needs a
/// connection (advertisement-only devices get none) and stops it through `cancel`.
pub struct Link {
    /// This link's copy of the device's paired-devices entry: updated as the device answers
    /// (Device Information, battery, last contact, highest sequence committed) and written
    /// back to the file, which keeps its `paired_at`. `last_sequence` starts at the higher of
    /// the file's and the outbox's, so a RACP fetch resumes after the last committed record.
    pub device: PairedDevice,
    /// The device's catalog model (clock setting, decode quirks); `None` when the catalog does
    /// not know its `model_id`: the clock is then set over CTS and no quirk applies.
    pub model: Option<&'static tm_devices::Model>,
    /// The adapter the central runs on, shared by every link.
    pub adapter: Adapter,
    /// Where decoded readings go; a capture waits for the commit (retrying a refusal) before
    /// the record high-water mark advances.
    pub stash: StashHandle,
    /// The paired-devices file, shared with the central, the heartbeat and the CLI; every
    /// write goes through its lock.
    pub store: PairedStore,
    /// Adverts and disconnects of this device from the central (at most
    /// [`super::central::LINK_EVENTS_CAPACITY`] queued; more are dropped). Closed: the device
    /// was unpaired or the central stopped, and the link stops.
    pub events: mpsc::Receiver<LinkEvent>,
    /// A child of the central's token: cancelled when the device is unpaired or the BLE side
    /// stops; a link connecting or subscribed then disconnects the device.
    pub cancel: CancellationToken,
    /// Longest a connection may take from `Connect` to a subscribed link (a device that never
    /// resolves its services is disconnected and retried after a backoff).
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("device", &self.device.address)
            .finish_non_exhaustive()
    }
}

/// Backoff delay before connection attempt `attempt + 1`: doubling from [`BACKOFF_BASE`] up
/// to [`BACKOFF_MAX`], the lower half of each step random (devices of one home that dropped
/// together do not reconnect in the same instant).
pub fn backoff_delay(attempt: u32) -> Duration {
    tm_protocol::backoff::Backoff::new(BACKOFF_BASE, BACKOFF_MAX)
        .with_jitter(tm_protocol::backoff::Jitter::Half)
        .delay_at(attempt)
}

impl Link {
    /// Runs the state machine until cancelled.
    pub async fn run(mut self) {
        let mut state = LinkState::Idle;
        loop {
            state = match state {
                LinkState::Idle => self.idle().await,
                LinkState::Connecting(attempt) => self.connect(attempt).await,
                LinkState::Subscribed(session, since) => self.subscribed(*session, since).await,
                LinkState::Backoff(attempt) => {
                    tokio::select! {
                        _ = self.cancel.cancelled() => LinkState::Stopped,
                        _ = tokio::time::sleep(backoff_delay(attempt)) => LinkState::Connecting(attempt),
                    }
                }
                LinkState::Stopped => return,
            };
        }
    }

    async fn idle(&mut self) -> LinkState {
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return LinkState::Stopped,
                ev = self.events.recv() => match ev {
                    Some(LinkEvent::Advertised) => return LinkState::Connecting(0),
                    Some(_) => {}
                    None => return LinkState::Stopped,
                },
            }
        }
    }

    async fn connect(&mut self, attempt: u32) -> LinkState {
        let cancel = self.cancel.clone();
        let result = tokio::select! {
            r = self.try_connect() => r,
            // Unpaired, re-read or shutting down: give up this attempt at once.
            () = cancel.cancelled() => {
                self.abandon_connection().await;
                return LinkState::Stopped;
            }
        };
        match result {
            Ok(session) => {
                tracing::info!("subscribed");
                LinkState::Subscribed(Box::new(session), tokio::time::Instant::now())
            }
            Err(BleError::DeviceGone) => LinkState::Idle,
            Err(e) => {
                tracing::warn!(attempt, error = %e, "connection failed");
                // Drain adverts that queued up while connecting; the backoff decides the retry.
                while self.events.try_recv().is_ok() {}
                LinkState::Backoff(attempt + 1)
            }
        }
    }

    /// Disconnects a connection left half-made by a cancelled attempt (best effort).
    async fn abandon_connection(&self) {
        if let Ok(Some(p)) = super::find_peripheral(&self.adapter, &self.device.address).await {
            let _ = tokio::time::timeout(Duration::from_secs(5), p.disconnect()).await;
        }
    }

    async fn try_connect(&mut self) -> Result<Session, BleError> {
        let peripheral = super::find_peripheral(&self.adapter, &self.device.address)
            .await?
            .ok_or(BleError::DeviceGone)?;
        let clock = self
            .model
            .map(|m| m.clock)
            .unwrap_or(tm_devices::catalog::ClockSetting::Cts);
        let racp_from = self.device.last_sequence.map(|s| s + 1);
        let opened = tokio::time::timeout(
            self.connect_timeout,
            session::open(peripheral.clone(), clock, racp_from),
        )
        .await
        .unwrap_or(Err(BleError::Timeout("connect and subscribe")));
        let session = match opened {
            Ok(s) => s,
            Err(e) => {
                let _ = peripheral.disconnect().await;
                return Err(e);
            }
        };
        let dis = session.dis.clone();
        let battery = session.battery_pct;
        self.device.manufacturer = dis.manufacturer.or(self.device.manufacturer.take());
        self.device.model = dis.model.or(self.device.model.take());
        self.device.serial = dis.serial.or(self.device.serial.take());
        self.device.firmware = dis.firmware.or(self.device.firmware.take());
        self.device.battery_pct = battery.or(self.device.battery_pct);
        self.device.last_seen = Some(chrono::Utc::now());
        self.persist().await;
        Ok(session)
    }

    async fn subscribed(&mut self, mut s: Session, since: tokio::time::Instant) -> LinkState {
        let mut checked = since;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    let _ = s.peripheral.disconnect().await;
                    return LinkState::Stopped;
                }
                ev = self.events.recv() => match ev {
                    Some(LinkEvent::Disconnected) => {
                        // A disconnect of an earlier attempt can arrive late: trust BlueZ's
                        // current state, not the event.
                        if s.peripheral.is_connected().await.unwrap_or(false) {
                            continue;
                        }
                        tracing::info!("link lost");
                        return LinkState::Idle;
                    }
                    // A device advertising is not connected to us: a disconnect was missed
                    // (it happened while connecting). Checked at most once a second.
                    Some(LinkEvent::Advertised) => {
                        if checked.elapsed() >= LIVENESS_CHECK {
                            checked = tokio::time::Instant::now();
                            if !s.peripheral.is_connected().await.unwrap_or(true) {
                                tracing::info!("link lost");
                                return LinkState::Connecting(0);
                            }
                        }
                    }
                    // The central let go of this device (unpaired, or shutting down).
                    None => {
                        let _ = s.peripheral.disconnect().await;
                        return LinkState::Stopped;
                    }
                },
                n = s.notifications.next() => match n {
                    Some(n) => {
                        let ctx = (s.clock, s.battery_pct);
                        self.capture(ctx, short_uuid(&n.uuid), n.value, since.elapsed() < STORED_WINDOW).await
                    }
                    None => return LinkState::Idle,
                },
            }
        }
    }

    async fn capture(
        &mut self,
        ctx: (Option<super::capture::ClockObservation>, Option<u8>),
        uuid: Option<u16>,
        raw: Vec<u8>,
        stored: bool,
    ) {
        let Some(uuid) = uuid else { return };
        let capture = Capture {
            device: super::device_info(&self.device),
            source: tm_devices::Source::Characteristic(uuid),
            raw,
            received_at: chrono::Utc::now(),
            clock: ctx.0,
            stored,
            battery_pct: ctx.1,
            rssi_dbm: None,
        };
        let quirks = self
            .model
            .map(|m| m.decode_quirks())
            .unwrap_or(tm_devices::Quirks::NONE);
        let items = to_stashables(&capture, &quirks);
        if items.is_empty() {
            return;
        }
        let max_seq = items
            .iter()
            .filter_map(|i| match i {
                Stashable::Reading(r) => r.sequence,
                Stashable::Quarantined(_) => None,
            })
            .max();
        for item in &items {
            if let Stashable::Reading(r) = item {
                tracing::debug!(reading_id = %r.reading_id, characteristic = %r.characteristic, "reading captured");
            }
        }
        // Clinical data: wait for the commit, retrying while the outbox refuses (no jitter: the
        // outbox is local).
        let mut retry = tm_protocol::backoff::Backoff::new(STASH_RETRY_FIRST, STASH_RETRY_MAX)
            .with_jitter(tm_protocol::backoff::Jitter::None);
        loop {
            match self.stash.stash(items.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "outbox refused readings; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(retry.next_delay()) => {}
                    }
                }
            }
        }
        self.device.last_reading_at = Some(capture.received_at);
        if let Some(seq) = max_seq {
            self.device.last_sequence = Some(self.device.last_sequence.map_or(seq, |s| s.max(seq)));
        }
        self.persist().await;
    }

    async fn persist(&self) {
        let (store, device) = (self.store.clone(), self.device.clone());
        let res = tokio::task::spawn_blocking(move || {
            store.update(&device.address.clone(), move |d| {
                let paired_at = d.paired_at;
                *d = device;
                d.paired_at = paired_at;
            })
        })
        .await;
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "cannot update the paired-devices file");
        }
    }
}
