//! `tm-gateway run`: the agent, in two phases driven by one loop.
//!
//! ```text
//!   start --enrollment.json--> Enrolled run --SIGTERM / actor failure--> exit
//!     |                          ^      |
//!     | none, [provider] url     |      | `release` command (enrollment moved aside)
//!     v                          |      v
//!   Waiting to be claimed --claimed (enrollment saved; setup mode for FIRST_SETUP)
//! ```
//!
//! - **Waiting to be claimed** ([`crate::claim`]): no enrollment, and the configuration names
//!   the provider. The agent posts signed hellos until a nurse claims its code. Without
//!   `[provider] url` an unenrolled agent refuses to start, as before.
//! - **Enrolled run** ([`enrolled`]): every actor in one `JoinSet` under the run's token:
//!   outbox writer and stash forwarder, MQTT event loop, syncer, heartbeat, command actor,
//!   BLE supervisor, the setup scanner ([`crate::setup`]), the systemd watchdog and, in
//!   simulator builds, a synthetic device. A gateway just claimed starts it in setup mode for
//!   [`crate::setup::FIRST_SETUP`].
//!
//! A `release` ends the enrolled run, not the process: the agent goes back to waiting, with the
//! same key (so the same claim code) and the same outbox (readings not yet confirmed stay).
//! SIGTERM/SIGINT (the `cancel` token) ends either phase promptly.

mod enrolled;

use std::sync::Arc;

pub use enrolled::Simulation;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::enrollment::{Enrollment, EnrollmentError};
use crate::health::Notifier;
use crate::identity::Identity;

/// How an enrolled run ended without failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    /// The agent was asked to stop.
    Stopped,
    /// The provider released the gateway: wait to be claimed again.
    Released,
}

/// Runs the agent until `cancel` (or an actor fails).
pub async fn run(
    config: Config,
    simulation: Option<Simulation>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let key = Arc::new(Identity::load_or_create(&config.key_path())?.into_signing_key());
    let notifier = Notifier::from_env();
    loop {
        let (enrollment, setup_until) = match Enrollment::load(&config.state_dir) {
            Ok(enrollment) => (enrollment, None),
            Err(EnrollmentError::NotEnrolled { path }) => {
                let Some(url) = config.provider_url.as_deref() else {
                    return Err(EnrollmentError::NotEnrolled { path }.into());
                };
                let claimed =
                    crate::claim::wait_for_claim(&config, url, &key, &notifier, &cancel).await?;
                let Some(enrollment) = claimed else {
                    notifier.notify("STOPPING=1");
                    return Ok(());
                };
                let first = chrono::Duration::from_std(crate::setup::FIRST_SETUP)
                    .unwrap_or(chrono::Duration::MAX);
                (enrollment, Some(chrono::Utc::now() + first))
            }
            Err(e) => return Err(e.into()),
        };
        let ended = enrolled::run(
            &config,
            key.clone(),
            enrollment,
            setup_until,
            simulation,
            &cancel,
        )
        .await?;
        match ended {
            RunEnd::Stopped => return Ok(()),
            RunEnd::Released if cancel.is_cancelled() => return Ok(()),
            RunEnd::Released => {
                tracing::info!("released: waiting to be claimed again");
                if config.provider_url.is_none() {
                    anyhow::bail!(
                        "the provider released this gateway and [provider] url is not set: \
                         enroll it again with `tm-gateway enroll`"
                    );
                }
            }
        }
    }
}
