//! Running on a full disk: the outbox keeps syncing and freeing space instead of failing.
//!
//! A full file system (SQLITE_FULL, ENOSPC) must not stop the agent: it could then never ship
//! what it holds, and shipping plus pruning is what frees the space. What it guarantees:
//!
//! - **A reserve.** At open the outbox keeps a file of [`reserve_bytes`] next to the database
//!   (`outbox.db.reserve`). The first write that fails for lack of space deletes it, so the
//!   writes that must succeed (recording receipts, the alarm, pruning, and the WAL checkpoint
//!   that moves committed pages into the database file) find room. When even that is used up,
//!   the WAL is checkpointed and truncated and the write tried once more. The WAL is
//!   checkpointed every `reserve / 2` bytes, so what a checkpoint must add to the database file
//!   fits in the reserve.
//! - **The `disk-full` alarm** is raised at once (`tm-gateway status`, the heartbeat, and so an
//!   operations alert at the provider) and cleared when the reserve can be written again.
//! - **Readings are refused, never lost.** While the disk is full a stash is taken only when the
//!   database's free pages hold it (the file does not grow); otherwise it is refused with an
//!   error, capture does not acknowledge the records to the device, and the device keeps them.
//! - **The drain needs no new space.** A lease writes nothing ([`super::lease`]), and while the
//!   disk is full a receipt deletes the rows it acknowledges instead of updating them: shipping
//!   only frees pages, so the backlog drains on a disk with no byte left.
//! - **Space is freed.** Pruning evicts every acknowledged row at once (the retention window is
//!   waived) and, when it deleted rows, truncates the WAL so the file system gets those bytes
//!   back; then the reserve is written again.
//! - **Retry with backoff.** Writing the reserve again (the test for "space is back") is tried
//!   at most every [`RETRY_INITIAL`]..[`RETRY_MAX`], doubling.
//!
//! - **Start on a full disk.** Opening checkpoints and truncates the WAL first (what it holds
//!   goes into the database file, the rest of its bytes back to the file system). A schema
//!   migration pending at that start runs on the released reserve.
//!
//! A failed write is always rolled back by SQLite; what was committed before stays committed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::ErrorCode;
use tm_protocol::backoff::{Backoff, Jitter};

use super::mark;
use super::outbox::{EVICT_ACKNOWLEDGED, StashFail};
use super::{Outbox, StoreError, alarm};

/// First pause before space is looked for again.
pub const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest pause before space is looked for again.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Bytes kept in reserve for a quota: a 32nd of it, between 256 KiB and 16 MiB.
pub fn reserve_bytes(quota_bytes: u64) -> u64 {
    (quota_bytes / 32).clamp(256 * 1024, 16 * 1024 * 1024)
}

/// Pages of WAL after which SQLite checkpoints, so a checkpoint fits in the reserve.
pub fn autocheckpoint_pages(reserve: u64, page_size: u64) -> i64 {
    i64::try_from(reserve / 2 / page_size.max(512))
        .unwrap_or(4096)
        .clamp(64, 4096)
}

/// Whether `e` means the file system has no room (as opposed to a damaged file).
pub fn is_disk_full(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            f.code == ErrorCode::DiskFull
                || f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE
                || f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMMAP
        }
        _ => false,
    }
}

/// The reserve file and the disk-full state. Owned by [`Outbox`], so only the writer thread
/// fills or frees the reserve.
#[derive(Debug)]
pub(super) struct DiskGuard {
    /// `outbox.db.reserve` beside the database; absent while the disk is full.
    path: PathBuf,
    /// Size of the reserve, [`reserve_bytes`] of the quota; also sets the WAL checkpoint
    /// interval ([`autocheckpoint_pages`]).
    bytes: u64,
    /// `None` while the disk has room (the reserve is written); `Some(when)` while it is full:
    /// the earliest instant at which writing the reserve again is tried.
    full: Option<Instant>,
    /// Pauses between looks: [`RETRY_INITIAL`] doubling to [`RETRY_MAX`], no jitter.
    retry: Backoff,
}

impl DiskGuard {
    /// The guard of the outbox at `db_path`; writes the reserve when it is missing (a failure
    /// to do so is the first sign of a full disk: the guard starts in the full state).
    pub(super) fn open(db_path: &Path, quota_bytes: u64) -> Self {
        let mut guard = Self {
            path: reserve_path(db_path),
            bytes: reserve_bytes(quota_bytes),
            full: None,
            retry: Backoff::new(RETRY_INITIAL, RETRY_MAX).with_jitter(Jitter::None),
        };
        if let Err(e) = guard.fill() {
            tracing::error!(error = %e, "no room for the outbox's disk reserve");
            guard.full = Some(Instant::now() + guard.retry.ceiling());
        }
        guard
    }

    /// Bytes of the reserve.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the disk is (still) known to be full.
    pub(super) fn is_full(&self) -> bool {
        self.full.is_some()
    }

    /// A write failed for lack of space: frees the reserve. `true` the first time (the caller
    /// raises the alarm), `false` when the disk was already known to be full.
    pub(super) fn on_full(&mut self) -> bool {
        let first = self.full.is_none();
        if first {
            tracing::error!(
                "the disk is full: reserve released, new readings refused until space is back"
            );
        }
        let _ = std::fs::remove_file(&self.path);
        if first {
            self.retry.reset();
        }
        self.full = Some(Instant::now() + self.retry.ceiling());
        first
    }

