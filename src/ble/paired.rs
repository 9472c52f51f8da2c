//! The paired-devices file (`paired-devices.json` in the state directory): what the nurse
//! paired, with what the gateway learnt about each device since. Written atomically
//! (temp file + rename) so a power cut leaves the old or the new file, never half of one.
//! Every read-modify-write holds an exclusive lock on `paired-devices.lock`: the agent's links
//! and the nurse's `pair`/`unpair` commands (other processes) never undo each other's change.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One paired device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairedDevice {
    /// Bluetooth address, upper case.
    pub address: String,
    /// Advertised name.
    pub name: Option<String>,
    /// Catalog model id (`sig-weight-scale`, `and-ua-651ble`).
    pub model_id: Option<String>,
    /// DIS manufacturer, model, serial, firmware.
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub firmware: Option<String>,
    /// Battery level at the last connection.
    pub battery_pct: Option<u8>,
    /// When it was paired.
    pub paired_at: DateTime<Utc>,
    /// Last advertisement or connection.
    pub last_seen: Option<DateTime<Utc>>,
    /// Last reading captured.
    pub last_reading_at: Option<DateTime<Utc>>,
    /// Highest record sequence number committed (RACP fetches start after it).
    pub last_sequence: Option<u32>,
}

impl PairedDevice {
    /// A freshly paired device.
    pub fn new(address: &str) -> Self {
        Self {
            address: address.to_ascii_uppercase(),
            name: None,
            model_id: None,
            manufacturer: None,
            model: None,
            serial: None,
            firmware: None,
            battery_pct: None,
            paired_at: Utc::now(),
            last_seen: None,
            last_reading_at: None,
            last_sequence: None,
        }
    }
}

/// Errors reading or writing the file.
#[derive(Debug, thiserror::Error)]
pub enum PairedError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid paired-devices file ({source}); fix or remove it")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The file.
#[derive(Debug, Clone)]
pub struct PairedStore {
    path: PathBuf,
}

impl PairedStore {
    /// The store in `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("paired-devices.json"),
        }
    }

    /// All paired devices (none when the file does not exist yet).
    pub fn load(&self) -> Result<Vec<PairedDevice>, PairedError> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| PairedError::Parse {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(PairedError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn save(&self, devices: &[PairedDevice]) -> Result<(), PairedError> {
        let io = |source| PairedError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(devices).unwrap_or_default();
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// Runs `f` holding the exclusive lock of the file (released when the handle closes).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, PairedError>) -> Result<T, PairedError> {
        let lock_path = self.path.with_extension("lock");
        let io = |source| PairedError::Io {
            path: lock_path.clone(),
            source,
        };
        if let Some(dir) = lock_path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        lock.lock().map_err(io)?;
        f()
    }

    /// Inserts or replaces the device with the same address.
    pub fn upsert(&self, device: PairedDevice) -> Result<(), PairedError> {
        self.locked(|| {
            let mut all = self.load()?;
            all.retain(|d| d.address != device.address);
            all.push(device);
            self.save(&all)
        })
    }

    /// Applies `f` to the device with `address`, if paired.
    pub fn update(
        &self,
        address: &str,
        f: impl FnOnce(&mut PairedDevice),
    ) -> Result<(), PairedError> {
        self.locked(|| {
            let mut all = self.load()?;
            if let Some(d) = all
                .iter_mut()
                .find(|d| d.address.eq_ignore_ascii_case(address))
            {
                f(d);
                self.save(&all)?;
            }
            Ok(())
        })
    }

    /// Removes the device; returns whether it was there.
    pub fn remove(&self, address: &str) -> Result<bool, PairedError> {
        self.locked(|| {
            let mut all = self.load()?;
            let before = all.len();
            all.retain(|d| !d.address.eq_ignore_ascii_case(address));
            self.save(&all)?;
            Ok(all.len() != before)
        })
    }
}
