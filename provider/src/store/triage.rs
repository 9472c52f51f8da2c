//! Clinical triage's records: the alerts the carepath rules raise for the provider's nurses,
//! one row per episode, with the states open → acknowledged → resolved, and each session's
//! triage cursor.
//!
//! - **One row per episode.** An episode found again (the same readings judged on another
//!   instance, after a restart, or with later readings that continue it) is the stored row
//!   whose span it overlaps: its `episode_last` moves on and nothing is raised. Only an
//!   episode that overlaps no stored one of its session and rule is inserted, and the unique
//!   key `(telemonitoring_id, rule, episode_start)` makes two inserts of one episode
//!   impossible even if two sweeps raced. A resolved alert stays resolved while its episode
//!   runs on: the nurse has seen it.
//! - **The cursor.** `triage_progress` holds, per session, the last reading (SQLite's row id,
//!   PostgreSQL's `seq`) a sweep has judged; a sweep judges the readings after it together
//!   with the days of context before them that the rules need. On PostgreSQL the sweep takes
//!   the session row `FOR UPDATE`, which waits for every ingest holding it `FOR SHARE`, so no
//!   reading below the new cursor can commit after it.
//! - Acknowledging and resolving are single conditional `UPDATE`s: of two nurses acting at
//!   once, one is told the alert was not in that state.
//!
//! The rules themselves are the triage module's (`crate::triage::rules`); the sweep hands them
//! to [`Store::triage_session`] as a closure, so what it reads and what it records are one
//! transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tm_protocol::Reading;

use super::{Backend, Store, StoreError, postgres, sqlite};
use crate::symptom::Rows;

/// What the rules get for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriageSubject {
    /// The session.
    pub telemonitoring_id: String,
    /// The Portal's pseudonymous patient id.
    pub patient_id: String,
    /// The session's carepath URI, once chosen.
    pub carepath_id: Option<String>,
}

/// An episode as the rules found it, to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// The rule's name (`weight-gain`).
    pub rule: String,
    /// Its first point.
    pub start: DateTime<Utc>,
    /// Its last point so far.
    pub last: DateTime<Utc>,
    /// What fired, for the nurse.
    pub summary: String,
    /// The values that fired it, a JSON array.
    pub evidence: String,
}

/// What one session's triage did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriageOutcome {
    /// Readings judged for the first time.
    pub new_readings: usize,
    /// Alerts raised: (alert id, rule).
    pub raised: Vec<(i64, String)>,
    /// Episodes that continued a stored alert.
    pub continued: usize,
    /// Stored readings whose payload did not decode (left out of the judgement).
    pub undecodable: usize,
}

/// A clinical alert as the worklist shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClinicalAlert {
    /// Its id.
    pub alert_id: i64,
    /// The session.
    pub telemonitoring_id: String,
    /// The patient's pseudonym.
    pub patient_id: String,
    /// The session's carepath URI.
    pub carepath_id: Option<String>,
    /// The rule's name.
    pub rule: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    /// The episode's first point (RFC 3339, UTC).
    pub episode_start: String,
    /// Its last point so far.
    pub episode_last: String,
    /// What fired.
    pub summary: String,
    /// The values that fired it.
    pub evidence: serde_json::Value,
    /// When it was raised.
    pub raised_at: String,
    /// When and by whom it was acknowledged, with the nurse's note.
    pub acknowledged_at: Option<String>,
    /// See `acknowledged_at`.
    pub acknowledged_by: Option<String>,
    /// See `acknowledged_at`.
    pub acknowledge_note: Option<String>,
    /// When and by whom it was resolved, with the note.
    pub resolved_at: Option<String>,
    /// See `resolved_at`.
    pub resolved_by: Option<String>,
    /// See `resolved_at`.
    pub resolve_note: Option<String>,
}

/// A nurse's step on an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStep {
    /// open → acknowledged.
    Acknowledge,
    /// open or acknowledged → resolved.
    Resolve,
}

