//! The PostgreSQL side of the store: one database shared by several provider instances.
//!
//! A pool of connections (deadpool) over tokio-postgres, async all the way: no call blocks the
//! runtime. TLS is rustls with the ring provider, verifying the server against the configured
//! roots; only a loopback server may be reached in plain text (see [`super::settings`]).
//!
//! At connect the pending migrations of [`schema::MIGRATIONS`] run in one transaction that
//! first takes an advisory lock ([`schema::MIGRATION_LOCK`]): instances started together
//! serialize there, and each finds the schema complete when its turn comes. A database whose
//! schema is newer than this build is refused rather than served.

pub mod adherence;
pub mod alerts;
pub mod audit;
pub mod checkin;
pub mod claims;
pub mod commands;
pub mod enrollment;
pub mod fleet;
pub mod gateways;
pub mod hub_outbox;
pub mod hub_updates;
pub mod lease;
pub mod locks;
pub mod metrics;
pub mod pins;
pub mod readings;
pub mod schema;
pub mod sessions;
pub mod setup;
pub mod snapshots;
pub mod triage;
pub mod views;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::StoreError;
use super::settings::PostgresSettings;

/// Handle to the PostgreSQL store; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The database as configured, for error messages (no password in it).
    url: Arc<str>,
    /// How to open a connection outside the pool (a lease holds one of its own).
    connector: Arc<Connector>,
}

/// The settings a connection is opened with, for the connections that live outside the pool.
struct Connector {
    config: tokio_postgres::Config,
    /// `None`: plain text (a loopback server with `sslmode=disable`).
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

impl PgStore {
    /// Connects, applies pending migrations under the migration lock and gives a new store its
    /// id.
    pub async fn connect(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let url: Arc<str> = settings.url.as_str().into();
        let err = |what: String| StoreError::Postgres {
            url: url.to_string(),
            what,
        };
        let mut config: tokio_postgres::Config = settings
            .url
            .parse()
            .map_err(|e| err(format!("invalid URL: {e}")))?;
        if let Some(password) = &settings.password {
            config.password(password.as_bytes());
        }
        config.application_name("tm-provider");
        if !settings.plaintext {
            // Never `prefer`: a server (or a man in the middle) that declines TLS is refused,
            // not talked to in plain text.
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let (manager, tls) = if settings.plaintext {
            let manager =
                Manager::from_config(config.clone(), tokio_postgres::NoTls, manager_config);
            (manager, None)
        } else {
            let ca = settings
                .ca_file
                .as_deref()
                .ok_or_else(|| err("TLS needs a ca_file".into()))?;
            let tls =
                tokio_postgres_rustls::MakeRustlsConnect::new(client_config(ca).map_err(err)?);
            let manager = Manager::from_config(config.clone(), tls.clone(), manager_config);
            (manager, Some(tls))
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let connector = Arc::new(Connector { config, tls });
        let store = Self {
            pool,
            url,
            connector,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A connection from the pool.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| self.failed(&e))
    }

    /// A store error naming this database and what failed, with every cause (a TLS handshake
    /// says why the certificate was refused).
    pub fn error(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres {
            url: self.url.to_string(),
            what: what.to_string(),
        }
    }

    /// The store error for a failed statement or connection (every cause named).
    pub fn failed(&self, e: &(dyn std::error::Error + 'static)) -> StoreError {
        self.error(causes(e))
    }

    /// A mapper for `map_err` on statements: `tx.execute(..).await.map_err(pg.sql())?`.
    pub fn sql(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |e| self.failed(&e)
    }

    /// The database as configured (no password in it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The store's id: random, written once when the store is created.
    pub async fn store_id(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT store_id FROM store_identity", &[])
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(row.get(0))
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> Result<i32, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(|e| self.failed(&e))?;
        Ok(row.get(0))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let e = |e: tokio_postgres::Error| self.failed(&e);
        let tx = client.transaction().await.map_err(e)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&schema::MIGRATION_LOCK],
        )
        .await
        .map_err(e)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now()); \
             CREATE TABLE IF NOT EXISTS store_identity (store_id text PRIMARY KEY, \
             created_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(e)?;
        let done: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(e)?
            .get(0);
        let known = i32::try_from(schema::MIGRATIONS.len()).unwrap_or(i32::MAX);
        if done > known {
            return Err(self.error(format!(
                "the database's schema is at version {done}, newer than this provider \
                 (version {known}): upgrade the provider"
            )));
        }
        for (version, sql) in (1..)
            .zip(schema::MIGRATIONS)
            .skip(usize::try_from(done).unwrap_or(0))
        {
            tx.batch_execute(sql).await.map_err(e)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(e)?;
        }
        let mut raw = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
            .map_err(|_| self.error("no randomness for the store id"))?;
        tx.execute(
            "INSERT INTO store_identity (store_id) SELECT $1 \
             WHERE NOT EXISTS (SELECT 1 FROM store_identity)",
            &[&hex::encode(raw)],
        )
        .await
        .map_err(e)?;
        tx.commit().await.map_err(e)
    }
}

/// `e` and its sources, each once: "error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer".
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

/// A rustls client configuration (ring provider) trusting only the certificates in `ca`.
fn client_config(ca: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    let problem = |e: &dyn std::fmt::Display| format!("ca_file {}: {e}", ca.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| problem(&e))? {
        roots
            .add(cert.map_err(|e| problem(&e))?)
            .map_err(|e| problem(&e))?;
    }
    if roots.is_empty() {
        return Err(problem(&"no CERTIFICATE in the file"));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| problem(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
