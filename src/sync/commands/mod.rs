//! Remote commands from the provider: delivered by two paths into one actor
//! ([`CommandActor`]), admitted by one [`CommandGuard`], executed by [`Executor`], and reported
//! back to the provider.
//!
//! - **HTTPS poll**, whatever the transport: `GET {https_url}/api/v1/gateways/{gateway_id}/commands`
//!   (JSON `{"frames": [base64, ...]}`) every heartbeat interval, and every
//!   [`crate::setup::COMMAND_POLL`] while setup mode is on (the nurse's page waits for each
//!   tap; a `setup` command pushed over MQTT switches the rhythm at once). For an MQTT gateway it is the
//!   fallback for a push that never came (the broker held no session for the gateway, or the
//!   provider was not connected when the command was issued).
//! - **MQTT push** (MQTT transport): the event loop forwards each frame published on the
//!   gateway's command topic (`tm/v1/gw/{id}/commands`) to the actor.
//!
//! Both paths feed the same guard, so a frame that arrives by both, arrives twice, or is
//! replayed by someone else runs at most once: the guard records the command id (durably)
//! before the command runs and refuses it from then on. Refusals are logged: forged, unsigned,
//! malformed, foreign and expired frames at WARN, an id seen before at INFO (with two paths,
//! seeing a command twice is expected).
//!
//! **Results**: every executed command is reported with a signed [`CommandResult`] over the
//! gateway's own transport ([`Link::send_command_result`]: MQTT or HTTPS, like heartbeats).
//! The provider keeps the first report and stops serving the command to the poll. A report
//! that cannot be sent is kept in memory (at most [`UNSENT_CAPACITY`]) and sent again at each
//! poll tick until its command expires. Refused frames are not reported.
//!
//! The actions: `resync-now`, `set-log-level`, `reread-devices`, and those of the nurse's
//! setup page (`setup`, `pair`, `pair-secret`, `unpair`) and of operations (`release`), all in
//! [`Executor`]. A `release` is reported first; then the actor cancels the run's release token
//! and stops.

mod executor;
mod guard;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use tm_protocol::{
    Command, CommandAction, CommandId, CommandResult, GatewayId, MessageKind, SigningKey,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use executor::{
    Executor, LOG_ENV, Outcome, REREAD_LIMIT, Release, apply_configured_log_level, set_log_reloader,
};
pub use guard::{CommandGuard, CommandRefused, SEEN_FILE};

use super::Link;

/// Frames pushed over MQTT waiting for the actor. When full (the actor is busy, for instance
/// re-reading the devices), a pushed frame is dropped with a warning: the poll serves it until
/// it expires.
pub const PUSHED_CAPACITY: usize = 16;
/// Reports waiting to be sent again. When full, the oldest is dropped: its command ran, and the
/// operator sees it expire without a result.
pub const UNSENT_CAPACITY: usize = 32;

/// How a frame reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The HTTPS poll.
    Poll,
    /// Pushed on the MQTT command topic.
    Mqtt,
}

impl Delivery {
    /// The name logged as `via`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Mqtt => "mqtt",
        }
    }
}

/// An admitted and executed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// The command as verified and decoded; its id is already recorded in the seen file, so it
    /// will not run again whichever path brings it.
    pub command: Command,
    /// What it did: reported to the provider with the command's id (a failure is reported
    /// too, never retried).
    pub outcome: Outcome,
}

fn action_name(action: &CommandAction) -> &'static str {
    match action {
        CommandAction::ResyncNow => "resync-now",
        CommandAction::SetLogLevel { .. } => "set-log-level",
        CommandAction::RereadDevices => "reread-devices",
        CommandAction::Setup { .. } => "setup",
        CommandAction::Pair { .. } => "pair",
        CommandAction::PairSecret { .. } => "pair-secret",
        CommandAction::Unpair { .. } => "unpair",
        CommandAction::Release => "release",
    }
}

