//! # Publishing a session's outputs to the HUB
//!
//! What the EHR downloads must be exactly what the HUB announced: same bytes, so same length,
//! MD5 and ETag. Readings keep arriving between two announcements (the carepath limits how
//! often we may update), so the attachment routes do not serve the live data: they serve the
//! session's **published snapshot**, a row of `session_outputs` that names
//!
//! - `published_through`: the highest `readings.rowid` included (rowids only grow: readings
//!   are never deleted), so the snapshot's readings are fixed;
//! - `published_at`: the set's `lastModified`;
//! - `period_start` / `period_end`: the monitoring period the outputs print (start: the
//!   gateway's enrollment; end: set when the session completes).
//!
//! [`Publisher::transition`] cuts a new snapshot, describes its attachments (every render is
//! deterministic, so the metadata equals what the routes will serve) and moves the session,
//! queueing the HUB PUT with the attachments — all in the caller's transaction. A session has
//! **pending** readings when some rowid is above its `published_through`; that is derived from
//! the store, so a restart loses nothing: the [`updater`] finds them again at start.
//!
//! [`StoreSource`] is the attachment server's view of the store.

pub mod settings;
pub mod updater;

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};
use tm_protocol::Reading;

use crate::attachments::{OutputOptions, SessionData, SessionSource, SourceError, UriSigner};
use crate::db::Db;
use crate::hub::contract::Status;
use crate::outputs::{Carepath, Period, SessionContext};
use crate::sessions::{self, TransitionError};
pub use settings::AttachmentSettings;

const SNAPSHOT: &str = "SELECT published_through, published_at, period_start, period_end \
                        FROM session_outputs WHERE telemonitoring_id = ?1";
const UPSERT_SNAPSHOT: &str = "INSERT INTO session_outputs (telemonitoring_id, \
    published_through, published_at, period_start, period_end) VALUES (?1, ?2, ?3, ?4, ?5) \
    ON CONFLICT(telemonitoring_id) DO UPDATE SET published_through = excluded.published_through, \
    published_at = excluded.published_at, period_end = excluded.period_end";
const LATEST_READING: &str = "SELECT MAX(rowid) FROM readings WHERE telemonitoring_id = ?1";
const SNAPSHOT_READINGS: &str = "SELECT payload FROM readings WHERE telemonitoring_id = ?1 \
                                 AND rowid <= ?2 ORDER BY rowid";
const FIRST_ENROLLMENT: &str = "SELECT MIN(enrolled_at) FROM gateways WHERE telemonitoring_id = ?1";
const CREATED_AT: &str = "SELECT created_at FROM sessions WHERE telemonitoring_id = ?1";

/// A published snapshot row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Highest reading rowid included.
    pub published_through: i64,
    /// `lastModified` of the set.
    pub published_at: DateTime<Utc>,
    /// Monitoring period start.
    pub period_start: DateTime<FixedOffset>,
    /// Monitoring period end, once completed.
    pub period_end: Option<DateTime<FixedOffset>>,
}

fn time(s: &str, column: usize) -> rusqlite::Result<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })
}

