//! Which store this provider serves, checked before it serves anything.
//!
//! Every store carries a random store id, written when the store is created (or, for a store
//! from before store ids, at its first open by this version; see [`crate::store::Store::store_id`]).
//! The provider records the id of the store it serves in a file beside its signing key
//! (`provider.store-id` next to `provider.key`: [`record_path`]). At start, before the store is
//! opened for writing, [`check`] reads the database file without changing it and refuses to
//! start when:
//! - the file is not a healthy SQLite database (`PRAGMA quick_check` fails or reports damage);
//! - the provider has served a store before (a record exists) and the file is missing, empty,
//!   or a store without an id (a reset file, a WAL that could not be replayed): serving it would
//!   answer every enrolled gateway `unknown gateway`;
//! - the file is another store (its id differs from the record).
//!
//! Each refusal names the database, the ids found and recorded, and what to do: restore the
//! backup, or start once with `tm-provider serve --accept-new-store` to serve this store from
//! now on (the record is then rewritten). The first start of a new provider (no record) just
//! works and writes the record ([`confirm`]).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::store::Store;
use crate::store::identity::StoreFile;

/// What to do about a store that is not the one recorded.
const WHAT_TO_DO: &str = "restore the database from its backup; to serve this store from now \
    on instead (gateways enrolled on the other store must enroll again), start once with \
    `tm-provider serve --accept-new-store`";

/// Why the provider does not start on this store.
#[derive(Debug, thiserror::Error)]
pub enum StoreIdError {
    /// Not a database, or a damaged one.
    #[error(
        "database {path} is damaged or not a database ({detail}); the provider does not start \
         on it and left it untouched: keep it for analysis and restore the database from its \
         backup"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What SQLite said (no data from the store).
        detail: String,
    },
    /// Missing, empty, or a store without an id, where the provider served a store before.
    #[error(
        "database {database} is {what}, but this provider served store {recorded} (recorded \
         in {record}); every enrolled gateway would be refused as unknown. The provider does \
         not start and left the file untouched: {WHAT_TO_DO}"
    )]
    NotServed {
        /// The database file.
        database: String,
        /// "missing", "an empty file", or "a store without a store id".
        what: &'static str,
        /// The id this provider served.
        recorded: String,
        /// The record file.
        record: PathBuf,
    },
    /// Another store.
    #[error(
        "database {database} is store {found}, but this provider served store {recorded} \
         (recorded in {record}). The provider does not start and left the database untouched: \
         {WHAT_TO_DO}"
    )]
    Other {
        /// The database file or URL.
        database: String,
        /// The id in the database.
        found: String,
        /// The id this provider served.
        recorded: String,
        /// The record file.
        record: PathBuf,
    },
    /// The record file cannot be read or written.
    #[error("store id record {path}: {source}")]
    Record {
        /// The record file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The record of the served store's id: `<key file stem>.store-id` beside the signing key.
pub fn record_path(key_file: &Path) -> PathBuf {
    key_file.with_extension("store-id")
}

/// Reads the SQLite file `database` (read-only: the file is not changed) and compares its store
/// id with the record at `record`. `accept_new` lets a store other than the recorded one be
/// served (the record is rewritten by [`confirm`]); a damaged file is refused regardless.
pub fn check(database: &Path, record: &Path, accept_new: bool) -> Result<(), StoreIdError> {
    let recorded = read_record(record)?;
    let found = Store::inspect_file(database).map_err(|d| StoreIdError::Damaged {
        path: database.to_path_buf(),
        detail: d.0,
    })?;
    verdict(
        &database.display().to_string(),
        found,
        recorded,
        record,
        accept_new,
    )
}

/// Compares the id of a store that is not a file (a PostgreSQL database, connected to) with
/// the record at `record`; `database` names it in a refusal.
pub fn check_id(
    database: &str,
    store_id: &str,
    record: &Path,
    accept_new: bool,
) -> Result<(), StoreIdError> {
    let recorded = read_record(record)?;
    let found = StoreFile::Store(Some(store_id.to_owned()));
    verdict(database, found, recorded, record, accept_new)
}

fn verdict(
    database: &str,
    found: StoreFile,
    recorded: Option<String>,
    record: &Path,
    accept_new: bool,
) -> Result<(), StoreIdError> {
    let Some(recorded) = recorded else {
        return Ok(());
    };
    let what = match found {
        StoreFile::Store(Some(found)) if found == recorded => return Ok(()),
        StoreFile::Store(Some(found)) => Err(found),
        StoreFile::Missing => Ok("missing"),
        StoreFile::Empty => Ok("an empty file"),
        StoreFile::Store(None) => Ok("a store without a store id"),
    };
    let refusal = match what {
        Err(found) => StoreIdError::Other {
            database: database.to_owned(),
            found,
            recorded,
            record: record.to_path_buf(),
        },
        Ok(what) => StoreIdError::NotServed {
            database: database.to_owned(),
            what,
            recorded,
            record: record.to_path_buf(),
        },
    };
    if accept_new {
        tracing::warn!(refused = %refusal, "--accept-new-store: serving this store from now on");
        return Ok(());
    }
    Err(refusal)
}

/// Records `store_id` as the served store when the record says otherwise (first start, or a
/// store accepted with `--accept-new-store`).
pub fn confirm(record: &Path, store_id: &str) -> Result<(), StoreIdError> {
    let previous = read_record(record)?;
    if previous.as_deref() == Some(store_id) {
        return Ok(());
    }
    write_record(record, store_id).map_err(|source| StoreIdError::Record {
        path: record.to_path_buf(),
        source,
    })?;
    tracing::info!(%store_id, previous = previous.as_deref().unwrap_or("none"), record = %record.display(), "recorded the store this provider serves");
    Ok(())
}

fn read_record(record: &Path) -> Result<Option<String>, StoreIdError> {
    match fs::read_to_string(record) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|id| !id.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreIdError::Record {
            path: record.to_path_buf(),
            source,
        }),
    }
}

/// Temporary file, fsync, rename, fsync of the directory: a crash leaves the old record or the
/// new one.
fn write_record(record: &Path, store_id: &str) -> std::io::Result<()> {
    let dir = record
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = record.with_extension("store-id.tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(format!("{store_id}\n").as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, record)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
