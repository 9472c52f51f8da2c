//! The BLE actor of `tm-gateway run`: keeps the [`Central`] running for as long as the agent
//! runs, whatever BlueZ does.
//!
//! When BlueZ is not on the bus, the adapter is missing or the central fails, the actor logs at
//! ERROR, raises the [`alarm::BLE_UNAVAILABLE`] alarm (shown by `tm-gateway status` and carried
//! by the heartbeat) and retries with exponential backoff; sync and the outbox carry on. The
//! alarm is cleared as soon as discovery runs again.
//!
//! Before each start the record high-water marks of the paired devices are read from the
//! outbox, so a link fetches stored records after the last sequence actually committed.
//!
//! **Re-read** (the provider's `reread-devices` command, through a [`RereadHandle`]): the
//! current central is stopped (every link disconnects, discovery stops) and a new one starts at
//! once, as a normal restart: no alarm, no failure counted. Its links connect to every paired
//! device again, and RACP devices are asked for the records after the high-water mark, so a
//! record the device stored since the last connection is fetched and nothing committed is
//! fetched twice. The request is answered when discovery runs again (with the number of links
//! started), or with the error when BlueZ is unavailable; a request while the actor waits to
//! retry makes it retry at once.
//!
//! **Liveness**: the actor and its central tick a [`Beat`] at every turn, also while they wait
//! to retry, so the systemd watchdog ([`crate::health`]) sees the loop alive even without
//! BlueZ, and sees it stuck when a call into BlueZ never returns.
//!
//! One D-Bus session ([`Manager`]) is kept across retries: each session holds a connection for
//! the life of the process, so making one per retry would leak a connection per attempt. It is
//! replaced only when the bus itself went away.

use std::collections::HashMap;
use std::time::Duration;

use btleplug::platform::Manager;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::central::{BleOptions, Central};
use super::paired::PairedStore;
use super::{BleError, adapter_named};
use crate::health::Beat;
use crate::stash::StashHandle;
use crate::store::{OutboxHandle, alarm};

/// First retry delay after a failure; doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest delay between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// Re-read requests waiting for the actor. Each answers when discovery runs again, so more than
/// a few waiting means the actor is stuck; the sender then waits for room within its own
/// time limit ([`RereadHandle::reread`]).
pub const REREAD_REQUESTS_CAPACITY: usize = 4;

/// Delay before attempt `failures + 1` (a local adapter is looked at again: no jitter).
pub fn retry_delay(failures: u32) -> Duration {
    tm_protocol::backoff::Backoff::new(RETRY_FIRST, RETRY_MAX)
        .with_jitter(tm_protocol::backoff::Jitter::None)
        .delay_at(failures.saturating_sub(1))
}

/// The answer to a re-read: the number of links started, or why Bluetooth is unavailable.
type RereadReply = oneshot::Sender<Result<usize, String>>;

/// Asks the BLE actor to read every paired device again (cheap to clone).
#[derive(Debug, Clone)]
pub struct RereadHandle(mpsc::Sender<RereadReply>);

/// The BLE actor's end of the re-read requests.
#[derive(Debug)]
pub struct RereadRequests(mpsc::Receiver<RereadReply>);

/// A connected pair of [`RereadHandle`] and [`RereadRequests`].
pub fn reread_channel() -> (RereadHandle, RereadRequests) {
    let (tx, rx) = mpsc::channel(REREAD_REQUESTS_CAPACITY);
    (RereadHandle(tx), RereadRequests(rx))
}

impl RereadHandle {
    /// Asks for a re-read and waits, at most `limit`, until the BLE side runs again. Returns
    /// the number of device links it started.
    pub async fn reread(&self, limit: Duration) -> Result<usize, String> {
        let ask = async {
            let (tx, rx) = oneshot::channel();
            self.0
                .send(tx)
                .await
                .map_err(|_| "the BLE side is not running".to_string())?;
            rx.await
                .map_err(|_| "the BLE side stopped before reading the devices".to_string())?
        };
        tokio::time::timeout(limit, ask)
            .await
            .unwrap_or_else(|_| Err(format!("the BLE side did not restart within {limit:?}")))
    }
}

impl RereadRequests {
    /// The next request; never resolves once every handle is gone.
    async fn next(&mut self) -> RereadReply {
        match self.0.recv().await {
            Some(reply) => reply,
            None => std::future::pending().await,
        }
    }
}

/// What the actor needs. Each attempt builds a fresh [`Central`] from these; nothing of a
/// failed central is kept but the D-Bus session.
#[derive(Debug)]
pub struct BleActor {
    /// Copied into each central; `opts.adapter` is also named in the alarm message.
    pub opts: BleOptions,
    /// The paired-devices file: read before each start for the high-water marks, then by the
    /// central and its links.
    pub store: PairedStore,
    /// Handed to each central, so readings go to the outbox writer like any stash.
    pub stash: StashHandle,
    /// Used only to read the high-water marks and to raise or clear `ble-unavailable`; a
    /// failure to write the alarm is logged, never fatal.
    pub outbox: OutboxHandle,
    /// Re-read requests (the `reread-devices` command); answered once discovery runs again,
    /// or with the error when Bluetooth fails first.
    pub rereads: RereadRequests,
    /// Ticked at every turn of the actor and of its central, retry waits included (the
    /// systemd watchdog); `None` in tests.
    pub beat: Option<Beat>,
}

/// How one run of the central ended.
enum Ended {
    /// The agent stops.
    Cancelled,
    /// A re-read was requested: start again at once, as a normal restart.
    Reread,
    /// BlueZ failed, or the central stopped by itself.
    Failed(BleError),
}

