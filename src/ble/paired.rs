//! The paired-devices file (`paired-devices.json` in the state directory): what the nurse
//! paired, with what the gateway learnt about each device since. Written atomically
//! (temp file + rename) so a power cut leaves the old or the new file, never half of one.
//! Every read-modify-write holds an exclusive lock on `paired-devices.lock`: the agent's links
//! and the nurse's `pair`/`unpair` commands (other processes) never undo each other's change.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One paired device: written by `pair` (the CLI) and afterwards by the device's link; the
/// heartbeat reports it (no readings, no patient data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairedDevice {
    /// Bluetooth address, upper case: the key of the entry (compared ignoring case) and the
    /// `device_address` of its readings in the outbox.
    pub address: String,
    /// Local name the device advertised when it was paired; `None` when it advertised none.
    pub name: Option<String>,
    /// Catalog model id (`sig-weight-scale`, `and-ua-651ble`); `None` for a device the
    /// catalog did not match: it is linked with the defaults (clock over CTS, no quirks).
    pub model_id: Option<String>,
    /// DIS manufacturer name, read at pairing and at each connection; a value the device does
    /// not give keeps the previous one. `model`, `serial` and `firmware` likewise.
    pub manufacturer: Option<String>,
    /// DIS model number string; the heartbeat reports it when `model_id` is `None`.
    pub model: Option<String>,
    /// DIS serial number string.
    pub serial: Option<String>,
    /// DIS firmware revision string.
    pub firmware: Option<String>,
    /// Battery level in percent, read at pairing or the last connection; kept when
    /// the device has no battery service.
    pub battery_pct: Option<u8>,
    /// When it was paired; kept when a link writes the entry back.
    pub paired_at: DateTime<Utc>,
    /// When it was paired or last connected; adverts do not update it, so for an
    /// advertisement-only device it stays the pairing time.
    pub last_seen: Option<DateTime<Utc>>,
    /// Receive time of the last notification whose readings a link committed; `None` before
    /// the first (advertisement-only devices do not update it).
    pub last_reading_at: Option<DateTime<Utc>>,
    /// Highest record sequence number committed (RACP fetches start after it); it only grows.
    /// `None` for a device that sends no sequence numbers. The outbox's `device_marks` is the
    /// authority when this file lags behind.
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
    /// The file, its temporary file or its lock file could not be read or written.
    #[error("cannot read or write {path}: {source}")]
    Io {
        /// The file that failed (the lock file when locking failed).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of this format (unknown fields included); nothing is written
    /// over it, so an operator can look at it.
    #[error("{path} is not a valid paired-devices file ({source}); fix or remove it")]
    Parse {
        /// `paired-devices.json`.
        path: PathBuf,
        /// What the JSON parser found.
        source: serde_json::Error,
    },
}

/// The paired-devices file. Cheap to clone: clones name the same file, and every change is a
/// locked read-modify-write, so the agent's links and the CLI can all hold one.
#[derive(Debug, Clone)]
pub struct PairedStore {
    /// `<state_dir>/paired-devices.json`; the lock is `paired-devices.lock` beside it.
    path: PathBuf,
}

impl PairedStore {
    /// The store in `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("paired-devices.json"),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
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