/// The session's published snapshot, if any.
pub fn snapshot(conn: &Connection, id: &str) -> rusqlite::Result<Option<Snapshot>> {
    let row: Option<(i64, String, String, Option<String>)> = conn
        .query_row(SNAPSHOT, params![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    row.map(|(through, at, start, end)| {
        Ok(Snapshot {
            published_through: through,
            published_at: time(&at, 1)?.with_timezone(&Utc),
            period_start: time(&start, 2)?,
            period_end: end.as_deref().map(|e| time(e, 3)).transpose()?,
        })
    })
    .transpose()
}

/// The highest rowid of the session's readings (0 when it has none).
pub fn latest_reading(conn: &Connection, id: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row(LATEST_READING, params![id], |r| r.get::<_, Option<i64>>(0))?
        .unwrap_or(0))
}

/// Whether the session has readings its published snapshot does not include.
pub fn has_pending(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    let through = snapshot(conn, id)?.map_or(0, |s| s.published_through);
    Ok(latest_reading(conn, id)? > through)
}

/// Loads the published snapshot of `id` as the outputs need it: `None` when the session does
/// not exist or has published nothing yet.
pub fn load_published(
    conn: &Connection,
    id: &str,
    languages: &[crate::outputs::Language],
) -> rusqlite::Result<Option<SessionData>> {
    let (Some(session), Some(snap)) = (sessions::find(conn, id)?, snapshot(conn, id)?) else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(SNAPSHOT_READINGS)?;
    let readings = stmt
        .query_map(params![id, snap.published_through], |r| {
            let payload: String = r.get(0)?;
            serde_json::from_str::<Reading>(&payload).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let carepath = session
        .carepath
        .map_or_else(Carepath::heart_failure, |c| Carepath {
            id: c.id,
            version: c.version,
        });
    Ok(Some(SessionData {
        context: SessionContext {
            telemonitoring_id: session.telemonitoring_id,
            patient_id: session.patient_id,
            prescriber_id: session.prescriber_id,
            carepath,
            languages: languages.to_vec(),
            period: Period {
                start: snap.period_start,
                end: snap.period_end,
            },
        },
        readings,
        last_modified: snap.published_at,
    }))
}

/// Cuts a new snapshot of `id` at `now` (all readings stored so far); `ending` closes the
/// period. Call inside the transaction that announces it.
fn cut(conn: &Connection, id: &str, now: DateTime<Utc>, ending: bool) -> rusqlite::Result<()> {
    let stamp = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let start = match snapshot(conn, id)? {
        Some(s) => s.period_start.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => {
            let enrolled: Option<String> =
                conn.query_row(FIRST_ENROLLMENT, params![id], |r| r.get(0))?;
            let raw = match enrolled {
                Some(e) => e,
                None => conn.query_row(CREATED_AT, params![id], |r| r.get(0))?,
            };
            time(&raw, 0)?.to_rfc3339_opts(SecondsFormat::Millis, true)
        }
    };
    conn.execute(
        UPSERT_SNAPSHOT,
        params![
            id,
            latest_reading(conn, id)?,
            stamp,
            start,
            ending.then(|| stamp.clone())
        ],
    )?;
    Ok(())
}

/// Builds and announces attachment sets: the one place that decides what the HUB is told
/// about a session's outputs.
#[derive(Debug)]
pub struct Publisher {
    /// Signs the announced URIs with the attachment key (HMAC), the same key the attachment
    /// server verifies them with.
    pub signer: UriSigner,
    /// Rendering options (must equal the attachment server's, or a downloaded file would not
    /// be the bytes announced).
    pub options: OutputOptions,
    /// The provider's public base URL (the URIs' prefix), as the EHR reaches it.
    pub public_url: String,
    /// Validated `[attachments]`: URI lifetime, PDF languages, updates a day per carepath,
    /// normal ranges.
    pub settings: AttachmentSettings,
}

impl Publisher {
    /// Moves `id` to `to` in the caller's transaction, queueing the HUB update. Moving to
    /// in-progress or completed with readings stored cuts a new snapshot and sends the full
    /// attachment set with it; any other move sends no attachments. Returns the attachments
    /// announced (empty when none).
    pub fn transition(
        &self,
        conn: &Connection,
        id: &str,
        to: Status,
        carepath: Option<crate::hub::contract::Carepath>,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<Result<usize, TransitionError>> {
        let with_outputs =
            matches!(to, Status::InProgress | Status::Completed) && latest_reading(conn, id)? > 0;
        let Some(current) = sessions::find(conn, id)? else {
            return Ok(Err(TransitionError::Unknown));
        };
        if !current.status.may_become(to) {
            return Ok(Err(TransitionError::Illegal {
                from: current.status,
                to,
            }));
        }
        let attachments = if with_outputs {
            cut(conn, id, now, to == Status::Completed)?;
            let data = load_published(conn, id, &self.settings.languages)?
                .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            let expires = now + self.settings.token_lifetime;
            let described = crate::attachments::describe(
                &data,
                &self.options,
                &self.signer,
                &self.public_url,
                expires,
            );
            Some(
                described
                    .iter()
                    .map(|a| serde_json::to_value(a).expect("attachment metadata serializes"))
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        let n = attachments.as_ref().map_or(0, Vec::len);
        Ok(sessions::transition(conn, id, to, carepath, attachments)?.map(|_| n))
    }
}

/// The attachment server's session source: the published snapshots in the store.
#[derive(Debug, Clone)]
pub struct StoreSource {
    /// The provider store; only read, through the published snapshot (`published_through`),
    /// so a download gives the bytes that were announced.
    pub db: Db,
    /// The configured PDF languages (`[attachments] languages`), one PDF attachment each.
    pub languages: Arc<[crate::outputs::Language]>,
}

impl SessionSource for StoreSource {
    async fn load(&self, telemonitoring_id: &str) -> Result<Option<SessionData>, SourceError> {
        let id = telemonitoring_id.to_owned();
        let languages = self.languages.clone();
        self.db
            .read(move |c| load_published(c, &id, &languages))
            .await
            .map_err(|e| SourceError(e.to_string()))
    }
}