    /// While the disk is full, at most once per backoff step: tries to write the reserve again.
    /// `true` when it succeeded now (space is back; the caller clears the alarm).
    pub(super) fn space_back(&mut self) -> bool {
        let Some(next) = self.full else {
            return false;
        };
        if Instant::now() < next {
            return false;
        }
        match self.fill() {
            Ok(()) => {
                self.full = None;
                tracing::info!("disk space is back: reserve restored");
                true
            }
            Err(_) => {
                self.retry.next_delay();
                self.full = Some(Instant::now() + self.retry.ceiling());
                false
            }
        }
    }

    /// Looks for space at the next [`Self::space_back`] (after space was freed).
    pub(super) fn look_now(&mut self) {
        if self.full.is_some() {
            self.full = Some(Instant::now());
        }
    }

    fn fill(&self) -> std::io::Result<()> {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.bytes) {
            return Ok(());
        }
        let result = (|| {
            let mut file = std::fs::File::create(&self.path)?;
            let block = vec![0u8; 64 * 1024];
            let mut left = self.bytes;
            while left > 0 {
                let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
                file.write_all(&block[..n])?;
                left -= n as u64;
            }
            file.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        result
    }
}

impl Outbox {
    /// While the disk is full, only a stash that fits in the database's free pages is taken
    /// (the file must not grow).
    /// Like the quota, acknowledged rows are evicted first to make that room.
    pub(super) fn disk_gate(&mut self, incoming: usize) -> Result<(), StashFail> {
        if !self.disk.is_full() {
            return Ok(());
        }
        let needed = u64::try_from(incoming.saturating_mul(2)).unwrap_or(u64::MAX);
        if free_bytes(&self.conn)? >= needed {
            return Ok(());
        }
        let evicted = self
            .conn
            .execute(mark::NOTE_HIGH_ROW, [])
            .and_then(|_| self.conn.execute(EVICT_ACKNOWLEDGED, []));
        if let Ok(rows @ 1..) = evicted {
            tracing::warn!(rows, "disk full: acknowledged rows evicted early");
        }
        if free_bytes(&self.conn)? < needed {
            return Err(StashFail::Refused(disk_full_refusal()));
        }
        Ok(())
    }

    /// Runs `f`; when it fails for lack of space, frees the reserve (raising the `disk-full`
    /// alarm) and runs it once more. For the writes that must succeed on a full disk.
    pub(super) fn retrying<T>(
        &mut self,
        f: impl Fn(&mut Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.check_space();
        match f(self) {
            Err(StoreError::Sqlite { source, .. }) if is_disk_full(&source) => {
                self.on_disk_full();
                match f(self) {
                    Err(StoreError::Sqlite { source, .. }) if is_disk_full(&source) => {
                        // Still no room (the reserve went earlier): hand what the WAL file
                        // holds beyond its frames back to the file system, then once more.
                        self.truncate_wal();
                        f(self)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Checkpoints and truncates the WAL (its committed frames are in the database file after).
    pub(super) fn truncate_wal(&self) {
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// A write failed for lack of space: release the reserve and raise the alarm.
    pub(super) fn on_disk_full(&mut self) {
        if self.disk.on_full() {
            // Move what the WAL holds into the database file now, while the released reserve
            // has room for it: afterwards the WAL is reused from its start without growing.
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            self.raise_disk_full();
        }
    }

    pub(super) fn raise_disk_full(&mut self) {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let message = format!(
            "the file system of {} is full: new readings are refused and stay on the devices; \
             the gateway keeps syncing and prunes acknowledged readings to free space. Free \
             space on that file system (or lower store.quota_mb below its size).",
            dir.display()
        );
        if let Err(e) = self.raise(alarm::DISK_FULL, &message) {
            tracing::error!(error = %e, "disk-full alarm not recorded");
        }
    }

    /// While the disk is full: looks for space (with backoff) and clears the alarm when the
    /// reserve could be written again.
    pub(super) fn check_space(&mut self) {
        if self.disk.space_back()
            && let Err(e) = self.clear(alarm::DISK_FULL)
        {
            tracing::warn!(error = %e, "disk-full alarm not cleared yet");
            if is_disk_full(&e) {
                self.on_disk_full();
            }
        }
    }
}

/// Bytes of the database's free pages (rows written there do not grow the file).
pub(super) fn free_bytes(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(u64::try_from(free.max(0) * size).unwrap_or(0))
}

/// `outbox.db` -> `outbox.db.reserve`.
pub fn reserve_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".reserve");
    PathBuf::from(name)
}

/// The refusal a stash gets while the disk is full.
pub(super) fn disk_full_refusal() -> String {
    "the disk is full: readings refused, kept on the device (alarm disk-full)".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_checkpoint_sizes() {
        assert_eq!(reserve_bytes(512 * 1024 * 1024), 16 * 1024 * 1024);
        assert_eq!(reserve_bytes(32 * 1024 * 1024), 1024 * 1024);
        assert_eq!(reserve_bytes(1024 * 1024), 256 * 1024);
        assert_eq!(autocheckpoint_pages(16 * 1024 * 1024, 4096), 2048);
        assert_eq!(autocheckpoint_pages(256 * 1024, 4096), 64);
    }

    #[test]
    fn the_reserve_is_written_released_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let mut guard = DiskGuard::open(&db, 32 * 1024 * 1024);
        let reserve = reserve_path(&db);
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 1024 * 1024);
        assert!(!guard.is_full());
        assert!(guard.on_full(), "the first failure raises the alarm");
        assert!(!reserve.exists());
        assert!(!guard.on_full(), "the alarm is raised once");
        guard.look_now();
        assert!(guard.space_back());
        assert!(reserve.exists() && !guard.is_full());
    }
}
