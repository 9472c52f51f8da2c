//! Key fingerprints and the FHIR identifier system pinned in the store, on PostgreSQL.
//!
//! The checks are the SQLite side's (`store/sqlite/pins.rs`), run at start before anything is
//! served. Several instances may start together on one database, and the first start pins
//! what every later one must match: each pinning transaction first takes a transaction-level
//! advisory lock ([`PIN_LOCK`]), so instances check and pin one after the other, and the
//! second finds the first's pins (and is refused when its key differs) instead of both
//! pinning their own. `pinned_at` is a `timestamptz`; a refusal names it as [`time_text`]
//! renders it, as on SQLite.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::PgStore;
use crate::store::pins::{KeyMismatch, PinCheck, Purpose};
use crate::store::{StoreError, time_text};

/// Key of the advisory lock the pinning transactions hold.
pub const PIN_LOCK: i64 = super::locks::PIN;

const IDENTIFIER_SYSTEM: &str = "fhir-identifier-system";
const GET: &str = "SELECT value, pinned_at FROM store_pins WHERE name = $1";
const SET: &str = "INSERT INTO store_pins (name, value, pinned_at) VALUES ($1, $2, $3) \
    ON CONFLICT (name) DO UPDATE SET value = excluded.value, pinned_at = excluded.pinned_at";
const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// The pinned value of `name` and when it was pinned (RFC 3339).
async fn get(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<(String, String)>, tokio_postgres::Error> {
    let Some(r) = c.query_opt(GET, &[&name]).await? else {
        return Ok(None);
    };
    let at: DateTime<Utc> = r.try_get(1)?;
    Ok(Some((r.try_get(0)?, time_text(at))))
}

/// Pins `value` for `name` (replacing an earlier pin).
async fn set(c: &impl GenericClient, name: &str, value: &str) -> Result<(), tokio_postgres::Error> {
    c.execute(SET, &[&name, &value, &Utc::now()]).await?;
    Ok(())
}

/// Waits for the pins' advisory lock (released when the transaction ends).
async fn lock_pins(c: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    c.execute(LOCK, &[&PIN_LOCK]).await?;
    Ok(())
}

/// Refuses a missing key file whose key the store is served with, unless `accept_new`.
pub async fn check_present(
    pg: &PgStore,
    files: &[(Purpose, PathBuf)],
    accept_new: bool,
) -> Result<Result<(), KeyMismatch>, StoreError> {
    if accept_new {
        return Ok(Ok(()));
    }
    let c = pg.client().await?;
    for (purpose, path) in files {
        if tokio::fs::try_exists(path).await.unwrap_or(false) {
            continue;
        }
        if let Some((pinned, pinned_at)) = get(&**c, purpose.pin_name()).await.map_err(pg.sql())? {
            return Ok(Err(KeyMismatch::Missing {
                purpose: *purpose,
                path: path.clone(),
                pinned,
                pinned_at,
            }));
        }
    }
    Ok(Ok(()))
}

/// Pins `fingerprint` for `purpose`, or checks it against the pinned one; with `accept_new` a
/// different key replaces the pin (logged).
async fn pin(
    c: &impl GenericClient,
    purpose: Purpose,
    fingerprint: &str,
    path: &Path,
    accept_new: bool,
) -> Result<Result<(), KeyMismatch>, tokio_postgres::Error> {
    let pinned = get(c, purpose.pin_name()).await?;
    match PinCheck::of(purpose, fingerprint, path, pinned, accept_new) {
        PinCheck::Pinned => {}
        PinCheck::Refused(mismatch) => return Ok(Err(mismatch)),
        PinCheck::Write => set(c, purpose.pin_name(), fingerprint).await?,
    }
    Ok(Ok(()))
}

/// Pins every key in one transaction under the pins' lock (see
/// [`crate::store::Store::pin_keys`]): the first mismatch rolls back.
pub async fn pin_keys(
    pg: &PgStore,
    keys: &[(Purpose, String, PathBuf)],
    accept_new: bool,
) -> Result<Result<(), KeyMismatch>, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    lock_pins(&*tx).await.map_err(pg.sql())?;
    for (purpose, fingerprint, path) in keys {
        let checked = pin(&*tx, *purpose, fingerprint, path, accept_new)
            .await
            .map_err(pg.sql())?;
        if let Err(mismatch) = checked {
            return Ok(Err(mismatch));
        }
    }
    tx.commit().await.map_err(pg.sql())?;
    Ok(Ok(()))
}

/// The system `configured`, the pinned one or the first start's default, and whether it must
/// be (re)pinned.
fn choose_system(
    configured: Option<&str>,
    pinned: Option<String>,
    public_url: &str,
) -> (String, bool) {
    match (configured, pinned) {
        (Some(c), Some(p)) if c == p => (p, false),
        (Some(c), Some(p)) => {
            tracing::warn!(pinned = %p, configured = c, "FHIR identifier system changed by the configuration: attachments from now on name their observations under the new system");
            (c.to_owned(), true)
        }
        (Some(c), None) => (c.to_owned(), true),
        (None, Some(p)) => (p, false),
        (None, None) => (
            format!("{}/fhir/reading", public_url.trim_end_matches('/')),
            true,
        ),
    }
}

/// The FHIR identifier system (see [`crate::store::Store::fhir_identifier_system`]), chosen
/// and pinned in one transaction under the pins' lock.
pub async fn identifier_system(
    pg: &PgStore,
    configured: Option<&str>,
    public_url: &str,
) -> Result<String, StoreError> {
    let mut client = pg.client().await?;
    let tx = client.transaction().await.map_err(pg.sql())?;
    lock_pins(&*tx).await.map_err(pg.sql())?;
    let pinned = get(&*tx, IDENTIFIER_SYSTEM)
        .await
        .map_err(pg.sql())?
        .map(|(value, _)| value);
    let (system, repin) = choose_system(configured, pinned, public_url);
    if repin {
        set(&*tx, IDENTIFIER_SYSTEM, &system)
            .await
            .map_err(pg.sql())?;
    }
    tx.commit().await.map_err(pg.sql())?;
    Ok(system)
}
