//! Which store a database file holds, read before the store is opened and without changing
//! anything: the check at start that the provider serves the store it served before
//! ([`crate::store_id`]) works on it.

use std::path::Path;

use super::{Store, sqlite};

/// What a database file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFile {
    /// No file.
    Missing,
    /// An empty file, or a database without tables.
    Empty,
    /// A healthy store, with its id when it has one.
    Store(Option<String>),
}

/// The file is not a healthy database: what the database said (no data from the store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Damaged(pub String);

impl Store {
    /// Reads the database file at `path` read-only (a quick integrity check, then its store
    /// id), before it is opened as the store.
    pub fn inspect_file(path: &Path) -> Result<StoreFile, Damaged> {
        sqlite::identity::inspect(path)
    }
}
