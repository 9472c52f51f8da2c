//! The outbox: the gateway's durable SQLite store of readings waiting for the provider.
//!
//! A reading enters through the stash ([`crate::stash`]) and is committed (WAL,
//! `synchronous=FULL`) before capture may acknowledge it to the device. From then on the row is
//! the source of truth; nothing about the network (PUBACK, HTTP status, session state) removes
//! it. Only a receipt signed by the provider settles it.
//!
//! Row lifecycle ([`RowState`]; `leased` lives in the writer's memory, the others are stored
//! as their discriminant):
//!
//! ```text
//! pending --lease--> leased --receipt accepted--> acknowledged --retention/quota--> pruned (deleted)
//!    ^                  |  \--receipt rejected / HTTP 4xx--> rejected (kept, reason visible)
//!    +---release--------+   (send failed, receipt timeout, reconnect, agent restart)
//! ```
//!
//! A lease writes nothing ([`lease`]): only receipts change rows, so a reading costs one insert
//! and one update, and on a full disk an acknowledged row is deleted at once.
//!
//! Invariants:
//! - a reading's row key ([`key`]: an order and the reading id's hash) is UNIQUE: a device
//!   re-sending its memory creates no second row.
//! - a pending or leased row is never deleted; at the disk quota the outbox evicts acknowledged
//!   rows first and then refuses new writes with an alarm (capture keeps the device's records).
//! - leases end with the process: a batch in flight when the agent died is sent again (the
//!   provider de-duplicates by `reading_id`).
//! - bytes that failed to decode are kept in the `quarantine` table.
//! - an unreadable database file is moved aside with an alarm and a fresh one opened, so the
//!   agent keeps capturing; the pending rows still readable in the moved-aside file are
//!   salvaged into the fresh one ([`salvage`]), the alarm says how many and how many could not
//!   be read.
//! - a reset that `quick_check` cannot see (a file truncated to zero length, a lost or damaged
//!   WAL) is caught at start against a record kept outside the database ([`mark`]) and raises
//!   the `outbox-reset` alarm.
//! - a full disk does not stop the agent: a reserve file keeps the writes that must succeed
//!   (receipts, pruning, alarms) possible, the `disk-full` alarm is raised, new
//!   readings are refused (never acknowledged to the device) until space is back
//!   ([`diskfull`]).
//!
//! One writer: [`writer::spawn`] runs [`Outbox`] on a dedicated thread and serves
//! [`OutboxHandle`] requests; `tm-gateway status` reads through its own read-only connection.

pub mod diskfull;
mod key;
mod lease;
pub mod mark;
mod outbox;
pub mod salvage;
mod schema;
pub mod writer;

pub use lease::{LeaseLimits, LeasedBatch, SettleOutcome};
pub use outbox::Outbox;
pub use schema::{OpenReport, read_status};
pub use writer::OutboxHandle;

use serde::Serialize;

/// File name of the outbox inside the state directory.
pub const FILE_NAME: &str = "outbox.db";

/// Where a reading row is in its lifecycle. Stored as the discriminant; never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(i64)]
pub enum RowState {
    /// Committed, waiting to be shipped.
    Pending = 0,
    /// Part of a batch in flight; back to pending if no receipt arrives. Known only to the
    /// running agent (stored as pending); `1` in databases before version 3, which made such
    /// rows pending.
    Leased = 1,
    /// A provider receipt named it as committed; pruned after the retention window.
    Acknowledged = 2,
    /// The provider refused it for good; kept with the reason, never retried.
    Rejected = 3,
}

/// Something an operator must see (`tm-gateway status`, the heartbeat's last error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alarm {
    /// Stable kind: one of [`alarm`] (`quota-high`, `quota-full`, `database-corrupt`,
    /// `ble-unavailable`, `disk-full`, `outbox-reset`, `provider-refuses-gateway`). At most one
    /// alarm of each kind is raised at a time.
    pub kind: String,
    /// What happened and what to do, for an operator; never names a value or a patient.
    pub message: String,
    /// When it was raised (Unix milliseconds). Raising a kind already raised keeps the first
    /// time and message; the alarm is gone once cleared.
    pub raised_at_ms: i64,
}

