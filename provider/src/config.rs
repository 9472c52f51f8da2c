//! The provider's configuration (`provider.toml`): a file shape with `deny_unknown_fields`
//! turned into a validated [`Config`]. Features add their own sections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hub::settings::HubSection;
pub use crate::ingest::mqtt::settings::{MqttFile, MqttSettings};
use crate::portal::settings::{EnrollmentSection, PortalSection};
use crate::publish::settings::{AttachmentSettings, AttachmentsSection};
use crate::store::settings::{Database, DatabaseFile};

pub use tm_protocol::config_file::ConfigError;

/// Where the provider's configuration comes from, for the hint a missing file gets.
const ORIGIN: tm_protocol::config_file::Origin = tm_protocol::config_file::Origin {
    example: "config/provider.example.toml",
    env: "TM_PROVIDER_CONFIG",
};

/// The file's shape. `listen`, `public_url` and `database` are required; every section has
/// defaults or is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address the HTTP(S) server listens on (Portal, gateway ingest, attachments, operations).
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate (without it, plain HTTP for a TLS-terminating proxy in
    /// front, or for local use).
    #[serde(default)]
    pub tls: Option<crate::http::tls::TlsSection>,
    /// Limits of the HTTP server: header and body timeouts, most connections at once.
    #[serde(default)]
    pub http: crate::http::HttpSection,
    /// The externally visible base URL (used in enrollment links and attachment URIs); must
    /// start with `https://` (`http://` for local use).
    pub public_url: String,
    /// The store: a SQLite file (`database = "provider.db"`, the default key files are placed
    /// next to it) or a `[database]` table (`path`, or a PostgreSQL `url`): see
    /// [`crate::store::settings`].
    pub database: DatabaseFile,
    /// The Portal activation: headers, prescribers, patient fields.
    #[serde(default)]
    pub portal: PortalSection,
    /// The HUB client; without it status updates wait in the outbox.
    #[serde(default)]
    pub hub: Option<HubSection>,
    /// Enrollment codes and gateway sync settings.
    #[serde(default)]
    pub enrollment: EnrollmentSection,
    /// The provider's signing key (PKCS#8, mode 0600, created on first start); default
    /// `provider.key` next to the database.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// MQTT ingest (optional; HTTPS ingest is always on).
    #[serde(default)]
    pub mqtt: Option<MqttFile>,
    /// Clinical outputs: URI signing, languages, dashboard framing, update limits.
    #[serde(default)]
    pub attachments: AttachmentsSection,
    /// Fleet operations: dashboard secret and alert thresholds.
    #[serde(default)]
    pub ops: crate::ops::OpsSection,
    /// Clinical triage: the carepaths' rules and the patients' overrides.
    #[serde(default)]
    pub triage: crate::triage::TriageSection,
}

/// The validated configuration; shared read-only (the Portal holds it in an `Arc`).
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address, as in the file.
    pub listen: SocketAddr,
    /// `[tls]`: HTTPS certificate and key files.
    pub tls: Option<crate::http::tls::TlsSection>,
    /// `[http]`, validated (no zero limit).
    pub http: crate::http::HttpSection,
    /// Public base URL, without a trailing slash.
    pub public_url: String,
    /// The store; checked against the store id recorded beside `key_file` before it is served.
    pub database: Database,
    /// `[portal]`, validated with `[hub]` and `[enrollment]`.
    pub portal: PortalSection,
    /// `[hub]`; `None`: no HUB outbox actor runs and status updates wait in the outbox.
    pub hub: Option<HubSection>,
    /// `[enrollment]`: codes and the sync settings gateways are given.
    pub enrollment: EnrollmentSection,
    /// Signing key file: as configured, else `provider.key` next to the database (the id of
    /// the store it serves is recorded beside it, see [`crate::store_id`]).
    pub key_file: PathBuf,
    /// Serve the store even when it is not the one recorded (`serve --accept-new-store`; not
    /// in the file: a one-time decision, never a standing setting).
    pub accept_new_store: bool,
    /// Serve with key files other than the ones the store pinned (`serve --accept-new-keys`):
    /// the store pins these from now on. Never from the file.
    pub accept_new_keys: bool,
    /// `[mqtt]`, validated (URL, TLS files named in pairs); its files are read at start.
    pub mqtt: Option<MqttSettings>,
    /// `[attachments]`, validated; its key file defaults to `attachments.key` next to the
    /// database.
    pub attachments: AttachmentSettings,
    /// `[ops]`, validated (its thresholds parse).
    pub ops: crate::ops::OpsSection,
    /// `[triage]`, validated.
    pub triage: crate::triage::Triage,
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::try_from(tm_protocol::config_file::read::<ConfigFile>(path, ORIGIN)?)
    }
}

impl TryFrom<ConfigFile> for Config {
    type Error = ConfigError;

