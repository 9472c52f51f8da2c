//! Wiring: from a validated [`Config`] to the HTTP state and the HUB outbox actor. Used by
//! `main` and by the tests, so both run the same assembly.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::db::Db;
use crate::http::AppState;
use crate::hub::client::HubClient;
use crate::hub::outbox::{Backoff, OutboxActor};
use crate::ingest::Ingest;
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
    /// Fleet operations.
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
}

/// The assembled provider.
#[derive(Debug)]
pub struct Assembly {
    /// HTTP state.
    pub state: AppState,
    /// The HUB outbox actor, when `[hub]` is configured; run it with a cancellation token.
    pub outbox: Option<OutboxActor>,
    /// Gateway ingest (HTTPS routes, and the MQTT subscriber when `[mqtt]` is configured).
    pub ingest: Ingest,
    /// Fleet operations (dashboard, API, metrics, command poll, the alert evaluator).
    pub ops: crate::ops::Ops,
}

impl Assembly {
    /// The whole HTTP router: Portal, enrollment, gateway ingest.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.state.clone())
            .merge(crate::ingest::http::routes(self.ingest.clone()))
            .merge(self.ops.routes())
    }
}

/// Opens the store, loads (or creates, mode 0600) the provider key, builds the HUB client and
/// the ingest.
pub fn assemble(config: Config) -> Result<Assembly, StartError> {
    let db = Db::open(&config.database)?;
    let provider_key = Arc::new(crate::keys::load_or_create(&config.key_file)?);
    let ingest = Ingest::new(db.clone(), provider_key.clone());
    let ops = crate::ops::Ops::new(db.clone(), config.ops.clone(), provider_key.clone())?;
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
        ingest,
        ops,
    })
}
