//! The agent's configuration: a TOML file (`/etc/tm-gateway/gateway.toml` by default) in two
//! layers. [`ConfigFile`] is the file's shape (unknown keys are errors, so a typo is caught at
//! start, not discovered in the field); [`Config`] is the validated runtime value.
//!
//! Settings the provider hands over at enrollment (gateway id, sync transport and URLs) are not
//! here: they live in the state directory, written by `tm-gateway enroll` or received by the
//! claim hello ([`crate::claim`]). `[provider] url` names the provider an unenrolled gateway
//! announces itself to; without it an unenrolled `run` stops with "not enrolled".

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tm-gateway/gateway.toml";

pub use tm_protocol::config_file::ConfigError;

/// Where the agent's configuration comes from, for the hint a missing file gets.
const ORIGIN: tm_protocol::config_file::Origin = tm_protocol::config_file::Origin {
    example: "config/gateway.example.toml",
    env: "TM_GATEWAY_CONFIG",
};

/// The file's shape. Every key is optional; an empty file gives the defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Directory for the key, the outbox, the enrollment and the paired devices (systemd
    /// `StateDirectory`); must be absolute. Default `/var/lib/tm-gateway`.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Log filter (`info`, `debug`, `tm_gateway=debug`), checked at load; `TM_LOG`, when set,
    /// overrides it and a `set-log-level` command replaces it until restart. Default `info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// `[ble]`: which adapter the BLE side uses.
    #[serde(default)]
    pub ble: BleFile,
    /// `[store]`: the outbox's quota and retention.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[sync]`: batching, timing, TLS material and broker credentials (the transport and
    /// URLs come from the enrollment).
    #[serde(default)]
    pub sync: SyncConfig,
    /// `[provider]`: where an unenrolled gateway announces itself to be claimed.
    #[serde(default)]
    pub provider: ProviderFile,
}

/// Provider section of the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    /// The provider's base URL (`https://provider.example.org`). When set, an unenrolled
    /// `tm-gateway run` posts a claim hello there every few seconds until a nurse claims it;
    /// its certificate is checked against the system roots and `[sync] ca_file`. Unset: an
    /// unenrolled `run` refuses to start (enroll with `tm-gateway enroll` instead).
    pub url: Option<String>,
}

/// Bluetooth section of the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BleFile {
    /// The BlueZ adapter to use, by a name like `hci0` (the default); never "the first one", as the
    /// order of adapters is not stable. A missing adapter raises `ble-unavailable`.
    #[serde(default = "default_adapter")]
    pub adapter: String,
}

impl Default for BleFile {
    fn default() -> Self {
        Self {
            adapter: default_adapter(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/tm-gateway")
}
fn default_log_level() -> String {
    "info".into()
}
fn default_adapter() -> String {
    "hci0".into()
}

/// The log filter of a `log_level` (or `TM_LOG`, or a `set-log-level` command): a level
/// (`info`), targets with levels (`tm_gateway::sync=debug`), or both, comma-separated
/// (`warn,tm_gateway=debug`). Levels: `off`, `error`, `warn`, `info`, `debug`, `trace`. A
/// directive that is neither is refused, so a typo cannot silence the log.
pub fn log_filter(spec: &str) -> Result<tracing_subscriber::filter::Targets, String> {
    use tracing_subscriber::filter::LevelFilter;
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        let target_ok = target.is_none_or(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-'))
        });
        if !target_ok || level.parse::<LevelFilter>().is_err() {
            return Err(format!(
                "{directive:?} is neither a level (off, error, warn, info, debug, trace) nor \
                 target=level"
            ));
        }
    }
    spec.parse().map_err(|e| format!("{e}"))
}

pub use crate::sync::config::{StoreConfig, SyncConfig};

/// The validated configuration: the values of [`ConfigFile`], each range already checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute state directory; [`Self::key_path`] and [`Self::outbox_path`] are derived
    /// from it, and the enrollment, paired devices and seen commands live in it.
    pub state_dir: PathBuf,
    /// A log filter known to parse; applied by [`Self::load`] unless `TM_LOG` is set.
    pub log_level: String,
    /// BlueZ adapter name, from `[ble] adapter`, checked to look like `hci0`.
    pub adapter: String,
    /// `[store]`, validated (quota in range).
    pub store: StoreConfig,
    /// `[sync]`, validated (batch, window, timeouts and backoff in range; the client
    /// certificate and key given together).
    pub sync: SyncConfig,
    /// `[provider] url` without a trailing `/`, checked to be an `https://` (or, for tests on
    /// loopback, `http://`) URL with a host; `None`: an unenrolled gateway does not announce
    /// itself.
    pub provider_url: Option<String>,
}