    fn try_from(f: ConfigFile) -> Result<Self, ConfigError> {
        if !(f.public_url.starts_with("https://") || f.public_url.starts_with("http://")) {
            return Err(ConfigError::Invalid(format!(
                "public_url must start with https:// (or http:// for local use), got {:?}",
                f.public_url
            )));
        }
        f.http.validate()?;
        crate::portal::settings::validate(&f.portal, &f.enrollment)?;
        if let Some(hub) = &f.hub {
            hub.validate()?;
        }
        let mqtt = f.mqtt.map(MqttSettings::try_from).transpose()?;
        let database = Database::from_file(f.database)?;
        // The default key files: beside the SQLite file; with PostgreSQL beside a configured
        // `key_file` (both keys are shared by every instance, so they travel together), else in
        // the working directory.
        let key_dir = match (&database, &f.key_file) {
            (Database::Postgres(_), Some(key_file)) => {
                key_file.parent().map(Path::to_path_buf).unwrap_or_default()
            }
            _ => database.key_dir(),
        };
        let attachments = AttachmentSettings::from_section(f.attachments, &key_dir)?;
        f.ops.thresholds()?;
        let triage = f.triage.validate()?;
        let key_file = f.key_file.unwrap_or_else(|| key_dir.join("provider.key"));
        Ok(Self {
            listen: f.listen,
            tls: f.tls,
            http: f.http,
            public_url: f.public_url.trim_end_matches('/').to_owned(),
            database,
            portal: f.portal,
            hub: f.hub,
            enrollment: f.enrollment,
            key_file,
            accept_new_store: false,
            accept_new_keys: false,
            mqtt,
            attachments,
            ops: f.ops,
            triage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_example_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("provider") && name.ends_with(".toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
                n += 1;
            }
        }
        assert!(n >= 1, "no provider example in config/");
    }

    #[test]
    fn default_key_files_sit_beside_the_sqlite_file_or_the_configured_key() {
        let sqlite: ConfigFile =
            toml::from_str("listen='127.0.0.1:1'\npublic_url='https://x'\ndatabase='/s/p.db'")
                .unwrap();
        let c = Config::try_from(sqlite).unwrap();
        assert_eq!(c.key_file, Path::new("/s/provider.key"));
        assert_eq!(c.attachments.key_file, Path::new("/s/attachments.key"));
        let pg = "listen='127.0.0.1:1'\npublic_url='https://x'\n\
                  [database]\nurl='postgres://tm@127.0.0.1/tm?sslmode=disable'\n";
        let c = Config::try_from(toml::from_str::<ConfigFile>(pg).unwrap()).unwrap();
        assert_eq!(
            c.key_file,
            Path::new("provider.key"),
            "the working directory"
        );
        assert_eq!(c.attachments.key_file, Path::new("attachments.key"));
        let with_key = pg.replace("[database]", "key_file='/k/provider.key'\n[database]");
        let c = Config::try_from(toml::from_str::<ConfigFile>(&with_key).unwrap()).unwrap();
        assert_eq!(c.attachments.key_file, Path::new("/k/attachments.key"));
    }

    #[test]
    fn unknown_keys_and_bad_urls_are_errors() {
        let err = toml::from_str::<ConfigFile>(
            "listen='127.0.0.1:1'\npublic_url='x'\ndatabase='d'\nextra=1",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"));
        let file: ConfigFile =
            toml::from_str("listen='127.0.0.1:1'\npublic_url='ftp://x'\ndatabase='d'").unwrap();
        assert!(
            Config::try_from(file)
                .unwrap_err()
                .to_string()
                .contains("public_url")
        );
    }

    #[test]
    fn the_http_limits_have_defaults_and_refuse_zero() {
        let base = "listen='127.0.0.1:1'\npublic_url='https://x'\ndatabase='d'\n";
        let load = |http: &str| {
            let file: ConfigFile = toml::from_str(&format!("{base}{http}")).unwrap();
            Config::try_from(file)
        };
        let defaults = load("").unwrap().http;
        assert_eq!(
            (
                defaults.header_timeout_s,
                defaults.body_timeout_s,
                defaults.max_connections
            ),
            (10, 30, 512)
        );
        let set = load("[http]\nmax_connections = 64").unwrap().http;
        assert_eq!((set.max_connections, set.header_timeout_s), (64, 10));
        let err = load("[http]\nbody_timeout_s = 0").unwrap_err().to_string();
        assert!(err.contains("http.body_timeout_s"), "{err}");
    }

    #[test]
    fn the_mqtt_section_is_validated_at_load() {
        let base = "listen='127.0.0.1:1'\npublic_url='https://x'\ndatabase='d'\n[mqtt]\n";
        let load = |mqtt: &str| {
            let file: ConfigFile = toml::from_str(&format!("{base}{mqtt}")).unwrap();
            Config::try_from(file)
        };
        let err = load("url = 'mqtts://broker.example'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt.ca_file"), "{err}");
        let err = load("url = 'mqtts://b'\nca_file = 'ca.pem'\nclient_key_file = 'k.pem'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt.client_cert_file"), "{err}");
        let config = load("url = 'mqtts://broker.example'\nca_file = '/etc/ca.pem'").unwrap();
        let mqtt = config.mqtt.unwrap();
        assert_eq!((mqtt.host.as_str(), mqtt.port), ("broker.example", 8883));
        assert_eq!(mqtt.tls.unwrap().ca_file, Path::new("/etc/ca.pem"));
    }
}
