//! The emulator's memory: issued tokens, the sessions the Portal created with their status and
//! timeline, the violations seen, the faults queued by the control API, and the refusals set
//! for one session's status PUTs.
//!
//! One `std::sync::Mutex` guards it; no lock is ever held across an `.await` (every access is a
//! short synchronous closure through [`Shared::with`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

/// One entry of a session's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Wall-clock time (RFC 3339).
    pub at: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// The Portal sent a prescription request and got an answer.
    Prescription {
        /// The request body.
        request: Value,
        /// HTTP status of the answer (0 when the provider could not be reached).
        status: u16,
        /// The answer body (JSON when it parsed, otherwise text).
        response: Value,
    },
    /// The Portal sent an action and got an answer.
    Action {
        /// The request body.
        request: Value,
        /// HTTP status (0 when unreachable).
        status: u16,
        /// The answer body.
        response: Value,
    },
    /// The provider sent a status PUT; `answer` is the HTTP status the HUB gave.
    StatusPut {
        /// The body as received.
        body: Value,
        /// HTTP status of the HUB's answer.
        answer: u16,
    },
    /// The session's status changed.
    StatusChanged {
        /// Before.
        from: String,
        /// After.
        to: String,
    },
    /// The EHR downloaded an attachment.
    Download {
        /// Attachment id.
        id: String,
        /// Whether length, MD5 and ETag matched the metadata.
        ok: bool,
        /// What did not match.
        problems: Vec<String>,
    },
    /// A contract violation by the provider.
    Violation {
        /// What was wrong.
        message: String,
    },
    /// A non-fatal remark (for example past the soft attachment limit).
    Warning {
        /// The remark.
        message: String,
    },
}

/// A session as the HUB knows it.
#[derive(Debug, Clone, Serialize)]
pub struct SimSession {
    /// Current status.
    pub status: String,
    /// The prescriber that created it.
    pub prescriber_id: String,
    /// The carepath, once sent.
    pub carepath: Option<(String, String)>,
    /// The current attachment set.
    pub attachments: Vec<Value>,
    /// Everything that happened.
    pub timeline: Vec<Event>,
}

/// A fault the next HUB calls suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// Answer with this status without processing the call.
    Status {
        /// HTTP status (5xx).
        code: u16,
    },
    /// Never answer within the caller's timeout (hangs, then drops the call unprocessed).
    Timeout,
    /// Answer normally after a delay.
    Slow {
        /// Delay in milliseconds.
        ms: u64,
    },
}

/// The HUB refuses a session's status PUTs (a HUB that is wrong about one session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Refusal {
    /// The session whose PUTs are refused.
    pub telemonitoring_id: String,
    /// The 4xx answered.
    pub code: u16,
    /// Only PUTs setting this status (all of the session's PUTs when absent).
    #[serde(default)]
    pub status: Option<String>,
    /// How many PUTs are refused (until cleared when absent); 0 clears the session's refusal.
    #[serde(default)]
    pub times: Option<u32>,
}

/// Mutable state of the emulator.
#[derive(Debug, Default)]
pub struct HubState {
    /// Valid tokens and their expiry.
    pub tokens: HashMap<String, Instant>,
    /// Sessions by telemonitoringId.
    pub sessions: HashMap<String, SimSession>,
    /// Every violation, with the session it concerns (empty when unknown).
    pub violations: Vec<(String, String)>,
    /// Faults for the next HUB calls, consumed in order.
    pub faults: VecDeque<Fault>,
    /// Refusals of one session's PUTs, by telemonitoringId.
    pub refusals: HashMap<String, Refusal>,
    /// Lifetime of new tokens.
    pub token_ttl: Duration,
    /// Token requests served (for tests of the provider's cache).
    pub token_requests: u64,
}

/// Handle to the state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shared(Arc<Mutex<HubState>>);

impl Shared {
    /// New state with the token lifetime.
    pub fn new(token_ttl: Duration) -> Self {
        Self(Arc::new(Mutex::new(HubState {
            token_ttl,
            ..HubState::default()
        })))
    }

    /// Runs `f` with the state locked (never across an await).
    pub fn with<T>(&self, f: impl FnOnce(&mut HubState) -> T) -> T {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Whether a PUT of `status` for `telemonitoring_id` is refused, and with which code;
    /// counts the refusal down.
    pub fn refusal(&self, telemonitoring_id: &str, status: &str) -> Option<u16> {
        self.with(|s| {
            let r = s.refusals.get_mut(telemonitoring_id)?;
            if r.status.as_deref().is_some_and(|only| only != status) {
                return None;
            }
            let code = r.code;
            if let Some(n) = r.times.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.refusals.remove(telemonitoring_id);
                }
            }
            Some(code)
        })
    }

    /// Appends an event to a session's timeline, if the session exists.
    pub fn record(&self, telemonitoring_id: &str, kind: EventKind) {
        self.with(|s| {
            if let EventKind::Violation { message } = &kind {
                s.violations
                    .push((telemonitoring_id.to_owned(), message.clone()));
            }
            if let Some(session) = s.sessions.get_mut(telemonitoring_id) {
                session.timeline.push(Event {
                    at: chrono::Utc::now().to_rfc3339(),
                    kind,
                });
            }
        });
    }
}
