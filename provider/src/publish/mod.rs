//! # Publishing a session's outputs to the HUB
//!
//! What the EHR downloads must be exactly what the HUB announced: same bytes, so same length,
//! MD5 and ETag. Readings keep arriving between two announcements (the carepath limits how
//! often we may update), so the attachment routes do not serve the live data: they serve the
//! session's **published snapshot** ([`crate::store::snapshots`]): the readings up to a fixed
//! `readings.rowid`, the set's `lastModified` and the monitoring period the outputs print.
//!
//! [`Publisher::transition`] cuts a new snapshot, describes its attachments (every render is
//! deterministic, so the metadata equals what the routes will serve) and moves the session,
//! queueing the HUB PUT with the attachments — all in one transaction. A session has
//! **pending** readings when some rowid is above its snapshot's; that is derived from the
//! store, so a restart loses nothing: the [`updater`] finds them again at start.
//!
//! [`StoreSource`] is the attachment server's view of the store.

pub mod settings;
pub mod updater;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::attachments::{OutputOptions, SessionData, SessionSource, SourceError, UriSigner};
use crate::hub::contract::{Carepath as HubCarepath, Status};
use crate::outputs::{Carepath, Language, Period, SessionContext};
use crate::store::snapshots::{Announcer, PublishedSession};
use crate::store::{Store, StoreError};
pub use settings::AttachmentSettings;

/// A published snapshot as the outputs need it, in `languages`; a session without a carepath
/// prints as heart failure.
pub fn session_data(published: PublishedSession, languages: &[Language]) -> SessionData {
    let carepath = published
        .carepath
        .map_or_else(Carepath::heart_failure, |c| Carepath {
            id: c.id,
            version: c.version,
        });
    SessionData {
        context: SessionContext {
            telemonitoring_id: published.telemonitoring_id,
            patient_id: published.patient_id,
            prescriber_id: published.prescriber_id,
            carepath,
            languages: languages.to_vec(),
            period: Period {
                start: published.snapshot.period_start,
                end: published.snapshot.period_end,
            },
        },
        readings: published.readings,
        symptoms: published.symptoms,
        last_modified: published.snapshot.published_at,
    }
}

/// Loads the published snapshot of `id` as the outputs need it: `None` when the session does
/// not exist or has published nothing yet.
pub async fn load_published(
    store: &Store,
    id: &str,
    languages: &[Language],
) -> Result<Option<SessionData>, StoreError> {
    Ok(store
        .published_session(id)
        .await?
        .map(|published| session_data(published, languages)))
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

impl Announcer for Publisher {
    fn next_update(
        &self,
        status: Status,
        carepath: Option<&HubCarepath>,
        pending: bool,
        last_published: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let interval = self
            .settings
            .min_update_interval(carepath.map(|c| c.id.as_str()));
        updater::next_update(status, pending, last_published, interval)
    }

    fn describe(&self, published: PublishedSession, now: DateTime<Utc>) -> Vec<serde_json::Value> {
        let data = session_data(published, &self.settings.languages);
        let expires = now + self.settings.token_lifetime;
        let described = crate::attachments::describe(
            &data,
            &self.options,
            &self.signer,
            &self.public_url,
            expires,
        );
        described
            .iter()
            .map(|a| serde_json::to_value(a).expect("attachment metadata serializes"))
            .collect()
    }
}

/// The attachment server's session source: the published snapshots in the store.
#[derive(Debug, Clone)]
pub struct StoreSource {
    /// The provider store; only read, through the published snapshot (`published_through`),
    /// so a download gives the bytes that were announced.
    pub store: Store,
    /// The configured PDF languages (`[attachments] languages`), one PDF attachment each.
    pub languages: Arc<[Language]>,
}

impl SessionSource for StoreSource {
    async fn load(&self, telemonitoring_id: &str) -> Result<Option<SessionData>, SourceError> {
        load_published(&self.store, telemonitoring_id, &self.languages)
            .await
            .map_err(|e| SourceError(e.to_string()))
    }
}
