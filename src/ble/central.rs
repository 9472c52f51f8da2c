//! The central: discovery with a watchdog, event routing to the link tasks, and the
//! advertisement-only devices.
//!
//! Discovery is restarted when BlueZ has been quiet for [`BleOptions::quiet`] (scanning stalls
//! after hours on a Pi, gatt.md §5). btleplug does not filter by service itself, and BlueZ's
//! UUID filter can hide Xiaomi service-data adverts, so the filter is re-checked here.

use std::collections::HashMap;
use std::time::Duration;

use btleplug::api::{Central as _, CentralEvent, Peripheral as _, ScanFilter};
use btleplug::platform::{Adapter, PeripheralId};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::capture::{AdvertCollapser, Capture, to_stashables};
use super::link::Link;
use super::paired::{PairedDevice, PairedStore};
use super::{BleError, HEALTH_SERVICES, LinkEvent, device_info, short_uuid, uuid16};
use crate::stash::StashHandle;

/// Capacity of a link's event channel. When full, the advertisement is dropped: another one
/// follows within a second, and no clinical data travels on this channel.
pub const LINK_EVENTS_CAPACITY: usize = 16;

/// Settings of the BLE side.
#[derive(Debug, Clone)]
pub struct BleOptions {
    /// Adapter name (`hci0`).
    pub adapter: String,
    /// Restart discovery after this long without any event from BlueZ.
    pub quiet: Duration,
}

fn catalog_model(d: &PairedDevice) -> Option<&'static tm_devices::Model> {
    let catalog = tm_devices::Catalog::embedded().ok()?;
    d.model_id
        .as_deref()
        .and_then(|id| catalog.by_id(id))
        .map(|e| &e.model)
}

async fn start_scan(adapter: &Adapter) -> Result<(), BleError> {
    let services = HEALTH_SERVICES.iter().map(|u| uuid16(*u)).collect();
    adapter.start_scan(ScanFilter { services }).await?;
    Ok(())
}

/// Runs the BLE side for the paired devices in `store` until `cancel` fires.
pub async fn run(
    opts: BleOptions,
    store: PairedStore,
    stash: StashHandle,
    cancel: CancellationToken,
) -> Result<(), BleError> {
    let adapter = super::open_adapter(&opts.adapter).await?;
    let paired = store.load().unwrap_or_default();
    let mut links: HashMap<String, mpsc::Sender<LinkEvent>> = HashMap::new();
    let mut adverts_only: HashMap<String, PairedDevice> = HashMap::new();
    let mut tasks = JoinSet::new();
    for d in paired {
        let model = catalog_model(&d);
        if model.is_some_and(|m| m.advertisement_only) {
            adverts_only.insert(d.address.to_ascii_uppercase(), d);
            continue;
        }
        let (tx, rx) = mpsc::channel(LINK_EVENTS_CAPACITY);
        links.insert(d.address.to_ascii_uppercase(), tx);
        let link = Link {
            device: d,
            model,
            adapter: adapter.clone(),
            stash: stash.clone(),
            store: store.clone(),
            events: rx,
            cancel: cancel.child_token(),
        };
        tasks.spawn(link.run());
    }
    let mut events = adapter.events().await?;
    start_scan(&adapter).await?;
    let mut names: HashMap<PeripheralId, String> = HashMap::new();
    let mut collapser = AdvertCollapser::default();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => break,
            ev = tokio::time::timeout(opts.quiet, events.next()) => ev,
        };
        let ev = match ev {
            Err(_) => {
                tracing::warn!(stage = "discover", "BlueZ quiet; restarting discovery");
                let _ = adapter.stop_scan().await;
                start_scan(&adapter).await?;
                continue;
            }
            Ok(None) => break,
            Ok(Some(ev)) => ev,
        };
        let (id, link_event) = match &ev {
            CentralEvent::DeviceDiscovered(id) | CentralEvent::DeviceUpdated(id) => {
                (id.clone(), LinkEvent::Advertised)
            }
            CentralEvent::ServiceDataAdvertisement { id, .. }
            | CentralEvent::ServicesAdvertisement { id, .. }
            | CentralEvent::ManufacturerDataAdvertisement { id, .. }
            | CentralEvent::RssiUpdate { id, .. } => (id.clone(), LinkEvent::Advertised),
            CentralEvent::DeviceDisconnected(id) => (id.clone(), LinkEvent::Disconnected),
            _ => continue,
        };
        let address = match names.get(&id) {
            Some(a) => a.clone(),
            None => match adapter.peripheral(&id).await {
                Ok(p) => {
                    let a = p.address().to_string().to_ascii_uppercase();
                    names.insert(id.clone(), a.clone());
                    a
                }
                Err(_) => continue,
            },
        };
        if let Some(tx) = links.get(&address) {
            let _ = tx.try_send(link_event);
        }
        if let (CentralEvent::ServiceDataAdvertisement { service_data, .. }, Some(dev)) =
            (&ev, adverts_only.get(&address))
        {
            for (uuid, raw) in service_data {
                let Some(short) = short_uuid(uuid) else {
                    continue;
                };
                let now = chrono::Utc::now();
                if !collapser.admit(&address, raw, now) {
                    continue;
                }
                let capture = Capture {
                    device: device_info(dev),
                    source: tm_devices::Source::ServiceData(short),
                    raw: raw.clone(),
                    received_at: now,
                    clock: None,
                    stored: false,
                    battery_pct: None,
                    rssi_dbm: None,
                };
                let items = to_stashables(&capture, &tm_devices::Quirks::NONE);
                if !items.is_empty() && stash.stash(items).await.is_err() {
                    tracing::error!(
                        stage = "stash",
                        "outbox closed; advertisement reading not kept"
                    );
                }
            }
        }
    }
    drop(links);
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    let _ = adapter.stop_scan().await;
    Ok(())
}
