//! Wiring: from a validated [`Config`] to the HTTP state, the HUB outbox actor, the ingest and
//! the session updater. Used by `main` and by the tests, so both run the same assembly.

use std::sync::Arc;
use std::time::Duration;

use crate::attachments::UriSigner;
use crate::attachments::routes::AttachmentServer;
use crate::config::Config;
use crate::http::Routes;
use crate::hub::client::HubClient;
use crate::hub::outbox::{OutboxActor, Retries};
use crate::ingest::Ingest;
use crate::portal::{AppState, Portal};
use crate::publish::updater::{self, SessionUpdater};
use crate::publish::{Publisher, StoreSource};
use crate::store::pins::Purpose;
use crate::store::{Database, Store};

/// Why the provider cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The store is not the one this provider serves, or is damaged.
    #[error(transparent)]
    StoreId(#[from] crate::store_id::StoreIdError),
    /// The provider key could not be loaded or created (or others may read its file).
    #[error(transparent)]
    Key(#[from] tm_protocol::IdentityError),
    /// A key file is not the one the store is served with.
    #[error(transparent)]
    KeyMismatch(#[from] crate::store::pins::KeyMismatch),
    /// The attachment URI-signing key could not be loaded or created.
    #[error(transparent)]
    UriKey(#[from] crate::publish::settings::UriKeyError),
    /// The HUB client could not be built from `[hub]` (its secret file, its URL).
    #[error(transparent)]
    Hub(#[from] crate::hub::client::HubClientError),
    /// `[ops]` is unusable: the token file, or a threshold.
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
    /// A setting is invalid (checked when the configuration was read; kept for the types).
    #[error(transparent)]
    Config(#[from] tm_protocol::config_file::ConfigError),
    /// The clinical worklist's token file (`[triage] token_file`) is unusable.
    #[error("triage.token_file: {0}")]
    WorklistToken(#[from] crate::http::access::TokenError),
}

/// The assembled provider: every part shares one [`Store`] and one provider key, and one
/// wake-up of the HUB outbox (the Portal, the updater and operations notify it). Nothing runs
/// until the caller spawns the actors and serves [`Self::router`].
#[derive(Debug)]
pub struct Assembly {
    /// HTTP state of the Portal and enrollment routes: the store and the Portal (configuration,
    /// provider key, publisher, outbox wake-up).
    pub state: AppState,
    /// The HUB outbox actor, when `[hub]` is configured; run it with a cancellation token.
    /// `None`: status updates are queued and wait for a provider with `[hub]`.
    pub outbox: Option<OutboxActor>,
    /// Gateway ingest (HTTPS routes, and the MQTT subscriber when `[mqtt]` is configured);
    /// tells the updater about sessions with new readings.
    pub ingest: Ingest,
    /// The session updater (in-progress and attachment updates); run it with a token. Its
    /// notification channel is fed by `ingest`.
    pub updater: SessionUpdater,
    /// The attachment download server: serves published snapshots from the store under URIs
    /// signed with the attachment key (the same key the publisher signs with).
    pub attachments: Arc<AttachmentServer<StoreSource>>,
    /// Fleet operations (dashboard, API, metrics, command poll, the alert evaluator), wired to
    /// the ingest's MQTT connection and counters.
    pub ops: crate::ops::Ops,
    /// Clinical triage (the carepath rules over new readings); run it with a token.
    pub triage: crate::triage::sweep::Sweep,
    /// The clinical worklist (page and API) over the alerts triage raises.
    pub worklist: crate::worklist::Worklist,
    /// The patients' daily check-in page.
    pub checkin: crate::checkin::Checkin,
}

impl Assembly {
    /// Every route the provider serves, with its router: Portal, enrollment, gateway ingest,
    /// attachment downloads, operations and the command poll. The OpenAPI document lists
    /// exactly these (checked by a test).
    pub fn routes(&self) -> Routes {
        Routes::new()
            .get("/healthz", || async { "ok" })
            .merge(crate::portal::routes(self.state.clone()))
            .merge(crate::ingest::http::routes(self.ingest.clone()))
            .merge(crate::attachments::routes(self.attachments.clone()))
            .merge(self.ops.routes())
            .merge(self.worklist.routes())
            .merge(self.checkin.routes())
            .map_router(|router| router.fallback(no_such_route))
    }

    /// The whole HTTP router ([`Self::routes`]).
    pub fn router(&self) -> axum::Router {
        self.routes().into_router()
    }
}

/// The answer to every path no route serves: 404 `{"message": "no such route"}`.
async fn no_such_route() -> impl axum::response::IntoResponse {
    (
        axum::http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "message": "no such route" })),
    )
}

/// Checks that the store is the one this provider serves and is healthy
/// ([`crate::store_id::check`]; a PostgreSQL store once connected,
/// [`crate::store_id::check_id`]), opens it, loads (or creates, mode 0600) the provider key and
/// the attachment key, builds the HUB client, the ingest and the session updater.
pub async fn assemble(config: Config) -> Result<Assembly, StartError> {
    let record = crate::store_id::record_path(&config.key_file);
    if let Database::Sqlite(path) = &config.database {
        crate::store_id::check(path, &record, config.accept_new_store)?;
    }
    let store = Store::connect(&config.database).await?;
    let store_id = store.store_id().await?;
    if let Database::Postgres(_) = &config.database {
        crate::store_id::check_id(
            &store.describe(),
            &store_id,
            &record,
            config.accept_new_store,
        )?;
    }
    crate::store_id::confirm(&record, &store_id)?;
    let accept_new_keys = config.accept_new_keys;
    let key_files = [
        (Purpose::Receipts, config.key_file.clone()),
        (Purpose::AttachmentUris, config.attachments.key_file.clone()),
    ];
    store
        .check_key_files_present(&key_files, accept_new_keys)
        .await??;
    let provider_key = Arc::new(crate::keys::load_or_create(&config.key_file)?);
    let uri_key = crate::publish::settings::load_or_create_uri_key(&config.attachments.key_file)?;
    let pins = [
        (
            Purpose::Receipts,
            provider_key.verifying_key().fingerprint(),
            config.key_file.clone(),
        ),
        (
            Purpose::AttachmentUris,
            tm_protocol::identity::fingerprint(&uri_key),
            config.attachments.key_file.clone(),
        ),
    ];
    store.pin_keys(&pins, accept_new_keys).await??;
    let identifier_system = store
        .fhir_identifier_system(
            config.attachments.identifier_system.as_deref(),
            &config.public_url,
        )
        .await?;
    let time_zone = config.ops.thresholds()?.time_zone;
    let options = config
        .attachments
        .output_options(&identifier_system, &config.triage, time_zone);
    let attachments = Arc::new(AttachmentServer {
        source: StoreSource {
            store: store.clone(),
            languages: config.attachments.languages.clone().into(),
        },
        signer: UriSigner::new(&uri_key).map_err(crate::publish::settings::UriKeyError::from)?,
        options: options.clone(),
    });
    let publisher = Arc::new(Publisher {
        signer: UriSigner::new(&uri_key).map_err(crate::publish::settings::UriKeyError::from)?,
        options,
        public_url: config.public_url.clone(),
        settings: config.attachments.clone(),
    });
    let (notifier, notifications) = updater::channel();
    let checkin_updates = notifier.clone();
    let ingest = Ingest::new(store.clone(), provider_key.clone()).with_updates(notifier);
    let wake = Arc::new(tokio::sync::Notify::new());
    let ops = crate::ops::Ops::new(store.clone(), config.ops.clone(), provider_key.clone())?
        .with_mqtt(ingest.mqtt_publisher())
        .with_counters(ingest.counters())
        .with_hub_wake(wake.clone());
    let rules = Arc::new(config.triage.clone());
    let tz = ops.thresholds.time_zone;
    let worklist = crate::worklist::Worklist::new(store.clone(), rules.clone(), tz)?;
    let checkin = crate::checkin::Checkin {
        store: store.clone(),
        tz,
        updates: Some(checkin_updates),
    };
    let triage = crate::triage::sweep::Sweep {
        store: store.clone(),
        triage: rules,
        tz,
    };
    let outbox = match &config.hub {
        Some(hub) => Some(OutboxActor {
            store: store.clone(),
            client: HubClient::new(hub)?,
            wake: wake.clone(),
            backoff: Retries {
                initial: Duration::from_millis(hub.retry_initial_ms),
                max: Duration::from_millis(hub.retry_max_ms),
                refused_window: Duration::from_millis(hub.refused_retry_window_ms),
            },
        }),
        None => {
            tracing::warn!("no [hub] configured: status updates wait in the outbox");
            None
        }
    };
    let updater = SessionUpdater {
        store: store.clone(),
        publisher: publisher.clone(),
        notifications,
        wake_outbox: wake.clone(),
        sweep_every: updater::DEFAULT_SWEEP,
    };
    let portal = Arc::new(Portal {
        section: config.portal,
        enrollment: config.enrollment,
        public_url: config.public_url,
        wake_outbox: wake,
        provider_key,
        publisher,
        mqtt: ingest.mqtt_publisher(),
        tz,
    });
    Ok(Assembly {
        state: AppState { store, portal },
        outbox,
        ingest,
        updater,
        attachments,
        ops,
        triage,
        worklist,
        checkin,
    })
}
