//! The patients' check-in links and what they send (`checkin_links`, and the answers as
//! `readings` rows of kind [`crate::symptom::KIND`]).
//!
//! - **A link is a bearer secret.** The URL carries 256 random bits; the store keeps only
//!   their SHA-256 ([`token_hash`]), so a copy of the database opens no patient's page.
//! - **One live link per session.** Issuing one revokes the session's earlier links in the
//!   same transaction (the nurse hands a new QR code over when a phone is lost); revoking
//!   ends them all. A link also stops working when its session is no longer live
//!   (accepted or in progress): nothing is recorded for an ended session.
//! - **Answers are stored with the check.** Saving a check-in checks the link and the session
//!   and inserts the answers in one transaction; on PostgreSQL under the session row `FOR
//!   SHARE`, as ingest does, so a snapshot cut never misses an answer committed below it.
//!   An answer already stored (the same form sent again) is not stored twice.

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError, postgres, sqlite};
use crate::symptom::SymptomAnswer;

/// The store's form of a link's token: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

/// A live check-in link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckinLink {
    /// The session it reports to.
    pub telemonitoring_id: String,
    /// The language the nurse chose for the page (its tag: `nl`, `fr`, `en`).
    pub language: String,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

/// What issuing a link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// Issued; the session's earlier links are revoked.
    Issued,
    /// The session is not live (or does not exist): nothing issued.
    NotLive,
    /// The session's carepath asks for no symptoms: nothing issued.
    NoSymptoms,
}

/// What saving a check-in did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Stored: `inserted` of the answers were new (the rest were already stored).
    Stored {
        /// Answers newly stored.
        inserted: usize,
    },
    /// The link is unknown, revoked, or its session is no longer live: nothing stored.
    LinkGone,
}

/// The session states in which a link works.
pub(crate) const LIVE: [&str; 2] = ["accepted", "in-progress"];

/// What issuing decides from the session's status and carepath.
pub(crate) fn may_issue(session: Option<(String, Option<String>)>, carepaths: &[&str]) -> Issue {
    match session {
        Some((status, _)) if !LIVE.contains(&status.as_str()) => Issue::NotLive,
        None => Issue::NotLive,
        Some((_, carepath)) if !carepath.as_deref().is_some_and(|c| carepaths.contains(&c)) => {
            Issue::NoSymptoms
        }
        Some(_) => Issue::Issued,
    }
}

impl Store {
    /// Issues the link whose token hashes to `token_hash` for session `telemonitoring_id`
    /// in `language`, revoking its earlier ones, when the session is live and on one of
    /// `carepaths` (those whose symptoms the check-in asks).
    pub async fn issue_checkin_link(
        &self,
        telemonitoring_id: String,
        token_hash: String,
        language: &'static str,
        carepaths: &'static [&'static str],
        now: DateTime<Utc>,
    ) -> Result<Issue, StoreError> {
        let link = (telemonitoring_id, token_hash, language);
        match &self.backend {
            Backend::Postgres(pg) => postgres::checkin::issue(pg, &link, carepaths, now).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::checkin::issue(c, &link, carepaths, now))
                    .await
            }
        }
    }

    /// Revokes every link of the session at `now`; how many were live.
    pub async fn revoke_checkin_links(
        &self,
        telemonitoring_id: String,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::checkin::revoke(pg, &telemonitoring_id, now).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::checkin::revoke(c, &telemonitoring_id, now))
                    .await
            }
        }
    }

    /// The live link whose token hashes to `token_hash`: `None` when unknown, revoked, or its
    /// session is not live.
    pub async fn checkin_link(
        &self,
        token_hash: String,
    ) -> Result<Option<CheckinLink>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::checkin::find(pg, &token_hash).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::checkin::find(c, &token_hash))
                    .await
            }
        }
    }

    /// When the session's live link was issued, if it has one.
    pub async fn checkin_issued_at(
        &self,
        telemonitoring_id: String,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::checkin::issued_at(pg, &telemonitoring_id).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::checkin::issued_at(c, &telemonitoring_id))
                    .await
            }
        }
    }

    /// Stores the answers of a check-in of session `telemonitoring_id` sent through the link
    /// hashing to `token_hash`, at `now`, if that link is still live and the session's.
    pub async fn save_checkin(
        &self,
        token_hash: String,
        telemonitoring_id: String,
        answers: Vec<SymptomAnswer>,
        now: DateTime<Utc>,
    ) -> Result<Saved, StoreError> {
        let link = (token_hash, telemonitoring_id);
        match &self.backend {
            Backend::Postgres(pg) => postgres::checkin::save(pg, &link, &answers, now).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::checkin::save(c, &link, &answers, now))
                    .await
            }
        }
    }
}