/// Admits and executes one frame, logging the outcome or the refusal.
pub async fn handle(
    guard: &mut CommandGuard,
    executor: &Executor,
    frame: &[u8],
    now: DateTime<Utc>,
    via: Delivery,
) -> Result<Executed, CommandRefused> {
    match guard.admit(frame, now) {
        Ok(command) => {
            let outcome = executor.execute(&command.action).await;
            tracing::info!(
                command = %command.command_id,
                action = action_name(&command.action),
                via = via.as_str(),
                ?outcome,
                "command executed"
            );
            Ok(Executed { command, outcome })
        }
        Err(e @ CommandRefused::Replayed(_)) => {
            tracing::info!(via = via.as_str(), error = %e, "command refused");
            Err(e)
        }
        Err(e) => {
            tracing::warn!(via = via.as_str(), error = %e, "command refused");
            Err(e)
        }
    }
}

/// The HTTPS poll, run whatever the reading transport.
#[derive(Debug, Clone)]
pub struct Poll {
    /// An HTTPS client built from `[sync]` (the CA file, `request_timeout_ms`), separate from
    /// the sync link's even on the HTTPS transport.
    pub client: reqwest::Client,
    /// `{https_url}/api/v1/gateways/{gateway_id}/commands`, from the enrollment's HTTPS URL.
    pub url: String,
    /// Time between two polls, the first one at once: the heartbeat interval
    /// ([`crate::setup::COMMAND_POLL`] in setup mode). Reports not yet sent are retried at the
    /// same ticks.
    pub interval: Duration,
}

/// Pause between the report of a `release` and the end of the run: the MQTT client gets the
/// time to publish the result it queued.
pub const RELEASE_GRACE: Duration = Duration::from_secs(1);

/// Sends signed results over the gateway's transport.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// A clone of the sync link: results go over MQTT or HTTPS like the readings, not over
    /// the poll's client.
    pub link: Link,
    /// This gateway's id, the signer of each result and named in it.
    pub gateway: GatewayId,
    /// The gateway's key, shared with the syncer and the heartbeat.
    pub key: Arc<SigningKey>,
}

impl Reporter {
    /// The signed result frame of an executed command.
    pub fn seal(&self, command: &CommandId, outcome: &Outcome, now: DateTime<Utc>) -> Vec<u8> {
        let (status, detail) = outcome.report();
        let mut detail = detail.to_owned();
        tm_protocol::limits::fit_text(&mut detail);
        let result = CommandResult {
            v: tm_protocol::PROTOCOL_VERSION,
            gateway_id: self.gateway.clone(),
            command_id: command.clone(),
            status,
            detail,
            finished_at: now,
        };
        tm_protocol::seal(
            MessageKind::CommandResult,
            self.gateway.as_str(),
            &tm_protocol::encode(&result),
            &self.key,
        )
    }
}

/// A report not sent yet.
#[derive(Debug)]
struct Unsent {
    /// The sealed result, sent again unchanged (signed once, when the command ran).
    frame: Vec<u8>,
    /// The command it reports, for the logs.
    command: CommandId,
    /// The command's expiry: past it the report is dropped, as the provider no longer waits.
    expires_at: DateTime<Utc>,
}

/// The command actor: polls, receives pushed frames, executes, reports. Frames are handled
/// one at a time, so a slow command (a re-read) delays the others.
#[derive(Debug)]
pub struct CommandActor {
    /// One guard for both paths, owned by this actor alone: what makes a command run at most
    /// once however often it arrives.
    pub guard: CommandGuard,
    /// Runs what the guard admitted; holds the syncer's wake-up and the BLE re-read handle.
    pub executor: Executor,
    /// The HTTPS poll, the only path on the HTTPS transport.
    pub poll: Poll,
    /// Unverified frames the MQTT event loop took from the command topic (at most
    /// [`PUSHED_CAPACITY`] waiting). `None` on HTTPS, and once the event loop has ended.
    pub pushed: Option<mpsc::Receiver<Vec<u8>>>,
    /// Seals and sends each executed command's result.
    pub reporter: Reporter,
}

