//! The simulator's shared state: one [`Core`] owned by the D-Bus interfaces and the control API.
//!
//! Invariant: the std mutex is only held for short, non-awaiting sections; D-Bus calls
//! (exporting objects, emitting signals) happen after it is released, because exporting an
//! object makes the ObjectManager read that object's properties, which takes the lock again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::NaiveDateTime;
use zbus::{Connection, Variant};

use crate::spec::{DeviceSpec, Faults, Written};

/// Adapter path, as on a one-dongle gateway.
pub const ADAPTER_PATH: &str = "/org/bluez/hci0";

/// Runtime state of one simulated device.
#[derive(Debug)]
pub struct DeviceState {
    pub spec: DeviceSpec,
    /// In radio range and advertising.
    pub advertising: bool,
    /// Exported on D-Bus (discovered or bonded).
    pub exported: bool,
    pub connected: bool,
    pub services_resolved: bool,
    pub paired: bool,
    pub trusted: bool,
    /// Characteristic UUIDs with an open notify session.
    pub notifying: HashSet<u16>,
    pub faults: Faults,
    /// Everything the central wrote, in order.
    pub written: Vec<Written>,
    /// Device clock: offset from the simulator's local time; `None` = never set.
    pub clock_offset: Option<chrono::Duration>,
    /// Incremented on every connection, so timers of an old connection do nothing.
    pub generation: u64,
    /// Date Time written during the current connection.
    pub time_written: bool,
    /// Connections accepted so far.
    pub connections: u32,
}

impl DeviceState {
    pub fn new(spec: DeviceSpec) -> Self {
        let clock_offset = spec.clock_set.then(chrono::Duration::zero);
        Self {
            spec,
            advertising: true,
            exported: false,
            connected: false,
            services_resolved: false,
            paired: false,
            trusted: false,
            notifying: HashSet::new(),
            faults: Faults::default(),
            written: Vec::new(),
            clock_offset,
            generation: 0,
            time_written: false,
            connections: 0,
        }
    }

    /// The device's wall clock now (2000-01-01 plus uptime when never set).
    pub fn device_now(&self) -> NaiveDateTime {
        let now = chrono::Local::now().naive_local();
        match self.clock_offset {
            Some(off) => now + off,
            None => chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .unwrap_or(now),
        }
    }

    /// Whether the device matches the current discovery filter (empty = everything).
    pub fn matches(&self, filter: &[String]) -> bool {
        if filter.is_empty() {
            return true;
        }
        let ours = self
            .spec
            .adv_uuids
            .iter()
            .chain(self.spec.service_data.iter().map(|(u, _)| u))
            .map(|u| crate::spec::uuid16(*u));
        ours.into_iter()
            .any(|u| filter.iter().any(|f| f.eq_ignore_ascii_case(&u)))
    }
}

/// A registered pairing agent.
#[derive(Debug, Clone)]
pub struct AgentRef {
    pub owner: String,
    pub path: String,
}

/// Everything the simulator knows.
#[derive(Debug, Default)]
pub struct Inner {
    pub devices: BTreeMap<String, DeviceState>,
    pub powered: bool,
    pub discovering: bool,
    /// The D-Bus clients (unique names) whose discovery session is open: as in BlueZ, the
    /// adapter discovers while at least one client has a session, and one client stopping
    /// its own does not stop another's.
    pub discovery_clients: std::collections::BTreeSet<String>,
    pub filter_uuids: Vec<String>,
    pub agents: Vec<AgentRef>,
    pub default_agent: Option<AgentRef>,
    /// How many times discovery was started (the agent's watchdog restarts it).
    pub discovery_starts: u32,
    /// Discovery stalled: `Discovering` stays true but nothing is reported (the BlueZ stall
    /// seen after hours on a Pi). Cleared by the next `StartDiscovery`.
    pub stalled: bool,
}

/// The shared core.
#[derive(Debug)]
pub struct Core {
    pub conn: Connection,
    pub inner: Mutex<Inner>,
}

/// `AA:BB:..` -> `/org/bluez/hci0/dev_AA_BB_..`.
pub fn device_path(address: &str) -> String {
    format!("{ADAPTER_PATH}/dev_{}", address.replace(':', "_"))
}

/// Path of a service, characteristic or descriptor, numbered the way BlueZ does.
pub fn service_path(address: &str, s: usize) -> String {
    format!("{}/service{:04x}", device_path(address), 0x10 * (s + 1))
}

pub fn char_path(address: &str, s: usize, c: usize) -> String {
    format!(
        "{}/char{:04x}",
        service_path(address, s),
        0x10 * (s + 1) + 2 * c + 1
    )
}

pub fn desc_path(address: &str, s: usize, c: usize) -> String {
    format!(
        "{}/desc{:04x}",
        char_path(address, s, c),
        0x10 * (s + 1) + 2 * c + 2
    )
}

pub type Shared = Arc<Core>;

impl Core {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Emits `PropertiesChanged` for `iface` at `path`.
    pub async fn changed(&self, path: &str, iface: &str, props: HashMap<&str, Variant<'_>>) {
        let Ok(emitter) = zbus::object_server::SignalEmitter::new(&self.conn, path.to_string())
        else {
            return;
        };
        let Ok(name) = zbus::names::InterfaceName::try_from(iface) else {
            return;
        };
        let _ = zbus::fdo::Properties::properties_changed(&emitter, name, props, (&[][..]).into())
            .await;
    }
}