impl BleActor {
    /// Runs until `cancel` fires. Never fails: BLE trouble is an alarm, not a reason to stop
    /// syncing what is already in the outbox.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut manager: Option<Manager> = None;
        let mut failures = 0u32;
        // Re-read requests answered once discovery runs again.
        let mut waiting: Vec<RereadReply> = Vec::new();
        while !cancel.is_cancelled() {
            self.tick();
            let error = match self
                .attempt(&mut manager, &mut failures, &mut waiting, &cancel)
                .await
            {
                Ended::Cancelled => break,
                Ended::Reread => {
                    tracing::info!("reading every paired device again, as requested");
                    continue;
                }
                Ended::Failed(e) => {
                    if e.to_string().contains("Disconnected") {
                        manager = None;
                    }
                    e.to_string()
                }
            };
            for reply in waiting.drain(..) {
                let _ = reply.send(Err(format!("Bluetooth unavailable: {error}")));
            }
            failures = failures.saturating_add(1);
            let delay = retry_delay(failures);
            tracing::error!(
                error = %error,
                retry_in_s = delay.as_secs(),
                "Bluetooth unavailable: no device is being read"
            );
            let message = format!(
                "Bluetooth unavailable ({error}); retrying. Check that bluetoothd runs and that \
                 ble.adapter = {:?} names an adapter of `bluetoothctl list`",
                self.opts.adapter
            );
            if let Err(e) = self
                .outbox
                .set_alarm(alarm::BLE_UNAVAILABLE, Some(message))
                .await
            {
                tracing::error!(error = %e, "cannot record the Bluetooth alarm");
            }
            self.wait_to_retry(delay, &mut waiting, &cancel).await;
        }
    }

    fn tick(&self) {
        if let Some(beat) = &self.beat {
            beat.tick();
        }
    }

    fn pulse(&self) -> tokio::time::Interval {
        let period = self.beat.as_ref().map_or(RETRY_MAX, Beat::pulse);
        let mut pulse = tokio::time::interval(period);
        pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pulse
    }

    /// Waits `delay` before the next attempt, turning every pulse; a re-read request ends the
    /// wait at once.
    async fn wait_to_retry(
        &mut self,
        delay: Duration,
        waiting: &mut Vec<RereadReply>,
        cancel: &CancellationToken,
    ) {
        let deadline = Instant::now() + delay;
        let mut pulse = self.pulse();
        loop {
            self.tick();
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => return,
                _ = pulse.tick() => {}
                reply = self.rereads.next() => {
                    tracing::info!("re-read requested: retrying Bluetooth now");
                    waiting.push(reply);
                    return;
                }
            }
        }
    }

    /// One run of the central; clears the alarm (and the failure count) and answers waiting
    /// re-reads once discovery runs.
    async fn attempt(
        &mut self,
        manager: &mut Option<Manager>,
        failures: &mut u32,
        waiting: &mut Vec<RereadReply>,
        cancel: &CancellationToken,
    ) -> Ended {
        let m = match manager {
            Some(m) => m.clone(),
            None => match Manager::new().await {
                Ok(m) => manager.insert(m).clone(),
                Err(e) => return Ended::Failed(e.into()),
            },
        };
        let adapter = match adapter_named(&m, &self.opts.adapter).await {
            Ok(a) => a,
            Err(e) => return Ended::Failed(e),
        };
        let (mut central, mut status) =
            Central::new(self.opts.clone(), self.store.clone(), self.stash.clone());
        central.high_water = self.high_water_marks().await;
        central.beat = self.beat.clone();
        let stop = cancel.child_token();
        let running = central.run_on(adapter, stop.clone());
        tokio::pin!(running);
        let mut up = false;
        loop {
            tokio::select! {
                result = &mut running => {
                    return match result {
                        Ok(()) if cancel.is_cancelled() => Ended::Cancelled,
                        Ok(()) => Ended::Failed(BleError::Stopped),
                        Err(e) => Ended::Failed(e),
                    };
                }
                ready = async {
                    status.wait_for(|s| s.discovering).await.map(|s| s.live_links).ok()
                }, if !up => {
                    up = true;
                    // None: the central is gone; its result follows.
                    let Some(links) = ready else { continue };
                    tracing::info!(links, "discovery running");
                    *failures = 0;
                    if let Err(e) = self.outbox.set_alarm(alarm::BLE_UNAVAILABLE, None).await {
                        tracing::error!(error = %e, "cannot clear the Bluetooth alarm");
                    }
                    for reply in waiting.drain(..) {
                        let _ = reply.send(Ok(links));
                    }
                }
                reply = self.rereads.next() => {
                    waiting.push(reply);
                    // Every link disconnects and discovery stops before the next start.
                    stop.cancel();
                    let _ = (&mut running).await;
                    return if cancel.is_cancelled() { Ended::Cancelled } else { Ended::Reread };
                }
            }
        }
    }

    /// Highest committed record sequence of each paired device, from the outbox.
    async fn high_water_marks(&self) -> HashMap<String, u32> {
        let store = self.store.clone();
        let paired = tokio::task::spawn_blocking(move || store.load())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut marks = HashMap::new();
        for d in paired {
            let address = d.address.to_ascii_uppercase();
            match self.outbox.high_water(address.clone()).await {
                Ok(Some(mark)) => {
                    marks.insert(address, mark);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a high-water mark")
                }
            }
        }
        marks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let secs: Vec<u64> = (1..=9).map(|f| retry_delay(f).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
