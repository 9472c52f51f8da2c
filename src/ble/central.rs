//! The central: discovery with a watchdog, one link task per paired device, event routing to
//! the link tasks, and the advertisement-only devices.
//!
//! BlueZ's signals come from [`super::signals`]: an advert or a link loss of a paired device is
//! routed to its link task, or read on the spot for an advertisement-only device; the bus does
//! not deliver the adverts of other devices at all. Discovery is restarted when no paired
//! device advertised for [`BleOptions::quiet`] (scanning stalls after hours on a Pi,
//! docs/gatt.md §5; when the devices are merely asleep the restart costs three calls).
//!
//! The paired-devices file is re-read when it changes ([`super::paired_watch`]), and every
//! [`BleOptions::paired_reload`] as a fallback: a device the nurse pairs while the agent runs
//! gets its link task, and the task of a device she unpairs is cancelled and reaped. [`CentralStatus::live_links`] counts the tasks actually alive.
//!
//! The event loop ticks [`Central::beat`] at every turn and turns at least every
//! [`crate::health::Beat::pulse`] even when BlueZ says nothing: the systemd watchdog sees it
//! alive while it waits, and stuck when a call into BlueZ never returns.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use btleplug::api::{Central as _, ScanFilter};
use btleplug::platform::Adapter;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::capture::{AdvertCollapser, Capture, to_stashables};
use super::link::Link;
use super::paired::{PairedDevice, PairedStore};
use super::paired_watch::PairedChanges;
use super::signals::{DeviceSignal, DeviceSignals};
use super::{BleError, HEALTH_SERVICES, LinkEvent, device_info, uuid16};
use crate::stash::StashHandle;

/// Capacity of a link's event channel. When full, the advertisement is dropped: another one
/// follows within a second, and no clinical data travels on this channel.
pub const LINK_EVENTS_CAPACITY: usize = 16;

/// Settings of the BLE side; [`BleOptions::new`] gives the production values.
#[derive(Debug, Clone)]
pub struct BleOptions {
    /// Adapter name (`hci0`), from the configuration's `adapter`.
    pub adapter: String,
    /// Discovery is stopped and started again after this long without a signal of a paired
    /// device or a newly seen one (60 s): a scan that went silent is not noticed otherwise.
    pub quiet: Duration,
    /// Longest a connection may take from `Connect` to a subscribed link (30 s), copied into
    /// every [`Link`]; past it the device is disconnected and retried after a backoff.
    pub connect_timeout: Duration,
    /// How often the paired-devices file is re-read even when no change was noticed (30 s;
    /// changes are noticed at once through inotify, this covers a file system without it).
    /// Devices paired or unpaired by the CLI get or lose their link without a restart. Also
    /// the central's pulse without a watchdog beat.
    pub paired_reload: Duration,
}

impl BleOptions {
    /// The production settings for `adapter`.
    pub fn new(adapter: &str) -> Self {
        Self {
            adapter: adapter.to_string(),
            quiet: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            paired_reload: Duration::from_secs(30),
        }
    }
}

/// What the central reports while it runs (the supervisor's alarm, tests), over a watch
/// channel: readers see the latest value only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CentralStatus {
    /// The adapter answered and discovery runs; `false` again once the central stopped.
    pub discovering: bool,
    /// Link tasks alive (one per paired device that needs a connection; advertisement-only
    /// devices are not counted); 0 once the central stopped.
    pub live_links: usize,
    /// Times discovery was started by this central: once at start, plus once per restart
    /// after no paired device was heard for [`BleOptions::quiet`].
    pub discovery_starts: u32,
}

/// The BLE side for the paired devices in `store`.
#[derive(Debug)]
pub struct Central {
    /// Adapter, timeouts and the reload period.
    pub opts: BleOptions,
    /// The paired-devices file, re-read when it changes (and every `opts.paired_reload`);
    /// each link writes its own device's entry back to it.
    pub store: PairedStore,
    /// Handed to every link and used for the advertisement-only devices read here.
    pub stash: StashHandle,
    /// Highest committed record sequence per device address (upper case), read from the
    /// outbox: RACP fetches start after it even when the paired-devices file lags behind.
    pub high_water: HashMap<String, u32>,
    /// Sending side of the status; the supervisor watches it to clear `ble-unavailable`.
    pub status: watch::Sender<CentralStatus>,
    /// Ticked at every turn of the event loop (the systemd watchdog); none in tests.
    pub beat: Option<crate::health::Beat>,
}

/// The live link tasks and the advertisement-only devices, keyed by upper-case address.
struct Links {
    /// Each connecting device's event sender and its link's token (cancelled when unpaired).
    links: HashMap<String, (mpsc::Sender<LinkEvent>, CancellationToken)>,
    /// Devices read from their adverts alone (catalog `advertisement_only`): no link task.
    adverts_only: HashMap<String, PairedDevice>,
    /// The link tasks; all of them are joined before the central returns.
    tasks: JoinSet<()>,
}