/// Alarm kinds.
pub mod alarm {
    /// Disk use above 80 % of the quota.
    pub const QUOTA_HIGH: &str = "quota-high";
    /// Quota reached: new readings are refused.
    pub const QUOTA_FULL: &str = "quota-full";
    /// The database was unreadable at start and moved aside.
    pub const DATABASE_CORRUPT: &str = "database-corrupt";
    /// BlueZ or the configured adapter is unavailable: no device is being read.
    pub const BLE_UNAVAILABLE: &str = "ble-unavailable";
    /// The file system of the state directory is full: the outbox runs on its reserve, new
    /// readings are refused (they stay on the devices) until space is back.
    pub const DISK_FULL: &str = "disk-full";
    /// The outbox was found empty or replaced although readings had been committed to it
    /// (a truncated file, a lost WAL, a file moved aside): readings may be lost.
    pub const OUTBOX_RESET: &str = "outbox-reset";
    /// The provider refuses the gateway itself (HTTP 401/403/404, or MQTT batches without a
    /// receipt): readings are kept and sent again with a long backoff.
    pub const PROVIDER_REFUSES_GATEWAY: &str = "provider-refuses-gateway";

    /// The order in which alarms take the heartbeat's one `last_error` slot: the ones that
    /// mean readings are (or may be) lost or refused come first.
    pub const SEVERITY: &[&str] = &[
        DISK_FULL,
        OUTBOX_RESET,
        DATABASE_CORRUPT,
        PROVIDER_REFUSES_GATEWAY,
        QUOTA_FULL,
        BLE_UNAVAILABLE,
        QUOTA_HIGH,
    ];
}

/// Disk use above this share of the quota raises [`alarm::QUOTA_HIGH`].
pub const QUOTA_ALARM_PERCENT: u64 = 80;

/// What `tm-gateway status` and the heartbeat report. Everything is read from the database in
/// one call, except `leased`, which only the writer thread knows (see [`lease`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStatus {
    /// Rows stored as pending and not in flight (count from the database minus `leased`).
    /// Read from outside the agent it also counts the rows in flight.
    pub pending: u64,
    /// Rows in batches in flight, from the writer's memory. Read from outside the agent it
    /// counts only rows a version before 3 left leased in a database not yet migrated (0 once
    /// the agent has opened it).
    pub leased: u64,
    /// Rows acknowledged and not yet pruned (count from the database).
    pub acknowledged: u64,
    /// Rows the provider refused for good, kept with their reason (count from the database).
    pub rejected: u64,
    /// Rows of the `quarantine` table: bytes that did not decode, kept and never shipped.
    pub quarantined: u64,
    /// Receive time (Unix milliseconds) of the oldest pending or leased reading; `None` when
    /// there is none.
    pub oldest_unacknowledged_ms: Option<i64>,
    /// When the last verified receipt was recorded (RFC 3339, UTC); `None` before the first.
    pub last_sync_at: Option<String>,
    /// The syncer's last send failure or batch rejection (no values, no patient data); cleared
    /// by a receipt that follows it in the same run of the agent, kept across a restart.
    pub last_error: Option<String>,
    /// Bytes of the database's pages in use (page count minus free pages, times the page
    /// size): what the quota is checked against.
    pub used_bytes: u64,
    /// The configured quota in bytes (`store.quota_mb` times 1 MiB), not read from the file.
    pub quota_bytes: u64,
    /// Alarms raised now, oldest first; empty when none.
    pub alarms: Vec<Alarm>,
    /// Up to the 10 most recently rejected readings, newest first: (reading id, reason; empty
    /// when none was given).
    pub recent_rejections: Vec<(String, String)>,
}

impl OutboxStatus {
    /// Readings not yet acknowledged by the provider.
    pub fn backlog(&self) -> u64 {
        self.pending + self.leased
    }
}

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed. A full disk is one of these ([`diskfull::is_disk_full`]); callers log it
    /// and retry, it does not stop the agent.
    #[error("outbox {path}: {source}")]
    Sqlite {
        /// The outbox database file the failing connection has open.
        path: std::path::PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Moving a corrupt file aside failed: no fresh outbox can be opened at its path.
    #[error("outbox {path} is corrupt and cannot be moved aside: {source}")]
    MoveAside {
        /// The corrupt database file, left where it was.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread is gone (its request channel or a reply dropped): the one outbox
    /// error that stops the actors using the handle.
    #[error("outbox writer stopped")]
    Closed,
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_damage;

#[cfg(test)]
mod tests_upgrade;
