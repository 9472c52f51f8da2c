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
//! One D-Bus session ([`Manager`]) is kept across retries: each session holds a connection for
//! the life of the process, so making one per retry would leak a connection per attempt. It is
//! replaced only when the bus itself went away.

use std::collections::HashMap;
use std::time::Duration;

use btleplug::platform::Manager;
use tokio_util::sync::CancellationToken;

use super::central::{BleOptions, Central};
use super::paired::PairedStore;
use super::{BleError, adapter_named};
use crate::stash::StashHandle;
use crate::store::{OutboxHandle, alarm};

/// First retry delay after a failure; doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest delay between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// Delay before attempt `failures + 1`.
pub fn retry_delay(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(6))
        .min(RETRY_MAX)
}

/// What the actor needs.
#[derive(Debug, Clone)]
pub struct BleActor {
    pub opts: BleOptions,
    pub store: PairedStore,
    pub stash: StashHandle,
    pub outbox: OutboxHandle,
}

impl BleActor {
    /// Runs until `cancel` fires. Never fails: BLE trouble is an alarm, not a reason to stop
    /// syncing what is already in the outbox.
    pub async fn run(self, cancel: CancellationToken) {
        let mut manager: Option<Manager> = None;
        let mut failures = 0u32;
        while !cancel.is_cancelled() {
            let outcome = self.attempt(&mut manager, &mut failures, &cancel).await;
            if cancel.is_cancelled() {
                break;
            }
            let error = match outcome {
                Ok(()) => "the Bluetooth side stopped".to_string(),
                Err(e) => {
                    if e.to_string().contains("Disconnected") {
                        manager = None;
                    }
                    e.to_string()
                }
            };
            failures = failures.saturating_add(1);
            let delay = retry_delay(failures);
            tracing::error!(
                stage = "ble",
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
                tracing::error!(stage = "ble", error = %e, "cannot record the Bluetooth alarm");
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One run of the central; clears the alarm (and the failure count) once discovery runs.
    async fn attempt(
        &self,
        manager: &mut Option<Manager>,
        failures: &mut u32,
        cancel: &CancellationToken,
    ) -> Result<(), BleError> {
        let m = match manager {
            Some(m) => m.clone(),
            None => manager.insert(Manager::new().await?).clone(),
        };
        let adapter = adapter_named(&m, &self.opts.adapter).await?;
        let (mut central, mut status) =
            Central::new(self.opts.clone(), self.store.clone(), self.stash.clone());
        central.high_water = self.high_water_marks().await;
        let running = central.run_on(adapter, cancel.child_token());
        tokio::pin!(running);
        tokio::select! {
            result = &mut running => return result,
            up = async { status.wait_for(|s| s.discovering).await.is_ok() } => {
                if up {
                    tracing::info!(stage = "ble", "discovery running");
                    *failures = 0;
                    if let Err(e) = self.outbox.set_alarm(alarm::BLE_UNAVAILABLE, None).await {
                        tracing::error!(stage = "ble", error = %e, "cannot clear the Bluetooth alarm");
                    }
                }
            }
        }
        running.await
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
                    tracing::warn!(stage = "ble", error = %e, "cannot read a high-water mark")
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