impl Links {
    /// The addresses whose adverts and link changes the central wants: every paired device
    /// with a link task or read from its adverts.
    fn addresses(&self) -> HashSet<&str> {
        self.links
            .keys()
            .chain(self.adverts_only.keys())
            .map(String::as_str)
            .collect()
    }
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

async fn load_paired(store: &PairedStore) -> Vec<PairedDevice> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.load()).await {
        Ok(Ok(all)) => all,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the paired devices");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// The next change of the paired devices' file; never, without a watch (the timer re-reads).
async fn changed_paired(watch: &mut Option<PairedChanges>) -> std::io::Result<()> {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// Runs the BLE side for the paired devices in `store` until `cancel` fires.
pub async fn run(
    opts: BleOptions,
    store: PairedStore,
    stash: StashHandle,
    cancel: CancellationToken,
) -> Result<(), BleError> {
    let (central, _) = Central::new(opts, store, stash);
    central.run(cancel).await
}

impl Central {
    /// A central and the receiving end of its status.
    pub fn new(
        opts: BleOptions,
        store: PairedStore,
        stash: StashHandle,
    ) -> (Self, watch::Receiver<CentralStatus>) {
        let (status, rx) = watch::channel(CentralStatus::default());
        let central = Self {
            opts,
            store,
            stash,
            high_water: HashMap::new(),
            status,
            beat: None,
        };
        (central, rx)
    }

    /// Opens the configured adapter and runs until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), BleError> {
        let adapter = super::open_adapter(&self.opts.adapter).await?;
        self.run_on(adapter, cancel).await
    }

    /// Runs on `adapter` until `cancel` fires or BlueZ fails.
    pub async fn run_on(self, adapter: Adapter, cancel: CancellationToken) -> Result<(), BleError> {
        let mut links = Links {
            links: HashMap::new(),
            adverts_only: HashMap::new(),
            tasks: JoinSet::new(),
        };
        let result = self.serve(&adapter, &mut links, &cancel).await;
        for (_, (_, token)) in links.links.drain() {
            token.cancel();
        }
        while links.tasks.join_next().await.is_some() {}
        let _ = adapter.stop_scan().await;
        self.status.send_modify(|s| {
            s.discovering = false;
            s.live_links = 0;
        });
        result
    }

    async fn serve(
        &self,
        adapter: &Adapter,
        links: &mut Links,
        cancel: &CancellationToken,
    ) -> Result<(), BleError> {
        let mut signals = DeviceSignals::open(&self.opts.adapter).await?;
        self.sync_links(adapter, links, load_paired(&self.store).await, cancel);
        signals.watch(&links.addresses()).await?;
        start_scan(adapter).await?;
        self.status.send_modify(|s| {
            s.discovering = true;
            s.discovery_starts += 1;
        });
        // Devices BlueZ already knows: a paired one is tried at once, as after an advert.
        for (address, connected) in signals.present().await? {
            if let Some((tx, _)) = links.links.get(&address)
                && !connected
            {
                let _ = tx.try_send(LinkEvent::Advertised);
            }
        }
        let mut collapser = AdvertCollapser::default();
        let mut last_event = Instant::now();
        let mut paired_changes = match PairedChanges::new(&self.store) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the paired devices' file; re-reading it on a timer");
                None
            }
        };
        let mut reload = tokio::time::interval(self.opts.paired_reload);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Without a beat nobody watches the turns: the pulse is then the reload period.
        let pulse_period = self
            .beat
            .as_ref()
            .map_or(self.opts.paired_reload, crate::health::Beat::pulse);
        let mut pulse = tokio::time::interval(pulse_period);
        pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(beat) = &self.beat {
                beat.tick();
            }
            let wanted = |address: &str| {
                links.links.contains_key(address) || links.adverts_only.contains_key(address)
            };
            let signal = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                _ = pulse.tick() => continue,
                // A link task ended (its device was unpaired): counted at once, not at the next
                // re-read of the file.
                Some(_) = links.tasks.join_next(), if !links.tasks.is_empty() => {
                    self.reap(links);
                    continue;
                }
                () = tokio::time::sleep_until(last_event + self.opts.quiet) => {
                    // No paired device advertised and none appeared: they may all be asleep
                    // or connected, or the scan may have stalled. Restarting costs three calls
                    // and cures the stall, so it is done without telling the two apart.
                    tracing::debug!("no advert from a paired device; restarting discovery");
                    let _ = adapter.stop_scan().await;
                    start_scan(adapter).await?;
                    self.status.send_modify(|s| s.discovery_starts += 1);
                    last_event = Instant::now();
                    continue;
                }
                _ = reload.tick() => None,
                changed = changed_paired(&mut paired_changes) => {
                    if let Err(e) = changed {
                        tracing::warn!(error = %e, "cannot watch the paired devices' file; re-reading it on a timer");
                        paired_changes = None;
                    }
                    None
                }
                signal = signals.next(wanted) => match signal {
                    Some(signal) => Some(signal),
                    None => return Err(BleError::Timeout("BlueZ signals (the bus connection ended)")),
                },
            };
            let Some(signal) = signal else {
                // The paired devices' file changed, or the fallback re-read is due.
                let paired = load_paired(&self.store).await;
                self.sync_links(adapter, links, paired, cancel);
                signals.watch(&links.addresses()).await?;
                continue;
            };
            last_event = Instant::now();
            match signal {
                DeviceSignal::Advertised {
                    address,
                    service_data,
                } => {
                    if let Some((tx, _)) = links.links.get(&address) {
                        let _ = tx.try_send(LinkEvent::Advertised);
                    }
                    if let Some(dev) = links.adverts_only.get(&address) {
                        for (uuid, raw) in &service_data {
                            self.read_advert(&mut collapser, dev, *uuid, raw).await;
                        }
                    }
                }
                DeviceSignal::Disconnected { address } => {
                    if let Some((tx, _)) = links.links.get(&address) {
                        let _ = tx.try_send(LinkEvent::Disconnected);
                    }
                }
                DeviceSignal::Other => {}
            }
        }
    }

    /// Starts link tasks for newly paired devices and stops those of unpaired ones.
    fn sync_links(
        &self,
        adapter: &Adapter,
        links: &mut Links,
        paired: Vec<PairedDevice>,
        cancel: &CancellationToken,
    ) {
        let wanted: HashSet<String> = paired
            .iter()
            .map(|d| d.address.to_ascii_uppercase())
            .collect();
        links.links.retain(|address, (_, token)| {
            let keep = wanted.contains(address);
            if !keep {
                tracing::info!(device = %address, "unpaired; stopping its link");
                token.cancel();
            }
            keep
        });
        links
            .adverts_only
            .retain(|address, _| wanted.contains(address));
        for mut d in paired {
            let address = d.address.to_ascii_uppercase();
            if links.links.contains_key(&address) || links.adverts_only.contains_key(&address) {
                continue;
            }
            let model = catalog_model(&d);
            if model.is_some_and(|m| m.advertisement_only) {
                links.adverts_only.insert(address, d);
                continue;
            }
            if let Some(&mark) = self.high_water.get(&address) {
                d.last_sequence = Some(d.last_sequence.map_or(mark, |s| s.max(mark)));
            }
            let (tx, rx) = mpsc::channel(LINK_EVENTS_CAPACITY);
            let token = cancel.child_token();
            let span = tracing::info_span!("link", device = %address);
            links.links.insert(address, (tx, token.clone()));
            let link = Link {
                device: d,
                model,
                adapter: adapter.clone(),
                stash: self.stash.clone(),
                store: self.store.clone(),
                events: rx,
                cancel: token,
                connect_timeout: self.opts.connect_timeout,
            };
            links.tasks.spawn(link.run().instrument(span));
        }
        self.reap(links);
    }

    /// Joins the link tasks that ended and reports how many are alive.
    fn reap(&self, links: &mut Links) {
        while links.tasks.try_join_next().is_some() {}
        let live = links.tasks.len();
        self.status.send_if_modified(|s| {
            let changed = s.live_links != live;
            s.live_links = live;
            changed
        });
    }

    /// Reads one service-data frame of an advertisement-only device.
    async fn read_advert(
        &self,
        collapser: &mut AdvertCollapser,
        dev: &PairedDevice,
        short: u16,
        raw: &[u8],
    ) {
        let now = chrono::Utc::now();
        if !collapser.admit(&dev.address.to_ascii_uppercase(), raw, now) {
            return;
        }
        let capture = Capture {
            device: device_info(dev),
            source: tm_devices::Source::ServiceData(short),
            raw: raw.to_vec(),
            received_at: now,
            clock: None,
            stored: false,
            battery_pct: None,
            rssi_dbm: None,
        };
        let items = to_stashables(&capture, &tm_devices::Quirks::NONE);
        if items.is_empty() {
            return;
        }
        if let Err(e) = self.stash.stash(items).await {
            // An advertising device keeps no memory: the reading is taken again from its next
            // identical broadcast (scales repeat a stable frame for seconds).
            collapser.forget(&dev.address.to_ascii_uppercase(), raw);
            tracing::error!(device = %dev.address, error = %e, "outbox refused an advertisement reading; it is taken again from the device's next broadcast");
        }
    }
}
