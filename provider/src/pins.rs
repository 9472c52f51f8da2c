//! What a store is served as, pinned in it at the first start (table `store_pins`): the
//! fingerprints of its keys ([`crate::keys`]) and the system of the FHIR identifiers its
//! attachments carry ([`identifier_system`]). Every instance and every later start reads the
//! same values, whatever its host name or key files.

use rusqlite::{Connection, OptionalExtension as _, params};

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
        params![name, value, chrono::Utc::now().to_rfc3339()],
    )?;
    Ok(())
}

const IDENTIFIER_SYSTEM: &str = "fhir-identifier-system";

/// The system of `Observation.identifier`: `configured` (`[attachments] identifier_system`)
/// when set, pinned from then on; else the one pinned; else, at the first start,
/// `<public_url>/fhir/reading`, pinned, so a later change of the public URL does not change
/// any identifier (an EHR that de-duplicates by identifier would store everything twice).
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

    fn store() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        for sql in crate::db::MIGRATIONS {
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
}
