//! Claiming a gateway from the nurse's phone, and releasing it again (`unclaimed_gateways`,
//! `claim_failures`, the `claim_code` of `gateways`).
//!
//! - **Hello.** A gateway that is not enrolled posts a signed [`tm_protocol::setup::ClaimHello`]
//!   every few seconds; [`Store::record_claim_hello`] keeps the newest hello of each key (its
//!   claim code, agent version, first and last hello) unless the key's gateway is enrolled and
//!   active, which the hello's answer then tells it. Hellos older than [`FORGET_MS`] are
//!   dropped whenever one is stored, and at most [`MAX_UNCLAIMED`] keys are kept, so strangers
//!   posting hellos with fresh keys cannot grow the table without bound.
//! - **Claim.** [`Store::claim_gateway`] does in one transaction what a nurse's claim means:
//!   the session must still wait for enrollment; its wrong codes of the last window must be
//!   below the limit; the code must name a gateway whose last hello is less than [`FRESH_MS`]
//!   old; that gateway is registered (or a released one bound again) for the session, its
//!   unclaimed row deleted, the claim audited, and the session moved to accepted with the
//!   chosen carepath (which queues the HUB update). A code of no waiting gateway is counted
//!   against the session and in the enrollment's global failed-attempt window. The code of a
//!   gateway claimed already is told apart (the registry keeps each gateway's claim code), and
//!   is not counted: it is no guess.
//! - **Release.** [`Store::release_gateway`] stores the signed `Release` command and marks the
//!   gateway released (bound to nothing) in one transaction, unless its latest heartbeat shows
//!   readings it has not had confirmed and the operator did not force it. The command stays
//!   on the gateway's poll until it expires; the gateway's next hello finds it claimable.
//!
//! On PostgreSQL the claim locks the session row first (as every session change does), then
//! the unclaimed row (`FOR UPDATE`): of two claims of one gateway, the second waits, finds the
//! row gone and the gateway registered, and is refused as already claimed.

use chrono::{DateTime, Utc};
use tm_protocol::claim::ClaimCode;
use tm_protocol::{Command, GatewayId, VerifyingKey};

use super::sessions::TransitionError;
use super::{Backend, Store, StoreError, postgres, sqlite};
use crate::hub::contract::Carepath;

/// How long after its last hello a gateway counts as switched on and waiting to be claimed
/// (hellos come every few seconds, so a few minutes' silence means it is off).
pub const FRESH_MS: i64 = 10 * 60_000;
/// How long an unclaimed gateway is remembered after its last hello.
pub const FORGET_MS: i64 = 24 * 3_600_000;
/// Most unclaimed gateways kept at once; a hello of a new key beyond it is refused.
pub const MAX_UNCLAIMED: i64 = 10_000;

/// A verified hello.
#[derive(Debug, Clone)]
pub struct Hello {
    /// The gateway's key (the hello was signed with it).
    pub public_key: VerifyingKey,
    /// Its agent version.
    pub agent_version: String,
    /// When the provider received it, milliseconds since the epoch.
    pub at_ms: i64,
}

/// What a hello did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloOutcome {
    /// The key's gateway is enrolled and active: answer with its enrollment.
    Enrolled(GatewayId),
    /// Stored (or refreshed) as unclaimed.
    Unclaimed,
    /// The key's gateway was withdrawn by operations: refused.
    Revoked,
    /// Too many unclaimed gateways are kept: refused, nothing stored.
    Full,
}

/// The per-session limit of wrong claim codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimit {
    /// Wrong codes accepted in a window.
    pub per_window: u32,
    /// The window, milliseconds.
    pub window_ms: i64,
}

impl Default for ClaimLimit {
    /// Five wrong codes per session in fifteen minutes.
    fn default() -> Self {
        Self {
            per_window: 5,
            window_ms: 15 * 60_000,
        }
    }
}

/// A nurse's claim.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The session of her page.
    pub telemonitoring_id: String,
    /// The code she typed or scanned.
    pub code: ClaimCode,
    /// The carepath she chose.
    pub carepath: Carepath,
    /// Now, milliseconds since the epoch.
    pub now_ms: i64,
    /// The session's limit of wrong codes.
    pub limit: ClaimLimit,
}

/// What a claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The gateway is enrolled for the session, which is accepted (its HUB update queued).
    Claimed(GatewayId),
    /// No gateway with this code said hello in the last [`FRESH_MS`] (the failure is counted).
    NoGateway,
    /// The code's gateway is claimed or enrolled already (nothing changed).
    AlreadyClaimed,
    /// The session's wrong codes reached the limit (nothing changed).
    RateLimited,
    /// The session no longer waits for enrollment (nothing changed).
    NotWaiting,
    /// The session could not be accepted (nothing changed).
    NotAccepted(TransitionError),
}

/// An operator's release of a gateway.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// The signed `Release` command for the gateway.
    pub command: Command,
    /// Its sealed frame.
    pub frame: Vec<u8>,
    /// Who releases (`operator:<name>`).
    pub issued_by: String,
    /// Release even when the latest heartbeat shows unconfirmed readings.
    pub force: bool,
    /// Now.
    pub now: DateTime<Utc>,
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Released; the session it was bound to, if any.
    Released {
        /// The session it left.
        telemonitoring_id: Option<String>,
    },
    /// Its latest heartbeat shows this many readings not yet confirmed (nothing changed).
    Backlog(u64),
    /// No such gateway, or released already (nothing changed).
    Unknown,
    /// Withdrawn by operations: nothing to release (nothing changed).
    Revoked,
}

impl Store {
    /// Records a verified hello (see the module documentation).
    pub async fn record_claim_hello(&self, hello: Hello) -> Result<HelloOutcome, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::claims::hello(pg, &hello).await,
            Backend::Sqlite(db) => db.write(move |c| sqlite::claims::hello(c, &hello)).await,
        }
    }

    /// Claims the gateway of a code for a session, in one transaction (see the module
    /// documentation).
    pub async fn claim_gateway(&self, request: ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::claims::claim(pg, &request).await,
            Backend::Sqlite(db) => db.write(move |c| sqlite::claims::claim(c, &request)).await,
        }
    }

    /// Releases the command's gateway from its session, storing the command, in one
    /// transaction (see the module documentation).
    pub async fn release_gateway(
        &self,
        request: ReleaseRequest,
    ) -> Result<ReleaseOutcome, StoreError> {
        match &self.backend {
            Backend::Postgres(pg) => postgres::claims::release(pg, &request).await,
            Backend::Sqlite(db) => {
                db.write(move |c| sqlite::claims::release(c, &request))
                    .await
            }
        }
    }
}