/// The judgement [`Store::triage_session`] runs inside its transaction: the session and its
/// readings (the new ones and their context, in store order) to the episodes found.
pub type Judge = Box<dyn FnOnce(&TriageSubject, &Rows) -> Vec<Episode> + Send>;

impl Store {
    /// Sessions with readings no triage has judged yet, at most `limit`.
    pub async fn sessions_to_triage(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::triage::pending(pg, limit).await,
            Backend::Sqlite(db) => db.read(move |c| sqlite::triage::pending(c, limit)).await,
        }
    }

    /// Triage of one session in one transaction at `now`: its readings after the cursor, with
    /// those of the `context_days` before the oldest of them, go to `judge`; the episodes it
    /// returns are recorded (a new alert, or the stored one they continue) and the cursor
    /// moves past the new readings. Nothing new: nothing is judged.
    pub async fn triage_session(
        &self,
        telemonitoring_id: String,
        context_days: i64,
        now: DateTime<Utc>,
        judge: Judge,
    ) -> Result<TriageOutcome, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::triage::judge(pg, &telemonitoring_id, context_days, now, judge).await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| {
                    sqlite::triage::judge(c, &telemonitoring_id, context_days, now, judge)
                })
                .await
            }
        }
    }

    /// Clinical alerts, open first, then acknowledged, then resolved, newest first within
    /// each; `unresolved` drops resolved ones; at most `limit`.
    pub async fn clinical_alerts(
        &self,
        unresolved: bool,
        limit: u32,
    ) -> Result<Vec<ClinicalAlert>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::triage::list(pg, unresolved, limit).await,
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::triage::list(c, unresolved, limit))
                    .await
            }
        }
    }

    /// One clinical alert.
    pub async fn clinical_alert(&self, alert_id: i64) -> Result<Option<ClinicalAlert>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::triage::one(pg, alert_id).await,
            Backend::Sqlite(db) => db.read(move |c| sqlite::triage::one(c, alert_id)).await,
        }
    }

    /// Applies `step` to alert `alert_id` for `by` with `note` at `now`; false when the alert
    /// is not in a state the step starts from (or does not exist).
    pub async fn clinical_alert_step(
        &self,
        alert_id: i64,
        step: AlertStep,
        by: String,
        note: String,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::triage::step(pg, alert_id, step, &by, &note, now).await
            }
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::triage::step(c, alert_id, step, &by, &note, now))
                    .await
            }
        }
    }

    /// The readings of session `telemonitoring_id` measured from `from` to `to` (at most
    /// `limit`, oldest first): what the worklist charts beside an alert. Payloads that do not
    /// decode are left out.
    pub async fn session_readings_between(
        &self,
        telemonitoring_id: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Reading>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => {
                postgres::triage::between(pg, &telemonitoring_id, from, to, limit).await
            }
            Backend::Sqlite(db) => {
                db.read(move |c| sqlite::triage::between(c, &telemonitoring_id, from, to, limit))
                    .await
            }
        }
    }

    /// Clinical alerts per (rule, state), for `/metrics`.
    pub async fn clinical_alert_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::triage::counts(pg).await,
            Backend::Sqlite(db) => db.read(sqlite::triage::counts).await,
        }
    }
}

/// The statements both backends share, in their common SQL.
pub(super) mod sql {
    /// The columns of [`super::ClinicalAlert`] (the carepath last).
    pub const COLUMNS: &str = "SELECT a.alert_id, a.telemonitoring_id, s.patient_id, a.rule, \
        a.state, a.episode_start, a.episode_last, a.summary, a.evidence, a.raised_at, \
        a.acknowledged_at, a.acknowledged_by, a.acknowledge_note, a.resolved_at, a.resolved_by, \
        a.resolve_note, s.carepath_id FROM clinical_alerts a JOIN sessions s USING (telemonitoring_id)";
    /// Open first, then acknowledged, then resolved; newest first within each.
    pub const ORDER: &str = "ORDER BY CASE a.state WHEN 'open' THEN 0 WHEN 'acknowledged' THEN 1 \
        ELSE 2 END, a.episode_start DESC, a.alert_id DESC";
}
