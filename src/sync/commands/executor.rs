//! What an admitted command does: wake the syncer, change the log filter, have the BLE side
//! read every paired device again, drive setup mode and the nurse's pairings
//! ([`crate::setup::SetupControl`]), or release the gateway. Each ends in an [`Outcome`] that
//! is reported to the provider.
//!
//! Every command answers promptly: `pair` only starts the pairing (its steps travel in the
//! setup heartbeats), so the `pair-secret` the pairing then waits for can run while it waits.
//! A `release` moves the enrollment aside here; the command actor reports it and then ends
//! the enrolled run ([`Release::released`]), and the agent goes back to waiting to be claimed.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tm_protocol::{CommandAction, CommandStatus};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ble::supervisor::RereadHandle;
use crate::setup::SetupControl;

/// Longest a `reread-devices` waits for the BLE side to run again before it reports a
/// failure. Stopping the links is bounded by their disconnects; starting again is a few D-Bus
/// calls.
pub const REREAD_LIMIT: Duration = Duration::from_secs(30);

type LogReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;
static LOG_RELOADER: OnceLock<LogReloader> = OnceLock::new();

/// Installs the function that changes the process's log filter (set by `main` from its
/// tracing reload handle). Without it `set-log-level` answers "not available".
pub fn set_log_reloader(f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = LOG_RELOADER.set(Box::new(f));
}

/// The environment variable that overrides the configured log filter.
pub const LOG_ENV: &str = "TM_LOG";

/// Applies the configuration file's `log_level` once the file is read: the process starts
/// with `TM_LOG` (or `warn` until the file is read), and `TM_LOG`, when set, stays the
/// override. The filter was validated when the configuration loaded.
pub fn apply_configured_log_level(level: &str) {
    if std::env::var_os(LOG_ENV).is_some_and(|v| !v.is_empty()) {
        return;
    }
    if let Some(reload) = LOG_RELOADER.get()
        && let Err(e) = reload(level)
    {
        tracing::warn!(error = %e, "log_level from the configuration not applied");
    }
}

/// What a command did. Each text becomes the result's `detail` (cut to the protocol's text
/// limit) and names no value or patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the text says what changed.
    Done(String),
    /// This agent cannot do it (no reloadable log filter, no BLE side); trying again would not
    /// help.
    NotAvailable(String),
    /// It was tried and failed (a refused log filter, a re-read that timed out).
    Failed(String),
}

impl Outcome {
    /// The status and detail the provider is told.
    pub fn report(&self) -> (CommandStatus, &str) {
        match self {
            Self::Done(d) => (CommandStatus::Done, d),
            Self::NotAvailable(d) => (CommandStatus::NotAvailable, d),
            Self::Failed(d) => (CommandStatus::Failed, d),
        }
    }
}

/// Runs admitted commands.
#[derive(Debug, Clone)]
pub struct Executor {
    /// Shared with the syncer: a `resync-now` notifies it, ending its backoff pause and
    /// resetting the backoff (a permit is kept when the syncer is not waiting right then).
    pub resync: Arc<Notify>,
    /// Asks the BLE supervisor to reconnect to every paired device, waiting up to
    /// [`REREAD_LIMIT`]. `None` where no BLE side runs: `reread-devices` is then not available.
    pub reread: Option<RereadHandle>,
    /// Setup mode and the nurse's pairings. `None` where no BLE side runs: the setup commands
    /// are then not available.
    pub setup: Option<SetupControl>,
    /// What a `release` needs. `None`: `release` is not available.
    pub release: Option<Release>,
}

/// How a `release` is carried out.
#[derive(Debug, Clone)]
pub struct Release {
    /// The state directory whose `enrollment.json` is moved aside.
    pub state_dir: PathBuf,
    /// Cancelled by the command actor once the result is reported: the enrolled run stops
    /// and the agent waits to be claimed again.
    pub released: CancellationToken,
}

impl Executor {
    /// Executes one admitted command.
    pub async fn execute(&self, action: &CommandAction) -> Outcome {
        match action {
            CommandAction::ResyncNow => {
                self.resync.notify_one();
                Outcome::Done("sync woken".into())
            }
            CommandAction::SetLogLevel { level } => match LOG_RELOADER.get() {
                Some(reload) => match reload(level) {
                    Ok(()) => Outcome::Done(format!("log filter now {level:?}")),
                    Err(e) => Outcome::Failed(format!("log filter {level:?} refused: {e}")),
                },
                None => Outcome::NotAvailable("no reloadable log filter in this process".into()),
            },
            CommandAction::RereadDevices => match &self.reread {
                Some(handle) => match handle.reread(REREAD_LIMIT).await {
                    Ok(links) => Outcome::Done(format!(
                        "reconnecting to {links} paired device(s), stored records fetched after \
                         the last committed one"
                    )),
                    Err(e) => Outcome::Failed(e),
                },
                None => Outcome::NotAvailable("the BLE side is not running in this agent".into()),
            },
            CommandAction::Setup { until } => match &self.setup {
                Some(setup) => match setup.enter(*until) {
                    Some(until) => Outcome::Done(format!("setup mode until {until}")),
                    None => Outcome::Done("setup mode off".into()),
                },
                None => no_setup(),
            },
            CommandAction::Pair { address } => match &self.setup {
                Some(setup) if setup.pair(address) => Outcome::Done("pairing started".into()),
                Some(_) => Outcome::Done("pairing already under way".into()),
                None => no_setup(),
            },
            CommandAction::PairSecret { address, secret } => match &self.setup {
                Some(setup) => match setup.secret(address, secret) {
                    Ok(()) => Outcome::Done("secret handed to the pairing".into()),
                    Err(e) => Outcome::Failed(e.to_string()),
                },
                None => no_setup(),
            },
            CommandAction::Unpair { address } => match &self.setup {
                Some(setup) => match setup.unpair(address).await {
                    Ok(true) => Outcome::Done("unpaired".into()),
                    Ok(false) => Outcome::Done("was not paired; bond removed if any".into()),
                    Err(e) => Outcome::Failed(format!("unpairing failed: {e}")),
                },
                None => no_setup(),
            },
            CommandAction::Release => match &self.release {
                Some(release) => match crate::enrollment::Enrollment::release(&release.state_dir) {
                    Ok(_) | Err(crate::enrollment::EnrollmentError::NotEnrolled { .. }) => {
                        Outcome::Done("released: announcing itself unclaimed again".into())
                    }
                    Err(e) => Outcome::Failed(format!("the enrollment cannot be released: {e}")),
                },
                None => Outcome::NotAvailable("release is not available in this agent".into()),
            },
        }
    }

    /// The token a reported `release` cancels, when release is available.
    pub fn released(&self) -> Option<&CancellationToken> {
        self.release.as_ref().map(|r| &r.released)
    }
}

fn no_setup() -> Outcome {
    Outcome::NotAvailable("the BLE side is not running in this agent".into())
}
