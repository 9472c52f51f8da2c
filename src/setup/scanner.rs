//! The radio of setup mode and the scanner that lists the health devices in range.
//!
//! [`Radio`] is one D-Bus session to BlueZ for the whole setup side, opened at first use and
//! kept (a session holds its connection for the life of the process, so one per scan or per
//! pairing would leak connections). Scanning is leased: the first [`ScanLease`] starts
//! discovery on this session, the last one dropped stops it. The scanner holds one for as long
//! as setup mode is on and every pairing job holds one while it searches and bonds, so neither
//! stops the other's scan. (BlueZ counts discovery per client: the agent's central keeps its
//! own.)
//!
//! [`Scanner`] waits for setup mode, then every [`LIST_PERIOD`] lists the devices BlueZ knows,
//! keeps those the embedded catalog recognises, marks the paired ones (the paired-devices
//! file) and hands the strongest [`tm_protocol::setup::MAX_NEARBY`] to [`SetupMode`]. When
//! setup mode ends it drops its lease and clears the list.

use std::sync::Arc;
use std::time::Duration;

use btleplug::api::{Central as _, Peripheral as _, ScanFilter};
use btleplug::platform::{Adapter, Manager};
use chrono::Utc;
use tm_protocol::setup::NearbyDevice;
use tokio_util::sync::CancellationToken;

use super::SetupMode;
use crate::ble::BleError;
use crate::ble::paired::PairedStore;

/// How often the devices in range are listed while setup mode is on.
pub const LIST_PERIOD: Duration = Duration::from_secs(2);

/// The setup side's session to BlueZ (cheap to clone).
#[derive(Debug, Clone)]
pub struct Radio {
    /// The configured adapter (`hci0`).
    adapter: String,
    /// The session, opened at first use, and the leases out.
    state: Arc<tokio::sync::Mutex<RadioState>>,
}

#[derive(Debug, Default)]
struct RadioState {
    /// `None` until a lease first succeeded in opening it; a failed attempt keeps nothing.
    manager: Option<Manager>,
    /// Leases alive: discovery runs on this session while it is above zero.
    leases: usize,
}

/// Discovery on the setup side's session while this is held; dropping it gives it back.
#[derive(Debug)]
pub struct ScanLease {
    /// The configured adapter on the setup side's session, scanning.
    pub adapter: Adapter,
    radio: Radio,
}

impl Drop for ScanLease {
    fn drop(&mut self) {
        let (radio, adapter) = (self.radio.clone(), self.adapter.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { radio.give_back(&adapter).await });
        }
    }
}

impl Radio {
    /// The radio of the adapter named `adapter`; nothing is opened yet.
    pub fn new(adapter: &str) -> Self {
        Self {
            adapter: adapter.to_owned(),
            state: Arc::default(),
        }
    }

    /// The configured adapter's name (for the bond, which goes through our own D-Bus agent).
    pub fn adapter_name(&self) -> &str {
        &self.adapter
    }

    /// A lease of the scan, starting discovery if no one else holds one.
    pub async fn scan(&self) -> Result<ScanLease, BleError> {
        let mut state = self.state.lock().await;
        if state.manager.is_none() {
            state.manager = Some(Manager::new().await?);
        }
        let manager = state.manager.as_ref().ok_or(BleError::Stopped)?;
        let adapter = crate::ble::adapter_named(manager, &self.adapter).await?;
        if state.leases == 0 {
            adapter.start_scan(ScanFilter::default()).await?;
        }
        state.leases += 1;
        Ok(ScanLease {
            adapter,
            radio: self.clone(),
        })
    }

    async fn give_back(&self, adapter: &Adapter) {
        let mut state = self.state.lock().await;
        state.leases = state.leases.saturating_sub(1);
        if state.leases == 0 {
            let _ = adapter.stop_scan().await;
        }
    }
}

/// The actor listing the devices in range during setup mode.
#[derive(Debug)]
pub struct Scanner {
    /// Read for `until`; receives the lists.
    pub mode: SetupMode,
    /// Shared with the pairing jobs.
    pub radio: Radio,
    /// The paired-devices file, read at each listing to mark the paired devices.
    pub store: PairedStore,
}

impl Scanner {
    /// Runs until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut until = self.mode.watch_until();
        loop {
            while !self.mode.is_active(Utc::now()) {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    changed = until.changed() => if changed.is_err() { return },
                }
            }
            let lease = match self.radio.scan().await {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::warn!(error = %e, "setup mode: cannot scan; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(LIST_PERIOD) => {}
                    }
                    continue;
                }
            };
            tracing::info!("setup mode: scanning for health devices");
            loop {
                match nearby(&lease.adapter, &self.store).await {
                    Ok(found) => self.mode.set_nearby(found),
                    Err(e) => tracing::debug!(error = %e, "setup mode: listing devices failed"),
                }
                let Some(left) = self.mode.remaining(Utc::now()) else {
                    break;
                };
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(LIST_PERIOD.min(left)) => {}
                    _ = until.changed() => {}
                }
                if !self.mode.is_active(Utc::now()) {
                    break;
                }
            }
            drop(lease);
            self.mode.set_nearby(Vec::new());
            tracing::info!("setup mode ended: scanning stopped");
        }
    }
}

/// The recognised health devices BlueZ knows on `adapter`, strongest first.
async fn nearby(adapter: &Adapter, store: &PairedStore) -> Result<Vec<NearbyDevice>, BleError> {
    let paired: Vec<String> = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.load())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.address.to_ascii_uppercase())
            .collect()
    };
    let mut found = Vec::new();
    for p in adapter.peripherals().await? {
        let Ok(Some(props)) = p.properties().await else {
            continue;
        };
        let Some(entry) = crate::ble::catalog_entry(&props) else {
            continue;
        };
        let address = p.address().to_string().to_ascii_uppercase();
        found.push(NearbyDevice {
            paired: paired.contains(&address),
            address,
            name: props.local_name.clone(),
            model_id: Some(entry.model.id.clone()),
            rssi_dbm: props.rssi,
        });
    }
    found.sort_by(|a, b| {
        b.rssi_dbm
            .unwrap_or(i16::MIN)
            .cmp(&a.rssi_dbm.unwrap_or(i16::MIN))
            .then_with(|| a.address.cmp(&b.address))
    });
    found.truncate(tm_protocol::setup::MAX_NEARBY);
    Ok(found)
}
