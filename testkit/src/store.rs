//! Rows of the provider's store that tests write directly (a session as the Portal would have
//! created it) or read back (a gateway's MQTT status). Gateways are registered with the provider's own `gateways::insert` on the same
//! connection, so the schema of everything else stays the provider's business.

/// A `sessions` row.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    pub id: &'a str,
    pub patient: &'a str,
    pub prescriber: &'a str,
    pub status: &'a str,
    /// The carepath's id and version, when the session has one.
    pub carepath: Option<(&'a str, &'a str)>,
}

impl<'a> Session<'a> {
    /// An accepted session `id` of patient `p-1`, prescribed by `rx-1`, without carepath.
    pub fn accepted(id: &'a str) -> Self {
        Self {
            id,
            patient: "p-1",
            prescriber: "rx-1",
            status: "accepted",
            carepath: None,
        }
    }

    /// Inserts the row (both timestamps `t`).
    pub fn insert(&self, c: &rusqlite::Connection) -> rusqlite::Result<()> {
        let (carepath, version) = self.carepath.unzip();
        c.execute(
            "INSERT INTO sessions VALUES (?1, ?2, ?3, ?4, ?5, ?6, 't', 't')",
            rusqlite::params![
                self.id,
                self.patient,
                self.prescriber,
                self.status,
                carepath,
                version
            ],
        )?;
        Ok(())
    }
}

/// Inserts the accepted session `id` ([`Session::accepted`]).
pub fn accepted_session(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<()> {
    Session::accepted(id).insert(c)
}

/// The MQTT status stored for `gateway_id` and its connection number; `(None, None)` before the
/// gateway has any health row.
pub fn mqtt_status(
    c: &rusqlite::Connection,
    gateway_id: &str,
) -> rusqlite::Result<(Option<String>, Option<i64>)> {
    let row = c.query_row(
        "SELECT mqtt_status, mqtt_status_connection FROM ops_gateway_health \
         WHERE gateway_id = ?1",
        [gateway_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    match row {
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok((None, None)),
        other => other,
    }
}