impl Config {
    /// Reads and validates the file at `path`, and applies its `log_level` to the running
    /// process (unless `TM_LOG` overrides it).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: ConfigFile = tm_protocol::config_file::read(path, ORIGIN)?;
        let config = Self::try_from(file)?;
        crate::sync::commands::apply_configured_log_level(&config.log_level);
        Ok(config)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::try_from(tm_protocol::config_file::parse::<ConfigFile>(
            text,
            Path::new(""),
        )?)
    }

    /// The outbox database inside the state directory.
    pub fn outbox_path(&self) -> PathBuf {
        self.state_dir.join(crate::store::FILE_NAME)
    }

    /// The gateway key's path inside the state directory.
    pub fn key_path(&self) -> PathBuf {
        self.state_dir.join("gateway.key")
    }
}

impl TryFrom<ConfigFile> for Config {
    type Error = ConfigError;

    fn try_from(f: ConfigFile) -> Result<Self, ConfigError> {
        if !f.state_dir.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "state_dir must be an absolute path, got {}",
                f.state_dir.display()
            )));
        }
        let adapter_ok = f.adapter_name_ok();
        if !adapter_ok {
            return Err(ConfigError::Invalid(format!(
                "ble.adapter must look like hci0, got {:?}",
                f.ble.adapter
            )));
        }
        log_filter(&f.log_level).map_err(|e| {
            ConfigError::Invalid(format!(
                "log_level {:?} is not a valid filter: {e}",
                f.log_level
            ))
        })?;
        f.store.validate().map_err(ConfigError::Invalid)?;
        f.sync.validate().map_err(ConfigError::Invalid)?;
        let provider_url = f
            .provider
            .url
            .as_deref()
            .map(provider_url)
            .transpose()
            .map_err(ConfigError::Invalid)?;
        Ok(Self {
            state_dir: f.state_dir,
            log_level: f.log_level,
            adapter: f.ble.adapter,
            store: f.store,
            sync: f.sync,
            provider_url,
        })
    }
}

/// Checks `[provider] url`; the URL without its trailing `/`.
fn provider_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let host = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match host {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.contains(' ') => {
            Ok(trimmed.to_owned())
        }
        _ => Err(format!(
            "provider.url must be the provider's https:// URL with a host, got {url:?}"
        )),
    }
}

impl ConfigFile {
    fn adapter_name_ok(&self) -> bool {
        let a = &self.ble.adapter;
        !a.is_empty() && a.len() <= 16 && a.bytes().all(|b| b.is_ascii_alphanumeric())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_an_empty_file() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/tm-gateway"));
        assert_eq!(c.adapter, "hci0");
        assert_eq!(
            c.key_path(),
            PathBuf::from("/var/lib/tm-gateway/gateway.key")
        );
    }

    #[test]
    fn log_levels_are_levels_and_targets() {
        use tracing::Level;
        let f = log_filter("warn,tm_gateway::sync=debug").unwrap();
        assert!(f.would_enable("tm_gateway::sync::mqtt", &Level::DEBUG));
        assert!(!f.would_enable("tm_gateway::ble", &Level::INFO));
        assert!(f.would_enable("rumqttc", &Level::WARN));
        assert!(
            log_filter("info")
                .unwrap()
                .would_enable("zbus", &Level::INFO)
        );
        for bad in [
            "tm_gateway=loud",
            "warn,=debug",
            "[[",
            "tm_gateway",
            "a b=info",
        ] {
            assert!(log_filter(bad).is_err(), "{bad}");
        }
        let err = Config::parse("log_level = \"tm_gateway=loud\"").unwrap_err();
        assert!(err.to_string().contains("log_level"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::parse("stat_dir = \"/x\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `stat_dir`"),
            "{err}"
        );
        let err = Config::parse("[ble]\nadaptor = \"hci0\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `adaptor`"), "{err}");
    }

    #[test]
    fn invalid_values_are_explained() {
        let err = Config::parse("state_dir = \"relative\"").unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        let err = Config::parse("[ble]\nadapter = \"hci0; rm\"").unwrap_err();
        assert!(err.to_string().contains("ble.adapter"), "{err}");
        let err = Config::parse("log_level = \"[[\"").unwrap_err();
        assert!(err.to_string().contains("log_level"), "{err}");
    }

    #[test]
    fn the_provider_url_is_checked_and_trimmed() {
        assert_eq!(Config::parse("").unwrap().provider_url, None);
        let c = Config::parse("[provider]\nurl = \"https://provider.example.org/\"").unwrap();
        assert_eq!(
            c.provider_url.as_deref(),
            Some("https://provider.example.org")
        );
        for bad in [
            "provider.example.org",
            "https://",
            "ftp://x",
            "https:///path",
        ] {
            let err = Config::parse(&format!("[provider]\nurl = \"{bad}\"")).unwrap_err();
            assert!(err.to_string().contains("provider.url"), "{bad}: {err}");
        }
        let err = Config::parse("[provider]\nurl = \"https://x\"\nca = \"y\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `ca`"), "{err}");
    }

    #[test]
    fn every_shipped_example_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("gateway") && name.ends_with(".toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
                n += 1;
            }
        }
        assert!(n >= 1, "no gateway example in config/");
    }
}
