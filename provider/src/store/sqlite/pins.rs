//! The store pins' statements on SQLite (table `store_pins`), and the checks made with them at
//! start.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::store::pins::{KeyMismatch, PinCheck, Purpose};

const IDENTIFIER_SYSTEM: &str = "fhir-identifier-system";

/// The pinned value of `name` and when it was pinned (RFC 3339).
pub fn get(conn: &Connection, name: &str) -> rusqlite::Result<Option<(String, String)>> {
    conn.query_row(
        "SELECT value, pinned_at FROM store_pins WHERE name = ?1",
        [name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Pins `value` for `name` (replacing an earlier pin).
pub fn set(conn: &Connection, name: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO store_pins (name, value, pinned_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, pinned_at = excluded.pinned_at",
        params![name, value, crate::store::time_text(chrono::Utc::now())],
    )?;
    Ok(())
}

fn pinned(conn: &Connection, purpose: Purpose) -> rusqlite::Result<Option<(String, String)>> {
    get(conn, purpose.pin_name())
}

/// Refuses a missing key file whose key the store is served with, unless `accept_new`.
pub fn check_present(
    conn: &Connection,
    files: &[(Purpose, PathBuf)],
    accept_new: bool,
) -> rusqlite::Result<Result<(), KeyMismatch>> {
    for (purpose, path) in files {
        if accept_new || path.exists() {
            continue;
        }
        if let Some((pinned, pinned_at)) = pinned(conn, *purpose)? {
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
pub fn pin(
    conn: &Connection,
    purpose: Purpose,
    fingerprint: &str,
    path: &Path,
    accept_new: bool,
) -> rusqlite::Result<Result<(), KeyMismatch>> {
    let pinned = pinned(conn, purpose)?;
    match PinCheck::of(purpose, fingerprint, path, pinned, accept_new) {
        PinCheck::Pinned => {}
        PinCheck::Refused(mismatch) => return Ok(Err(mismatch)),
        PinCheck::Write => set(conn, purpose.pin_name(), fingerprint)?,
    }
    Ok(Ok(()))
}

/// Pins every key in one transaction (see [`crate::store::Store::pin_keys`]): the first
/// mismatch rolls back.
pub fn pin_keys(
    c: &mut Connection,
    keys: &[(Purpose, String, PathBuf)],
    accept_new: bool,
) -> rusqlite::Result<Result<(), KeyMismatch>> {
    let tx = c.transaction()?;
    for (purpose, fingerprint, path) in keys {
        if let Err(mismatch) = pin(&tx, *purpose, fingerprint, path, accept_new)? {
            return Ok(Err(mismatch));
        }
    }
    tx.commit()?;
    Ok(Ok(()))
}

/// The FHIR identifier system (see [`crate::store::Store::fhir_identifier_system`]).
pub fn identifier_system(
    conn: &Connection,
    configured: Option<&str>,
    public_url: &str,
) -> rusqlite::Result<String> {
    let pinned = get(conn, IDENTIFIER_SYSTEM)?.map(|(value, _)| value);
    let system = match (configured, pinned) {
        (Some(c), Some(p)) if c == p => return Ok(p),
        (Some(c), Some(p)) => {
            tracing::warn!(pinned = %p, configured = c, "FHIR identifier system changed by the configuration: attachments from now on name their observations under the new system");
            c.to_owned()
        }
        (Some(c), None) => c.to_owned(),
        (None, Some(p)) => return Ok(p),
        (None, None) => format!("{}/fhir/reading", public_url.trim_end_matches('/')),
    };
    set(conn, IDENTIFIER_SYSTEM, &system)?;
    Ok(system)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for sql in super::super::migrations::MIGRATIONS {
            conn.execute_batch(sql).unwrap();
        }
        conn
    }

    #[test]
    fn the_identifier_system_survives_a_new_host_name() {
        let conn = store();
        let first = identifier_system(&conn, None, "https://old.example.org/").unwrap();
        assert_eq!(first, "https://old.example.org/fhir/reading");
        let moved = identifier_system(&conn, None, "https://new.example.org").unwrap();
        assert_eq!(moved, first, "pinned at the first start");
        let configured =
            identifier_system(&conn, Some("urn:oid:2.999.1"), "https://new.example.org").unwrap();
        assert_eq!(configured, "urn:oid:2.999.1");
        let later = identifier_system(&conn, None, "https://other.example.org").unwrap();
        assert_eq!(later, "urn:oid:2.999.1", "the configured one is pinned");
    }

    #[tokio::test]
    async fn a_key_is_pinned_at_the_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).unwrap();
        let key = dir.path().join("provider.key");
        let files = [(Purpose::Receipts, key.clone())];
        assert!(
            store
                .check_key_files_present(&files, false)
                .await
                .unwrap()
                .is_ok()
        );
        let first = [(Purpose::Receipts, "fp-1".to_owned(), key.clone())];
        assert!(store.pin_keys(&first, false).await.unwrap().is_ok());
        assert!(
            store.pin_keys(&first, false).await.unwrap().is_ok(),
            "the same key"
        );
        assert!(matches!(
            store.check_key_files_present(&files, false).await.unwrap(),
            Err(KeyMismatch::Missing { .. })
        ));
        let other = [(Purpose::Receipts, "fp-2".to_owned(), key.clone())];
        assert!(matches!(
            store.pin_keys(&other, false).await.unwrap(),
            Err(KeyMismatch::Other { .. })
        ));
        assert!(
            store.pin_keys(&other, true).await.unwrap().is_ok(),
            "accepted"
        );
        assert!(
            store.pin_keys(&other, false).await.unwrap().is_ok(),
            "pinned now"
        );
    }
}
