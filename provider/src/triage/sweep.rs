//! The triage sweep actor: every `[triage] interval_s` it asks the store for sessions with
//! readings not yet judged and judges each in its own transaction
//! ([`crate::store::Store::triage_session`]): the session's rules ([`super::Triage::rules_for`])
//! over its new readings and the days of context before them, in the patients' time zone. An
//! episode found is raised once ([`crate::store::triage`]). With several instances on one store,
//! only the holder of [`Duty::Triage`] sweeps. Stopped by its cancellation token.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;

use super::Triage;
use super::rules::{self, Evidence, Finding};
use crate::lease::Leader;
use crate::store::leases::Duty;
use crate::store::triage::{Episode, TriageSubject};
use crate::store::{Store, StoreError};
use crate::symptom::Rows;

/// Sessions asked for at a time.
const BATCH: u32 = 100;
/// Batches per sweep at most: a backlog larger than this is left for the next tick.
const MAX_BATCHES: usize = 50;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Sessions judged.
    pub sessions: usize,
    /// Readings judged for the first time.
    pub readings: usize,
    /// Alerts raised: (alert id, rule).
    pub raised: Vec<(i64, String)>,
    /// Stored readings that did not decode.
    pub undecodable: usize,
}

/// The episodes `subject`'s rules find in its stored readings and symptom answers.
pub fn judge(triage: &Triage, tz: Tz, subject: &TriageSubject, stored: &Rows) -> Vec<Episode> {
    let carepath = subject.carepath_id.as_deref().unwrap_or("");
    let Some(rules) = triage.rules_for(carepath, &subject.patient_id) else {
        return Vec::new();
    };
    rules::evaluate_readings(&rules, &stored.readings, &stored.symptoms, tz)
        .into_iter()
        .map(episode)
        .collect()
}

fn episode(f: Finding) -> Episode {
    let evidence: Vec<serde_json::Value> = f.evidence.iter().map(evidence_json).collect();
    Episode {
        rule: f.rule.name().to_owned(),
        start: f.episode,
        last: f.last,
        summary: f.summary,
        evidence: serde_json::Value::Array(evidence).to_string(),
    }
}

fn evidence_json(e: &Evidence) -> serde_json::Value {
    serde_json::json!({
        "at": crate::store::time_text(e.at),
        "code": e.code,
        "value": e.value,
        "unit": e.unit,
    })
}

/// One sweep at `now`: every session with readings not yet judged (up to a bound), each in
/// its own transaction.
pub async fn run_once(
    store: &Store,
    triage: &Arc<Triage>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    for _ in 0..MAX_BATCHES {
        let sessions = store.sessions_to_triage(BATCH).await?;
        if sessions.is_empty() {
            break;
        }
        for id in sessions {
            let t = triage.clone();
            let outcome = store
                .triage_session(
                    id,
                    triage.context_days(),
                    now,
                    Box::new(move |subject, stored| judge(&t, tz, subject, stored)),
                )
                .await?;
            report.sessions += 1;
            report.readings += outcome.new_readings;
            report.undecodable += outcome.undecodable;
            report.raised.extend(outcome.raised);
        }
    }
    Ok(report)
}

/// The actor; one runs per provider.
#[derive(Debug)]
pub struct Sweep {
    /// The provider store.
    pub store: Store,
    /// The rules.
    pub triage: Arc<Triage>,
    /// The patients' time zone (`[ops] patient_time_zone`).
    pub tz: Tz,
}

impl Sweep {
    /// Runs until `cancel`; a failed sweep is logged and tried again at the next tick.
    #[tracing::instrument(name = "triage", skip_all)]
    pub async fn run(self, cancel: CancellationToken) {
        let leader = Leader::start(self.store.clone(), Duty::Triage, None, cancel.clone());
        let mut tick = tokio::time::interval(self.triage.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !leader.is_held() {
                continue;
            }
            match run_once(&self.store, &self.triage, self.tz, Utc::now()).await {
                Ok(report) => {
                    for (alert_id, rule) in &report.raised {
                        tracing::warn!(alert_id, rule = %rule, "clinical alert raised");
                    }
                    if report.undecodable > 0 {
                        tracing::error!(
                            readings = report.undecodable,
                            "stored readings did not decode and were left out of triage"
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "triage sweep failed"),
            }
        }
    }
}
