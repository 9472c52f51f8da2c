//! Notice of a change to the paired-devices file, from the kernel (inotify) instead of a timer.
//!
//! The nurse's `pair` and `unpair` commands run in another process and replace the file by a
//! rename; the central must start or stop that device's link. Re-reading the file on a timer
//! woke the agent every two seconds for a file that changes a few times in a device's life.
//! [`PairedChanges`] watches the file's directory and wakes only when a file of that name is
//! written, renamed into place or removed. The central keeps a slow re-read as a fallback, for
//! a file system without inotify.

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use tokio::io::unix::AsyncFd;

use super::paired::PairedStore;

/// Changes to one paired-devices file.
#[derive(Debug)]
pub struct PairedChanges {
    /// The inotify instance, non-blocking, registered with the runtime.
    fd: AsyncFd<OwnedFd>,
    /// The file's name in the watched directory.
    name: OsString,
    /// Room for the events of one read.
    buf: Vec<MaybeUninit<u8>>,
}

impl PairedChanges {
    /// Watches the file of `store`. Fails where inotify is unavailable (or out of watches).
    pub fn new(store: &PairedStore) -> std::io::Result<Self> {
        let path = store.path();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let name = path.file_name().map(OsString::from).unwrap_or_default();
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        inotify::add_watch(
            &fd,
            dir,
            WatchFlags::CLOSE_WRITE
                | WatchFlags::MOVED_TO
                | WatchFlags::CREATE
                | WatchFlags::DELETE,
        )?;
        // `AsyncFd::new` is deprecated for descriptors the caller might close behind the
        // runtime's back; this one is an `OwnedFd` moved into the `AsyncFd`, closed only when
        // it drops, so the safe constructor is sound here (the `unsafe` one is denied).
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(Self {
            fd,
            name,
            buf: vec![MaybeUninit::uninit(); 4096],
        })
    }

    /// Returns when the file was written, replaced or removed since the last call (several
    /// changes in a row give one return).
    pub async fn changed(&mut self) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut hit = false;
            let mut reader = inotify::Reader::new(guard.get_inner(), &mut self.buf);
            loop {
                match reader.next() {
                    Ok(event) => {
                        let named = event
                            .file_name()
                            .is_some_and(|n| n.to_bytes() == self.name.as_encoded_bytes());
                        hit |= named;
                    }
                    Err(rustix::io::Errno::WOULDBLOCK) => {
                        guard.clear_ready();
                        break;
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if hit {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ble::paired::PairedDevice;

    #[tokio::test]
    async fn a_write_of_the_file_wakes_and_other_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = PairedStore::in_state_dir(dir.path());
        let mut changes = PairedChanges::new(&store).unwrap();
        std::fs::write(dir.path().join("other.json"), b"{}").unwrap();
        let quiet =
            tokio::time::timeout(std::time::Duration::from_millis(200), changes.changed()).await;
        assert!(quiet.is_err(), "another file woke the watch");
        store
            .upsert(PairedDevice::new("C0:26:DA:01:02:03"))
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), changes.changed())
            .await
            .expect("the pairing woke the watch")
            .unwrap();
    }
}
