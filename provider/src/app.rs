//! Wiring: from a validated [`Config`] to the HTTP state and the HUB outbox actor. Used by
//! `main` and by the tests, so both run the same assembly.

use std::sync::Arc;
use std::time::Duration;

use tm_protocol::SigningKey;

use crate::config::Config;
use crate::db::Db;
use crate::http::AppState;
use crate::hub::client::HubClient;
use crate::hub::outbox::{Backoff, OutboxActor};
use crate::portal::Portal;

/// Why the provider cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// The provider key.
    #[error(transparent)]
    Key(#[from] tm_protocol::IdentityError),
    /// The HUB client.
    #[error(transparent)]
    Hub(#[from] crate::hub::client::HubClientError),
}

/// The assembled provider.
#[derive(Debug)]
pub struct Assembly {
    /// HTTP state.
    pub state: AppState,
    /// The HUB outbox actor, when `[hub]` is configured; run it with a cancellation token.
    pub outbox: Option<OutboxActor>,
}

/// Opens the store, loads (or creates, mode 0600) the provider key, builds the HUB client.
pub fn assemble(config: Config) -> Result<Assembly, StartError> {
    let db = Db::open(&config.database)?;
    let key_path = config
        .enrollment
        .key_file
        .clone()
        .unwrap_or_else(|| config.database.with_file_name("provider.key"));
    let (provider_key, created) = SigningKey::load_or_create(&key_path)?;
    if created {
        tracing::info!(path = %key_path.display(), "created the provider key");
    }
    let wake = Arc::new(tokio::sync::Notify::new());
    let outbox = match &config.hub {
        Some(hub) => Some(OutboxActor {
            db: db.clone(),
            client: HubClient::new(hub)?,
            wake: wake.clone(),
            backoff: Backoff {
                initial: Duration::from_millis(hub.retry_initial_ms),
                max: Duration::from_millis(hub.retry_max_ms),
            },
        }),
        None => {
            tracing::warn!("no [hub] configured: status updates wait in the outbox");
            None
        }
    };
    let portal = Arc::new(Portal {
        config: Arc::new(config),
        wake_outbox: wake,
        provider_key,
        enroll_failures: std::sync::Mutex::default(),
    });
    Ok(Assembly {
        state: AppState { db, portal },
        outbox,
    })
}
