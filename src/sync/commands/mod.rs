//! Remote commands from the provider: fetched by the poll actor from
//! `GET {https_url}/api/v1/gateways/{gateway_id}/commands` (JSON `{"frames": [base64, ...]}`),
//! admitted by [`CommandGuard`], executed by [`Executor`].
//!
//! A command is admitted only if, in this order: the frame is signed by `provider` and the
//! signature verifies against the provider key from the enrollment (so an unsigned or forged
//! frame is refused); it decodes; it names this gateway; it has not expired; and its id was not
//! seen before. Seen ids are kept in `commands-seen.json` in the state directory (written
//! atomically, before the command runs: at most once, even across a restart) until their
//! expiry, after which the expiry check refuses them anyway. Every refusal is logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use tm_protocol::{Command, CommandAction, Frame, GatewayId, MessageKind, VerifyingKey};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// File of seen command ids in the state directory.
pub const SEEN_FILE: &str = "commands-seen.json";
/// The signer name of provider frames.
const PROVIDER_SIGNER: &str = "provider";

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefused {
    /// Not a frame, or not signed by the provider.
    #[error("unsigned or malformed command frame: {0}")]
    Unsigned(String),
    /// The signature does not verify against the enrolled provider key.
    #[error("forged command: {0}")]
    Forged(String),
    /// The payload is not a command.
    #[error("malformed command: {0}")]
    Malformed(String),
    /// For another gateway.
    #[error("command for another gateway")]
    WrongGateway,
    /// Past its expiry.
    #[error("command expired at {0}")]
    Expired(DateTime<Utc>),
    /// Already executed.
    #[error("command replayed")]
    Replayed,
    /// The seen-ids file cannot be written: not executed, so it cannot run twice.
    #[error("cannot record the command id: {0}")]
    Store(String),
}

/// Verifies commands and remembers the ids it admitted.
#[derive(Debug)]
pub struct CommandGuard {
    provider: VerifyingKey,
    gateway: GatewayId,
    path: PathBuf,
    /// Seen id -> expiry (ms).
    seen: BTreeMap<String, i64>,
}

impl CommandGuard {
    /// A guard for `gateway`, keeping its seen ids in `state_dir`.
    pub fn open(provider: VerifyingKey, gateway: GatewayId, state_dir: &Path) -> Self {
        let path = state_dir.join(SEEN_FILE);
        let seen = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            provider,
            gateway,
            path,
            seen,
        }
    }

    /// Admits a command frame at `now`, recording its id.
    pub fn admit(&mut self, bytes: &[u8], now: DateTime<Utc>) -> Result<Command, CommandRefused> {
        let frame = Frame::parse(bytes).map_err(|e| CommandRefused::Unsigned(e.to_string()))?;
        if frame.signer() != PROVIDER_SIGNER {
            return Err(CommandRefused::Unsigned(
                "not signed by the provider".into(),
            ));
        }
        let payload = frame
            .verify(MessageKind::Command, &self.provider)
            .map_err(|e| CommandRefused::Forged(e.to_string()))?;
        let command: Command =
            tm_protocol::decode(payload).map_err(|e| CommandRefused::Malformed(e.to_string()))?;
        if command.gateway_id != self.gateway {
            return Err(CommandRefused::WrongGateway);
        }
        if command.expires_at <= now {
            return Err(CommandRefused::Expired(command.expires_at));
        }
        if self.seen.contains_key(command.command_id.as_str()) {
            return Err(CommandRefused::Replayed);
        }
        let now_ms = now.timestamp_millis();
        self.seen.retain(|_, expires| *expires > now_ms);
        self.seen.insert(
            command.command_id.to_string(),
            command.expires_at.timestamp_millis(),
        );
        self.save().map_err(|e| {
            self.seen.remove(command.command_id.as_str());
            CommandRefused::Store(e.to_string())
        })?;
        Ok(command)
    }

    fn save(&self) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.seen)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

type LogReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;
static LOG_RELOADER: OnceLock<LogReloader> = OnceLock::new();

/// Installs the function that changes the process's log filter (set by `main` from its
/// tracing reload handle). Without it `set-log-level` answers "not available".
pub fn set_log_reloader(f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = LOG_RELOADER.set(Box::new(f));
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done(String),
    /// The agent cannot do this here.
    NotAvailable(String),
    /// It failed.
    Failed(String),
}

/// Runs admitted commands.
#[derive(Debug, Clone)]
pub struct Executor {
    /// Wakes the syncer out of its backoff.
    pub resync: Arc<Notify>,
    /// Asks the BLE side to reconnect to every paired device, when it runs.
    pub reread: Option<Arc<Notify>>,
}

impl Executor {
    /// Executes one admitted command.
    pub fn execute(&self, action: &CommandAction) -> Outcome {
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
                Some(n) => {
                    n.notify_one();
                    Outcome::Done("devices will be read again".into())
                }
                None => Outcome::NotAvailable("the BLE side is not running in this agent".into()),
            },
        }
    }
}

/// Polls the provider for commands every `interval` until `cancel`.
pub async fn poll(
    client: reqwest::Client,
    url: String,
    mut guard: CommandGuard,
    executor: Executor,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let frames = match fetch(&client, &url).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(stage = "commands", error = %e, "command poll failed");
                continue;
            }
        };
        for frame in frames {
            // Logged inside; the outcome needs no further action here.
            let _ = handle(&mut guard, &executor, &frame, Utc::now());
        }
    }
}

/// Admits and executes one frame, logging the outcome; returns it.
pub fn handle(
    guard: &mut CommandGuard,
    executor: &Executor,
    frame: &[u8],
    now: DateTime<Utc>,
) -> Result<Outcome, CommandRefused> {
    match guard.admit(frame, now) {
        Ok(command) => {
            let outcome = executor.execute(&command.action);
            tracing::info!(stage = "commands", command = %command.command_id, ?outcome, "command executed");
            Ok(outcome)
        }
        Err(CommandRefused::Replayed) => {
            // The poll serves a command until it expires: seeing it again is expected.
            tracing::debug!(stage = "commands", "command already executed; ignored");
            Err(CommandRefused::Replayed)
        }
        Err(e) => {
            tracing::warn!(stage = "commands", error = %e, "command refused");
            Err(e)
        }
    }
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