impl CommandActor {
    /// Runs until `cancel`, or until a `release` was executed and reported.
    pub async fn run(mut self, cancel: CancellationToken) {
        let setup = self.executor.setup.as_ref().map(|s| s.mode.clone());
        let mut setup_changes = setup.as_ref().map(crate::setup::SetupMode::watch_until);
        let mut unsent: VecDeque<Unsent> = VecDeque::new();
        // The first poll at once.
        let mut last_poll: Option<tokio::time::Instant> = None;
        loop {
            let period = setup.as_ref().map_or(self.poll.interval, |s| {
                s.period(self.poll.interval, crate::setup::COMMAND_POLL, Utc::now())
            });
            let due = last_poll.map_or_else(tokio::time::Instant::now, |t| t + period);
            let (frames, via) = tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(due) => {
                    last_poll = Some(tokio::time::Instant::now());
                    self.send_again(&mut unsent).await;
                    match fetch(&self.poll.client, &self.poll.url).await {
                        Ok(frames) => (frames, Delivery::Poll),
                        Err(e) => {
                            tracing::debug!(error = %e, "command poll failed");
                            continue;
                        }
                    }
                }
                frame = next_pushed(&mut self.pushed) => (vec![frame], Delivery::Mqtt),
                // Setup mode changed: the poll's period is computed again.
                () = changed(&mut setup_changes) => continue,
            };
            for frame in frames {
                let Ok(done) =
                    handle(&mut self.guard, &self.executor, &frame, Utc::now(), via).await
                else {
                    continue;
                };
                let released = matches!(done.command.action, CommandAction::Release)
                    && matches!(done.outcome, Outcome::Done(_));
                let report = Unsent {
                    frame: self
                        .reporter
                        .seal(&done.command.command_id, &done.outcome, Utc::now()),
                    command: done.command.command_id,
                    expires_at: done.command.expires_at,
                };
                if let Err(e) = self
                    .reporter
                    .link
                    .send_command_result(report.frame.clone())
                    .await
                {
                    tracing::warn!(command = %report.command, error = %e, "command result not sent; will retry");
                    if unsent.len() >= UNSENT_CAPACITY {
                        unsent.pop_front();
                    }
                    unsent.push_back(report);
                }
                if released && let Some(token) = self.executor.released() {
                    tracing::info!("released by the provider: leaving the enrolled run");
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(RELEASE_GRACE) => {}
                    }
                    token.cancel();
                    return;
                }
            }
        }
    }

    /// Sends the kept reports again; keeps those that fail and have not expired.
    async fn send_again(&self, unsent: &mut VecDeque<Unsent>) {
        let now = Utc::now();
        for _ in 0..unsent.len() {
            let Some(report) = unsent.pop_front() else {
                break;
            };
            if report.expires_at <= now {
                tracing::warn!(command = %report.command, "command result never sent; the command has expired");
                continue;
            }
            if self
                .reporter
                .link
                .send_command_result(report.frame.clone())
                .await
                .is_err()
            {
                unsent.push_back(report);
            }
        }
    }
}

/// The next change seen on `rx`; never without one (or once its sender is gone).
async fn changed<T>(rx: &mut Option<tokio::sync::watch::Receiver<T>>) {
    if let Some(r) = rx {
        if r.changed().await.is_ok() {
            return;
        }
        *rx = None;
    }
    std::future::pending().await
}

/// The next frame pushed over MQTT; never resolves without MQTT or once the event loop ended.
async fn next_pushed(pushed: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Vec<u8> {
    if let Some(rx) = pushed {
        if let Some(frame) = rx.recv().await {
            return frame;
        }
        *pushed = None;
    }
    std::future::pending().await
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<Vec<u8>>, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        frames: Vec<String>,
    }
    let r = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("HTTP {}", r.status()));
    }
    let answer: Answer = r.json().await.map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(answer
        .frames
        .iter()
        .filter_map(|f| b64.decode(f).ok())
        .collect())
}
